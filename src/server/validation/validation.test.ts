/**
 * SECURITY.md "Validation": every row, against real sockets on 127.0.0.1 and a fake DNS server
 * (for SERVFAIL and silence; the end-to-end suite uses BIND).
 */
import assert from 'node:assert/strict';
import { createHash, webcrypto } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { FakeDns } from '../../../test/helpers/fake-dns.js';
import { toPem } from '../../lib/pem.js';
import * as x509 from '../../lib/x509.js';
import type { Identifier } from '../../protocol/types.js';
import { dns01Value } from './dns01.js';
import { createValidator } from './index.js';
import { checkAddress } from './policy.js';
import { DEFAULT_VALIDATION_CONFIG, type ValidationConfig, type ValidationResult } from './types.js';

const TOKEN = 'tok_abcdefghijklmnopqrstuvwxyz0123456789';
const KA = `${TOKEN}.thumbprint-of-the-account-key`;
const dns = (value: string): Identifier => ({ type: 'dns', value });

function expectFail(r: ValidationResult, type: string): string {
  assert.equal(r.ok, false, 'validation should fail');
  if (r.ok) return '';
  assert.equal(r.problem.type, type, r.problem.detail);
  return r.problem.detail;
}

describe('address policy', () => {
  const none = { allowLoopback: false, allowPrivate: false, allowLinkLocal: false, deny: [] };
  const all = { allowLoopback: true, allowPrivate: true, allowLinkLocal: true, deny: [] };
  const cases: Array<[string, boolean, boolean]> = [
    // address, allowed under `none`, allowed under `all`
    ['93.184.216.34', true, true],
    ['2606:2800:220:1::1', true, true],
    ['127.0.0.1', false, true],
    ['::1', false, true],
    ['10.1.2.3', false, true],
    ['172.20.0.1', false, true],
    ['192.168.1.1', false, true],
    ['100.64.0.1', false, true],
    ['fd12::1', false, true],
    ['169.254.10.10', false, true],
    ['fe80::1', false, true],
    ['169.254.169.254', false, false],
    ['fd00:ec2::254', false, false],
    ['0.0.0.0', false, false],
    ['224.0.0.1', false, false],
    ['::ffff:127.0.0.1', false, true],
    ['::ffff:169.254.169.254', false, false],
  ];
  for (const [ip, underNone, underAll] of cases) {
    test(`${ip} is ${underNone ? 'allowed' : 'refused'} by default and ${underAll ? 'allowed' : 'refused'} when every range is allowed`, () => {
      assert.equal(checkAddress(ip, none) === null, underNone);
      assert.equal(checkAddress(ip, all) === null, underAll);
    });
  }
  test('operator-denied CIDRs are refused', () => {
    assert.match(checkAddress('93.184.216.34', { ...none, deny: ['93.184.216.0/24'] }) ?? '', /denies/);
  });
});

