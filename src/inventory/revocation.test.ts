/**
 * Revocation checks of the inventory (issue 6: "revoked (CRL/OCSP)" for discovered certificates):
 * the issuer selection, and whole runs against OCSP responders and CRLs on 127.0.0.1 that answer
 * well, badly, slowly, hugely or not at all. The CA, its OCSP responder and its CRLs are Anvil's
 * own (src/server/revocation), signing for a CA made in a temporary directory; the real server and
 * openssl as peers are in test/e2e/inventory-revocation.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BasicOCSPResponse, OCSPRequest, OCSPResponse, ResponseBytes, id_pkix_ocsp_basic } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { FakeClock } from '../lib/clock.js';
import { silentLogger } from '../lib/logger.js';
import * as x509 from '../lib/x509.js';
import { initCa, loadCa, type CertificateAuthority } from '../server/issuance/ca.js';
import { buildCrl } from '../server/revocation/crl.js';
import { issuerIdentity, signDer, type RevocationIssuer } from '../server/revocation/issuer.js';
import { OcspResponder } from '../server/revocation/ocsp.js';
import { checkCertificate } from './checks.js';
import { assess, openInventory } from './inventory.js';
import {
  caIssuersUrls,
  checkInventoryRevocation,
  FetchedIssuers,
  ISSUER_CACHE_ENTRIES,
  selectIssuer,
  startRevocationThread,
  type IssuerFetch,
  type RevocationChecker,
  type RevocationRunOptions,
} from './revocation.js';
import type { InventoryStore } from './store.js';
import { testCa, testLeaf } from './test-certs.js';

const HOUR = 3_600_000;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
type Handler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void | Promise<void>;

const derOf = (pem: string) => Buffer.from(new x509.X509Certificate(pem).rawData);
const firstPem = (chain: string) => chain.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
/** The serial as the CA's store keys it: lower-case hex without leading zeros. */
const serialOf = (der: Buffer) => new x509.X509Certificate(der).serialNumber.toLowerCase().replace(/^0+(?=.)/, '');

