/**
 * checkRevocation against local responders that misbehave: oversized, slow, redirecting, stale,
 * for another certificate, delegated (issue #4); CRLs scoped by an issuing distribution point,
 * kept and shared by createRevocationChecker, and URLs at private addresses (the revocation review
 * of issue #4, findings A-C). The happy paths against the real server are in
 * test/server/revocation.test.ts.
 *
 * The responders listen on 127.0.0.1, so checks here pass allowPrivateAddresses unless the test is
 * about that option.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BasicOCSPResponse, OCSPRequest, OCSPResponse, ResponseBytes, id_pkix_ocsp_basic } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  Certificate,
  CertificateList,
  DistributionPointName,
  Extension,
  GeneralName,
  id_ce_issuingDistributionPoint,
  IssuingDistributionPoint,
  Reason,
  RelativeDistinguishedName,
  AttributeTypeAndValue,
  AttributeValue,
} from '@peculiar/asn1-x509';
import { FakeClock } from '../lib/clock.js';
import { silentLogger } from '../lib/logger.js';
import * as x509 from '../lib/x509.js';
import { initCa, loadCa, type CertificateAuthority } from '../server/issuance/ca.js';
import { buildCrl } from '../server/revocation/crl.js';
import { issuerIdentity, serialOctets, signDer, type RevocationIssuer } from '../server/revocation/issuer.js';
import { OcspResponder } from '../server/revocation/ocsp.js';
import { checkRevocation as checkAnywhere, createRevocationChecker, isPrivateUrl, type RevocationCheckOptions } from './revocation.js';

/** checkRevocation that may reach this file's responders on 127.0.0.1. */
const checkRevocation = (leafPem: string, issuerPem: string, o: RevocationCheckOptions = {}) => checkAnywhere(leafPem, issuerPem, { allowPrivateAddresses: true, ...o });

const HOUR = 3_600_000;
type Handler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void | Promise<void>;

