/**
 * checkRevocation against local responders that misbehave: oversized, slow, redirecting, stale,
 * for another certificate, delegated (issue #4). The happy paths against the real server are in
 * test/server/revocation.test.ts.
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
import { Certificate } from '@peculiar/asn1-x509';
import { FakeClock } from '../lib/clock.js';
import { silentLogger } from '../lib/logger.js';
import * as x509 from '../lib/x509.js';
import { initCa, loadCa, type CertificateAuthority } from '../server/issuance/ca.js';
import { buildCrl } from '../server/revocation/crl.js';
import { issuerIdentity, serialOctets, type RevocationIssuer } from '../server/revocation/issuer.js';
import { OcspResponder } from '../server/revocation/ocsp.js';
import { checkRevocation } from './revocation.js';

const HOUR = 3_600_000;
type Handler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void | Promise<void>;

describe('checkRevocation with misbehaving responders', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let leaf: string;
  let interPem: string;
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
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
  const crl = (thisUpdate = new Date(), issuer: RevocationIssuer = ca) =>
    buildCrl(issuer, issuerIdentity(issuer), { number: 1, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 24 * HOUR), entries: [] });

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
});
