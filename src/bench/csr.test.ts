/** The generator's hand-made CSRs, read back by the parser Anvil's server uses and by openssl. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import * as x509 from '../lib/x509.js';
import { freshCsr, ipBytes, p256Spki, sanAttribute } from './csr.js';
import { oid } from '../lib/der.js';

const run = promisify(execFile);
const ids = [
  { type: 'ip' as const, value: '127.0.0.1' },
  { type: 'ip' as const, value: '127.0.0.2' },
  { type: 'dns' as const, value: 'bench.example' },
  { type: 'ip' as const, value: '2001:db8::7' },
];

test('a fresh CSR verifies with @peculiar/x509 (the server side parser) and names every identifier', async () => {
  const csr = freshCsr(sanAttribute(ids));
  const parsed = new x509.Pkcs10CertificateRequest(csr.der);
  assert.equal(await parsed.verify(), true);
  assert.ok(Buffer.from(parsed.publicKey.rawData).equals(csr.spki));
  const san = parsed.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension;
  assert.deepEqual(
    san.names.items.map((n) => `${n.type}:${n.value}`),
    ['ip:127.0.0.1', 'ip:127.0.0.2', 'dns:bench.example', 'ip:2001:db8::7'],
  );
  assert.equal(parsed.subject, '');
});

test('two CSRs never share a key', () => {
  const a = sanAttribute(ids.slice(0, 1));
  assert.ok(!freshCsr(a).spki.equals(freshCsr(a).spki));
});

test('openssl verifies the CSR', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-csr-'));
  try {
    const file = path.join(dir, 'req.der');
    await writeFile(file, freshCsr(sanAttribute(ids)).der);
    let out: { stdout: string; stderr: string };
    try {
      out = await run('openssl', ['req', '-inform', 'DER', '-in', file, '-noout', '-verify', '-text']);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return t.skip('openssl is not installed');
      throw e;
    }
    assert.match(out.stdout + out.stderr, /verify OK/i);
    assert.match(out.stdout, /IP Address:127\.0\.0\.1, IP Address:127\.0\.0\.2, DNS:bench\.example, IP Address:2001:DB8:0:0:0:0:0:7/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the SPKI built from the JWK equals the one OpenSSL encodes', () => {
  const publicKey = createPublicKey(freshCsr(sanAttribute(ids.slice(0, 1))).key);
  assert.ok(p256Spki(publicKey).equals(publicKey.export({ type: 'spki', format: 'der' })));
});

const ipCases: Array<[string, string]> = [
  ['127.0.0.1', '7f000001'],
  ['::1', '00000000000000000000000000000001'],
  ['2001:db8::7', '20010db8000000000000000000000007'],
  ['fe80::', 'fe800000000000000000000000000000'],
];
for (const [ip, hex] of ipCases) {
  test(`ipBytes writes ${ip} as ${hex}`, () => assert.equal(ipBytes(ip).toString('hex'), hex));
}

test('OIDs are encoded as X.690 says (multi-byte arcs included)', () => {
  assert.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
  assert.equal(oid('2.5.29.17').toString('hex'), '0603551d11');
});
