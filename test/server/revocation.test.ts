/**
 * Revocation status (issue #4): the CRL at the distribution point and the OCSP responder, checked
 * with openssl (`openssl crl`, `openssl ocsp`) before and after a revocation, across a restart on
 * the same database; and the client's checkRevocation against the real server, with a proxy in
 * front that takes the OCSP responder or the CRL down or forges their answers.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { AsnConvert } from '@peculiar/asn1-schema';
import { OCSPResponse } from '@peculiar/asn1-ocsp';
import { checkRevocation as checkAnywhere, type RevocationCheckOptions } from '../../src/client/revocation.js';
import { silentLogger } from '../../src/lib/logger.js';
import * as x509 from '../../src/lib/x509.js';
import { parseServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/main.js';
import { buildCrl } from '../../src/server/revocation/crl.js';
import { issuerIdentity, type RevocationIssuer } from '../../src/server/revocation/issuer.js';
import { OcspResponder } from '../../src/server/revocation/ocsp.js';
import { issue } from '../helpers/flow.js';
import { FakeValidator } from '../helpers/in-process.js';
import { RawAcme } from '../helpers/raw-acme.js';

const run = promisify(execFile);
/** The server listens on 127.0.0.1, which checkRevocation does not fetch from unless allowed. */
const checkRevocation = (leafPem: string, issuerPem: string, o: RevocationCheckOptions = {}) => checkAnywhere(leafPem, issuerPem, { allowPrivateAddresses: true, ...o });
const KEY_COMPROMISE = 1;

async function start(dataDir: string, extra: Record<string, unknown> = {}): Promise<RunningServer> {
  const config = parseServerConfig({ dataDir, listen: { host: '127.0.0.1', port: 0 }, tls: { enabled: false }, log: { level: 'silent' }, ...extra });
  return startServer(config, { logger: silentLogger(), validator: new FakeValidator() });
}

function leafOf(chain: string): string {
  return `${chain.split('-----END CERTIFICATE-----')[0]}-----END CERTIFICATE-----\n`;
}

function serialOf(pem: string): string {
  return new x509.X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '');
}

async function revoke(acme: RawAcme, leafPem: string, reason?: number): Promise<void> {
  const der = Buffer.from(new x509.X509Certificate(leafPem).rawData).toString('base64url');
  const r = await acme.post(acme.directory.revokeCert!, { payload: { certificate: der, ...(reason !== undefined ? { reason } : {}) } });
  assert.equal(r.status, 200, r.text);
}

/** `openssl ocsp` against `url`; returns stdout + stderr. Never throws for a non-zero exit. */
async function opensslOcsp(dir: string, args: string[]): Promise<string> {
  try {
    const r = await run('openssl', ['ocsp', '-CAfile', path.join(dir, 'root.pem'), ...args], { cwd: dir });
    return r.stdout + r.stderr;
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return `${x.stdout ?? ''}${x.stderr ?? ''}`;
  }
}

async function fetchCrl(base: string): Promise<{ res: Response; der: Buffer }> {
  const res = await fetch(`${base}/ca/crl`);
  return { res, der: Buffer.from(await res.arrayBuffer()) };
}

/** `openssl crl -text` of a DER CRL, with the signature checked against the CA files. */
async function opensslCrl(dir: string, der: Buffer): Promise<{ text: string; verify: string }> {
  await writeFile(path.join(dir, 'crl.der'), der);
  const r = await run('openssl', ['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text', '-CAfile', 'cas.pem'], { cwd: dir });
  return { text: r.stdout, verify: r.stderr };
}

function crlNumber(text: string): number {
  const m = /X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text);
  assert.ok(m, text);
  return Number(m[1]);
}


/** root.pem, intermediate.pem, cas.pem (both) and leaf.pem in `dir`, for openssl crl/ocsp. */
async function writeOpensslFiles(caDir: string, dir: string, leaf: string): Promise<void> {
  const root = await readFile(path.join(caDir, 'root.pem'), 'utf8');
  const inter = await readFile(path.join(caDir, 'intermediate.pem'), 'utf8');
  await writeFile(path.join(dir, 'root.pem'), root);
  await writeFile(path.join(dir, 'intermediate.pem'), inter);
  await writeFile(path.join(dir, 'cas.pem'), root + inter);
  await writeFile(path.join(dir, 'leaf.pem'), leaf);
}

