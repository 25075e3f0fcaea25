/** The per-flow certificate check: what it accepts, what it refuses (kind badCertificate), and that its DER walk agrees with OpenSSL. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { toPem } from '../lib/pem.js';
import { certParts, checkCertificate } from './certificate.js';
import { p256Spki } from './csr.js';
import { BenchError } from './errors.js';
import { makeCertificate, makeFakeCa } from './testing.js';

const ca = makeFakeCa('Check CA');
const other = makeFakeCa('Other CA');
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const spki = p256Spki(key.publicKey);
const identifiers = [
  { type: 'ip' as const, value: '127.0.0.1' },
  { type: 'dns' as const, value: 'Bench.Example' },
];
const now = Date.now();

function leaf(o: Partial<Parameters<typeof makeCertificate>[0]> = {}): Buffer {
  return makeCertificate({ issuer: 'Check CA', subject: null, spki, names: identifiers, notBefore: now - 60_000, notAfter: now + 3_600_000, signer: ca.key, ...o });
}
const chain = (l: Buffer, issuer = ca.der) => toPem('CERTIFICATE', l) + toPem('CERTIFICATE', issuer);

describe('checkCertificate', () => {
  test('a good chain passes', () => {
    checkCertificate(chain(leaf()), { spki, identifiers });
  });

  test('the DER walk reads what OpenSSL reads', () => {
    const der = leaf();
    const p = certParts(der);
    const x = new X509Certificate(der);
    assert.equal(new Date(p.notAfter).toUTCString(), new Date(x.validTo).toUTCString());
    assert.ok(p.spki.equals(x.publicKey.export({ type: 'spki', format: 'der' })));
    assert.deepEqual(p.names, ['ip:7f000001', 'dns:bench.example']);
    assert.equal(x.subjectAltName, 'IP Address:127.0.0.1, DNS:Bench.Example');
    assert.equal(x.checkIssued(new X509Certificate(ca.der)), true);
  });

  const refusals: Array<{ name: string; pem: () => string; match: RegExp; expected?: { spki: Buffer; identifiers: typeof identifiers } }> = [
    { name: 'another key than the CSR', pem: () => chain(leaf({ spki: p256Spki(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey) })), match: /not the CSR's key/ },
    { name: 'a name missing', pem: () => chain(leaf({ names: identifiers.slice(0, 1) })), match: /names ip:7f000001, not/ },
    { name: 'an extra name', pem: () => chain(leaf({ names: [...identifiers, { type: 'ip', value: '127.0.0.9' }] })), match: /names/ },
    { name: 'expired', pem: () => chain(leaf({ notBefore: now - 7_200_000, notAfter: now - 3_600_000 })), match: /not valid now/ },
    { name: 'signed by another CA than the next certificate', pem: () => chain(leaf({ signer: other.key })), match: /signature does not verify/ },
    { name: 'issued under another name than the next certificate', pem: () => chain(leaf(), other.der), match: /not issued by the next certificate/ },
    { name: 'no issuer after the leaf', pem: () => toPem('CERTIFICATE', leaf()), match: /no issuer certificate/ },
    { name: 'garbage instead of a certificate', pem: () => toPem('CERTIFICATE', Buffer.from('3003020101', 'hex')) + toPem('CERTIFICATE', ca.der), match: /does not parse/ },
    { name: 'no certificate at all', pem: () => '<html>oops</html>', match: /no CERTIFICATE block/ },
  ];
  for (const r of refusals) {
    test(`refuses a certificate with ${r.name}, as kind badCertificate`, () => {
      assert.throws(
        () => checkCertificate(r.pem(), r.expected ?? { spki, identifiers }),
        (e: unknown) => e instanceof BenchError && e.kind === 'badCertificate' && r.match.test(e.message),
      );
    });
  }
});
