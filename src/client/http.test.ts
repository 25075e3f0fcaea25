import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { startTestServer, type TestServer } from '../../test/helpers/in-process.js';
import { AcmeClientError, AcmeProblemError } from './errors.js';
import { AcmeHttp, parseLinks, parseRetryAfter, type AccountSigner } from './http.js';

function signer(): AccountSigner {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' };
}

const isCode = (code: string) => (e: unknown) => e instanceof AcmeClientError && e.code === code;

test('a plain-http directory is refused unless it is localhost and explicitly allowed', () => {
  assert.throws(() => new AcmeHttp('http://acme.example.com/directory'), isCode('INSECURE_DIRECTORY'));
  assert.throws(() => new AcmeHttp('http://127.0.0.1:1/directory'), isCode('INSECURE_DIRECTORY'));
  assert.throws(() => new AcmeHttp('http://acme.example.com/directory', { allowInsecure: true }), isCode('INSECURE_DIRECTORY'));
  assert.doesNotThrow(() => new AcmeHttp('http://127.0.0.1:1/directory', { allowInsecure: true }));
});

test('Link and Retry-After headers parse', () => {
  assert.deepEqual(parseLinks({ link: ['<https://ca/d>;rel="index"', '</acme/authz/1>; rel="up"'] }, 'https://ca/acme/chall/1'), [
    { url: 'https://ca/d', rel: 'index' },
    { url: 'https://ca/acme/authz/1', rel: 'up' },
  ]);
  assert.equal(parseRetryAfter('120'), 120);
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  assert.equal(parseRetryAfter(new Date(now + 30_000).toUTCString(), now), 30);
  assert.equal(parseRetryAfter('soon'), undefined);
});

describe('against anvil server', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => ts.stop());

  test('signed requests work and server problems arrive typed', async () => {
    const h = new AcmeHttp(ts.directoryUrl, { allowInsecure: true });
    const s = signer();
    const d = await h.directory();
    const r = await h.post<{ status: string }>(d.newAccount, { termsOfServiceAgreed: true }, s, null);
    assert.equal(r.status, 201);
    assert.equal(r.body.status, 'valid');
    assert.ok(r.location);
    const again = await h.post(r.location!, null, s, r.location!);
    assert.equal(again.status, 200);
    await assert.rejects(
      h.post(d.newOrder, { identifiers: [{ type: 'dns', value: 'bad_name.example.com' }] }, s, r.location!),
      (e: unknown) => e instanceof AcmeProblemError && e.type === 'rejectedIdentifier' && e.status === 400,
    );
    await assert.rejects(h.post('https://elsewhere.example/acme/x', null, s, r.location!), isCode('CROSS_ORIGIN'));
    await h.close();
  });
});

describe('against a server that misbehaves', () => {
  let server: http.Server;
  let base: string;
  let script: Array<{ status: number; headers?: Record<string, string>; body: string }> = [];
  let posts = 0;
  before(async () => {
    let n = 0;
    server = http.createServer((req, res) => {
      const nonce = `nonce${++n}`;
      if (req.url === '/directory') {
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/acct`, newOrder: `${base}/order`, revokeCert: `${base}/r`, keyChange: `${base}/k` }),
        );
      }
      if (req.url === '/nonce') return void res.writeHead(200, { 'replay-nonce': nonce }).end();
      posts++;
      req.resume();
      const step = script.shift() ?? { status: 200, body: '{}' };
      res.writeHead(step.status, { 'content-type': 'application/json', 'replay-nonce': nonce, ...(step.headers ?? {}) }).end(step.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const problem = (type: string) => JSON.stringify({ type: `urn:ietf:params:acme:error:${type}`, detail: type });

  test('badNonce is retried with the fresh nonce; 429 waits Retry-After; then it succeeds', async () => {
    const waits: number[] = [];
    const h = new AcmeHttp(`${base}/directory`, { allowInsecure: true, sleep: async (ms) => void waits.push(ms) });
    script = [
      { status: 400, body: problem('badNonce') },
      { status: 429, headers: { 'retry-after': '2' }, body: problem('rateLimited') },
      { status: 503, body: problem('serverInternal') },
      { status: 200, body: '{"ok":true}' },
    ];
    posts = 0;
    const r = await h.post(`${base}/acct`, {}, signer(), null);
    assert.deepEqual(r.body, { ok: true });
    assert.equal(posts, 4);
    assert.deepEqual(waits, [2000, 4000]);
  });

  test('an absurd Retry-After is not waited out', async () => {
    const h = new AcmeHttp(`${base}/directory`, { allowInsecure: true, sleep: async () => assert.fail('must not wait') });
    script = [{ status: 429, headers: { 'retry-after': '86400' }, body: problem('rateLimited') }];
    await assert.rejects(h.post(`${base}/acct`, {}, signer(), null), (e: unknown) => e instanceof AcmeProblemError && e.type === 'rateLimited' && e.retryAfter === 86400);
  });

  test('endless badNonce gives up after a bounded number of attempts', async () => {
    const h = new AcmeHttp(`${base}/directory`, { allowInsecure: true, maxAttempts: 3 });
    script = Array.from({ length: 10 }, () => ({ status: 400, body: problem('badNonce') }));
    posts = 0;
    await assert.rejects(h.post(`${base}/acct`, {}, signer(), null), isCode('RETRIES_EXHAUSTED'));
    assert.equal(posts, 3);
    script = [];
  });

  test('an oversized response is refused', async () => {
    const h = new AcmeHttp(`${base}/directory`, { allowInsecure: true, maxResponseBytes: 1000 });
    script = [{ status: 200, body: JSON.stringify({ x: 'a'.repeat(5000) }) }];
    await assert.rejects(h.post(`${base}/acct`, {}, signer(), null), isCode('RESPONSE_TOO_LARGE'));
  });

  test('a Location on another origin is refused', async () => {
    const h = new AcmeHttp(`${base}/directory`, { allowInsecure: true });
    script = [{ status: 201, headers: { location: 'https://evil.example/acct/1' }, body: '{}' }];
    await assert.rejects(h.post(`${base}/acct`, {}, signer(), null), isCode('CROSS_ORIGIN'));
  });
});