describe('revocation status: CRL and OCSP, checked with openssl', () => {
  let dataDir: string;
  let dir: string;
  let srv: RunningServer;
  let acme: RawAcme;
  let leaf: string;
  let serial: string;
  let numberBefore: number;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-rev-'));
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-rev-files-'));
    srv = await start(dataDir);
    acme = await new RawAcme(srv.directoryUrl).init();
    await acme.register();
    leaf = leafOf((await issue(acme, ['rev.example.com'])).chain);
    serial = serialOf(leaf);
    await writeOpensslFiles(srv.caDir, dir, leaf);
  });
  after(async () => {
    await srv?.close();
    await rm(dataDir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  test('the leaf names the CRL distribution point and the OCSP responder of this server', async () => {
    const r = await run('openssl', ['x509', '-in', 'leaf.pem', '-noout', '-ext', 'crlDistributionPoints,authorityInfoAccess'], { cwd: dir });
    assert.match(r.stdout, new RegExp(`URI:${srv.baseUrl}/ca/crl`));
    assert.match(r.stdout, new RegExp(`OCSP - URI:${srv.baseUrl}/ocsp`));
  });

  test('GET /ca/crl serves a DER CRL v2 that openssl verifies and that lists nothing yet', async () => {
    const { res, der } = await fetchCrl(srv.baseUrl);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/pkix-crl');
    assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/);
    assert.ok(res.headers.get('last-modified'));
    const { text, verify } = await opensslCrl(dir, der);
    assert.match(verify, /verify OK/);
    assert.match(text, /Version 2/);
    assert.match(text, /Issuer: CN\s?=\s?Anvil Intermediate CA/);
    assert.match(text, /No Revoked Certificates/);
    assert.match(text, /X509v3 Authority Key Identifier/);
    const last = /Last Update: (.+)/.exec(text)![1]!;
    const next = /Next Update: (.+)/.exec(text)![1]!;
    assert.equal(Date.parse(next) - Date.parse(last), 24 * 3_600_000);
    numberBefore = crlNumber(text);
    // A conditional GET with the ETag is answered 304.
    const again = await fetch(`${srv.baseUrl}/ca/crl`, { headers: { 'if-none-match': res.headers.get('etag')! } });
    assert.equal(again.status, 304);
  });

  test('openssl ocsp says good for an issued certificate (POST, nonce echoed, SHA-1 and SHA-256 CertIDs)', async () => {
    for (const digest of [[], ['-sha256']]) {
      const out = await opensslOcsp(dir, ['-issuer', 'intermediate.pem', ...digest, '-cert', 'leaf.pem', '-url', `${srv.baseUrl}/ocsp`, '-resp_text']);
      assert.match(out, /Response verify OK/, out);
      assert.match(out, /leaf\.pem: good/, out);
      assert.doesNotMatch(out, /WARNING: no nonce/, out);
      assert.match(out, /OCSP Nonce/, out);
      assert.match(out, /Responder Id: [0-9A-F]{40}/, out);
      assert.match(out, new RegExp(`Hash Algorithm: ${digest.length ? 'sha256' : 'sha1'}`), out);
    }
  });

  test('the GET form answers too, with caching headers, and openssl reads the answer', async () => {
    await run('openssl', ['ocsp', '-issuer', 'intermediate.pem', '-cert', 'leaf.pem', '-no_nonce', '-reqout', 'req.der'], { cwd: dir });
    const req = await readFile(path.join(dir, 'req.der'));
    const res = await fetch(`${srv.baseUrl}/ocsp/${encodeURIComponent(req.toString('base64'))}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/ocsp-response');
    assert.match(res.headers.get('cache-control') ?? '', /max-age=([1-9]\d*)/);
    assert.ok(res.headers.get('last-modified') && res.headers.get('expires') && res.headers.get('etag'));
    await writeFile(path.join(dir, 'resp.der'), Buffer.from(await res.arrayBuffer()));
    const out = await opensslOcsp(dir, ['-respin', 'resp.der', '-issuer', 'intermediate.pem', '-cert', 'leaf.pem']);
    assert.match(out, /Response verify OK/, out);
    assert.match(out, /leaf\.pem: good/, out);
    // The same request again is the same signed response (cached until half its validity).
    const second = Buffer.from(await (await fetch(`${srv.baseUrl}/ocsp/${encodeURIComponent(req.toString('base64'))}`)).arrayBuffer());
    assert.deepEqual(second, await readFile(path.join(dir, 'resp.der')));
  });

  test('a serial this CA never issued is unknown; another issuer is unauthorized', async () => {
    const unknown = await opensslOcsp(dir, ['-issuer', 'intermediate.pem', '-serial', '0x1234567890abcdef', '-url', `${srv.baseUrl}/ocsp`]);
    assert.match(unknown, /Response verify OK/, unknown);
    assert.match(unknown, /0x1234567890abcdef: unknown/i, unknown);
    const other = await opensslOcsp(dir, ['-issuer', 'root.pem', '-serial', `0x${serial}`, '-url', `${srv.baseUrl}/ocsp`]);
    assert.match(other, /Responder Error: unauthorized \(6\)/, other);
  });

  test('a malformed request is answered malformedRequest (POST and GET); a wrong media type too, with 415', async () => {
    const status = (der: Buffer) => AsnConvert.parse(der, OCSPResponse).responseStatus;
    const post = await fetch(`${srv.baseUrl}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: Buffer.from('not DER at all') });
    assert.equal(post.status, 200);
    const body = Buffer.from(await post.arrayBuffer());
    assert.equal(status(body), 1);
    await writeFile(path.join(dir, 'bad.der'), body);
    assert.match(await opensslOcsp(dir, ['-respin', 'bad.der']), /Responder Error: malformedrequest \(1\)/);
    const get = await fetch(`${srv.baseUrl}/ocsp/${encodeURIComponent(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]).toString('base64'))}`);
    assert.equal(status(Buffer.from(await get.arrayBuffer())), 1);
    const wrongType = await fetch(`${srv.baseUrl}/ocsp`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(wrongType.status, 415);
    assert.equal(status(Buffer.from(await wrongType.arrayBuffer())), 1);
    const huge = await fetch(`${srv.baseUrl}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: Buffer.alloc(100_000) });
    assert.equal(huge.status, 413);
  });

  test('after a revocation (keyCompromise) the CRL number grows and lists the serial; OCSP says revoked', async () => {
    await revoke(acme, leaf, KEY_COMPROMISE);
    const { der } = await fetchCrl(srv.baseUrl);
    const { text, verify } = await opensslCrl(dir, der);
    assert.match(verify, /verify OK/);
    assert.ok(crlNumber(text) > numberBefore, text);
    assert.match(text, new RegExp(`Serial Number: ${serial.toUpperCase()}`));
    assert.match(text, /CRL Reason Code:\s*\n\s*Key Compromise/);
    const out = await opensslOcsp(dir, ['-issuer', 'intermediate.pem', '-cert', 'leaf.pem', '-url', `${srv.baseUrl}/ocsp`]);
    assert.match(out, /Response verify OK/, out);
    assert.match(out, /leaf\.pem: revoked/, out);
    assert.match(out, /Reason: keyCompromise/, out);
    assert.match(out, /Revocation Time:/, out);
    // The cached GET response was for 'good'; the status changed, so a new one is signed.
    const req = await readFile(path.join(dir, 'req.der'));
    await writeFile(path.join(dir, 'resp2.der'), Buffer.from(await (await fetch(`${srv.baseUrl}/ocsp/${encodeURIComponent(req.toString('base64'))}`)).arrayBuffer()));
    assert.match(await opensslOcsp(dir, ['-respin', 'resp2.der', '-issuer', 'intermediate.pem', '-cert', 'leaf.pem']), /leaf\.pem: revoked/);
  });

  test('an unspecified revocation is listed without a reason code', async () => {
    const other = leafOf((await issue(acme, ['rev-unspecified.example.com'])).chain);
    await revoke(acme, other);
    const { text } = await opensslCrl(dir, (await fetchCrl(srv.baseUrl)).der);
    const entry = text.slice(text.indexOf(`Serial Number: ${serialOf(other).toUpperCase()}`)).split('Serial Number:')[1]!;
    assert.doesNotMatch(entry, /Reason/);
  });

  test('CRL numbers never go backwards across a restart on the same database', async () => {
    const before = crlNumber((await opensslCrl(dir, (await fetchCrl(srv.baseUrl)).der)).text);
    await srv.close();
    srv = await start(dataDir);
    const { text, verify } = await opensslCrl(dir, (await fetchCrl(srv.baseUrl)).der);
    assert.match(verify, /verify OK/);
    assert.ok(crlNumber(text) >= before, `${crlNumber(text)} < ${before}`);
    assert.match(text, new RegExp(`Serial Number: ${serial.toUpperCase()}`));
    acme = await new RawAcme(srv.directoryUrl).init();
    await acme.register();
    await revoke(acme, leafOf((await issue(acme, ['rev-after-restart.example.com'])).chain), 4);
    assert.ok(crlNumber((await opensslCrl(dir, (await fetchCrl(srv.baseUrl)).der)).text) > before);
  });
});

describe('revocation: disabled in the config', () => {
  test('no CRL or OCSP route and no URLs in certificates', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-rev-off-'));
    const srv = await start(dataDir, { revocation: { crl: { enabled: false }, ocsp: { enabled: false } } });
    try {
      assert.equal((await fetch(`${srv.baseUrl}/ca/crl`)).status, 404);
      assert.equal((await fetch(`${srv.baseUrl}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: 'x' })).status, 415);
      const acme = await new RawAcme(srv.directoryUrl).init();
      await acme.register();
      const leaf = new x509.X509Certificate(leafOf((await issue(acme, ['norev.example.com'])).chain));
      assert.equal(leaf.getExtension('2.5.29.31'), null);
      const r = await checkRevocation(leaf.toString('pem'), await readFile(path.join(srv.caDir, 'intermediate.pem'), 'utf8'));
      assert.equal(r.status, 'unknown');
    } finally {
      await srv.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

type Mode = 'pass' | 'down' | 'forged' | 'replay';

/** An HTTP proxy in front of the server (its baseUrl), whose OCSP and CRL answers tests control. */
class RevocationProxy {
  ocsp: Mode = 'pass';
  crl: Mode = 'pass';
  forgedOcsp: ((req: Buffer) => Promise<Buffer>) | null = null;
  forgedCrl: (() => Buffer) | null = null;
  replayed: Buffer | null = null;
  target = 0;
  readonly server = http.createServer((req, res) => void this.#handle(req, res));

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const kind = req.url?.startsWith('/ocsp') ? this.ocsp : req.url?.startsWith('/ca/crl') ? this.crl : 'pass';
    if (kind === 'down') {
      req.socket.destroy();
      return;
    }
    if (kind === 'forged') {
      const out = req.url!.startsWith('/ocsp') ? await this.forgedOcsp!(body) : this.forgedCrl!();
      res.writeHead(200, { 'content-type': req.url!.startsWith('/ocsp') ? 'application/ocsp-response' : 'application/pkix-crl' }).end(out);
      return;
    }
    if (kind === 'replay' && this.replayed) {
      res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(this.replayed);
      return;
    }
    const up = await fetch(`http://127.0.0.1:${this.target}${req.url}`, {
      method: req.method!,
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k, v]) => typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k))) as Record<string, string>,
      ...(body.length ? { body } : {}),
    });
    const out = Buffer.from(await up.arrayBuffer());
    if (kind === 'replay' && req.url?.startsWith('/ocsp')) this.replayed = out;
    const headers: Record<string, string> = {};
    up.headers.forEach((v, k) => {
      if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(k)) headers[k] = v;
    });
    res.writeHead(up.status, headers).end(out);
  }
}

