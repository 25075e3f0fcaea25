/** Client keys and CSRs, cross-checked with openssl (the reference peer). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { AcmeClientError } from './errors.js';
import { ACCOUNT_KEY_ALGS, accountSigner, CERT_KEY_TYPES, createCsr, generateAccountKey, generateCertKey, keyTypeOf, parseCertKeyType, readCsr, spkiOf } from './keys.js';

const run = promisify(execFile);

describe('certificate keys and CSRs', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-keys-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  for (const type of CERT_KEY_TYPES) {
    test(`a ${type} key makes a CSR that openssl verifies, with every name`, async () => {
      const key = await generateCertKey(type);
      assert.equal(keyTypeOf(key), type);
      const der = await createCsr(key, [
        { type: 'dns', value: 'a.example.com' },
        { type: 'dns', value: '*.example.com' },
        { type: 'ip', value: '192.0.2.7' },
        { type: 'ip', value: '2001:db8::7' },
      ]);
      const file = path.join(dir, `${type}.der`);
      await writeFile(file, der);
      const { stdout, stderr } = await run('openssl', ['req', '-inform', 'DER', '-in', file, '-noout', '-verify', '-text']);
      assert.match(stdout + stderr, /verify OK/);
      assert.match(stdout, /DNS:a\.example\.com, DNS:\*\.example\.com, IP Address:192\.0\.2\.7, IP Address:2001:DB8:0:0:0:0:0:7/);
      assert.match(stdout, /Subject: CN\s*=\s*a\.example\.com/);
      const back = await readCsr(der);
      assert.ok(back.spki.equals(spkiOf(key)));
      assert.deepEqual(back.identifiers.map((i) => i.value).sort(), ['*.example.com', '192.0.2.7', '2001:db8::7', 'a.example.com']);
    });
  }

  test('a CSR made by openssl (PEM) is read with its names', async () => {
    const key = path.join(dir, 'k.pem');
    const csr = path.join(dir, 'r.pem');
    await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', '/CN=www.example.org', '-addext', 'subjectAltName=DNS:www.example.org,DNS:example.org', '-out', csr]);
    const info = await readCsr(await readFile(csr));
    assert.deepEqual(info.identifiers.map((i) => i.value).sort(), ['example.org', 'www.example.org']);
  });

  test('a CSR whose signature does not verify, garbage, or a PEM without a CSR is refused', async () => {
    const der = await createCsr(await generateCertKey('ecdsa-p256'), [{ type: 'dns', value: 'x.example.com' }]);
    const bad = Buffer.from(der);
    bad[bad.length - 3]! ^= 0x41;
    for (const input of [bad, Buffer.from('garbage'), Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')]) {
      await assert.rejects(readCsr(input), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT');
    }
  });

  test('key type names from certbot and lego are understood', () => {
    assert.equal(parseCertKeyType('ec256'), 'ecdsa-p256');
    assert.equal(parseCertKeyType('EC384'), 'ecdsa-p384');
    assert.equal(parseCertKeyType('rsa4096'), 'rsa-4096');
    assert.equal(parseCertKeyType('ed25519'), 'ed25519');
    assert.equal(parseCertKeyType('dsa'), undefined);
  });
});

describe('account keys', () => {
  for (const alg of ACCOUNT_KEY_ALGS) {
    test(`${alg}: the signer's algorithm follows from the key`, async () => {
      const s = accountSigner(await generateAccountKey(alg));
      assert.equal(s.alg, alg);
      assert.equal(typeof s.jwk.kty, 'string');
      assert.equal((s.jwk as { d?: string }).d, undefined, 'the JWK is public');
    });
  }
});