describe('selectIssuer and caIssuersUrls', () => {
  test('the candidate whose name and key fit is chosen; another key under the same name is not', async () => {
    const root = await testCa('Test Root');
    const impostor = await testCa('Test Root');
    const other = await testCa('Other Root');
    const leaf = await testLeaf({ ca: root });
    const rootDer = Buffer.from(root.cert.rawData);
    const impostorDer = Buffer.from(impostor.cert.rawData);
    const otherDer = Buffer.from(other.cert.rawData);
    const cases: Array<[string, Buffer[], Buffer | null]> = [
      ['only the issuer', [rootDer], rootDer],
      ['the issuer after an impostor with the same name and another key', [impostorDer, otherDer, rootDer], rootDer],
      ['only an impostor and a stranger', [impostorDer, otherDer], null],
      ['no candidates', [], null],
      ['a candidate that is not a certificate', [Buffer.from('junk')], null],
    ];
    for (const [name, candidates, expected] of cases) assert.equal(selectIssuer(leaf.der, candidates), expected, name);
    assert.equal(selectIssuer(Buffer.from('not a certificate'), [rootDer]), null, 'a leaf that does not parse');
  });

  test('caIssuers URLs are read from the AIA extension, http(s) only', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-invrev-aia-'));
    try {
      await initCa(path.join(dir, 'ca'));
      const withUrl = await loadCa(path.join(dir, 'ca'), { issuerUrl: 'http://127.0.0.1:9/issuer.der' });
      const ldap = await loadCa(path.join(dir, 'ca'), { issuerUrl: 'ldap://example.test/issuer' });
      assert.deepEqual(caIssuersUrls(derOf(firstPem((await withUrl.issueServerCertificate(['a.test'], 30)).certPem))), ['http://127.0.0.1:9/issuer.der']);
      assert.deepEqual(caIssuersUrls(derOf(firstPem((await ldap.issueServerCertificate(['a.test'], 30)).certPem))), []);
      assert.deepEqual(caIssuersUrls((await testLeaf()).der), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FetchedIssuers: the caIssuers answers a run keeps', () => {
  test('at most `max` URLs, the least recently used dropped first; a failure is kept like a certificate', async () => {
    const asked: string[] = [];
    const cache = new FetchedIssuers(2, async (url) => {
      asked.push(url);
      return url.endsWith('/down') ? { kind: 'http-status', message: 'HTTP 500' } : Buffer.from(url);
    });
    const got = async (url: string) => {
      const r = await cache.get(url);
      return Buffer.isBuffer(r) ? r.toString() : r.kind;
    };
    assert.equal(await got('http://a/down'), 'http-status');
    assert.equal(await got('http://a/down'), 'http-status', 'the failure is not fetched again');
    assert.equal(await got('http://b/ok'), 'http://b/ok');
    assert.equal(await got('http://a/down'), 'http-status', 'used last now, so b goes next');
    assert.equal(await got('http://c/ok'), 'http://c/ok');
    assert.equal(cache.size, 2);
    assert.deepEqual(asked, ['http://a/down', 'http://b/ok', 'http://c/ok']);
    assert.equal(await got('http://b/ok'), 'http://b/ok', 'dropped, so fetched again');
    assert.deepEqual(asked, ['http://a/down', 'http://b/ok', 'http://c/ok', 'http://b/ok']);
    // A run over many issuers never holds more than the bound.
    const big = new FetchedIssuers(ISSUER_CACHE_ENTRIES, async (url) => Buffer.from(url));
    for (let i = 0; i < 3 * ISSUER_CACHE_ENTRIES; i++) await big.get(`http://issuer-${i}.test/ca.der`);
    assert.equal(big.size, ISSUER_CACHE_ENTRIES);
    assert.ok(ISSUER_CACHE_ENTRIES >= 100 && ISSUER_CACHE_ENTRIES <= 1000, 'a few hundred');
  });

  test('callers waiting on a fetch that was dropped meanwhile still get its answer', async () => {
    let release!: (b: IssuerFetch) => void;
    const cache = new FetchedIssuers(1, (url) => (url === 'slow' ? new Promise<IssuerFetch>((r) => (release = r)) : Promise.resolve(Buffer.from(url))));
    const waiting = cache.get('slow');
    await cache.get('other');
    assert.equal(cache.size, 1);
    release(Buffer.from('late'));
    assert.equal(((await waiting) as Buffer).toString(), 'late');
  });
});

describe('checkInventoryRevocation against responders on 127.0.0.1', { timeout: 120_000 }, () => {
  let dir: string;
  let ca: CertificateAuthority;
  /** Another CA with the same intermediate name and another key. */
  let impostor: CertificateAuthority;
  let base: string;
  let interDer: Buffer;
  let handler: Handler = (_req, _body, res) => void res.writeHead(404).end();
  const hits: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    hits.push(req.url ?? '');
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.once('close', () => inFlight--);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void Promise.resolve(handler(req, Buffer.concat(chunks), res)).catch(() => res.destroy()));
  });
  let n = 0;
  const stores: InventoryStore[] = [];
  const inventory = async () => {
    const s = await openInventory({ type: 'sqlite', path: path.join(dir, `inventory-${n++}.db`) });
    stores.push(s);
    return s;
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-invrev-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await initCa(path.join(dir, 'ca'));
    await initCa(path.join(dir, 'impostor'));
    ca = await loadCa(path.join(dir, 'ca'), { ocspUrl: `${base}/ocsp`, crlUrl: `${base}/crl`, issuerUrl: `${base}/issuer` });
    impostor = await loadCa(path.join(dir, 'impostor'));
    interDer = derOf(ca.intermediatePem);
    assert.equal(new x509.X509Certificate(impostor.intermediatePem).subject, new x509.X509Certificate(ca.intermediatePem).subject, 'same names: the keys must tell them apart');
  });
  after(async () => {
    for (const s of stores) await s.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  /** Leaves of the CA, recorded as found in files, with the intermediate (unless `withIssuer: false`). */
  async function estate(count: number, o: { withIssuer?: boolean; ca?: CertificateAuthority } = {}) {
    const store = await inventory();
    const now = new Date();
    if (o.withIssuer !== false) await store.recordCertificate(interDer, 'file', now);
    const leaves: Array<{ der: Buffer; fingerprint: string; serial: string }> = [];
    for (let i = 0; i < count; i++) {
      const der = derOf(firstPem((await (o.ca ?? ca).issueServerCertificate([`leaf${i}.test`], 30)).certPem));
      const { fingerprint } = await store.recordCertificate(der, 'file', now);
      leaves.push({ der, fingerprint, serial: serialOf(der) });
    }
    return { store, leaves };
  }
  /** Anvil's OCSP responder for `issuer`, answering revoked for `revoked` serials (reason 1, or the map's). */
  const responder = (revoked: ReadonlySet<string> | ReadonlyMap<string, number> = new Set(), issuer: RevocationIssuer = ca, clock = new FakeClock(Date.now())) =>
    new OcspResponder({
      store: {
        getCertificateBySerial: async (serial: string) =>
          ({
            status: 'issued',
            revokedAt: revoked.has(serial) ? new Date(Date.now() - HOUR) : null,
            revocationReason: revoked.has(serial) ? (revoked instanceof Map ? revoked.get(serial)! : 1) : null,
          }) as never,
      },
      issuer,
      logger: silentLogger(),
      clock,
      validityHours: 24,
    });
  const crl = (revoked: readonly string[] = [], o: { issuer?: RevocationIssuer; thisUpdate?: Date; nextUpdate?: Date; reason?: number } = {}) => {
    const issuer = o.issuer ?? ca;
    const thisUpdate = o.thisUpdate ?? new Date();
    const entries = revoked.map((serial) => ({ serial, revokedAt: new Date(thisUpdate.getTime() - HOUR), reason: o.reason ?? 4, notAfter: new Date(Date.now() + 24 * HOUR) }));
    return buildCrl(issuer, issuerIdentity(issuer), { number: 1, thisUpdate, nextUpdate: o.nextUpdate ?? new Date(thisUpdate.getTime() + 24 * HOUR), entries });
  };
  const serve = (o: { ocsp?: Handler; crl?: Buffer | Handler; issuer?: Handler }): Handler =>
    async (req, body, res) => {
      const route = req.url ?? '';
      const h = route === '/ocsp' ? o.ocsp : route === '/crl' ? o.crl : route === '/issuer' ? o.issuer : undefined;
      if (!h) return void res.writeHead(404).end();
      if (Buffer.isBuffer(h)) return void res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(h);
      await h(req, body, res);
    };
  const ocspBy = (r: OcspResponder): Handler => async (_req, body, res) => void res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end((await r.respond(body)).der);
  const run = (store: InventoryStore, o: RevocationRunOptions = {}) => checkInventoryRevocation(store, { timeoutMs: 2000, maxAgeHours: 0, ...o });
  const row = (store: InventoryStore, fp: string) =>
    store.db.selectFrom('inv_certificates').select(['revoked_at', 'revocation_reason', 'revocation_checked_at', 'revocation_source', 'revocation_error']).where('fingerprint', '=', fp).executeTakeFirstOrThrow();

  test('OCSP decides: the revoked certificate is recorded revoked with its source and URL, the others good', async () => {
    const { store, leaves } = await estate(3);
    const [a, b, c] = leaves;
    handler = serve({ ocsp: ocspBy(responder(new Set([b!.serial]))) });
    const s = await run(store);
    assert.deepEqual([s.checked, s.good, s.revoked, s.unknown], [3, 2, 1, 0]);
    const rb = s.results.find((r) => r.fingerprint === b!.fingerprint)!;
    assert.deepEqual([rb.status, rb.source, rb.url, rb.reason], ['revoked', 'ocsp', `${base}/ocsp`, 1]);
    const rowB = await row(store, b!.fingerprint);
    assert.equal(Number(rowB.revocation_reason), 1);
    assert.ok(rowB.revoked_at !== null);
    assert.deepEqual([rowB.revocation_source, rowB.revocation_error], ['ocsp', null]);
    for (const x of [a!, c!]) {
      const r = await row(store, x.fingerprint);
      assert.deepEqual([r.revoked_at, r.revocation_source, r.revocation_error], [null, 'ocsp', null]);
      assert.ok(r.revocation_checked_at !== null);
    }
    const events = await store.listEvents({ fingerprint: b!.fingerprint, type: 'revoked' });
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]!.detail, { reason: 1, source: 'ocsp', url: `${base}/ocsp` });
    // The finding says where the revocation came from.
    const assessed = (await assess(store, new Date())).certificates.find((x) => x.certificate.fingerprint === b!.fingerprint)!;
    const finding = assessed.health.findings.find((f) => f.check === 'revoked');
    assert.match(finding?.message ?? '', /\(reason 1\), per OCSP$/);
    assert.equal(assessed.certificate.revocationCheck?.source, 'ocsp');

    // Again within maxAgeHours: nothing is due (the revoked one is never asked again).
    const again = await run(store, { maxAgeHours: 12 });
    assert.deepEqual([again.checked, again.notDue], [0, 2]);
  });

  test('with OCSP unavailable the CRL decides, fetched once for all certificates', async () => {
    const { store, leaves } = await estate(4);
    const crlDer = crl([leaves[0]!.serial]);
    handler = serve({ ocsp: (_q, _b, res) => void res.writeHead(503).end(), crl: crlDer });
    hits.length = 0;
    const s = await run(store, { concurrency: 4 });
    assert.deepEqual([s.checked, s.good, s.revoked, s.unknown], [4, 3, 1, 0]);
    assert.equal(s.errors['http-status'], 4, 'every OCSP attempt failed with HTTP 503');
    assert.equal(hits.filter((h) => h === '/crl').length, 1, 'one CRL fetch served every certificate');
    const r0 = s.results.find((r) => r.fingerprint === leaves[0]!.fingerprint)!;
    assert.deepEqual([r0.status, r0.source, r0.reason], ['revoked', 'crl', 4]);
    assert.deepEqual((await store.listEvents({ fingerprint: leaves[0]!.fingerprint, type: 'revoked' }))[0]?.detail, { reason: 4, source: 'crl', url: `${base}/crl` });
    assert.equal((await row(store, leaves[1]!.fingerprint)).revocation_source, 'crl');
  });

  test('answers that cannot be verified are errors, never good', async () => {
    const { store, leaves } = await estate(1);
    const [leaf] = leaves;
    const genuine = responder();
    // An OCSP response for this very certificate, signed by another key.
    const resignedOcsp: Handler = async (_q, body, res) => {
      const resp = AsnConvert.parse((await genuine.respond(body)).der, OCSPResponse);
      const basic = AsnConvert.parse(resp.responseBytes!.response.buffer, BasicOCSPResponse);
      const forged = new BasicOCSPResponse({ tbsResponseData: basic.tbsResponseData, signatureAlgorithm: basic.signatureAlgorithm, signature: signDer(impostor, AsnConvert.serialize(basic.tbsResponseData)) });
      resp.responseBytes = new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(forged)) });
      res.writeHead(200).end(Buffer.from(AsnConvert.serialize(resp)));
    };
    // A genuine response, but about another serial (the request's serial changed on the way).
    const otherSerial: Handler = async (_q, body, res) => {
      const req = AsnConvert.parse(body, OCSPRequest);
      req.tbsRequest.requestList[0]!.reqCert.serialNumber = new Uint8Array([0x01, 0x02, 0x03]).buffer;
      res.writeHead(200).end((await genuine.respond(new Uint8Array(AsnConvert.serialize(req)))).der);
    };
    const past = new Date(Date.now() - 3 * 24 * HOUR);
    const cases: Array<{ name: string; ocsp: Handler; crl: Buffer | Handler; kinds: string[] }> = [
      { name: 'OCSP signed by another key; CRL signed by another key under the same name', ocsp: resignedOcsp, crl: crl([], { issuer: impostor }), kinds: ['signature', 'signature'] },
      { name: 'stale OCSP answer; CRL past its nextUpdate', ocsp: ocspBy(responder(new Set(), ca, new FakeClock(past))), crl: crl([], { thisUpdate: past, nextUpdate: new Date(past.getTime() + HOUR) }), kinds: ['stale', 'stale'] },
      { name: 'OCSP answer for a different serial; CRL unreachable (404)', ocsp: otherSerial, crl: (_q, _b, res) => void res.writeHead(404).end(), kinds: ['mismatch', 'http-status'] },
      { name: 'OCSP "unauthorized" from a responder for another CA; a CRL that is not DER', ocsp: ocspBy(responder(new Set(), impostor)), crl: Buffer.from('not a CRL'), kinds: ['responder-error', 'malformed'] },
    ];
    for (const c of cases) {
      handler = serve({ ocsp: c.ocsp, crl: c.crl });
      const s = await run(store);
      const r = s.results[0]!;
      assert.deepEqual([r.status, r.source], ['unknown', null], c.name);
      assert.deepEqual(r.problems.map((p) => p.kind), c.kinds, c.name);
      assert.deepEqual([s.good, s.revoked, s.unknown], [0, 0, 1], c.name);
      const recorded = await row(store, leaf!.fingerprint);
      assert.deepEqual([recorded.revoked_at, recorded.revocation_source], [null, null], c.name);
      assert.match(recorded.revocation_error ?? '', new RegExp(`^ocsp ${base}/ocsp: ${c.kinds[0]}: .*; crl ${base}/crl: ${c.kinds[1]}: `), c.name);
    }
    // `inventory show` says why.
    const shown = (await assess(store, new Date())).certificates.find((x) => x.certificate.fingerprint === leaf!.fingerprint)!;
    assert.match(shown.certificate.revocationCheck?.error ?? '', /crl .*: malformed: the CRL does not parse/);
  });

  test('size caps: an OCSP answer over 64 KiB and a CRL over crlMaxBytes are refused', async () => {
    const { store } = await estate(1);
    handler = serve({ ocsp: (_q, _b, res) => void res.writeHead(200).end(Buffer.alloc(70 * 1024)), crl: Buffer.alloc(5000) });
    const s = await run(store, { crlMaxBytes: 4096 });
    assert.deepEqual(s.results[0]!.problems.map((p) => p.kind), ['too-large', 'too-large']);
    assert.equal(s.unknown, 1);
    // Under the cap, the same CRL endpoint decides.
    handler = serve({ ocsp: (_q, _b, res) => void res.writeHead(200).end(Buffer.alloc(70 * 1024)), crl: crl() });
    const ok = await run(store, { crlMaxBytes: 4096 });
    assert.deepEqual([ok.results[0]!.status, ok.results[0]!.source], ['good', 'crl']);
  });

  test('timeouts: silent responders end the check within its bound, as a timeout', async () => {
    const { store } = await estate(2);
    handler = () => undefined; // never answers
    const t = Date.now();
    const s = await run(store, { timeoutMs: 300, concurrency: 2 });
    const took = Date.now() - t;
    assert.ok(took < 3000, `took ${took} ms`);
    assert.deepEqual([s.checked, s.unknown], [2, 2]);
    for (const r of s.results) assert.ok(r.problems.length > 0 && r.problems.every((p) => p.kind === 'timeout'), JSON.stringify(r.problems));
    server.closeAllConnections();
  });

  test('redirects: followed up to the limit, over http(s) only', async () => {
    const { store } = await estate(1);
    const hop = (to: string): Handler => (_q, _b, res) => void res.writeHead(302, { location: to }).end();
    const crlDer = crl();
    handler = async (req, body, res) => {
      const u = req.url ?? '';
      if (u === '/ocsp') return void res.writeHead(500).end();
      if (u === '/crl') return hop('/crl-1')(req, body, res);
      if (u === '/crl-1') return hop(`${base}/crl-final`)(req, body, res);
      if (u === '/crl-final') return void res.writeHead(200).end(crlDer);
      if (u === '/loop') return hop('/loop')(req, body, res);
      res.writeHead(404).end();
    };
    const s = await run(store, { maxRedirects: 3 });
    assert.deepEqual([s.results[0]!.status, s.results[0]!.source], ['good', 'crl']);
    const none = await run(store, { maxRedirects: 0 });
    assert.deepEqual(none.results[0]!.problems.map((p) => p.kind), ['http-status', 'http-status']);
    assert.match(none.results[0]!.problems[1]!.message, /HTTP 302/);
    handler = async (req, body, res) => void ((req.url ?? '') === '/crl' ? hop('file:///etc/passwd')(req, body, res) : res.writeHead(500).end());
    const scheme = await run(store);
    assert.match(scheme.results[0]!.problems[1]!.message, /only http and https are followed/);
    handler = async (req, body, res) => void ((req.url ?? '') === '/crl' ? hop('/crl')(req, body, res) : res.writeHead(500).end());
    const loop = await run(store);
    assert.match(loop.results[0]!.problems[1]!.message, /more than 3 redirect/);
    // A hop to a cloud metadata address is refused, even with private addresses allowed.
    handler = async (req, body, res) => void ((req.url ?? '') === '/crl' ? hop('http://169.254.169.254/latest/meta-data/')(req, body, res) : res.writeHead(500).end());
    const metadata = await run(store);
    assert.deepEqual(metadata.results[0]!.problems.map((p) => p.kind), ['http-status', 'refused']);
  });

  test('politeness: at most two connections to one responder, whatever the concurrency', async () => {
    const { store } = await estate(6);
    const r = responder();
    handler = serve({ ocsp: async (q, body, res) => void setTimeout(() => void ocspBy(r)(q, body, res), 150) });
    maxInFlight = 0;
    const s = await run(store, { concurrency: 6 });
    assert.equal(s.good, 6);
    assert.ok(maxInFlight <= 2, `saw ${maxInFlight} requests at once`);
    server.closeAllConnections();
  });

  test('the issuer comes from the AIA caIssuers URL when the inventory lacks it (DER or PEM); a wrong one is an error', async () => {
    const { store } = await estate(2, { withIssuer: false });
    const r = responder();
    handler = serve({ ocsp: ocspBy(r), issuer: (_q, _b, res) => void res.writeHead(200).end(interDer) });
    hits.length = 0;
    const s = await run(store);
    assert.equal(s.good, 2);
    assert.equal(hits.filter((h) => h === '/issuer').length, 1, 'fetched once per run');
    handler = serve({ ocsp: ocspBy(r), issuer: (_q, _b, res) => void res.writeHead(200).end(ca.intermediatePem) });
    assert.equal((await run(store)).good, 2, 'PEM');
    handler = serve({ ocsp: ocspBy(r), issuer: (_q, _b, res) => void res.writeHead(200).end(impostor.intermediatePem) });
    const wrong = await run(store);
    assert.equal(wrong.unknown, 2);
    assert.deepEqual(wrong.results[0]!.problems.map((p) => [p.source, p.kind]), [['issuer', 'issuer']]);
    handler = serve({ ocsp: ocspBy(r), issuer: (_q, _b, res) => void res.writeHead(200).end(Buffer.alloc(70 * 1024)) });
    assert.deepEqual((await run(store)).results[0]!.problems.map((p) => p.kind), ['too-large']);
  });

  test('which certificates are due: leaves only, not expired, not revoked, not from the CA unless asked', async () => {
    const store = await inventory();
    const now = new Date();
    const root = await testCa('Due Root');
    const live = await testLeaf({ ca: root, names: ['live.test'] });
    const expired = await testLeaf({ ca: root, names: ['old.test'], notBefore: new Date(Date.now() - 100 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const fromCa = await testLeaf({ ca: root, names: ['ca.test'] });
    const revoked = await testLeaf({ ca: root, names: ['gone.test'] });
    await store.recordCertificate(Buffer.from(root.cert.rawData), 'import', now);
    await store.recordCertificate(live.der, 'network', now);
    await store.recordCertificate(expired.der, 'file', now);
    await store.recordCertificate(fromCa.der, 'ca', now);
    await store.recordCertificate(revoked.der, 'import', now, { revoked: { at: now, reason: 1 } });
    handler = serve({});
    const s = await run(store);
    assert.deepEqual(s.results.map((r) => r.fingerprint), [sha256(live.der)]);
    assert.deepEqual(s.results[0]!.problems.map((p) => p.kind), ['no-url'], 'test leaves name no OCSP or CRL URL');
    const withCa = await run(store, { includeCaSourced: true });
    assert.equal(withCa.checked, 2);
    const stopped = new AbortController();
    stopped.abort();
    const interrupted = await run(store, { signal: stopped.signal });
    assert.deepEqual([interrupted.checked, interrupted.interrupted], [0, true]);
    // The issuer is missing and no caIssuers URL is named: no-issuer.
    const orphanStore = await inventory();
    await orphanStore.recordCertificate(live.der, 'file', now);
    const orphan = await run(orphanStore);
    assert.deepEqual(orphan.results[0]!.problems.map((p) => p.kind), ['no-issuer']);
    assert.match((await row(orphanStore, orphan.results[0]!.fingerprint)).revocation_error ?? '', /not in the inventory and it names no caIssuers URL/);
  });

  test('a revocation recorded by the CA afterwards is not credited to an earlier OCSP look', async () => {
    const { store, leaves } = await estate(1);
    handler = serve({ ocsp: ocspBy(responder()) });
    assert.equal((await run(store)).good, 1);
    await store.recordCertificates([{ der: leaves[0]!.der, revoked: { at: new Date(), reason: 5 } }], 'ca', new Date());
    const c = (await assess(store, new Date())).certificates.find((x) => x.certificate.fingerprint === leaves[0]!.fingerprint)!;
    const finding = c.health.findings.find((f) => f.check === 'revoked')!;
    assert.doesNotMatch(finding.message, /per (OCSP|CRL)/);
    assert.match(checkCertificate(c.certificate, { now: new Date(), installations: [], revoked: { at: new Date(0), reason: null, source: 'crl' } })[0]?.message ?? '', /per CRL/);
  });

  test('a hold (reason 6) found by OCSP is asked again, and lifted when OCSP says good: the revocation cleared, an unrevoked event', async () => {
    // RFC 5280 §5.3.1: certificateHold is reversible; every other reason is final.
    const { store, leaves } = await estate(2);
    const [held, other] = leaves;
    handler = serve({ ocsp: ocspBy(responder(new Map([[held!.serial, 6]]))) });
    const first = await run(store);
    assert.deepEqual([first.checked, first.good, first.revoked, first.released], [2, 1, 1, 0]);
    const onHold = await row(store, held!.fingerprint);
    assert.deepEqual([Number(onHold.revocation_reason), onHold.revocation_source], [6, 'ocsp']);
    assert.ok(onHold.revoked_at !== null);
    const finding = (await assess(store, new Date())).certificates.find((x) => x.certificate.fingerprint === held!.fingerprint)!.health.findings.find((f) => f.check === 'revoked');
    assert.match(finding?.message ?? '', /\(reason 6, on hold\), per OCSP$/);

    // Still on hold: asked again (it stays due), nothing new recorded.
    const still = await run(store);
    assert.deepEqual([still.checked, still.revoked, still.released], [2, 0, 0]);
    assert.equal((await row(store, held!.fingerprint)).revoked_at, onHold.revoked_at);
    assert.equal((await store.listEvents({ fingerprint: held!.fingerprint, type: 'revoked' })).length, 1);
    // Within maxAgeHours it is not due, like any other certificate.
    assert.deepEqual([(await run(store, { maxAgeHours: 12 })).checked, (await run(store, { maxAgeHours: 12 })).notDue], [0, 2]);

    // The hold is lifted.
    handler = serve({ ocsp: ocspBy(responder()) });
    const lifted = await run(store);
    assert.deepEqual([lifted.checked, lifted.good, lifted.revoked, lifted.released, lifted.unknown], [2, 2, 0, 1, 0]);
    const r = lifted.results.find((x) => x.fingerprint === held!.fingerprint)!;
    assert.deepEqual([r.status, r.source, r.released, r.error], ['good', 'ocsp', true, null]);
    assert.equal(lifted.results.find((x) => x.fingerprint === other!.fingerprint)!.released, undefined);
    const cleared = await row(store, held!.fingerprint);
    assert.deepEqual([cleared.revoked_at, cleared.revocation_reason, cleared.revocation_source, cleared.revocation_error], [null, null, 'ocsp', null]);
    const events = await store.listEvents({ fingerprint: held!.fingerprint });
    assert.deepEqual(events.map((e) => e.type), ['discovered', 'revoked', 'unrevoked']);
    assert.deepEqual(events[2]!.detail, { reason: 6, revokedAt: new Date(Number(onHold.revoked_at)).toISOString(), source: 'ocsp', url: `${base}/ocsp` });
    const health = (await assess(store, new Date())).certificates.find((x) => x.certificate.fingerprint === held!.fingerprint)!;
    assert.equal(health.certificate.revoked, null);
    assert.equal(health.health.findings.find((f) => f.check === 'revoked'), undefined);
  });

  test('a hold found in a CRL is lifted by a fresh CRL without it, never by a stale one', async () => {
    const { store, leaves } = await estate(1);
    const [held] = leaves;
    const ocspDown: Handler = (_q, _b, res) => void res.writeHead(503).end();
    handler = serve({ ocsp: ocspDown, crl: crl([held!.serial], { reason: 6 }) });
    const first = await run(store);
    assert.deepEqual([first.revoked, first.results[0]!.reason, first.results[0]!.source], [1, 6, 'crl']);
    // A CRL past its nextUpdate without the entry: not believed, so the hold stays (and who found it).
    const past = new Date(Date.now() - 3 * 24 * HOUR);
    handler = serve({ ocsp: ocspDown, crl: crl([], { thisUpdate: past, nextUpdate: new Date(past.getTime() + HOUR) }) });
    const stale = await run(store);
    assert.deepEqual([stale.unknown, stale.released], [1, 0]);
    const kept = await row(store, held!.fingerprint);
    assert.deepEqual([Number(kept.revocation_reason), kept.revocation_source], [6, 'crl']);
    assert.match(kept.revocation_error ?? '', /crl .*: stale: /);
    // A fresh CRL without it.
    handler = serve({ ocsp: ocspDown, crl: crl([]) });
    const lifted = await run(store);
    assert.deepEqual([lifted.good, lifted.released, lifted.results[0]!.source], [1, 1, 'crl']);
    const cleared = await row(store, held!.fingerprint);
    assert.deepEqual([cleared.revoked_at, cleared.revocation_reason, cleared.revocation_source, cleared.revocation_error], [null, null, 'crl', null]);
    assert.deepEqual((await store.listEvents({ fingerprint: held!.fingerprint, type: 'unrevoked' }))[0]?.detail, {
      reason: 6,
      revokedAt: new Date(Number(kept.revoked_at)).toISOString(),
      source: 'crl',
      url: `${base}/crl`,
    });
  });

  test('any other revocation stands: not asked again, and a hold revoked for good later stays revoked', async () => {
    const { store, leaves } = await estate(2);
    const [final, held] = leaves;
    const ocspDown: Handler = (_q, _b, res) => void res.writeHead(503).end();
    // superseded (reason 4, the CRL fixture's): final.
    handler = serve({ ocsp: ocspDown, crl: crl([final!.serial]) });
    assert.equal((await run(store)).revoked, 1);
    // The next CRL no longer lists it (an expired entry dropped, say) and holds the other one.
    handler = serve({ ocsp: ocspDown, crl: crl([held!.serial], { reason: 6 }) });
    const second = await run(store);
    assert.deepEqual(second.results.map((r) => [r.fingerprint, r.status, r.reason]), [[held!.fingerprint, 'revoked', 6]], 'the revoked one is not asked again');
    assert.equal(Number((await row(store, final!.fingerprint)).revocation_reason), 4);
    // The held one is revoked for good (reason 1): that replaces the hold.
    handler = serve({ ocsp: ocspBy(responder(new Set([held!.serial]))) });
    const third = await run(store);
    assert.deepEqual([third.checked, third.revoked, third.results[0]!.reason], [1, 1, 1]);
    assert.deepEqual((await store.listEvents({ fingerprint: held!.fingerprint, type: 'revoked' })).map((e) => e.detail), [
      { reason: 6, source: 'crl', url: `${base}/crl` },
      { reason: 1, source: 'ocsp', url: `${base}/ocsp`, previousReason: 6 },
    ]);
    // Everything answers good now: nothing is due, both stay revoked, no event.
    handler = serve({ ocsp: ocspBy(responder()), crl: crl() });
    assert.equal((await run(store)).checked, 0);
    for (const [x, reason] of [[final!, 4], [held!, 1]] as const) {
      const r = await row(store, x.fingerprint);
      assert.ok(r.revoked_at !== null);
      assert.equal(Number(r.revocation_reason), reason);
      assert.deepEqual((await store.listEvents({ fingerprint: x.fingerprint, type: 'unrevoked' })).length, 0);
    }
  });

  test("a good answer about a certificate the CA revoked meanwhile is an inconsistency: the CA's revocation stands", async () => {
    const { store, leaves } = await estate(1);
    const [leaf] = leaves;
    // The CA's sync records a hold while the look is under way; the responder still said good.
    const checker: RevocationChecker = {
      async check() {
        await store.recordCertificates([{ der: leaf!.der, revoked: { at: new Date(), reason: 6 } }], 'ca', new Date());
        return { status: 'good', source: 'ocsp', url: `${base}/ocsp` };
      },
      fetchCertificate: async () => interDer,
      close: async () => undefined,
    };
    const s = await checkInventoryRevocation(store, { timeoutMs: 2000, maxAgeHours: 0 }, checker);
    assert.deepEqual([s.checked, s.good, s.released, s.errors.inconsistent], [1, 1, 0, 1]);
    assert.deepEqual(s.results[0]!.problems.map((p) => [p.source, p.kind]), [['ocsp', 'inconsistent']]);
    assert.match(s.results[0]!.error ?? '', /inconsistent: answered good, but the certificate is recorded revoked .*\(reason 6, per the CA or an import\); the revocation stands/);
    const r = await row(store, leaf!.fingerprint);
    assert.deepEqual([Number(r.revocation_reason), r.revocation_source], [6, null], 'still revoked, and not credited to OCSP');
    assert.equal(r.revocation_error, s.results[0]!.error);
    // Not a hold a look found: never due again.
    assert.equal((await run(store)).checked, 0);
  });

  test('a caIssuers URL that fails is asked once per run, however many certificates name it', async () => {
    const { store } = await estate(3, { withIssuer: false });
    handler = serve({ ocsp: ocspBy(responder()), issuer: (_q, _b, res) => void res.writeHead(500).end() });
    hits.length = 0;
    const s = await run(store, { concurrency: 1 });
    assert.deepEqual([s.checked, s.unknown], [3, 3]);
    assert.equal(hits.filter((h) => h === '/issuer').length, 1);
    for (const r of s.results) assert.deepEqual(r.problems.map((p) => [p.source, p.kind]), [['issuer', 'http-status']]);
  });

  test("one deadline per certificate: the issuer fetch and the OCSP/CRL check share three timeouts, a wait for another's fetch included", async () => {
    const timeoutMs = 400;
    const given: number[] = [];
    const slowIssuer: RevocationChecker = {
      async check(_leaf, _issuer, opts) {
        given.push(opts?.timeoutMs ?? NaN);
        return { status: 'good', source: 'ocsp', url: `${base}/ocsp` };
      },
      fetchCertificate: () => new Promise((r) => setTimeout(() => r(interDer), 300)),
      close: async () => undefined,
    };
    const one = await estate(1, { withIssuer: false });
    assert.equal((await checkInventoryRevocation(one.store, { timeoutMs, maxAgeHours: 0 }, slowIssuer)).good, 1);
    assert.equal(given.length, 1);
    assert.ok(given[0]! <= 3 * timeoutMs - 250, `the check got ${given[0]} ms of the ${3 * timeoutMs} left after a 300 ms issuer fetch`);
    assert.ok(given[0]! > 0);

    // A fetch that never ends (as if another certificate's, still under way) is cut at the deadline.
    const hung: RevocationChecker = { ...slowIssuer, fetchCertificate: () => new Promise(() => undefined) };
    const two = await estate(2, { withIssuer: false });
    const t = Date.now();
    const s = await checkInventoryRevocation(two.store, { timeoutMs, maxAgeHours: 0, concurrency: 2 }, hung);
    const took = Date.now() - t;
    assert.ok(took >= 3 * timeoutMs - 50 && took < 3 * timeoutMs + 1500, `took ${took} ms`);
    assert.deepEqual([s.checked, s.unknown], [2, 2]);
    for (const r of s.results) assert.deepEqual(r.problems.map((p) => [p.source, p.kind, p.message]), [['issuer', 'timeout', 'fetching the issuer: no time left for this certificate']]);
  });

  test('the server thread checks due certificates by itself, and stops', async () => {
    const { store, leaves } = await estate(1);
    handler = serve({ ocsp: ocspBy(responder(new Set([leaves[0]!.serial]))) });
    const reports: unknown[] = [];
    const thread = await startRevocationThread(
      { inventory: { type: 'sqlite', path: path.join(dir, `inventory-${n - 1}.db`) }, maxAgeHours: 12, wakeMs: 60_000, firstDelayMs: 0, options: { timeoutMs: 2000 } },
      (r) => reports.push(r),
    );
    try {
      const end = Date.now() + 30_000;
      while ((await row(store, leaves[0]!.fingerprint)).revoked_at === null) {
        assert.ok(Date.now() < end, `not revoked in time; reports: ${JSON.stringify(reports)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await thread.stop();
    }
    assert.equal((await row(store, leaves[0]!.fingerprint)).revocation_source, 'ocsp');
  });
});