describe('client: checkRevocation against the server', () => {
  let dataDir: string;
  let srv: RunningServer;
  let acme: RawAcme;
  const proxy = new RevocationProxy();
  let interPem: string;
  let forger: RevocationIssuer;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-rev-client-'));
    const port = await proxy.listen();
    srv = await start(dataDir, { baseUrl: `http://127.0.0.1:${port}` });
    proxy.target = (srv.app.server.address() as AddressInfo).port;
    acme = await new RawAcme(srv.directoryUrl).init();
    await acme.register();
    interPem = await readFile(path.join(srv.caDir, 'intermediate.pem'), 'utf8');
    // The real intermediate's name and key id, but another key: what an attacker without the CA key can sign.
    const wrong = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const cert = new x509.X509Certificate(interPem);
    forger = {
      issuerCertificate: cert,
      signer: { key: wrong.privateKey, algorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams },
      authorityKeyId: Buffer.from(cert.getExtension<x509.SubjectKeyIdentifierExtension>('2.5.29.14')!.keyId, 'hex'),
    };
    const says = new OcspResponder({
      issuer: forger,
      logger: silentLogger(),
      validityHours: 24,
      store: { getCertificateBySerial: async (s) => ({ serial: s, status: 'issued', revokedAt: null, revocationReason: null }) as never },
    });
    proxy.forgedOcsp = async (req) => (await says.respond(req)).der;
    proxy.forgedCrl = () => buildCrl(forger, issuerIdentity(forger), { number: 999, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + 3_600_000), entries: [] });
  });
  after(async () => {
    await srv?.close();
    await proxy.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const reset = () => {
    proxy.ocsp = 'pass';
    proxy.crl = 'pass';
  };

  test('good, then revoked with time and reason, from OCSP', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-rev.example.com'])).chain);
    const good = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(good.status, 'good', good.detail);
    assert.equal(good.source, 'ocsp');
    const t0 = Date.now();
    await revoke(acme, leaf, KEY_COMPROMISE);
    const rev = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(rev.status, 'revoked', rev.detail);
    assert.equal(rev.source, 'ocsp');
    assert.equal(rev.reason, KEY_COMPROMISE);
    assert.ok(rev.revokedAt && Math.abs(rev.revokedAt.getTime() - t0) < 5000);
  });

  test('falls back to the CRL when the OCSP responder is unreachable', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-crl.example.com'])).chain);
    proxy.ocsp = 'down';
    const good = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(good.status, 'good', good.detail);
    assert.equal(good.source, 'crl');
    await revoke(acme, leaf, 4);
    const rev = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.deepEqual([rev.status, rev.source, rev.reason], ['revoked', 'crl', 4]);
  });

  test('unknown, not good, when both are unreachable', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-down.example.com'])).chain);
    proxy.ocsp = 'down';
    proxy.crl = 'down';
    const r = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(r.status, 'unknown');
    assert.equal(r.source, null);
    assert.match(r.detail ?? '', /OCSP .*; CRL /);
  });

  test('answers signed by the wrong key are not believed: unknown, or the real CRL decides', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-forged.example.com'])).chain);
    await revoke(acme, leaf, KEY_COMPROMISE);
    proxy.ocsp = 'forged';
    proxy.crl = 'forged';
    const r = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(r.status, 'unknown', JSON.stringify(r));
    assert.match(r.detail ?? '', /not signed by the issuer/);
    proxy.crl = 'pass';
    const viaCrl = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.deepEqual([viaCrl.status, viaCrl.source], ['revoked', 'crl']);
  });

  test('a replayed OCSP response (another nonce) is not believed', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-replay.example.com'])).chain);
    proxy.ocsp = 'replay';
    proxy.replayed = null;
    assert.equal((await checkRevocation(leaf, interPem, { timeoutMs: 5000 })).status, 'good');
    await revoke(acme, leaf, KEY_COMPROMISE);
    proxy.crl = 'down';
    const r = await checkRevocation(leaf, interPem, { timeoutMs: 5000 });
    assert.equal(r.status, 'unknown', JSON.stringify(r));
    assert.match(r.detail ?? '', /nonce/);
  });

  test('the wrong issuer certificate gives unknown', async () => {
    reset();
    const leaf = leafOf((await issue(acme, ['client-issuer.example.com'])).chain);
    const r = await checkRevocation(leaf, await readFile(path.join(srv.caDir, 'root.pem'), 'utf8'));
    assert.equal(r.status, 'unknown');
    assert.match(r.detail ?? '', /did not sign/);
  });
});

