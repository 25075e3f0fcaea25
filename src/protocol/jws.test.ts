import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { FlattenedSign, type JWK } from 'jose';
import { checkAlgFitsKey, importAccountKey, parseJws, parsePayload, verifyEab, verifyJws } from './jws.js';
import { AcmeProblem, PROBLEM_TYPES } from './problems.js';

const isProblem = (type: string) => (e: unknown) => e instanceof AcmeProblem && e.type === type;

function ecKey() {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { priv: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK };
}

test('a well-formed flattened JWS parses and verifies', async () => {
  const k = ecKey();
  const jws = await new FlattenedSign(Buffer.from('{"a":1}')).setProtectedHeader({ alg: 'ES256', jwk: k.jwk, nonce: 'n', url: 'u' } as never).sign(k.priv);
  const parsed = parseJws(jws);
  const payload = await verifyJws(parsed, importAccountKey(k.jwk));
  assert.deepEqual(parsePayload(payload), { a: 1 });
  assert.equal(parsePayload(Buffer.alloc(0)), null);
});

test('structural defects are malformed', () => {
  for (const body of [null, [], 'x', { protected: 'e30', payload: '' }, { protected: '', payload: '', signature: 'AA' }, { protected: 'e30', payload: '', signature: 'AA', extra: 1 }]) {
    assert.throws(() => parseJws(body), isProblem('malformed'), JSON.stringify(body));
  }
});

test('the header must be JSON with a supported alg', () => {
  const h = (o: unknown) => ({ protected: Buffer.from(JSON.stringify(o)).toString('base64url'), payload: '', signature: 'AA' });
  assert.throws(() => parseJws(h({ alg: 'none' })), isProblem('badSignatureAlgorithm'));
  assert.throws(() => parseJws(h({ alg: 'HS256' })), isProblem('badSignatureAlgorithm'));
  assert.throws(() => parseJws(h({})), isProblem('malformed'));
  assert.throws(() => parseJws(h({ alg: 'ES256', jwk: {}, kid: 'x' })), isProblem('malformed'));
  assert.throws(() => parseJws(h({ alg: 'ES256', crit: ['b64'] })), isProblem('malformed'));
  assert.throws(() => parseJws({ protected: 'bm90IGpzb24', payload: '', signature: 'AA' }), isProblem('malformed'));
});

test('alg must fit the key', () => {
  const k = ecKey();
  checkAlgFitsKey('ES256', k.jwk);
  assert.throws(() => checkAlgFitsKey('RS256', k.jwk), isProblem('malformed'));
  assert.throws(() => checkAlgFitsKey('ES384', k.jwk), isProblem('malformed'));
  assert.throws(() => checkAlgFitsKey('ES256', { ...k.jwk, alg: 'ES384' }), isProblem('malformed'));
});

test('private key material in a JWK is refused', () => {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.throws(() => importAccountKey(k.privateKey.export({ format: 'jwk' }) as JWK), isProblem('badPublicKey'));
});

test('EAB: a valid binding returns its key id; a wrong url or MAC key is refused', async () => {
  const k = ecKey();
  const mac = Buffer.alloc(32, 1);
  const eab = await new FlattenedSign(Buffer.from(JSON.stringify(k.jwk))).setProtectedHeader({ alg: 'HS256', kid: 'kid1', url: 'https://ca/new-account' }).sign(mac);
  const macKey = async (kid: string) => (kid === 'kid1' ? mac : null);
  assert.equal(await verifyEab(eab, { url: 'https://ca/new-account', accountJwk: k.jwk, macKey }), 'kid1');
  await assert.rejects(verifyEab(eab, { url: 'https://ca/other', accountJwk: k.jwk, macKey }), isProblem('malformed'));
  await assert.rejects(verifyEab(eab, { url: 'https://ca/new-account', accountJwk: k.jwk, macKey: async () => Buffer.alloc(32, 2) }), isProblem('unauthorized'));
  await assert.rejects(verifyEab(eab, { url: 'https://ca/new-account', accountJwk: ecKey().jwk, macKey }), isProblem('unauthorized'));
});

test('problem documents use the table status and the ACME URN', () => {
  const p = new AcmeProblem('rateLimited', 'slow down', { retryAfter: 10 });
  assert.equal(p.status, PROBLEM_TYPES.rateLimited);
  assert.equal(p.toJSON().type, 'urn:ietf:params:acme:error:rateLimited');
  const round = AcmeProblem.fromJSON(new AcmeProblem('dns', 'x', { subproblems: [new AcmeProblem('caa', 'y')] }).toJSON());
  assert.equal(round.type, 'dns');
  assert.equal(round.subproblems?.[0]?.type, 'caa');
});

test('every supported algorithm verifies what jose signs; a changed byte, a DER ECDSA signature or a wrong length does not', async () => {
  const keys = {
    ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    ES384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    ES512: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
    RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    EdDSA: generateKeyPairSync('ed25519'),
  } as const;
  for (const [alg, k] of Object.entries(keys)) {
    const jwk = k.publicKey.export({ format: 'jwk' }) as JWK;
    const signed = await new FlattenedSign(Buffer.from('{"n":1}')).setProtectedHeader({ alg, jwk, nonce: 'n', url: 'u' } as never).sign(k.privateKey);
    const key = importAccountKey(jwk);
    const parsed = parseJws(signed);
    assert.deepEqual(parsePayload(await verifyJws(parsed, key)), { n: 1 }, alg);

    const sig = Buffer.from(signed.signature, 'base64url');
    sig[sig.length >> 1]! ^= 0x01;
    await assert.rejects(verifyJws({ ...parsed, signatureB64: sig.toString('base64url') }, key), isProblem('malformed'), `${alg}: flipped bit`);
    await assert.rejects(verifyJws({ ...parsed, payloadB64: Buffer.from('{"n":2}').toString('base64url') }, key), isProblem('malformed'), `${alg}: other payload`);
    const short = Buffer.from(signed.signature, 'base64url').subarray(1).toString('base64url');
    await assert.rejects(verifyJws({ ...parsed, signatureB64: short }, key), isProblem('malformed'), `${alg}: short signature`);
  }
  // RFC 7518 §3.4: an ECDSA JWS signature is r || s; the same signature in DER (what OpenSSL emits) is refused.
  const k = keys.ES256;
  const { createSign } = await import('node:crypto');
  const jwk = k.publicKey.export({ format: 'jwk' }) as JWK;
  const protectedB64 = Buffer.from(JSON.stringify({ alg: 'ES256', jwk, nonce: 'n', url: 'u' })).toString('base64url');
  const der = createSign('sha256').update(`${protectedB64}.`).sign(k.privateKey);
  const parsed = parseJws({ protected: protectedB64, payload: '', signature: der.toString('base64url') });
  await assert.rejects(verifyJws(parsed, importAccountKey(jwk)), isProblem('malformed'));
});
