/** Obtaining certificates with the client's solvers against anvil server's real validator. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { makeCsr } from '../../../test/helpers/flow.js';
import { startTestServer, type TestServer } from '../../../test/helpers/in-process.js';
import { freePort } from '../../../test/helpers/ports.js';
import { AcmeApi } from '../api.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import { AcmeHttp } from '../http.js';
import { StandaloneHttp01, WebrootHttp01 } from '../solvers/http01.js';
import { StandaloneTlsAlpn01 } from '../solvers/tls-alpn01.js';
import { checkToken } from '../solvers/token.js';
import type { ChallengeInput, Solver } from '../solvers/types.js';
import { checkChain, isReplacesRefusal, obtainCertificate } from './issue.js';

const ip = { type: 'ip' as const, value: '127.0.0.1' };

async function csrFor(names: string[]) {
  const c = await makeCsr(names);
  return { der: c.der, spki: createPublicKey(c.keyPem).export({ type: 'spki', format: 'der' }) };
}

describe('obtainCertificate', () => {
  let ts: TestServer;
  let port: number;
  let api: AcmeApi;
  let docroot: string;
  let web: http.Server;

  before(async () => {
    port = await freePort();
    ts = await startTestServer({ acme: { authzReuseDays: 0 }, validation: { httpPort: port, addressPolicy: { allowLoopback: true } } }, { realValidation: true });
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    api = new AcmeApi(new AcmeHttp(ts.directoryUrl, { allowInsecure: true }), { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' });
    await api.register({ termsOfServiceAgreed: true });
    docroot = await mkdtemp(path.join(os.tmpdir(), 'anvil-docroot-'));
  });
  after(async () => {
    web?.close();
    await ts.stop();
    await rm(docroot, { recursive: true, force: true });
  });

  test('with the standalone http-01 solver', async () => {
    const csr = await csrFor(['127.0.0.1']);
    const steps: string[] = [];
    const r = await obtainCertificate(api, { identifiers: [ip], solvers: [new StandaloneHttp01({ host: '127.0.0.1', port })], csrDer: csr.der, keySpki: csr.spki, onStep: (s) => steps.push(s) });
    assert.equal(r.order.body.status, 'valid');
    assert.match(r.leaf.subjectAltName ?? '', /IP Address:127.0.0.1/);
    assert.ok(steps.some((s) => s.startsWith('http-01')));
  });

  test('with the webroot solver, which removes its file afterwards', async () => {
    web = http.createServer((req, res) => {
      readFile(path.join(docroot, path.normalize(req.url ?? '/'))).then(
        (b) => res.end(b),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => web.listen(port, '127.0.0.1', r));
    try {
      const csr = await csrFor(['127.0.0.1']);
      const r = await obtainCertificate(api, { identifiers: [ip], solvers: [new WebrootHttp01(docroot)], csrDer: csr.der, keySpki: csr.spki });
      assert.equal(r.order.body.status, 'valid');
      assert.deepEqual(await readdir(path.join(docroot, '.well-known', 'acme-challenge')), []);
      assert.equal((await stat(path.join(docroot, '.well-known', 'acme-challenge'))).mode & 0o777, 0o755);
    } finally {
      web.closeAllConnections();
      await new Promise((r) => web.close(r));
    }
  });

  test('a failed validation is a typed problem, and clean-up still runs', async () => {
    const calls: string[] = [];
    const silent: Solver = {
      type: 'http-01',
      async present(ch: ChallengeInput) {
        calls.push(`present ${ch.token.length}`);
      },
      async cleanup() {
        calls.push('cleanup');
      },
    };
    const csr = await csrFor(['127.0.0.1']);
    await assert.rejects(
      obtainCertificate(api, { identifiers: [ip], solvers: [silent], csrDer: csr.der, keySpki: csr.spki }),
      (e: unknown) => e instanceof AcmeProblemError && ['connection', 'unauthorized', 'incorrectResponse'].includes(e.type),
    );
    assert.deepEqual(calls.slice(-1), ['cleanup']);
  });

  test('with the standalone tls-alpn-01 solver (IP identifier, reverse-DNS SNI)', async () => {
    const tlsPort = await freePort();
    const t = await startTestServer(
      { acme: { authzReuseDays: 0 }, validation: { tlsPort, addressPolicy: { allowLoopback: true } } },
      { realValidation: true },
    );
    try {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const a = new AcmeApi(new AcmeHttp(t.directoryUrl, { allowInsecure: true }), { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' });
      await a.register({ termsOfServiceAgreed: true });
      const csr = await csrFor(['127.0.0.1']);
      const r = await obtainCertificate(a, { identifiers: [ip], solvers: [new StandaloneTlsAlpn01({ host: '127.0.0.1', port: tlsPort })], csrDer: csr.der, keySpki: csr.spki });
      assert.equal(r.order.body.status, 'valid');
    } finally {
      await t.stop();
    }
  });

  test('no solver that fits is a clear error', async () => {
    const csr = await csrFor(['127.0.0.1']);
    const dnsOnly: Solver = { type: 'dns-01', present: async () => undefined, cleanup: async () => undefined };
    await assert.rejects(obtainCertificate(api, { identifiers: [ip], solvers: [dnsOnly], csrDer: csr.der, keySpki: csr.spki }), /no configured solver fits/);
  });

  test('a certificate whose key or names differ from the CSR is refused', async () => {
    const csr = await csrFor(['127.0.0.1']);
    const r = await obtainCertificate(api, { identifiers: [ip], solvers: [new StandaloneHttp01({ host: '127.0.0.1', port })], csrDer: csr.der, keySpki: csr.spki });
    const other = await csrFor(['127.0.0.1']);
    assert.throws(() => checkChain(r.chainPem, [ip], other.spki), /key of the CSR/);
    assert.throws(() => checkChain(r.chainPem, [{ type: 'dns', value: 'a.example.com' }], csr.spki), /names/);
    const [leaf, inter] = r.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    assert.throws(() => checkChain(`${leaf}\n${leaf}\n`, [ip], csr.spki), /not signed by/);
    assert.ok(inter);
  });
});

test('unsafe challenge tokens are refused before any file is written', () => {
  for (const t of ['short', '../../../../etc/passwd-aaaaaaaaaaaa', 'a/b-cccccccccccccccccccccc', 'a%2e%2e-cccccccccccccccccccc', 'ok..dots-cccccccccccccccccc', 42]) {
    assert.throws(() => checkToken(t), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_RESPONSE', String(t));
  }
  assert.equal(checkToken('a'.repeat(43)), 'a'.repeat(43));
});

// Regression (review of the renewal engine, finding 5): only alreadyReplaced, or a malformed error
// that mentioned "replaces", led to a second order without it; Anvil's 403 (the account changed)
// and 404 (a certificate the CA does not know) failed the renewal at every attempt until expiry.
describe('a newOrder refused while it carried "replaces"', () => {
  const problem = (type: string, status: number, detail = 'no') => new AcmeProblemError({ type: `urn:ietf:params:acme:error:${type}`, detail }, status, undefined, 'https://ca.example/new-order');
  const cases: Array<[string, unknown, boolean]> = [
    ['alreadyReplaced (409)', problem('alreadyReplaced', 409), true],
    ['unauthorized 403: the certificate is another account\'s', problem('unauthorized', 403, 'the certificate named in "replaces" was not issued to this account'), true],
    ['malformed 404: a certificate the CA does not know', problem('malformed', 404, 'this CA did not issue a certificate with this identifier'), true],
    ['malformed 400 that does not say why', problem('malformed', 400, 'bad request'), true],
    ['a 4xx problem of a type the RFC does not name', new AcmeProblemError({ type: 'https://ca.example/errors/replaces-refused', detail: 'no' }, 422, undefined, 'x'), true],
    ['rateLimited 429 (the backoff handles it)', problem('rateLimited', 429), false],
    ['a bare 429', new AcmeProblemError({ type: 'about:blank' }, 429, undefined, 'x'), false],
    ['badNonce 400 (AcmeHttp retries it)', problem('badNonce', 400), false],
    ['serverInternal 500', problem('serverInternal', 500), false],
    ['a network error', new AcmeClientError('NETWORK', 'connect ECONNREFUSED'), false],
  ];
  for (const [name, e, retry] of cases) {
    test(`${name}: ${retry ? 'asked for once more without it' : 'not retried'}`, () => assert.equal(isReplacesRefusal(e), retry));
  }

  test('the order is made once more, without "replaces" and with the same profile; a second refusal is the error', async () => {
    const calls: Array<Record<string, unknown>> = [];
    const api = {
      newOrder: async (_ids: unknown, o: Record<string, unknown>) => {
        calls.push(o);
        throw calls.length === 1 ? problem('unauthorized', 403, 'the certificate named in "replaces" was not issued to this account') : problem('rejectedIdentifier', 400, 'second');
      },
    } as unknown as AcmeApi;
    const steps: string[] = [];
    const csr = await csrFor(['127.0.0.1']);
    await assert.rejects(
      obtainCertificate(api, { identifiers: [ip], solvers: [], csrDer: csr.der, keySpki: csr.spki, replaces: 'k.AQ', profile: 'classic', onStep: (s) => steps.push(s) }),
      (e: unknown) => e instanceof AcmeProblemError && e.type === 'rejectedIdentifier',
    );
    assert.deepEqual(calls, [{ profile: 'classic', replaces: 'k.AQ' }, { profile: 'classic' }]);
    assert.match(steps.join('\n'), /the CA refused "replaces" \(unauthorized: the certificate named in "replaces" was not issued to this account\); ordering without it/);
  });

  test('a rate limit is not made worse by a second request', async () => {
    let n = 0;
    const api = {
      newOrder: async () => {
        n++;
        throw problem('rateLimited', 429);
      },
    } as unknown as AcmeApi;
    const csr = await csrFor(['127.0.0.1']);
    await assert.rejects(obtainCertificate(api, { identifiers: [ip], solvers: [], csrDer: csr.der, keySpki: csr.spki, replaces: 'k.AQ' }), (e: unknown) => e instanceof AcmeProblemError && e.type === 'rateLimited');
    assert.equal(n, 1);
  });
});
