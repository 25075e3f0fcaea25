/** The typed API against a running anvil server (validation answered by the test's fake). */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { makeCsr } from '../../test/helpers/flow.js';
import { startTestServer, type TestServer } from '../../test/helpers/in-process.js';
import { AcmeApi } from './api.js';
import { AcmeProblemError } from './errors.js';
import { AcmeHttp, type AccountSigner } from './http.js';

function signer(curve: 'P-256' | 'P-384' = 'P-256'): AccountSigner {
  const k = generateKeyPairSync('ec', { namedCurve: curve });
  return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: curve === 'P-256' ? 'ES256' : 'ES384' };
}

describe('AcmeApi', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => ts.stop());

  const api = (s = signer()) => new AcmeApi(new AcmeHttp(ts.directoryUrl, { allowInsecure: true }), s, async (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))));

  test('issues a certificate: order, challenge, finalize, download; then revokes it', async () => {
    const a = api();
    const acct = await a.register({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
    assert.equal(acct.body.status, 'valid');
    let order = await a.newOrder([{ type: 'dns', value: 'api.example.com' }]);
    for (const url of order.body.authorizations) {
      const az = await a.getAuthorization(url);
      const ch = az.challenges.find((c) => c.type === 'http-01')!;
      await a.respondChallenge(ch);
      assert.equal((await a.waitAuthorization(url)).status, 'valid');
    }
    order = await a.waitOrder(order);
    assert.equal(order.body.status, 'ready');
    const csr = await makeCsr(['api.example.com']);
    order = await a.waitOrder(await a.finalize(order, csr.der));
    assert.equal(order.body.status, 'valid');
    const pem = await a.downloadCertificate(order.body.certificate!);
    assert.equal(pem.match(/BEGIN CERTIFICATE/g)?.length, 2);
    const der = Buffer.from(pem.split('-----')[2]!.replace(/\s+/g, ''), 'base64');
    await a.revoke(der, { reason: 4 });
    await assert.rejects(a.revoke(der), (e: unknown) => e instanceof AcmeProblemError && e.type === 'alreadyRevoked');
  });

  test('finds, updates, rolls over and deactivates an account', async () => {
    const s = signer();
    const a = api(s);
    const { url } = await a.register({ termsOfServiceAgreed: true });
    assert.equal((await api(s).find()).url, url);
    assert.deepEqual((await a.updateAccount({ contact: ['mailto:new@example.com'] })).body.contact, ['mailto:new@example.com']);
    const next = signer('P-384');
    await a.rollover(next);
    assert.equal((await api(next).find()).url, url);
    await assert.rejects(api(s).find(), (e: unknown) => e instanceof AcmeProblemError && e.type === 'accountDoesNotExist');
    assert.equal((await a.deactivateAccount()).body.status, 'deactivated');
  });

  test('computes the RFC 8555 key authorization', async () => {
    const a = api();
    assert.match(await a.keyAuthorization('tok'), /^tok\.[A-Za-z0-9_-]{43}$/);
  });
});
