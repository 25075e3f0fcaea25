/**
 * SECURITY.md "Identifiers, orders, finalize" and the revocation rows, against a running server;
 * the issued certificates are checked with openssl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createPrivateKey } from 'node:crypto';
import { X509Certificate } from '../../src/lib/x509.js';
import { finalize, issue, makeCsr, readyOrder, waitFor } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { assertProblem, ERR } from '../helpers/problems.js';
import { newKey, RawAcme, type TestKey } from '../helpers/raw-acme.js';
import type { JWK } from 'jose';

const run = promisify(execFile);

const dns = (value: string) => ({ type: 'dns', value });

describe('identifiers, orders, finalize', () => {
  let ts: TestServer;
  let acme: RawAcme;
  let tmp: string;

  before(async () => {
    ts = await startTestServer({
      acme: { maxIdentifiersPerOrder: 5, identifierPolicy: { deniedDomains: ['forbidden.example'] } },
    });
    acme = await new RawAcme(ts.directoryUrl).init();
    await acme.register();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'anvil-orders-'));
  });
  after(async () => {
    await ts.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test('malformed names are refused with a subproblem naming each', async () => {
    const r = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [dns('ok.example.com'), dns('bad_name.example.com'), dns('a..example.com'), dns('*.*.example.com')] },
    });
    assertProblem(r, 400, 'rejectedIdentifier');
    assert.equal(r.body.subproblems.length, 3);
    assert.deepEqual(
      r.body.subproblems.map((s: any) => s.identifier.value).sort(),
      ['*.*.example.com', 'a..example.com', 'bad_name.example.com'],
    );
    for (const s of r.body.subproblems) assert.equal(s.type, `${ERR}rejectedIdentifier`);
  });

  test('different refusals give a compound problem', async () => {
    const r = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [dns('bad_name.example.com'), { type: 'email', value: 'a@b.example' }] },
    });
    assertProblem(r, 403, 'compound');
    assert.equal(r.body.subproblems.length, 2);
  });

  test('an identifier type other than dns or ip is unsupportedIdentifier', async () => {
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'email', value: 'a@b.example' }] } }), 400, 'unsupportedIdentifier');
  });

  test("a name refused by the CA's policy is rejectedIdentifier", async () => {
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('www.forbidden.example')] } }), 400, 'rejectedIdentifier');
  });

  test('too many names in an order is rejectedIdentifier', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => dns(`n${i}.example.com`));
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: { identifiers: ids } }), 400, 'rejectedIdentifier');
  });

  test('too many open orders is 429 rateLimited with Retry-After', async () => {
    const limited = await startTestServer({ acme: { maxPendingOrdersPerAccount: 2 } });
    try {
      const a = await new RawAcme(limited.directoryUrl).init();
      await a.register();
      for (let i = 0; i < 2; i++) {
        const r = await a.post(a.directory.newOrder!, { payload: { identifiers: [dns(`rl${i}.example.com`)] } });
        assert.equal(r.status, 201);
      }
      const r = await a.post(a.directory.newOrder!, { payload: { identifiers: [dns('rl9.example.com')] } });
      assertProblem(r, 429, 'rateLimited');
      assert.ok(Number(r.headers.get('retry-after')) > 0);
    } finally {
      await limited.stop();
    }
  });

  test('notBefore/notAfter in an order are refused clearly', async () => {
    const r = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [dns('nb.example.com')], notAfter: new Date(Date.now() + 86400e3).toISOString() },
    });
    assertProblem(r, 400, 'malformed');
    assert.match(r.body.detail, /notBefore|notAfter/);
  });

  test('a wildcard is offered dns-01 only; an IP never dns-01', async () => {
    const r = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [dns('*.wild.example.com'), { type: 'ip', value: '192.0.2.10' }, dns('plain.example.com')] },
    });
    assert.equal(r.status, 201, r.text);
    const types = new Map<string, string[]>();
    for (const u of r.body.authorizations) {
      const a = await acme.post(u, { payload: null });
      assert.ok(a.headers.get('retry-after'), 'pending authorizations carry Retry-After');
      types.set(a.body.identifier.value + (a.body.wildcard ? ' (wildcard)' : ''), a.body.challenges.map((c: any) => c.type).sort());
    }
    assert.deepEqual(types.get('wild.example.com (wildcard)'), ['dns-01']);
    assert.deepEqual(types.get('192.0.2.10'), ['http-01', 'tls-alpn-01']);
    assert.deepEqual(types.get('plain.example.com'), ['dns-01', 'http-01', 'tls-alpn-01']);
  });

  test('order, authorization and challenge ids are unguessable and sort by creation time; account ids carry no time', async () => {
    const before = Date.now();
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('ids.example.com')] } });
    assert.equal(r.status, 201, r.text);
    const a = await acme.post(r.body.authorizations[0], { payload: null });
    const ids = [r.headers.get('location')!, r.body.authorizations[0], ...a.body.challenges.map((c: any) => c.url)].map((u: string) => u.split('/').pop()!);
    for (const id of ids) {
      // 12 hex digits of milliseconds (src/lib/random.ts timeOrderedId), then 128 random bits.
      assert.match(id, /^[0-9a-f]{12}[A-Za-z0-9_-]{22}$/);
      const ms = parseInt(id.slice(0, 12), 16);
      assert.ok(ms >= before - 1000 && ms <= Date.now() + 1000, `${id}: created at ${ms}, not around ${before}`);
    }
    const again = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('ids2.example.com')] } });
    const later = again.headers.get('location')!.split('/').pop()!;
    assert.ok(later > ids[0]!, 'a later order sorts after an earlier one');
    assert.equal(new Set(ids).size, ids.length);
    // An account URL is published (CAA accounturi): its id is 128 random bits, no creation time.
    assert.match(acme.kid!.split('/').pop()!, /^[A-Za-z0-9_-]{22}$/);
  });

  test('finalize before the order is ready is 403 orderNotReady', async () => {
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('early.example.com')] } });
    const csr = await makeCsr(['early.example.com']);
    assertProblem(await finalize(acme, r.body, csr.der), 403, 'orderNotReady');
  });

  test('CSRs that do not parse, or whose names differ, are badCSR and the order stays ready', async () => {
    const { url, order } = await readyOrder(acme, [dns('csr.example.com'), dns('www.csr.example.com')]);
    assert.equal(order.status, 'ready');
    assertProblem(await finalize(acme, order, Buffer.from('not a csr at all')), 400, 'badCSR');
    assertProblem(await finalize(acme, order, (await makeCsr(['csr.example.com'])).der), 400, 'badCSR');
    assertProblem(await finalize(acme, order, (await makeCsr(['csr.example.com', 'www.csr.example.com', 'extra.example.com'])).der), 400, 'badCSR');
    assertProblem(await finalize(acme, order, (await makeCsr(['csr.example.com', 'www.csr.example.com'], { digest: 'sha1' })).der), 400, 'badCSR');
    const still = await acme.post(url, { payload: null });
    assert.equal(still.body.status, 'ready');
  });

  test('a CSR with the account key is badCSR', async () => {
    const { order } = await readyOrder(acme, [dns('samekey.example.com')]);
    const pem = acme.key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assertProblem(await finalize(acme, order, (await makeCsr(['samekey.example.com'], { keyPem: pem })).der), 400, 'badCSR');
  });

  test('two finalize requests at the same time give exactly one certificate', async () => {
    const { url, order } = await readyOrder(acme, [dns('race.example.com')]);
    const csr = await makeCsr(['race.example.com']);
    const results = await Promise.all(Array.from({ length: 5 }, () => finalize(acme, order, csr.der)));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, results.map((r) => `${r.status} ${r.body?.type ?? ''}`).join(', '));
    for (const r of results.filter((x) => x.status !== 200)) assertProblem(r, 403, 'orderNotReady');
    const done = await waitFor(acme, url, (b) => b.status === 'valid');
    assert.ok(done.certificate);
  });

  test('issued certificates verify with openssl and carry exactly the order names', async () => {
    const names = ['cert.example.com', 'www.cert.example.com', '*.cert.example.com', '192.0.2.44', '2001:db8::44'];
    const { chain, certUrl } = await issue(acme, names);
    const r = await acme.post(certUrl, { payload: null });
    assert.equal(r.headers.get('content-type'), 'application/pem-certificate-chain');
    assert.match(r.headers.get('link') ?? '', /rel="up"/);
    const blocks = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
    assert.equal(blocks.length, 2);
    await writeFile(path.join(tmp, 'leaf.pem'), blocks[0]!);
    await writeFile(path.join(tmp, 'inter.pem'), blocks[1]!);
    const root = path.join(ts.dataDir, 'ca', 'root.pem');
    const v = await run('openssl', ['verify', '-CAfile', root, '-untrusted', path.join(tmp, 'inter.pem'), path.join(tmp, 'leaf.pem')]);
    assert.match(v.stdout, /OK/);
    const text = (await run('openssl', ['x509', '-in', path.join(tmp, 'leaf.pem'), '-noout', '-ext', 'subjectAltName,extendedKeyUsage'])).stdout;
    for (const n of ['DNS:cert.example.com', 'DNS:www.cert.example.com', 'DNS:*.cert.example.com', 'IP Address:192.0.2.44', 'IP Address:2001:DB8:0:0:0:0:0:44']) {
      assert.ok(text.includes(n), `${n} in ${text}`);
    }
    assert.match(text, /TLS Web Server Authentication/);
    const x = new X509Certificate(blocks[0]!);
    assert.ok(x.notAfter.getTime() - x.notBefore.getTime() <= 90 * 86400e3 + 61e3);
    assert.ok(Date.now() - x.notBefore.getTime() <= 61e3 + 5e3, 'backdated by a minute at most');
  });

  test('valid authorizations are reused within the configured age', async () => {
    const first = await readyOrder(acme, [dns('reuse.example.com')]);
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('reuse.example.com')] } });
    assert.equal(r.status, 201);
    assert.equal(r.body.status, 'ready', 'all authorizations reused: ready at once');
    assert.deepEqual(r.body.authorizations, first.order.authorizations);
  });

  test('a client can deactivate an authorization', async () => {
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('deact.example.com')] } });
    const az = r.body.authorizations[0];
    const d = await acme.post(az, { payload: { status: 'deactivated' } });
    assert.equal(d.status, 200);
    assert.equal(d.body.status, 'deactivated');
    const o = await acme.post(r.headers.get('location')!, { payload: null });
    assert.equal(o.body.status, 'invalid');
    assertProblem(await acme.post(az, { payload: { status: 'valid' } }), 400, 'malformed');
  });

  test('a failed validation makes the authorization and the order invalid, with the error', async () => {
    ts.validator.failing.add('fails.example.com');
    const { order } = await readyOrder(acme, [dns('fails.example.com')]);
    assert.equal(order.status, 'invalid');
    assert.equal(order.error.type, `${ERR}incorrectResponse`);
    const a = await acme.post(order.authorizations[0], { payload: null });
    assert.equal(a.body.status, 'invalid');
    const ch = a.body.challenges.find((c: any) => c.status === 'invalid');
    assert.equal(ch.error.type, `${ERR}incorrectResponse`);
  });

  test('a processing challenge carries Retry-After and a Link up to its authorization', async () => {
    ts.validator.delayMs = 300;
    try {
      const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('slow.example.com')] } });
      const a = await acme.post(r.body.authorizations[0], { payload: null });
      const ch = a.body.challenges.find((c: any) => c.type === 'http-01');
      const c = await acme.post(ch.url, { payload: {} });
      assert.equal(c.body.status, 'processing');
      assert.ok(c.headers.get('retry-after'));
      assert.ok((c.headers.get('link') ?? '').includes(`<${r.body.authorizations[0]}>;rel="up"`));
      await waitFor(acme, r.body.authorizations[0], (b) => b.status === 'valid');
    } finally {
      ts.validator.delayMs = 0;
    }
  });
});

describe('revocation', () => {
  let ts: TestServer;
  let owner: RawAcme;

  before(async () => {
    ts = await startTestServer();
    owner = await new RawAcme(ts.directoryUrl).init();
    await owner.register();
  });
  after(async () => ts.stop());

  const der = (chain: string) => Buffer.from(new X509Certificate(chain.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----').rawData);

  test('the issuing account revokes; a second revocation is alreadyRevoked', async () => {
    const { chain } = await issue(owner, ['rev1.example.com']);
    const payload = { certificate: der(chain).toString('base64url'), reason: 4 };
    const r = await owner.post(owner.directory.revokeCert!, { payload });
    assert.equal(r.status, 200, r.text);
    assertProblem(await owner.post(owner.directory.revokeCert!, { payload }), 400, 'alreadyRevoked');
    const rec = await ts.srv.store.getCertificateBySerial(new X509Certificate(der(chain)).serialNumber.toLowerCase().replace(/^0+/, ''));
    assert.equal(rec?.revocationReason, 4);
  });

  test("the certificate's own key revokes (jwk)", async () => {
    const { chain, keyPem } = await issue(owner, ['rev2.example.com']);
    const pk = createPrivateKey(keyPem);
    const key: TestKey = { privateKey: pk, jwk: (await import('node:crypto')).createPublicKey(pk).export({ format: 'jwk' }) as JWK, alg: 'ES256' };
    const stranger = await new RawAcme(ts.directoryUrl, key).init();
    const r = await stranger.post(stranger.directory.revokeCert!, { useJwk: true, payload: { certificate: der(chain).toString('base64url') } });
    assert.equal(r.status, 200, r.text);
  });

  test('another key cannot revoke with jwk', async () => {
    const { chain } = await issue(owner, ['rev3.example.com']);
    const stranger = await new RawAcme(ts.directoryUrl, newKey()).init();
    assertProblem(await stranger.post(stranger.directory.revokeCert!, { useJwk: true, payload: { certificate: der(chain).toString('base64url') } }), 403, 'unauthorized');
  });

  test('another account revokes only when it holds valid authorizations for every name', async () => {
    const { chain } = await issue(owner, ['rev4.example.com', 'www.rev4.example.com']);
    const other = await new RawAcme(ts.directoryUrl).init();
    await other.register();
    const payload = { certificate: der(chain).toString('base64url') };
    assertProblem(await other.post(other.directory.revokeCert!, { payload }), 403, 'unauthorized');
    await readyOrder(other, [dns('rev4.example.com')]);
    assertProblem(await other.post(other.directory.revokeCert!, { payload }), 403, 'unauthorized');
    await readyOrder(other, [dns('www.rev4.example.com')]);
    const r = await other.post(other.directory.revokeCert!, { payload });
    assert.equal(r.status, 200, r.text);
  });

  test('a bad reason code is badRevocationReason', async () => {
    const { chain } = await issue(owner, ['rev5.example.com']);
    for (const reason of [7, 8, 11, -1, 'keyCompromise']) {
      assertProblem(await owner.post(owner.directory.revokeCert!, { payload: { certificate: der(chain).toString('base64url'), reason } }), 400, 'badRevocationReason');
    }
  });

  test('a certificate this CA did not issue cannot be revoked', async () => {
    const { chain } = await issue(owner, ['rev6.example.com']);
    const d = der(chain);
    d[d.length - 3] = d[d.length - 3]! ^ 0xff; // same serial, different bytes
    assertProblem(await owner.post(owner.directory.revokeCert!, { payload: { certificate: d.toString('base64url') } }), 403, 'unauthorized');
  });
});

describe('external account binding', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ acme: { externalAccountRequired: true } });
  });
  after(async () => ts.stop());

  async function eabJws(acme: RawAcme, kid: string, hmac: Buffer, jwk = acme.key.jwk): Promise<unknown> {
    const { FlattenedSign } = await import('jose');
    return new FlattenedSign(new TextEncoder().encode(JSON.stringify(jwk)))
      .setProtectedHeader({ alg: 'HS256', kid, url: acme.directory.newAccount })
      .sign(hmac);
  }

  test('the directory says an external account is required, and newAccount without one is refused', async () => {
    const a = await new RawAcme(ts.directoryUrl).init();
    assert.equal((a.directory as any).meta.externalAccountRequired, true);
    const r = await a.post(a.directory.newAccount!, { useJwk: true, payload: { termsOfServiceAgreed: true } });
    assertProblem(r, 403, 'externalAccountRequired');
  });

  test('an EAB key binds one account, once', async () => {
    const hmac = Buffer.alloc(32, 7);
    await ts.srv.store.createEabKey({ kid: 'kid-1', hmacKey: hmac.toString('base64url'), maxUses: 1, uses: 0, accountIds: [], createdAt: new Date(), expiresAt: null, comment: null });
    const a = await new RawAcme(ts.directoryUrl).init();
    // A wrong MAC key.
    let r = await a.post(a.directory.newAccount!, { useJwk: true, payload: { externalAccountBinding: await eabJws(a, 'kid-1', Buffer.alloc(32, 8)) } });
    assertProblem(r, 403, 'unauthorized');
    // The payload is not the account key.
    r = await a.post(a.directory.newAccount!, { useJwk: true, payload: { externalAccountBinding: await eabJws(a, 'kid-1', hmac, newKey().jwk) } });
    assertProblem(r, 403, 'unauthorized');
    r = await a.post(a.directory.newAccount!, { useJwk: true, payload: { externalAccountBinding: await eabJws(a, 'kid-1', hmac) } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body.externalAccountBinding, { kid: 'kid-1' });
    const k = await ts.srv.store.getEabKey('kid-1');
    assert.equal(k?.uses, 1);
    const b = await new RawAcme(ts.directoryUrl).init();
    r = await b.post(b.directory.newAccount!, { useJwk: true, payload: { externalAccountBinding: await eabJws(b, 'kid-1', hmac) } });
    assertProblem(r, 403, 'unauthorized');
  });
});

describe('CAA in the order flow', () => {
  let ts: TestServer;
  let acme: RawAcme;
  before(async () => {
    ts = await startTestServer({ validation: { caa: { enabled: false, recheckAfterHours: 0 } } });
    acme = await new RawAcme(ts.directoryUrl).init();
    await acme.register();
  });
  after(async () => ts.stop());

  test('CAA forbidding issuance at validation makes the authorization invalid with a caa error', async () => {
    ts.validator.caaRefused.add('caa1.example.com');
    const { order } = await readyOrder(acme, [dns('caa1.example.com')]);
    assert.equal(order.status, 'invalid');
    assert.equal(order.error.type, `${ERR}caa`);
  });

  test('CAA is checked again at finalize for names validated longer ago than the configured age; the order stays ready', async () => {
    const { url, order } = await readyOrder(acme, [dns('caa2.example.com'), dns('www.caa2.example.com')]);
    assert.equal(order.status, 'ready');
    ts.validator.caaRefused.add('www.caa2.example.com');
    const r = await finalize(acme, order, (await makeCsr(['caa2.example.com', 'www.caa2.example.com'])).der);
    assertProblem(r, 403, 'caa');
    assert.deepEqual(r.body.subproblems.map((s: any) => s.identifier.value), ['www.caa2.example.com']);
    assert.equal((await acme.post(url, { payload: null })).body.status, 'ready');
    ts.validator.caaRefused.delete('www.caa2.example.com');
    assert.equal((await finalize(acme, order, (await makeCsr(['caa2.example.com', 'www.caa2.example.com'])).der)).status, 200);
  });
});
