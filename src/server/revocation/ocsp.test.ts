/** The OCSP responder's rules (RFC 6960, RFC 9654 nonces) and its response cache, without HTTP (issue #4). */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BasicOCSPResponse, CertID, id_pkix_ocsp_nonce, OCSPRequest, OCSPResponse, Request, TBSRequest } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Extension } from '@peculiar/asn1-x509';
import { FakeClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/logger.js';
import type { CertificateRecord } from '../../storage/store.js';
import { initCa, loadCa, type CertificateAuthority } from '../issuance/ca.js';
import { issuerIdentity, serialOctets } from './issuer.js';
import { OcspResponder, type OcspStore } from './ocsp.js';

const HOUR = 3_600_000;
const SHA1 = '1.3.14.3.2.26';
const SHA256 = '2.16.840.1.101.3.4.2.1';

class MemoryOcspStore implements OcspStore {
  readonly certs = new Map<string, Partial<CertificateRecord>>();
  lookups = 0;
  fail = false;
  async getCertificateBySerial(serial: string): Promise<CertificateRecord | null> {
    this.lookups++;
    if (this.fail) throw new Error('database is down');
    const c = this.certs.get(serial);
    return c ? ({ serial, revokedAt: null, revocationReason: null, ...c } as CertificateRecord) : null;
  }
}

describe('OCSP responder', () => {
  let dir: string;
  let ca: CertificateAuthority;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-ocsp-'));
    await initCa(path.join(dir, 'ca'));
    ca = await loadCa(path.join(dir, 'ca'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  function certId(serial: string, o: { hash?: string; otherIssuer?: boolean } = {}): CertID {
    const id = issuerIdentity(ca);
    const oid = o.hash ?? SHA1;
    // An unsupported hash gets SHA-1 values under its OID: it must be refused by OID alone.
    const h = id.hashes.get(oid) ?? id.hashes.get(SHA1)!;
    return new CertID({
      hashAlgorithm: new AlgorithmIdentifier({ algorithm: oid, parameters: null }),
      issuerNameHash: new OctetString(o.otherIssuer ? createHash('sha1').update('someone else').digest() : h.name),
      issuerKeyHash: new OctetString(h.key),
      serialNumber: serialOctets(serial),
    });
  }

  function request(ids: CertID[], nonce?: Buffer): Buffer {
    const tbs = new TBSRequest({ requestList: ids.map((reqCert) => new Request({ reqCert })) });
    if (nonce) tbs.requestExtensions = [new Extension({ extnID: id_pkix_ocsp_nonce, extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))) })];
    return Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest: tbs })));
  }

  function basic(der: Buffer): BasicOCSPResponse {
    const r = AsnConvert.parse(der, OCSPResponse);
    return AsnConvert.parse(r.responseBytes!.response.buffer, BasicOCSPResponse);
  }

  const setup = () => {
    const store = new MemoryOcspStore();
    const clock = new FakeClock(Date.now());
    const responder = new OcspResponder({ store, issuer: ca, logger: silentLogger(), clock, validityHours: 24 });
    return { store, clock, responder };
  };

  test('statuses: issued is good, revoked carries time and reason, pending and never issued are unknown', async () => {
    const { store, responder } = setup();
    const revokedAt = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    store.certs.set('4a01', { status: 'issued' });
    store.certs.set('4a02', { status: 'issued', revokedAt, revocationReason: 1 });
    store.certs.set('4a03', { status: 'pending' });
    store.certs.set('4a04', { status: 'issued', revokedAt, revocationReason: 0 });
    const a = await responder.respond(request(['4a01', '4a02', '4a03', '4a05', '4a04'].map((s) => certId(s))));
    assert.equal(a.status, 'successful');
    assert.deepEqual(a.certStatuses, ['good', 'revoked', 'unknown', 'unknown', 'revoked']);
    const r = basic(a.der).tbsResponseData.responses;
    assert.equal(r[1]!.certStatus.revoked!.revocationTime.getTime(), revokedAt.getTime());
    assert.equal(r[1]!.certStatus.revoked!.revocationReason?.reason, 1);
    // RFC 5280 §5.3.1 spirit: unspecified (0) is left out rather than stated.
    assert.equal(r[4]!.certStatus.revoked!.revocationReason, undefined);
    assert.equal(r[0]!.nextUpdate!.getTime() - r[0]!.thisUpdate.getTime(), 24 * HOUR);
  });

  test('SHA-256 CertIDs are answered and echoed as sent', async () => {
    const { store, responder } = setup();
    store.certs.set('4a01', { status: 'issued' });
    const a = await responder.respond(request([certId('4a01', { hash: SHA256 })]));
    assert.deepEqual(a.certStatuses, ['good']);
    assert.equal(basic(a.der).tbsResponseData.responses[0]!.certID.hashAlgorithm.algorithm, SHA256);
  });

  const cases: Array<[string, () => Buffer, string]> = [
    ['garbage', () => Buffer.from('hello'), 'malformedRequest'],
    ['an empty request list', () => request([]), 'malformedRequest'],
    ['more than 16 CertIDs', () => request(Array.from({ length: 17 }, (_, i) => certId((0x4a00 + i).toString(16)))), 'malformedRequest'],
    ['a nonce of 129 octets', () => request([certId('4a01')], randomBytes(129)), 'malformedRequest'],
    ['a CertID of another issuer', () => request([certId('4a01'), certId('4a01', { otherIssuer: true })]), 'unauthorized'],
    ['an unsupported CertID hash', () => request([certId('4a01', { hash: '1.2.840.113549.2.5' })]), 'unauthorized'],
  ];
  for (const [name, req, status] of cases) {
    test(`${name} is answered ${status}, with no response bytes`, async () => {
      const { responder } = setup();
      const a = await responder.respond(req());
      assert.equal(a.status, status);
      assert.equal(AsnConvert.parse(a.der, OCSPResponse).responseBytes, undefined);
    });
  }

  test('a nonce of 1 to 128 octets is echoed, and such an answer is not cacheable', async () => {
    const { store, responder } = setup();
    store.certs.set('4a01', { status: 'issued' });
    for (const n of [1, 32, 128]) {
      const nonce = randomBytes(n);
      const a = await responder.respond(request([certId('4a01')], nonce));
      assert.equal(a.cacheable, false);
      const ext = basic(a.der).tbsResponseData.responseExtensions!.find((e) => e.extnID === id_pkix_ocsp_nonce)!;
      assert.deepEqual(Buffer.from(AsnConvert.parse(ext.extnValue.buffer, OctetString).buffer), nonce);
    }
  });

  test('a signed response is reused until the status changes or half its validity has passed', async () => {
    const { store, clock, responder } = setup();
    store.certs.set('4a01', { status: 'issued' });
    const first = await responder.respond(request([certId('4a01')]));
    clock.advance(HOUR);
    const again = await responder.respond(request([certId('4a01')]));
    assert.equal(again.der, first.der);
    store.certs.set('4a01', { status: 'issued', revokedAt: clock.now(), revocationReason: 4 });
    const revoked = await responder.respond(request([certId('4a01')]));
    assert.notEqual(revoked.der, first.der);
    assert.deepEqual(revoked.certStatuses, ['revoked']);
    clock.advance(11 * HOUR);
    assert.equal((await responder.respond(request([certId('4a01')]))).der, revoked.der);
    clock.advance(2 * HOUR);
    const fresh = await responder.respond(request([certId('4a01')]));
    assert.notEqual(fresh.der, revoked.der);
    assert.equal(basic(fresh.der).tbsResponseData.producedAt.getTime(), Math.floor(clock.now().getTime() / 1000) * 1000);
  });

  test('a store failure is internalError, not an answer', async () => {
    const { store, responder } = setup();
    store.fail = true;
    const a = await responder.respond(request([certId('4a01')]));
    assert.equal(a.status, 'internalError');
  });
});
