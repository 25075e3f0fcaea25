import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { generateKeyPairSync } from 'node:crypto';
import { FakeClock } from '../../lib/clock.js';
import * as x509 from '../../lib/x509.js';
import { AcmeProblem } from '../../protocol/problems.js';
import { CertificateAuthority, describeCa, initCa, loadCa, newSerial, serialHex } from './ca.js';
import type { KeyAlgorithm } from './types.js';

const run = promisify(execFile);
const DAY = 86_400_000;

async function csr(dir: string, args: string[], keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): Promise<Buffer> {
  const out = path.join(dir, `csr-${Math.random().toString(36).slice(2)}.der`);
  await run('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', path.join(dir, 'k.pem'), '-outform', 'DER', '-out', out, ...args]);
  return readFile(out);
}

async function verify(dir: string, ca: CertificateAuthority, caDir: string, chainPem: string): Promise<string> {
  const leaf = path.join(dir, 'leaf.pem');
  await writeFile(leaf, chainPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----\n');
  const { stdout } = await run('openssl', ['verify', '-CAfile', path.join(caDir, 'root.pem'), '-untrusted', path.join(caDir, 'intermediate.pem'), leaf]);
  void ca;
  return stdout;
}

describe('CA creation', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-ca-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const algs: KeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'];
  for (const alg of algs) {
    test(`a ${alg} CA issues leaves that openssl verifies`, async () => {
      const caDir = path.join(dir, alg);
      const d = await initCa(caDir, { keyAlgorithm: alg, rootCommonName: `Test ${alg} Root`, organization: 'Anvil Tests' });
      assert.equal(d.root.keyAlgorithm, alg);
      assert.equal(d.intermediate.keyAlgorithm, alg);
      assert.match(d.root.subject, new RegExp(`CN=Test ${alg} Root`));
      for (const f of ['root.key', 'intermediate.key']) assert.equal((await stat(path.join(caDir, f))).mode & 0o777, 0o600, f);
      assert.equal((await stat(caDir)).mode & 0o777, 0o700);
      const ca = await loadCa(caDir);
      const info = await ca.checkCsr(await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']));
      const issued = await ca.sign(ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: false, lifetimeMs: DAY }));
      assert.match(await verify(dir, ca, caDir, issued.chainPem), /: OK/);
      const root = new x509.X509Certificate(await readFile(path.join(caDir, 'root.pem'), 'utf8'));
      const bc = root.getExtension('2.5.29.19') as x509.BasicConstraintsExtension;
      assert.ok(bc.ca && bc.critical);
    });
  }

  test('an existing CA is never overwritten', async () => {
    const caDir = path.join(dir, 'once');
    await initCa(caDir);
    const before = await readFile(path.join(caDir, 'root.key'));
    await assert.rejects(initCa(caDir), (e: unknown) => (e as { code?: string }).code === 'CA_EXISTS');
    assert.deepEqual(await readFile(path.join(caDir, 'root.key')), before);
  });

  test('describeCa says there is no CA in an empty directory', async () => {
    assert.equal(await describeCa(path.join(dir, 'nothing')), null);
  });
});