describe('revocation: every CA key algorithm', () => {
  for (const keyAlgorithm of ['ecdsa-p384', 'rsa-2048'] as const) {
    test(`a ${keyAlgorithm} CA signs CRLs and OCSP responses that openssl and the client accept`, async () => {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-rev-alg-'));
      const srv = await start(dataDir, { ca: { keyAlgorithm } });
      try {
        const acme = await new RawAcme(srv.directoryUrl).init();
        await acme.register();
        const leaf = leafOf((await issue(acme, ['alg.example.com'])).chain);
        await writeOpensslFiles(srv.caDir, dataDir, leaf);
        await revoke(acme, leaf, 5);
        const { text, verify } = await opensslCrl(dataDir, (await fetchCrl(srv.baseUrl)).der);
        assert.match(verify, /verify OK/);
        assert.match(text, /Cessation Of Operation/);
        const out = await opensslOcsp(dataDir, ['-issuer', 'intermediate.pem', '-cert', 'leaf.pem', '-url', `${srv.baseUrl}/ocsp`]);
        assert.match(out, /Response verify OK/, out);
        assert.match(out, /leaf\.pem: revoked/, out);
        const inter = await readFile(path.join(dataDir, 'intermediate.pem'), 'utf8');
        const r = await checkRevocation(leaf, inter, { timeoutMs: 5000 });
        assert.deepEqual([r.status, r.source, r.reason], ['revoked', 'ocsp', 5]);
      } finally {
        await srv.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  }
});
