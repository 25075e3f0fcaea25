import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { describeCertificate, weakDigestOf } from './certificate.js';
import { testCa, testLeaf } from './test-certs.js';
import { knownWeakModulus } from './weak-keys.js';

/** openssl's reading of a certificate, as `-noout -<field>` lines. */
function openssl(pem: string, ...fields: string[]): string {
  return execFileSync('openssl', ['x509', '-noout', ...fields.flatMap((f) => [`-${f}`])], { input: pem }).toString();
}

describe('describeCertificate', () => {
  test('reads what openssl reads: fingerprint, serial, names, validity, key, signature algorithm', async () => {
    const ca = await testCa('Inventory Test CA');
    const leaf = await testLeaf({ ca, names: ['a.example.test', 'B.Example.Test'], ips: ['192.0.2.7', '2001:db8::1'], key: 'rsa2048' });
    const f = describeCertificate(leaf.der);
    const fp = openssl(leaf.pem, 'fingerprint', 'sha256').split('=')[1]!.trim().replaceAll(':', '').toLowerCase();
    assert.equal(f.fingerprint, fp);
    assert.equal(f.serial, openssl(leaf.pem, 'serial').split('=')[1]!.trim());
    assert.deepEqual(f.names, ['a.example.test', 'b.example.test', '192.0.2.7', '2001:db8::1']);
    assert.equal(f.notAfter.getTime(), new Date(openssl(leaf.pem, 'enddate').split('=')[1]!.trim()).getTime());
    assert.equal(f.keyType, 'rsa');
    assert.equal(f.keyBits, 2048);
    assert.equal(f.keyDetail, '65537');
    assert.equal(f.signatureAlgorithm, 'ecdsa-with-SHA256');
    assert.match(openssl(leaf.pem, 'text'), /Signature Algorithm: ecdsa-with-SHA256/);
    assert.equal(f.subject, 'CN=a.example.test');
    assert.equal(f.issuer, 'CN=Inventory Test CA');
    assert.equal(f.isCa, false);
    assert.equal(f.selfSigned, false);
    assert.equal(f.knownWeakKey, null);
    const spki = execFileSync('openssl', ['x509', '-noout', '-pubkey'], { input: leaf.pem }).toString();
    const spkiDer = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: spki });
    assert.equal(f.spkiSha256, createHash('sha256').update(spkiDer).digest('hex'));
  });

  test('a CA certificate is a CA and self-signed; an EC key reports its curve', async () => {
    const ca = await testCa();
    const f = describeCertificate(Buffer.from(ca.cert.rawData));
    assert.equal(f.isCa, true);
    assert.equal(f.selfSigned, true);
    assert.equal(f.keyType, 'ec');
    assert.equal(f.keyDetail, 'prime256v1');
    assert.equal(f.keyBits, 256);
    assert.deepEqual(f.names, []);
  });

  test('a self-signed leaf with SHA-1 is read as such', async () => {
    const leaf = await testLeaf({ key: 'rsa1024', hash: 'SHA-1' });
    const f = describeCertificate(leaf.der);
    assert.equal(f.selfSigned, true);
    assert.equal(f.signatureAlgorithm, 'sha1WithRSAEncryption');
    assert.equal(weakDigestOf(f.signatureAlgorithm), 'sha1');
    assert.equal(f.keyBits, 1024);
  });

  test('a leaf with an empty subject (names only in subjectAltName) is read', async () => {
    const ca = await testCa();
    const leaf = await testLeaf({ ca, cn: '', names: ['only-san.example.test'] });
    assert.match(openssl(leaf.pem, 'subject'), /^subject=\s*$/m);
    const f = describeCertificate(leaf.der);
    assert.equal(f.subject, '');
    assert.deepEqual(f.names, ['only-san.example.test']);
  });

  test('a serial with its high bit set reads as openssl prints it, without the sign octet', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anvil-serial-'));
    try {
      const out = path.join(dir, 'c.pem');
      execFileSync('openssl', ['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-subj', '/CN=serial.example', '-set_serial', '0x8F0102030405060708', '-keyout', path.join(dir, 'k.pem'), '-out', out]);
      const pem = readFileSync(out, 'utf8');
      const f = describeCertificate(new X509Certificate(pem).raw);
      assert.equal(f.serial, '8F0102030405060708');
      assert.equal(f.serial, openssl(pem, 'serial').split('=')[1]!.trim());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bytes that are not a certificate are refused', () => {
    assert.throws(() => describeCertificate(Buffer.from('3003020101', 'hex')));
    assert.throws(() => describeCertificate(Buffer.alloc(0)));
  });
});