describe('http-01', () => {
  let fake: FakeDns;
  let server: http.Server;
  let port: number;
  let hits = 0;
  let cfg: ValidationConfig;

  before(async () => {
    fake = await new FakeDns().start();
    for (const n of ['ok.test.example', 'other.test.example']) fake.a.set(n, ['127.0.0.1']);
    fake.a.set('meta.test.example', ['169.254.169.254']);
    fake.txt.set('noaddr.test.example', ['x']);
    fake.behaviour.set('servfail.test.example', 'servfail');
    server = http.createServer((req, res) => {
      hits++;
      const u = req.url ?? '';
      const host = (req.headers.host ?? '').split(':')[0];
      if (u === `/.well-known/acme-challenge/${TOKEN}` && host === 'ok.test.example') return void res.end(`${KA}\r\n`);
      if (u === `/.well-known/acme-challenge/${TOKEN}` && host === 'other.test.example') return void res.end('not.the-right-value');
      if (u.startsWith('/redirect-ok')) return void res.writeHead(302, { location: `http://ok.test.example:${port}/.well-known/acme-challenge/${TOKEN}` }).end();
      if (u.startsWith('/redirect-meta')) return void res.writeHead(302, { location: `http://meta.test.example:${port}/x` }).end();
      if (u.startsWith('/redirect-port')) return void res.writeHead(301, { location: `http://ok.test.example:8080/x` }).end();
      if (u.startsWith('/redirect-ftp')) return void res.writeHead(307, { location: 'ftp://ok.test.example/x' }).end();
      if (u.startsWith('/see-other')) return void res.writeHead(303, { location: '/x' }).end();
      if (u.startsWith('/loop')) return void res.writeHead(302, { location: '/loop' }).end();
      const hop = /^\/chain\/(\d+)/.exec(u);
      if (hop) return void res.writeHead(308, { location: `/chain/${Number(hop[1]) + 1}` }).end();
      if (u.startsWith('/huge')) {
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 'a');
        let sent = 0;
        const pump = () => {
          while (sent < 50 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
          if (sent < 50 * 1024 * 1024) res.once('drain', pump);
          else res.end();
        };
        res.on('close', () => res.removeAllListeners('drain'));
        return void pump();
      }
      if (u.startsWith('/silent')) return; // never answers
      res.writeHead(404).end('not here');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    cfg = {
      ...DEFAULT_VALIDATION_CONFIG,
      resolvers: [fake.addr],
      httpPort: port,
      connectTimeoutMs: 500,
      totalTimeoutMs: 1500,
      dnsTimeoutMs: 300,
      addressPolicy: { allowLoopback: true, allowPrivate: false, allowLinkLocal: false, deny: [] },
    };
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await fake.stop();
  });

  const validate = (value: string, c: ValidationConfig = cfg) =>
    createValidator(c).validate({ type: 'http-01', identifier: dns(value), token: TOKEN, keyAuthorization: KA });

  /** Validates a path on ok.test.example by answering the first request with a redirect to it. */
  async function viaPath(p: string): Promise<ValidationResult> {
    const once = http.createServer((_req, res) => res.writeHead(302, { location: `http://ok.test.example:${port}${p}` }).end());
    await new Promise<void>((r) => once.listen(0, '127.0.0.1', r));
    try {
      return await createValidator({ ...cfg, httpPort: (once.address() as AddressInfo).port, tlsPort: port }).validate({
        type: 'http-01',
        identifier: dns('ok.test.example'),
        token: TOKEN,
        keyAuthorization: KA,
      });
    } finally {
      once.closeAllConnections();
      once.close();
    }
  }

  test('the right key authorization (trailing whitespace trimmed) validates', async () => {
    const r = await validate('ok.test.example');
    assert.equal(r.ok, true, r.ok ? '' : r.problem.detail);
    assert.equal(r.records[0]?.addressUsed, '127.0.0.1');
  });

  test('a wrong key authorization is incorrectResponse, showing what came back', async () => {
    assert.match(expectFail(await validate('other.test.example'), 'incorrectResponse'), /not\.the-right-value/);
  });

  test('a 404 is unauthorized with the status in the detail', async () => {
    const r = await createValidator(cfg).validate({ type: 'http-01', identifier: dns('ok.test.example'), token: 'other-token-xxxxxxxxxxxxxxx', keyAuthorization: KA });
    assert.match(expectFail(r, 'unauthorized'), /404/);
  });

  test('a redirect to an allowed port is followed', async () => {
    const r = await viaPath('/redirect-ok');
    assert.equal(r.ok, true, r.ok ? '' : r.problem.detail);
    assert.ok(r.records.length >= 2);
  });

  test("each redirect hop's address is checked again: a hop to the metadata address is refused", async () => {
    assert.match(expectFail(await viaPath('/redirect-meta'), 'connection'), /metadata/);
  });

  test('a redirect to another port is refused', async () => {
    assert.match(expectFail(await viaPath('/redirect-port'), 'connection'), /port 8080/);
  });

  test('a redirect to a non-HTTP scheme is refused', async () => {
    assert.match(expectFail(await viaPath('/redirect-ftp'), 'connection'), /ftp/);
  });

  test('a 303 redirect is refused', async () => {
    assert.match(expectFail(await viaPath('/see-other'), 'connection'), /303/);
  });

  test('a redirect loop is detected', async () => {
    assert.match(expectFail(await viaPath('/loop'), 'connection'), /loop/);
  });

  test('more than 10 redirects are refused', async () => {
    assert.match(expectFail(await viaPath('/chain/0'), 'connection'), /too many redirects/);
  });

  test('a huge body is cut short: only what a key authorization needs is read', async () => {
    const t = Date.now();
    expectFail(await viaPath('/huge'), 'incorrectResponse');
    assert.ok(Date.now() - t < 1500, 'finished without reading 50 MB');
  });

  test('a silent target hits the bounded timeout', async () => {
    assert.match(expectFail(await viaPath('/silent'), 'connection'), /timeout|timed out/);
  });

  test('a name resolving to a loopback address is refused when the policy says so, without a request', async () => {
    const before = hits;
    const r = await validate('ok.test.example', { ...cfg, addressPolicy: { ...cfg.addressPolicy, allowLoopback: false } });
    assert.match(expectFail(r, 'connection'), /loopback/);
    assert.equal(hits, before, 'no request was sent');
  });

  test('a name resolving to the cloud metadata address is always refused', async () => {
    const all = { allowLoopback: true, allowPrivate: true, allowLinkLocal: true, deny: [] };
    assert.match(expectFail(await validate('meta.test.example', { ...cfg, addressPolicy: all }), 'connection'), /metadata/);
  });

  test('a name without addresses is a dns problem', async () => {
    expectFail(await validate('noaddr.test.example'), 'dns');
    expectFail(await validate('missing.test.example'), 'dns');
  });

  test('SERVFAIL is a dns problem', async () => {
    assert.match(expectFail(await validate('servfail.test.example'), 'dns'), /SERVFAIL/);
  });

  test('an IP identifier is fetched from the address itself', async () => {
    const r = await createValidator(cfg).validate({ type: 'http-01', identifier: { type: 'ip', value: '127.0.0.1' }, token: TOKEN, keyAuthorization: KA });
    // The test server answers only for known Host names: a 404 proves the request went to 127.0.0.1.
    expectFail(r, 'unauthorized');
  });
});

describe('dns-01', () => {
  let fake: FakeDns;
  let cfg: ValidationConfig;
  before(async () => {
    fake = await new FakeDns().start();
    fake.txt.set('_acme-challenge.good.test.example', ['unrelated', dns01Value(KA)]);
    fake.txt.set('_acme-challenge.wrong.test.example', ['nope']);
    fake.a.set('missing.test.example', ['127.0.0.1']);
    fake.behaviour.set('_acme-challenge.servfail.test.example', 'servfail');
    fake.behaviour.set('_acme-challenge.silent.test.example', 'drop');
    cfg = { ...DEFAULT_VALIDATION_CONFIG, resolvers: [fake.addr], dnsTimeoutMs: 300, totalTimeoutMs: 3000 };
  });
  after(async () => fake.stop());

  const validate = (id: Identifier) => createValidator(cfg).validate({ type: 'dns-01', identifier: id, token: TOKEN, keyAuthorization: KA });

  test('the right TXT value validates, among others', async () => {
    assert.equal((await validate(dns('good.test.example'))).ok, true);
  });
  test('a wildcard is validated at the base name', async () => {
    assert.equal((await validate(dns('*.good.test.example'))).ok, true);
  });
  test('a wrong value is incorrectResponse', async () => {
    assert.match(expectFail(await validate(dns('wrong.test.example')), 'incorrectResponse'), /1 TXT record/);
  });
  test('a missing record is incorrectResponse', async () => {
    assert.match(expectFail(await validate(dns('missing.test.example')), 'incorrectResponse'), /no TXT record/);
  });
  test('SERVFAIL is a dns problem', async () => {
    expectFail(await validate(dns('servfail.test.example')), 'dns');
  });
  test('a silent DNS server is a dns problem (timeout)', async () => {
    assert.match(expectFail(await validate(dns('silent.test.example')), 'dns'), /timed out/);
  });
  test('dns-01 cannot validate an IP address', async () => {
    expectFail(await validate({ type: 'ip', value: '192.0.2.1' }), 'malformed');
  });
});

describe('tls-alpn-01', () => {
  let fake: FakeDns;
  let cfg: ValidationConfig;
  const name = 'alpn.test.example';

  async function alpnCert(o: { names?: x509.JsonGeneralName[]; digest?: Buffer; critical?: boolean; oid?: string; selfSigned?: boolean } = {}) {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const digest = o.digest ?? createHash('sha256').update(KA).digest();
    const ext = new x509.Extension(o.oid ?? '1.3.6.1.5.5.7.1.31', o.critical ?? true, Buffer.concat([Buffer.from([0x04, digest.length]), digest]));
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: o.selfSigned === false ? 'CN=not-self' : 'CN=acme',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      signingAlgorithm: alg,
      keys,
      extensions: [new x509.SubjectAlternativeNameExtension(o.names ?? [{ type: 'dns', value: name }]), ext],
    });
    let pem = cert.toString('pem');
    if (o.selfSigned === false) {
      // Same key, but an issuer name different from the subject.
      const other = await x509.X509CertificateGenerator.create({
        serialNumber: '02',
        subject: 'CN=acme',
        issuer: 'CN=someone-else',
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3600_000),
        signingAlgorithm: alg,
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]), ext],
      });
      pem = other.toString('pem');
    }
    const key = toPem('PRIVATE KEY', new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)));
    return { cert: pem, key };
  }

  async function withServer(opts: tls.TlsOptions, fn: (port: number) => Promise<void>) {
    const s = tls.createServer(opts, (sock) => sock.end());
    s.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      await fn((s.address() as AddressInfo).port);
    } finally {
      await new Promise((r) => s.close(r));
    }
  }

  async function run(opts: tls.TlsOptions, id: Identifier = dns(name)): Promise<ValidationResult> {
    let result!: ValidationResult;
    await withServer(opts, async (port) => {
      result = await createValidator({ ...cfg, tlsPort: port }).validate({ type: 'tls-alpn-01', identifier: id, token: TOKEN, keyAuthorization: KA });
    });
    return result;
  }

  before(async () => {
    fake = await new FakeDns().start();
    fake.a.set(name, ['127.0.0.1']);
    cfg = {
      ...DEFAULT_VALIDATION_CONFIG,
      resolvers: [fake.addr],
      connectTimeoutMs: 1000,
      totalTimeoutMs: 3000,
      dnsTimeoutMs: 300,
      addressPolicy: { allowLoopback: true, allowPrivate: false, allowLinkLocal: false, deny: [] },
    };
  });
  after(async () => fake.stop());

  test('a correct acme-tls/1 certificate validates', async () => {
    const r = await run({ ...(await alpnCert()), ALPNProtocols: ['acme-tls/1'] });
    assert.equal(r.ok, true, r.ok ? '' : r.problem.detail);
  });

  test('an IP identifier validates with an iPAddress SAN', async () => {
    const r = await run({ ...(await alpnCert({ names: [{ type: 'ip', value: '127.0.0.1' }] })), ALPNProtocols: ['acme-tls/1'] }, { type: 'ip', value: '127.0.0.1' });
    assert.equal(r.ok, true, r.ok ? '' : r.problem.detail);
  });

  test('a server without the acme-tls/1 protocol is a tls problem', async () => {
    expectFail(await run({ ...(await alpnCert()), ALPNProtocols: ['http/1.1'] }), 'tls');
  });

  test('TLS below 1.2 is a tls problem', async () => {
    expectFail(await run({ ...(await alpnCert()), ALPNProtocols: ['acme-tls/1'], maxVersion: 'TLSv1.1', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }), 'tls');
  });

  const bad: Array<[string, Parameters<typeof alpnCert>[0]]> = [
    ['a wrong digest', { digest: Buffer.alloc(32, 7) }],
    ['a non-critical acmeIdentifier', { critical: false }],
    ['the obsolete acmeIdentifier OID', { oid: '1.3.6.1.5.5.7.1.30.1' }],
    ['an extra SAN', { names: [{ type: 'dns', value: name }, { type: 'dns', value: 'extra.test.example' }] }],
    ['another name', { names: [{ type: 'dns', value: 'wrong.test.example' }] }],
    ['a certificate that is not self-signed', { selfSigned: false }],
  ];
  for (const [what, o] of bad) {
    test(`${what} is incorrectResponse`, async () => {
      expectFail(await run({ ...(await alpnCert(o)), ALPNProtocols: ['acme-tls/1'] }), 'incorrectResponse');
    });
  }
});