describe('checkRevocation with misbehaving responders', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let leaf: string;
  let interPem: string;
  let base: string;
  let handler: Handler = (_req, _body, res) => void res.writeHead(404).end();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void Promise.resolve(handler(req, Buffer.concat(chunks), res)).catch(() => res.destroy()));
  });
  const good = { getCertificateBySerial: async () => ({ status: 'issued', revokedAt: null, revocationReason: null }) as never };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-crev-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await initCa(path.join(dir, 'ca'));
    ca = await loadCa(path.join(dir, 'ca'), { ocspUrl: `${base}/ocsp`, crlUrl: `${base}/crl` });
    leaf = (await ca.issueServerCertificate(['leaf.test'], 30)).certPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
    interPem = ca.intermediatePem;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const responder = (issuer: RevocationIssuer = ca, clock = new FakeClock(Date.now())) =>
    new OcspResponder({ store: good, issuer, logger: silentLogger(), clock, validityHours: 24 });
  const crl = (thisUpdate = new Date(), issuer: RevocationIssuer = ca, o: { nextUpdate?: Date; revoked?: string[]; extensions?: Extension[] } = {}) => {
    const entries = (o.revoked ?? []).map((serial) => ({ serial, revokedAt: new Date(thisUpdate.getTime() - HOUR), reason: 1, notAfter: new Date(Date.now() + 24 * HOUR) }));
    const der = buildCrl(issuer, issuerIdentity(issuer), { number: 1, thisUpdate, nextUpdate: o.nextUpdate ?? new Date(thisUpdate.getTime() + 24 * HOUR), entries });
    if (!o.extensions) return der;
    // buildCrl writes no issuing distribution point: add the extensions and sign again.
    const c = AsnConvert.parse(der, CertificateList);
    c.tbsCertList.crlExtensions = [...(c.tbsCertList.crlExtensions ?? []), ...o.extensions];
    const tbs = AsnConvert.serialize(c.tbsCertList);
    return Buffer.from(AsnConvert.serialize(new CertificateList({ tbsCertList: c.tbsCertList, signatureAlgorithm: c.signatureAlgorithm, signature: signDer(issuer, tbs) })));
  };
  const idp = (v: Partial<IssuingDistributionPoint>) =>
    new Extension({ extnID: id_ce_issuingDistributionPoint, critical: true, extnValue: new OctetString(AsnConvert.serialize(new IssuingDistributionPoint(v))) });
  const fullName = (...urls: string[]) => new DistributionPointName({ fullName: urls.map((u) => new GeneralName({ uniformResourceIdentifier: u })) });
  const serialOf = (pem: string) => new x509.X509Certificate(pem).serialNumber.toLowerCase();
  /** A leaf of this CA with its own OCSP and CRL URLs. */
  const leafWith = async (urls: { ocspUrl?: string; crlUrl?: string }) => {
    const other = await loadCa(path.join(dir, 'ca'), urls);
    return (await other.issueServerCertificate(['leaf.test'], 30)).certPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
  };

  test('ldap and ftp locations are not fetched', async () => {
    const other = await loadCa(path.join(dir, 'ca'), { ocspUrl: 'ldap://example.test/ocsp', crlUrl: 'ftp://example.test/crl' });
    const cert = (await other.issueServerCertificate(['leaf.test'], 30)).certPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
    const r = await checkRevocation(cert, interPem);
    assert.deepEqual([r.status, r.source], ['unknown', null]);
    assert.match(r.detail!, /no http\(s\) OCSP responder and no CRL/);
  });

  test('an OCSP answer over 64 KiB is refused, and the CRL decides', async () => {
    handler = (req, _b, res) => void (req.url === '/ocsp' ? res.writeHead(200).end(Buffer.alloc(70 * 1024)) : res.writeHead(200).end(crl()));
    const r = await checkRevocation(leaf, interPem);
    assert.deepEqual([r.status, r.source], ['good', 'crl']);
  });

  test('a PEM CRL is read too', async () => {
    handler = (req, _b, res) =>
      void (req.url === '/ocsp' ? res.writeHead(500).end() : res.writeHead(200).end(`-----BEGIN X509 CRL-----\n${crl().toString('base64')}\n-----END X509 CRL-----\n`));
    assert.equal((await checkRevocation(leaf, interPem)).source, 'crl');
  });

  test('responders slower than the budget give unknown within it', async () => {
    handler = () => undefined; // never answers
    const t = Date.now();
    const r = await checkRevocation(leaf, interPem, { timeoutMs: 400 });
    assert.ok(Date.now() - t < 2000, `took ${Date.now() - t} ms`);
    assert.equal(r.status, 'unknown');
    assert.match(r.detail!, /timed out|no time left/);
  });

  test('redirects are not followed', async () => {
    handler = (_req, _b, res) => void res.writeHead(302, { location: '/elsewhere' }).end();
    const r = await checkRevocation(leaf, interPem);
    assert.equal(r.status, 'unknown');
    assert.match(r.detail!, /HTTP 302/);
  });

  test('a stale OCSP response and a stale CRL are not believed', async () => {
    const old = new FakeClock(Date.now() - 3 * 24 * HOUR);
    const stale = responder(ca, old);
    handler = async (req, body, res) => {
      if (req.url === '/ocsp') res.writeHead(200).end((await stale.respond(body)).der);
      else res.writeHead(200).end(crl(old.now()));
    };
    const r = await checkRevocation(leaf, interPem);
    assert.equal(r.status, 'unknown');
    assert.match(r.detail!, /OCSP .*not fresh.*CRL .*not fresh/);
  });

  test('an OCSP answer about another certificate is not believed', async () => {
    const ocsp = responder();
    handler = async (req, body, res) => {
      if (req.url !== '/ocsp') return void res.writeHead(404).end();
      const q = AsnConvert.parse(body, OCSPRequest);
      q.tbsRequest.requestList[0]!.reqCert.serialNumber = serialOctets('4242');
      res.writeHead(200).end((await ocsp.respond(Buffer.from(AsnConvert.serialize(q)))).der);
    };
    const r = await checkRevocation(leaf, interPem);
    assert.equal(r.status, 'unknown');
    assert.match(r.detail!, /does not answer for this certificate/);
  });

  for (const withEku of [true, false]) {
    test(`a delegated responder ${withEku ? 'with' : 'without'} id-kp-OCSPSigning is ${withEku ? '' : 'not '}believed`, async () => {
      const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const now = Date.now();
      const delegate = await x509.X509CertificateGenerator.create({
        serialNumber: '5a01',
        subject: 'CN=Delegated OCSP responder',
        issuer: ca.issuerCertificate.subject,
        notBefore: new Date(now - HOUR),
        notAfter: new Date(now + HOUR),
        signingAlgorithm: ca.signer.algorithm,
        publicKey: keys.publicKey,
        signingKey: ca.signer.key,
        extensions: withEku ? [new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.9'])] : [],
      });
      const signedByDelegate = responder({ issuerCertificate: ca.issuerCertificate, authorityKeyId: ca.authorityKeyId, signer: { key: keys.privateKey, algorithm: ca.signer.algorithm } });
      handler = async (req, body, res) => {
        if (req.url !== '/ocsp') return void res.writeHead(404).end();
        // RFC 6960 §4.2.2.2: the delegate's certificate travels in the response's certs.
        const r = AsnConvert.parse((await signedByDelegate.respond(body)).der, OCSPResponse);
        const basic = AsnConvert.parse(r.responseBytes!.response.buffer, BasicOCSPResponse);
        basic.certs = [AsnConvert.parse(delegate.rawData, Certificate)];
        r.responseBytes = new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) });
        res.writeHead(200).end(Buffer.from(AsnConvert.serialize(r)));
      };
      const r = await checkRevocation(leaf, interPem);
      if (withEku) assert.deepEqual([r.status, r.source], ['good', 'ocsp'], r.detail);
      else {
        assert.equal(r.status, 'unknown');
        assert.match(r.detail!, /not signed by the issuer/);
      }
    });
  }

  test('input that is not a certificate gives unknown, not an exception', async () => {
    const r = await checkRevocation('not a pem', interPem);
    assert.equal(r.status, 'unknown');
    assert.match(r.detail!, /not a PEM certificate/);
  });
  // Finding A: RFC 5280 §6.3.3 (b)(2)(i), the issuing distribution point must name the certificate's.
  describe('a CRL with an issuing distribution point (review finding A)', () => {
    const noOcsp: Handler = (_req, _b, res) => void res.writeHead(500).end();
    const cases: Array<{ name: string; idp: (url: string) => Partial<IssuingDistributionPoint>; status: 'good' | 'revoked' | 'unknown'; detail?: RegExp }> = [
      {
        name: 'a shard for another distribution point (fresh, signed by the issuer) is not believed',
        idp: (url) => ({ distributionPoint: fullName(`${url}-shard-2`), onlyContainsUserCerts: true }),
        status: 'unknown',
        detail: /for another distribution point \(http:\S+\/crl-shard-2\), not the certificate's/,
      },
      { name: 'the shard for the URL fetched is believed', idp: (url) => ({ distributionPoint: fullName('ldap://example.test/x', url), onlyContainsUserCerts: true }), status: 'good' },
      { name: 'an IDP without a distribution point name covers every certificate', idp: () => ({ onlyContainsUserCerts: true }), status: 'good' },
      {
        name: 'a distribution point named relative to the issuer cannot be matched',
        idp: () => ({ distributionPoint: new DistributionPointName({ nameRelativeToCRLIssuer: new RelativeDistinguishedName([new AttributeTypeAndValue({ type: '2.5.4.3', value: new AttributeValue({ utf8String: 'shard 2' }) })]) }) }),
        status: 'unknown',
        detail: /relative to its issuer/,
      },
      { name: 'onlyContainsCACerts is not for end-entity certificates', idp: (url) => ({ distributionPoint: fullName(url), onlyContainsCACerts: true }), status: 'unknown', detail: /scoped .*onlyContainsCACerts/ },
      { name: 'onlyContainsAttributeCerts is not for end-entity certificates', idp: () => ({ onlyContainsAttributeCerts: true }), status: 'unknown', detail: /scoped .*onlyContainsAttributeCerts/ },
      { name: 'onlySomeReasons does not cover all reasons', idp: () => ({ onlySomeReasons: new Reason(2) }), status: 'unknown', detail: /scoped .*onlySomeReasons/ },
      { name: 'an indirect CRL is not used', idp: () => ({ indirectCRL: true }), status: 'unknown', detail: /scoped .*indirectCRL/ },
    ];
    for (const c of cases) {
      test(c.name, async () => {
        handler = (req, b, res) => (req.url === '/ocsp' ? noOcsp(req, b, res) : void res.writeHead(200).end(crl(new Date(), ca, { extensions: [idp(c.idp(`${base}/crl`))] })));
        const r = await checkRevocation(leaf, interPem);
        assert.equal(r.status, c.status, r.detail);
        if (c.detail) assert.match(r.detail!, c.detail);
      });
    }

    test('a revoked certificate on its own shard reads as revoked', async () => {
      handler = (req, b, res) =>
        req.url === '/ocsp' ? noOcsp(req, b, res) : void res.writeHead(200).end(crl(new Date(), ca, { revoked: [serialOf(leaf)], extensions: [idp({ distributionPoint: fullName(`${base}/crl`) })] }));
      const r = await checkRevocation(leaf, interPem);
      assert.deepEqual([r.status, r.source, r.reason], ['revoked', 'crl', 1]);
    });
  });

  test('a CRL of 10,000 entries is read, and the certificate found among them', async () => {
    const serials = Array.from({ length: 10_000 }, (_, i) => (0x5a000000n + BigInt(i)).toString(16));
    serials[7_337] = serialOf(leaf);
    const der = crl(new Date(), ca, { revoked: serials });
    handler = (req, _b, res) => void (req.url === '/ocsp' ? res.writeHead(500).end() : res.writeHead(200).end(der));
    const r = await checkRevocation(leaf, interPem);
    assert.deepEqual([r.status, r.source, r.reason], ['revoked', 'crl', 1], r.detail);
  });

  for (const [name, body] of [
    ['garbage', () => Buffer.from('not a CRL at all')],
    ['a truncated CRL', () => crl().subarray(0, 200)],
    ['a CRL with bytes after it', () => Buffer.concat([crl(), Buffer.from([0, 0])])],
    ['an indefinite length (BER, not DER)', () => Buffer.from([0x30, 0x80, 0x30, 0x00, 0x00, 0x00])],
  ] as const) {
    test(`${name} is not a CRL`, async () => {
      handler = (req, _b, res) => void (req.url === '/ocsp' ? res.writeHead(500).end() : res.writeHead(200).end(body()));
      const r = await checkRevocation(leaf, interPem);
      assert.equal(r.status, 'unknown');
      assert.match(r.detail!, /CRL .*the CRL does not parse/);
    });
  }

  // Finding B: one fetch and one read of a CRL per run, shared by checks that run at the same time.
  describe('createRevocationChecker keeps CRLs (review finding B)', () => {
    test('16 checks at once of certificates sharing a CRL fetch it once, and later checks reuse it', async () => {
      const leaves = await Promise.all(Array.from({ length: 16 }, async () => (await ca.issueServerCertificate(['leaf.test'], 30)).certPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!));
      const der = crl(new Date(), ca, { revoked: [serialOf(leaves[3]!)] });
      let fetches = 0;
      handler = (req, _b, res) => {
        if (req.url === '/ocsp') return void res.writeHead(500).end();
        fetches++;
        // Slow enough that all 16 are waiting at once.
        setTimeout(() => res.writeHead(200).end(der), 200);
      };
      const checker = createRevocationChecker({ allowPrivateAddresses: true });
      try {
        const rs = await Promise.all(leaves.map((l) => checker.check(l, interPem)));
        assert.deepEqual(
          rs.map((r) => r.status),
          leaves.map((_, i) => (i === 3 ? 'revoked' : 'good')),
        );
        assert.equal(fetches, 1);
        assert.equal((await checker.check(leaves[5]!, interPem)).status, 'good');
        assert.equal(fetches, 1, 'kept until its nextUpdate');
      } finally {
        await checker.close();
      }
      const again = createRevocationChecker({ allowPrivateAddresses: true });
      try {
        await again.check(leaves[0]!, interPem);
        assert.equal(fetches, 2, 'a new run fetches again');
      } finally {
        await again.close();
      }
    });

    test('a kept CRL is fetched again after its nextUpdate; a failed fetch is not kept', async () => {
      let fetches = 0;
      let fail = true;
      handler = (req, _b, res) => {
        if (req.url === '/ocsp') return void res.writeHead(500).end();
        fetches++;
        if (fail) return void res.writeHead(503).end();
        res.writeHead(200).end(crl(new Date(Date.now() - HOUR), ca, { nextUpdate: new Date(Date.now() + 2000) }));
      };
      const checker = createRevocationChecker({ allowPrivateAddresses: true });
      try {
        assert.match((await checker.check(leaf, interPem)).detail!, /CRL .*HTTP 503/);
        fail = false;
        assert.equal((await checker.check(leaf, interPem)).status, 'good');
        assert.equal(fetches, 2);
        assert.equal((await checker.check(leaf, interPem)).status, 'good');
        assert.equal(fetches, 2);
        await new Promise((r) => setTimeout(r, 2100));
        assert.equal((await checker.check(leaf, interPem)).status, 'good');
        assert.equal(fetches, 3);
      } finally {
        await checker.close();
      }
    });

    test("a kept CRL is still checked against each certificate's issuer", async () => {
      // The same URL for a leaf of another CA (same subject name, another key): the kept CRL is not that CA's.
      const otherDir = path.join(dir, 'other-ca');
      await initCa(otherDir);
      const other = await loadCa(otherDir, { crlUrl: `${base}/crl` });
      const otherLeaf = (await other.issueServerCertificate(['leaf.test'], 30)).certPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
      handler = (req, _b, res) => void (req.url === '/ocsp' ? res.writeHead(500).end() : res.writeHead(200).end(crl()));
      const checker = createRevocationChecker({ allowPrivateAddresses: true });
      try {
        assert.equal((await checker.check(leaf, interPem)).status, 'good');
        const r = await checker.check(otherLeaf, other.intermediatePem);
        assert.equal(r.status, 'unknown');
        assert.match(r.detail!, /not signed by the issuer/);
      } finally {
        await checker.close();
      }
    });
  });

  // Finding C: the URLs come from the certificate; by default nothing private is fetched.
  describe('URLs at private addresses (review finding C)', () => {
    let requests = 0;
    const counting: Handler = (req, _b, res) => {
      requests++;
      void (req.url === '/ocsp' ? res.writeHead(500).end() : res.writeHead(200).end(crl()));
    };

    test('by default a loopback URL is not fetched, and says why', async () => {
      handler = counting;
      requests = 0;
      for (const check of [(l: string) => checkAnywhere(l, interPem), (l: string) => createRevocationChecker().check(l, interPem)]) {
        const r = await check(leaf);
        assert.equal(r.status, 'unknown');
        assert.match(r.detail!, /OCSP \S+: not fetched: 127\.0\.0\.1 is a loopback address \(allowPrivateAddresses .*\); CRL \S+: not fetched: 127\.0\.0\.1 is a loopback address/);
      }
      assert.equal(requests, 0);
    });

    test('a name that resolves to loopback is refused when resolved', async () => {
      handler = counting;
      requests = 0;
      const port = new URL(base).port;
      const l = await leafWith({ ocspUrl: `http://localhost:${port}/ocsp`, crlUrl: `http://localhost:${port}/crl` });
      const checker = createRevocationChecker();
      try {
        const r = await checker.check(l, interPem);
        assert.equal(r.status, 'unknown');
        assert.match(r.detail!, /CRL \S+: not fetched: localhost: (127\.0\.0\.1|::1) is a loopback address/);
      } finally {
        await checker.close();
      }
      assert.equal(requests, 0);
    });

    for (const [what, host] of [
      ['a private address', '10.1.2.3'],
      ['a link-local address', '169.254.7.7'],
      ['a decimal spelling of 127.0.0.1', '2130706433'],
      ['an IPv6 loopback', '[::1]'],
    ] as const) {
      test(`${what} (${host}) is not fetched by default`, async () => {
        const l = await leafWith({ crlUrl: `http://${host}/crl` });
        const r = await checkAnywhere(l, interPem, { timeoutMs: 2000 });
        assert.equal(r.status, 'unknown');
        assert.match(r.detail!, /not fetched: .* is a (private|link-local|loopback) address/);
      });
    }

    test('a cloud metadata address is refused even with allowPrivateAddresses', async () => {
      const l = await leafWith({ crlUrl: 'http://169.254.169.254/latest/meta-data/' });
      const r = await checkRevocation(l, interPem, { timeoutMs: 2000 });
      assert.equal(r.status, 'unknown');
      assert.match(r.detail!, /not fetched: 169\.254\.169\.254 is a reserved, multicast or cloud metadata address/);
      assert.doesNotMatch(r.detail!, /allowPrivateAddresses lets/);
    });

    test('isPrivateUrl tells whether a CA directory is at a private address', async () => {
      const lookup = async (host: string) => {
        const table: Record<string, string[]> = { 'lan.example': ['192.168.1.2'], 'public.example': ['93.184.216.34'], 'mixed.example': ['10.0.0.1', '93.184.216.34'] };
        if (!table[host]) throw new Error('ENOTFOUND');
        return table[host];
      };
      const cases: Array<[string, boolean]> = [
        ['http://127.0.0.1:14000/dir', true],
        ['https://[::1]/dir', true],
        ['https://10.0.0.5/dir', true],
        ['https://lan.example/dir', true],
        ['https://public.example/dir', false],
        ['https://mixed.example/dir', false],
        ['https://169.254.169.254/dir', false],
        ['https://nowhere.example/dir', false],
        ['not a url', false],
      ];
      for (const [url, want] of cases) assert.equal(await isPrivateUrl(url, lookup), want, url);
    });

    test('allowPrivateAddresses, for the checker or for one check, lets a private CA through', async () => {
      handler = counting;
      requests = 0;
      const all = createRevocationChecker({ allowPrivateAddresses: true });
      const one = createRevocationChecker();
      try {
        assert.equal((await all.check(leaf, interPem)).status, 'good');
        assert.equal((await one.check(leaf, interPem, { allowPrivateAddresses: true })).status, 'good');
        assert.equal((await one.check(leaf, interPem)).status, 'unknown', 'the CRL kept for the private pool is not used by a public check');
        assert.equal((await all.check(leaf, interPem, { allowPrivateAddresses: false })).status, 'unknown');
      } finally {
        await all.close();
        await one.close();
      }
      assert.equal(requests, 4, 'OCSP and CRL, once for each checker');
    });
  });
});