describe('leaf profile and CSR checks', () => {
  let dir: string;
  let caDir: string;
  let ca: CertificateAuthority;
  const clock = new FakeClock(Date.now());

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-leaf-'));
    caDir = path.join(dir, 'ca');
    await initCa(caDir);
    ca = await loadCa(caDir, { issuerUrl: 'http://ca.example/ca/intermediate.der', clock, backdateMs: 60_000 });
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('the leaf has SANs, EKU, key usage, AKI/SKI, AIA, CA:FALSE, lifetime and backdate as specified', async () => {
    const info = await ca.checkCsr(
      await csr(dir, ['-subj', '/CN=www.example.com', '-addext', 'subjectAltName=DNS:www.example.com,DNS:*.example.com,IP:192.0.2.1,IP:2001:db8::1']),
    );
    const plan = ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: true, lifetimeMs: 90 * DAY });
    const issued = await ca.sign(plan);
    const c = new x509.X509Certificate(issued.der);
    const san = c.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension;
    assert.deepEqual(
      san.names.items.map((n) => `${n.type}:${n.value}`).sort(),
      ['dns:*.example.com', 'dns:www.example.com', 'ip:192.0.2.1', 'ip:2001:db8::1'],
    );
    const eku = c.getExtension('2.5.29.37') as x509.ExtendedKeyUsageExtension;
    assert.deepEqual([...eku.usages].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const ku = c.getExtension('2.5.29.15') as x509.KeyUsagesExtension;
    assert.ok(ku.critical);
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
    const bc = c.getExtension('2.5.29.19') as x509.BasicConstraintsExtension;
    assert.ok(bc.critical && !bc.ca);
    assert.ok(c.getExtension('2.5.29.14'), 'SKI');
    const aki = c.getExtension('2.5.29.35') as x509.AuthorityKeyIdentifierExtension;
    const inter = new x509.X509Certificate(ca.intermediatePem);
    const interSki = inter.getExtension('2.5.29.14') as x509.SubjectKeyIdentifierExtension;
    assert.equal(aki.keyId, interSki.keyId);
    const aia = c.getExtension('1.3.6.1.5.5.7.1.1') as x509.AuthorityInfoAccessExtension;
    assert.equal(aia.caIssuers[0]?.value, 'http://ca.example/ca/intermediate.der');
    assert.equal(c.notAfter.getTime() - c.notBefore.getTime(), 90 * DAY);
    const back = clock.now().getTime() - c.notBefore.getTime();
    assert.ok(back >= 60_000 && back < 61_000, `backdated ${back} ms`);
    assert.equal(c.subject, 'CN=*.example.com');
    assert.match(await verify(dir, ca, caDir, issued.chainPem), /: OK/);
  });

  test('an RSA leaf also gets keyEncipherment; without a CN the SAN is critical', async () => {
    const info = await ca.checkCsr(await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=IP:192.0.2.9'], ['-newkey', 'rsa:2048']));
    const c = new x509.X509Certificate((await ca.sign(ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: false, lifetimeMs: DAY }))).der);
    const ku = c.getExtension('2.5.29.15') as x509.KeyUsagesExtension;
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    assert.equal(c.subject, '');
    assert.ok(c.getExtension('2.5.29.17')!.critical);
  });

  test('signing one plan twice gives the same certificate content', async () => {
    const info = await ca.checkCsr(await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:twice.example.com']));
    const plan = ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: false, lifetimeMs: DAY });
    const a = new x509.X509Certificate((await ca.sign(plan)).der);
    const b = new x509.X509Certificate((await ca.sign(plan)).der);
    assert.equal(a.serialNumber, b.serialNumber);
    assert.deepEqual(
      a.extensions.map((e) => Buffer.from(e.rawData).toString('hex')),
      b.extensions.map((e) => Buffer.from(e.rawData).toString('hex')),
    );
    assert.equal(a.notBefore.getTime(), b.notBefore.getTime());
  });

  test('a CSR asking for CA:TRUE or keyCertSign never gets them', async () => {
    const info = await ca.checkCsr(
      await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:evil.example.com', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=keyCertSign,cRLSign']),
    );
    const c = new x509.X509Certificate((await ca.sign(ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: false, lifetimeMs: DAY }))).der);
    assert.equal((c.getExtension('2.5.29.19') as x509.BasicConstraintsExtension).ca, false);
    assert.equal((c.getExtension('2.5.29.15') as x509.KeyUsagesExtension).usages & x509.KeyUsageFlags.keyCertSign, 0);
  });

  const bad: Array<[string, () => Promise<Buffer>]> = [
    ['garbage bytes', async () => Buffer.from('garbage')],
    ['a signature that does not verify', async () => {
      const d = await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']);
      d[d.length - 5] = d[d.length - 5]! ^ 0x55;
      return d;
    }],
    ['SHA-1', async () => csr(dir, ['-subj', '/', '-sha1', '-addext', 'subjectAltName=DNS:a.example.com'], ['-newkey', 'rsa:2048'])],
    ['an RSA 1024 key', async () => csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com'], ['-newkey', 'rsa:1024'])],
    ['a P-521 key', async () => csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com'], ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'])],
    ['an Ed25519 key', async () => csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com'], ['-newkey', 'ed25519'])],
    ['a name with bad characters', async () => csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:bad_name.example.com'])],
    ['an email SAN', async () => csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com,email:x@example.com'])],
    ['no names at all', async () => csr(dir, ['-subj', '/O=Nobody'])],
  ];
  for (const [name, make] of bad) {
    test(`a CSR with ${name} is badCSR`, async () => {
      await assert.rejects(ca.checkCsr(await make()), (e: unknown) => e instanceof AcmeProblem && e.type === 'badCSR');
    });
  }

  test('a CSR with the account key is badCSR', async () => {
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyFile = path.join(dir, 'acct.pem');
    await writeFile(keyFile, k.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const der = await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com'], ['-key', keyFile]);
    const spki = k.publicKey.export({ type: 'spki', format: 'der' });
    await assert.rejects(ca.checkCsr(der, { accountKeySpki: spki }), (e: unknown) => e instanceof AcmeProblem && e.type === 'badCSR');
  });
});

test('serials have at least 64 random bits, never a leading zero, and parse back to the stored form (regression: revocation lookup)', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const s = newSerial();
    assert.equal(s.length, 32);
    assert.notEqual(s[0], '0');
    assert.equal(serialHex(s), s);
    seen.add(s);
  }
  assert.equal(seen.size, 5000);
  // A serial whose first byte is small must still round-trip through a certificate.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-serial-'));
  try {
    await initCa(path.join(dir, 'ca'));
    const lowRandom = { bytes: (n: number) => Buffer.alloc(n, 0x01) };
    const ca = await loadCa(path.join(dir, 'ca'), { random: lowRandom });
    const info = await ca.checkCsr(await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:serial.example.com']));
    const plan = ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: false, lifetimeMs: DAY });
    const issued = await ca.sign(plan);
    assert.equal(ca.inspect(issued.der)?.serial, plan.serial);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('with issuance.allowEd25519, an Ed25519 CSR is issued and openssl verifies the leaf', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-ed25519-'));
  try {
    const caDir = path.join(dir, 'ca');
    await initCa(caDir);
    const ca = await loadCa(caDir, { allowEd25519: true });
    const info = await ca.checkCsr(await csr(dir, ['-subj', '/', '-addext', 'subjectAltName=DNS:ed.example.com'], ['-newkey', 'ed25519']));
    const issued = await ca.sign(ca.plan({ identifiers: info.identifiers, spki: info.spki, clientAuth: true, lifetimeMs: DAY }));
    assert.match(await verify(dir, ca, caDir, issued.chainPem), /: OK/);
    const leaf = new x509.X509Certificate(issued.chainPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----');
    assert.equal((leaf.publicKey.algorithm as { name: string }).name, 'Ed25519');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