/** The reading node:crypto's X509Certificate (OpenSSL) gives, for the fields the DER walk reads itself. */
function reference(der: Buffer) {
  const x = new X509Certificate(der);
  const d = x.publicKey.asymmetricKeyDetails ?? {};
  const type = x.publicKey.asymmetricKeyType;
  return {
    subject: (x.subject ?? '').replaceAll('\n', ', '),
    issuer: (x.issuer ?? '').replaceAll('\n', ', '),
    serial: x.serialNumber.toUpperCase(),
    keyType: type === 'rsa-pss' ? 'rsa' : type,
    keyBits: type === 'ec' || type === 'ed25519' || type === 'ed448' ? undefined : d.modulusLength,
    keyDetail: type === 'ec' ? d.namedCurve : type === 'rsa' ? String(d.publicExponent) : null,
    isCa: x.ca,
    notAfter: new Date(x.validTo).getTime(),
  };
}

describe('describeCertificate against X509Certificate and openssl', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'anvil-describe-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cases: Array<[string, string[], string]> = [
    ['EC P-256, a plain name', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=plain.example'],
    ['EC P-384, several attributes', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], '/C=DE/ST=Berlin/L=Berlin/O=Acme GmbH/OU=Ops/CN=multi.example/emailAddress=ops@multi.example'],
    ['EC P-521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], '/CN=p521.example'],
    ['RSA 3072 with a comma, a plus and UTF-8 in the name', ['-newkey', 'rsa:3072'], '/O=Acme\\, Inc. + Sons/CN=\u00e9t\u00e9.example'],
    ['RSA 1024, SHA-1', ['-newkey', 'rsa:1024', '-sha1'], '/CN=old.example'],
    ['Ed25519', ['-newkey', 'ed25519'], '/CN=ed.example'],
    ['a multi-valued RDN', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-multivalue-rdn'], '/CN=mv.example+serialNumber=42'],
  ];
  for (const [name, keyArgs, subj] of cases) {
    test(name, () => {
      const out = path.join(dir, `${name.replace(/\W+/g, '-')}.pem`);
      execFileSync('openssl', ['req', '-x509', '-nodes', '-days', '30', ...keyArgs, '-subj', subj, '-utf8', '-keyout', path.join(dir, 'k.pem'), '-out', out, '-addext', 'subjectAltName=DNS:san.example,IP:10.0.0.1']);
      const pem = readFileSync(out, 'utf8');
      const der = execFileSync('openssl', ['x509', '-outform', 'DER', '-in', out]);
      const f = describeCertificate(der);
      const r = reference(der);
      assert.equal(f.subject, r.subject);
      assert.equal(f.issuer, r.issuer);
      assert.equal(f.serial, r.serial);
      assert.equal(f.keyType, r.keyType);
      if (r.keyBits !== undefined) assert.equal(f.keyBits, r.keyBits);
      if (r.keyDetail !== null) assert.equal(f.keyDetail, r.keyDetail);
      assert.equal(f.isCa, r.isCa);
      assert.equal(f.notAfter.getTime(), r.notAfter);
      assert.equal(f.selfSigned, true);
      assert.deepEqual(f.names, ['san.example', '10.0.0.1']);
      assert.match(openssl(pem, 'text'), new RegExp(`Signature Algorithm: ${f.signatureAlgorithm.replace('ED25519', 'ED25519')}`, 'i'));
      if (f.keyType === 'rsa') assert.match(openssl(pem, 'text'), new RegExp(`Public-Key: \\(${f.keyBits} bit\\)`));
    });
  }
});

describe('knownWeakModulus (ROCA, CVE-2017-15361)', () => {
  // The odd primes whose product the Infineon construction uses for 2048-bit keys.
  const primes: bigint[] = [];
  for (let n = 3n; primes.length < 125; n += 2n) if (primes.every((q) => q * q > n || n % q !== 0n)) primes.push(n);
  const M = primes.reduce((a, b) => a * b, 1n);
  const modPow = (b: bigint, e: bigint, m: bigint) => {
    let r = 1n;
    for (b %= m; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
    return r;
  };

  test('a modulus built as the library builds its primes is flagged', () => {
    // p = k·M + 65537^a mod M, q likewise: then n = p·q is 65537^(a+b) modulo every prime of M.
    const p = 0x1234567n * M + modPow(65537n, 1001n, M);
    const q = 0x7654321n * M + modPow(65537n, 2002n, M);
    const n = p * q;
    assert.ok(n.toString(2).length > 1952 && n.toString(2).length <= 3936, `a 2048-class modulus (${n.toString(2).length} bits)`);
    assert.match(knownWeakModulus(n) ?? '', /ROCA/);
  });

  test('moduli of ordinary RSA keys are not flagged', async () => {
    for (let i = 0; i < 3; i++) {
      const f = describeCertificate((await testLeaf({ key: 'rsa2048' })).der);
      assert.equal(f.knownWeakKey, null);
    }
    assert.equal(knownWeakModulus(M * 7n + 3n), null);
  });
});
