import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac, getCiphers } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { childrenOf, octetString, readDer, seq, tlv, bytesOf } from '../lib/der.js';
import { findCertificateFiles, readCertificates, type FoundFile } from './files.js';

const filesModule = fileURLToPath(new URL('./files.ts', import.meta.url));

let root = '';
let scan = '';
let work = '';
let leafDer: Buffer = Buffer.alloc(0);
let caDer: Buffer = Buffer.alloc(0);
let leafKeyPem = '';
let leafKeyDer: Buffer = Buffer.alloc(0);
/** The EC private scalar: what must never leak (the rest of the key DER holds the public key, which the certificate has too). */
let leafKeyScalar: Buffer = Buffer.alloc(0);
let legacyMade = false;
const notes: string[] = [];

const openssl = (...args: string[]): Buffer => execFileSync('openssl', args, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
const w = (name: string): string => join(work, name);
const s = (name: string): string => join(scan, name);

/** `openssl pkcs12 -export` of the leaf (with its key) and the CA, into scan/p12/NAME. */
function p12(name: string, password: string, ...extra: string[]): boolean {
  try {
    openssl('pkcs12', '-export', '-in', w('leaf.pem'), '-inkey', w('leaf.key'), '-certfile', w('ca.pem'), '-passout', `pass:${password}`, '-out', s(`p12/${name}`), ...extra);
    return true;
  } catch (e) {
    notes.push(`openssl pkcs12 ${extra.join(' ')} failed: ${String(e)}`);
    return false;
  }
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'anvil-inventory-files-'));
  work = join(root, 'work');
  scan = join(root, 'scan');
  for (const d of [work, scan, s('p12'), s('nested/a/b')]) mkdirSync(d, { recursive: true });

  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', w('ca.key'), '-out', w('ca.pem'), '-subj', '/CN=Inventory Test CA', '-days', '2');
  openssl('req', '-new', ...ec, '-keyout', w('leaf.key'), '-out', w('leaf.csr'), '-subj', '/CN=leaf.test');
  openssl('x509', '-req', '-in', w('leaf.csr'), '-CA', w('ca.pem'), '-CAkey', w('ca.key'), '-set_serial', '2', '-days', '2', '-out', w('leaf.pem'));
  leafDer = openssl('x509', '-in', w('leaf.pem'), '-outform', 'DER');
  caDer = openssl('x509', '-in', w('ca.pem'), '-outform', 'DER');
  leafKeyPem = readFileSync(w('leaf.key'), 'utf8');
  leafKeyDer = openssl('pkey', '-in', w('leaf.key'), '-outform', 'DER');
  // PKCS#8 { ..., OCTET STRING { ECPrivateKey { INTEGER 1, OCTET STRING (32) privateKey, ... } } }
  const at = leafKeyDer.indexOf(Buffer.from('020101' + '0420', 'hex'));
  leafKeyScalar = leafKeyDer.subarray(at + 5, at + 37);
  assert.equal(leafKeyScalar.length, 32);

  const leafPem = readFileSync(w('leaf.pem'), 'utf8');
  const caPem = readFileSync(w('ca.pem'), 'utf8');
  writeFileSync(s('leaf.pem'), leafPem);
  writeFileSync(s('chain.pem'), leafPem + caPem);
  writeFileSync(s('with-key.pem'), leafKeyPem + leafPem);
  writeFileSync(s('key-only.pem'), leafKeyPem);
  writeFileSync(s('leaf.der'), leafDer);
  writeFileSync(s('truncated.pem'), leafPem.slice(0, Math.floor(leafPem.length / 2)));
  writeFileSync(s('garbage.crt'), 'this is not a certificate\n');
  writeFileSync(s('notes.txt'), 'remember to renew\n');
  writeFileSync(s('config.json'), '{"listen": ":443"}\n');
  copyFileSync(w('ca.pem'), s('nested/a/b/ca.pem'));
  symlinkSync('..', s('nested/a/loop')); // nested/a/loop -> nested: a loop once followed

  p12('default.p12', 'secret'); // OpenSSL 3: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), SHA-256 MAC
  p12('empty.p12', '');
  p12('nomac.p12', 'secret', '-nomac'); // certificates left unencrypted by OpenSSL
  p12('nomac-aes.p12', 'secret', '-nomac', '-certpbe', 'AES-256-CBC');
  p12('3des-sha1.p12', 'secret', '-certpbe', 'PBE-SHA1-3DES', '-macalg', 'sha1');
  p12('aes128.p12', 'secret', '-certpbe', 'AES-128-CBC');
  p12('plaintext.p12', 'secret', '-certpbe', 'NONE', '-keypbe', 'NONE'); // the key in a clear keyBag
  legacyMade = p12('legacy.p12', 'secret', '-legacy'); // RC2-40 for certificates, 3DES for the key
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

const rel = (f: FoundFile): string => relative(scan, f.path);
const byPath = (files: FoundFile[]): Map<string, FoundFile> => new Map(files.map((f) => [rel(f), f]));
const p12s = ['default', 'empty', 'nomac', 'nomac-aes', '3des-sha1', 'aes128', 'plaintext', 'legacy'].map((n) => `p12/${n}.p12`);
const legacyReadable = (): boolean => getCiphers().includes('rc2-40-cbc');

describe('findCertificateFiles', () => {
  test('walks a tree in sorted order and reports only certificate files', async () => {
    const found = await findCertificateFiles([scan]);
    const got = found.map((f) => [rel(f), f.format ?? null, f.error?.code ?? null, f.certificates.length]);
    const expected: Array<[string, string | null, string | null, number]> = [
      ['chain.pem', 'pem', null, 2],
      ['garbage.crt', null, 'bad-der', 0],
      ['leaf.der', 'der', null, 1],
      ['leaf.pem', 'pem', null, 1],
      ['nested/a/b/ca.pem', 'pem', null, 1],
      ['p12/3des-sha1.p12', 'pkcs12', 'pkcs12-password', 0],
      ['p12/aes128.p12', 'pkcs12', 'pkcs12-password', 0],
      ['p12/default.p12', 'pkcs12', 'pkcs12-password', 0],
      ['p12/empty.p12', 'pkcs12', null, 2],
      ...(legacyMade ? [['p12/legacy.p12', 'pkcs12', 'pkcs12-password', 0] as [string, string, string, number]] : []),
      ['p12/nomac-aes.p12', 'pkcs12', 'pkcs12-password', 0],
      ['p12/nomac.p12', 'pkcs12', null, 2],
      // Certificates in a clear SafeContents are read even when the MAC password is unknown.
      ['p12/plaintext.p12', 'pkcs12', 'pkcs12-password', 2],
      ['truncated.pem', 'pem', 'bad-pem', 0],
      ['with-key.pem', 'pem', null, 1],
    ];
    assert.deepEqual(got, expected, notes.join('\n'));
  });

  test('reads every format byte-identical to the DER from openssl x509 -outform DER', async () => {
    const found = byPath(await findCertificateFiles([scan], { pkcs12Passwords: ['secret'] }));
    const want = new Map<string, Buffer[]>([
      ['leaf.pem', [leafDer]],
      ['chain.pem', [leafDer, caDer]],
      ['with-key.pem', [leafDer]],
      ['leaf.der', [leafDer]],
      ['nested/a/b/ca.pem', [caDer]],
    ]);
    for (const p of p12s) if (p !== 'p12/legacy.p12') want.set(p, [leafDer, caDer]);
    for (const [path, certs] of want) {
      const f = found.get(path);
      assert.ok(f, `${path} was not reported`);
      assert.equal(f.error, undefined, `${path}: ${f.error?.message}`);
      assert.deepEqual(f.certificates, certs, path);
    }
  });

  test('a path that does not exist is reported as unreadable and the other paths are still walked', async () => {
    const missing = join(root, 'no-such-dir');
    const found = await findCertificateFiles([missing, s('leaf.pem')]);
    assert.equal(found.length, 2);
    assert.equal(found[0]!.path, missing);
    assert.equal(found[0]!.error?.code, 'unreadable');
    assert.match(found[0]!.error!.message, /no-such-dir/);
    assert.deepEqual(found[1]!.certificates, [leafDer]);
  });

  test('symbolic links are not followed by default, and a loop terminates when they are', async () => {
    const plain = await findCertificateFiles([s('nested')]);
    assert.deepEqual(plain.map(rel), ['nested/a/b/ca.pem']);
    const followed = await findCertificateFiles([s('nested')], { followSymlinks: true });
    // nested/a/loop/a/b/ca.pem is the same file: reported once, under the first path reached.
    assert.deepEqual(followed.map(rel), ['nested/a/b/ca.pem']);
    // A link to a file elsewhere is read when followed.
    symlinkSync(w('leaf.pem'), s('nested/link.pem'));
    try {
      assert.deepEqual((await findCertificateFiles([s('nested')])).map(rel), ['nested/a/b/ca.pem']);
      assert.deepEqual((await findCertificateFiles([s('nested')], { followSymlinks: true })).map(rel), ['nested/a/b/ca.pem', 'nested/link.pem']);
    } finally {
      rmSync(s('nested/link.pem'));
    }
  });

  test('maxDepth stops the descent', async () => {
    assert.deepEqual((await findCertificateFiles([s('nested')], { maxDepth: 1 })).map(rel), []);
    assert.deepEqual((await findCertificateFiles([s('nested')], { maxDepth: 2 })).map(rel), ['nested/a/b/ca.pem']);
  });

  test('files over maxFileBytes are too-large with a certificate extension and skipped without one', async () => {
    const big = join(root, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'big.crt'), Buffer.alloc(200, 0x41));
    writeFileSync(join(big, 'big.log'), readFileSync(s('chain.pem'))); // a certificate, but no certificate extension
    const found = await findCertificateFiles([big], { maxFileBytes: 100 });
    assert.deepEqual(
      found.map((f) => [relative(big, f.path), f.error?.code]),
      [['big.crt', 'too-large']],
    );
    assert.deepEqual((await findCertificateFiles([big])).map((f) => relative(big, f.path)), ['big.crt', 'big.log']);
  });

  test('files are recognised by content whatever their name', async () => {
    const odd = join(root, 'odd');
    mkdirSync(odd);
    writeFileSync(join(odd, 'cert.bin'), leafDer);
    copyFileSync(s('p12/empty.p12'), join(odd, 'bundle.bin'));
    writeFileSync(join(odd, 'readme.txt'), `the certificate:\n${readFileSync(s('leaf.pem'), 'utf8')}`);
    writeFileSync(join(odd, 'app.json'), JSON.stringify({ tls: { cert: readFileSync(s('chain.pem'), 'utf8') } }));
    writeFileSync(join(odd, 'howto.md'), 'Paste yours:\n-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n');
    const found = await findCertificateFiles([odd]);
    assert.deepEqual(
      found.map((f) => [relative(odd, f.path), f.format, f.error?.code ?? null, f.certificates.length]),
      [
        ['app.json', 'pem', null, 2],
        ['bundle.bin', 'pkcs12', null, 2],
        ['cert.bin', 'der', null, 1],
        ['readme.txt', 'pem', null, 1],
      ],
    );
    assert.deepEqual(found[0]!.certificates, [leafDer, caDer]);
  });

  test('onFile sees each reported file, in the order of the result', async () => {
    const seen: FoundFile[] = [];
    const found = await findCertificateFiles([scan], { onFile: (f) => seen.push(f) });
    assert.ok(found.length > 5);
    assert.deepEqual(seen, found);
  });

  test('a directory that cannot be listed is reported and the walk continues', async (t) => {
    const tree = join(root, 'perm');
    mkdirSync(join(tree, 'locked'), { recursive: true });
    mkdirSync(join(tree, 'open'));
    copyFileSync(s('leaf.pem'), join(tree, 'open/leaf.pem'));
    chmodSync(join(tree, 'locked'), 0o000);
    try {
      let result: Array<{ path: string; code: string | null; n: number }>;
      const summary = (files: FoundFile[]) => files.map((f) => ({ path: relative(tree, f.path), code: f.error?.code ?? null, n: f.certificates.length }));
      if (process.getuid?.() !== 0) {
        result = summary(await findCertificateFiles([tree]));
      } else {
        // root reads everything: walk as nobody in a child process instead.
        chmodSync(root, 0o755);
        for (const d of [tree, join(tree, 'open')]) chmodSync(d, 0o755);
        chmodSync(join(tree, 'open/leaf.pem'), 0o644);
        const script = `process.setgid(65534); process.setuid(65534);
          const { findCertificateFiles } = await import(${JSON.stringify(filesModule)});
          const found = await findCertificateFiles([${JSON.stringify(tree)}]);
          console.log(JSON.stringify(found.map((f) => ({ path: f.path, code: f.error?.code ?? null, n: f.certificates.length }))));`;
        let out: string;
        try {
          out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        } catch (e) {
          t.skip(`running as root and cannot drop to uid 65534 to test permissions: ${String(e)}`);
          return;
        } finally {
          chmodSync(root, 0o700);
        }
        result = (JSON.parse(out) as Array<{ path: string; code: string | null; n: number }>).map((r) => ({ ...r, path: relative(tree, r.path) }));
      }
      assert.deepEqual(result, [
        { path: 'locked', code: 'unreadable', n: 0 },
        { path: 'open/leaf.pem', code: null, n: 1 },
      ]);
    } finally {
      chmodSync(join(tree, 'locked'), 0o755);
    }
  });
});

describe('PEM', () => {
  test('a PEM file with a private key yields only its certificate, and no key text reaches the result', async () => {
    const [f] = await findCertificateFiles([s('with-key.pem')]);
    assert.ok(f);
    assert.deepEqual(f.certificates, [leafDer]);
    const json = JSON.stringify(f);
    const keyBody = leafKeyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
    assert.ok(keyBody.length > 0);
    for (const line of keyBody) assert.ok(!json.includes(line), 'a line of the key appears in the result');
    for (const c of f.certificates) assert.ok(!c.includes(leafKeyScalar));
  });

  test('a PEM file with only a private key is not a certificate file', () => {
    const f = readCertificates('/k/key.pem', Buffer.from(leafKeyPem));
    assert.equal(f.format, undefined);
    assert.equal(f.error, undefined);
    assert.deepEqual(f.certificates, []);
  });

  test('CRLF line endings are read', () => {
    const crlf = readFileSync(s('chain.pem'), 'utf8').replace(/\n/g, '\r\n');
    const f = readCertificates('/x/chain.pem', Buffer.from(crlf));
    assert.equal(f.error, undefined);
    assert.deepEqual(f.certificates, [leafDer, caDer]);
  });

  test('TRUSTED CERTIFICATE yields the certificate without its trust settings', () => {
    const trusted = openssl('x509', '-in', w('leaf.pem'), '-trustout', '-addtrust', 'serverAuth');
    assert.match(trusted.toString(), /BEGIN TRUSTED CERTIFICATE/);
    const f = readCertificates('/x/trusted.pem', trusted);
    assert.equal(f.format, 'pem');
    assert.equal(f.error, undefined);
    assert.deepEqual(f.certificates, [leafDer]);
  });

  test('the X509 CERTIFICATE label is read', () => {
    const pem = readFileSync(s('leaf.pem'), 'utf8').replace(/CERTIFICATE-----/g, 'X509 CERTIFICATE-----');
    assert.deepEqual(readCertificates('/x/old.crt', Buffer.from(pem)).certificates, [leafDer]);
  });

  test('a truncated PEM file is bad-pem', () => {
    const f = readCertificates('/x/cut.pem', readFileSync(s('truncated.pem')));
    assert.equal(f.error?.code, 'bad-pem');
    assert.match(f.error!.message, /without a matching END/);
  });

  test('a corrupt block is bad-pem naming the block, and the good blocks are kept', () => {
    const [leaf, ca] = readFileSync(s('chain.pem'), 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/);
    const broken = ca!.replace(/\n[A-Za-z0-9+/]{64}\n/, '\nAAAA\n'); // drop most of a line of the CA
    const f = readCertificates('/x/chain.pem', Buffer.from(leafKeyPem + leaf! + broken));
    assert.equal(f.error?.code, 'bad-pem');
    assert.match(f.error!.message, /PEM block 3 \(CERTIFICATE\)/);
    assert.deepEqual(f.certificates, [leafDer]);
  });
});

describe('readCertificates on what is not a certificate', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['garbage with a .crt extension is bad-der', 'x.crt', 'bad-der'],
    ['garbage with a .cer extension is bad-der', 'x.CER', 'bad-der'],
    ['garbage with a .pem extension is bad-pem', 'x.pem', 'bad-pem'],
    ['garbage with a .p12 extension is bad-pkcs12', 'x.p12', 'bad-pkcs12'],
    ['garbage with a .pfx extension is bad-pkcs12', 'x.PFX', 'bad-pkcs12'],
    ['garbage with another extension is not reported', 'x.conf', undefined],
  ];
  for (const [name, file, code] of cases) {
    test(name, () => {
      const f = readCertificates(`/x/${file}`, Buffer.from('0\x82\x01\x00 nonsense'));
      assert.equal(f.error?.code, code);
      assert.equal(f.format, undefined);
      assert.deepEqual(f.certificates, []);
    });
  }

  test('a DER element that is not a certificate, with a .der extension, is bad-der', () => {
    assert.equal(readCertificates('/x/key.der', leafKeyDer).error?.code, 'bad-der');
    assert.equal(readCertificates('/x/key.bin', leafKeyDer).error, undefined);
  });
});

describe('PKCS#12', () => {
  const read = (name: string, passwords?: string[]): FoundFile => readCertificates(s(`p12/${name}`), readFileSync(s(`p12/${name}`)), passwords);

  test('the OpenSSL 3 default (PBES2, AES-256-CBC) needs the right password', () => {
    const without = read('default.p12');
    assert.equal(without.format, 'pkcs12');
    assert.equal(without.error?.code, 'pkcs12-password');
    assert.deepEqual(without.certificates, []);
    const wrong = read('default.p12', ['wrong', 'also-wrong']);
    assert.equal(wrong.error?.code, 'pkcs12-password');
    assert.match(wrong.error!.message, /2 password\(s\)/);
    const right = read('default.p12', ['wrong', 'secret']);
    assert.equal(right.error, undefined);
    assert.deepEqual(right.certificates, [leafDer, caDer]);
    for (const f of [without, wrong, right]) assert.ok(!/secret|wrong/.test(JSON.stringify(f.error ?? {})), 'a password appears in the message');
  });

  test('an empty password is tried without being given', () => {
    assert.deepEqual(read('empty.p12').certificates, [leafDer, caDer]);
    assert.equal(read('empty.p12', ['secret']).error, undefined);
  });

  test('a MAC keyed with an absent (NULL) password verifies as the empty password', (t) => {
    // OpenSSL 3 writes "" as the BMPString terminator 00 00; other writers derive the MAC key from no bytes
    // at all. Re-MAC empty.p12 that way, with OpenSSL's own PKCS12KDF (hexpass: is the zero-length password).
    const der = Buffer.from(readFileSync(s('p12/empty.p12')));
    const [, authSafe, macData] = childrenOf(der, readDer(der));
    const [, explicit] = childrenOf(der, authSafe!);
    const [octets] = childrenOf(der, explicit!);
    const [digestInfo, salt, iterations] = childrenOf(der, macData!);
    const [, digest] = childrenOf(der, digestInfo!);
    const iter = der.readUIntBE(iterations!.contentStart, iterations!.end - iterations!.contentStart);
    const hexSalt = der.subarray(salt!.contentStart, salt!.end).toString('hex');
    const kdf = ['kdf', '-keylen', '32', '-kdfopt', 'digest:SHA256', '-kdfopt', 'hexpass:', '-kdfopt', `hexsalt:${hexSalt}`, '-kdfopt', `iter:${iter}`, '-kdfopt', 'id:3', 'PKCS12KDF'];
    let key: Buffer;
    try {
      key = Buffer.from(openssl(...kdf).toString().trim().replace(/:/g, ''), 'hex');
    } catch (e) {
      return t.skip(`this openssl has no PKCS12KDF: ${String(e)}`);
    }
    const mac = createHmac('sha256', key).update(der.subarray(octets!.contentStart, octets!.end)).digest();
    assert.equal(mac.length, digest!.end - digest!.contentStart);
    mac.copy(der, digest!.contentStart);
    const f = readCertificates('/x/null-password.p12', der);
    assert.equal(f.error, undefined, f.error?.message);
    assert.deepEqual(f.certificates, [leafDer, caDer]);
  });

  test('pbeWithSHAAnd3-KeyTripleDES-CBC with a SHA-1 MAC is decrypted', () => {
    const f = read('3des-sha1.p12', ['secret']);
    assert.equal(f.error, undefined);
    assert.deepEqual(f.certificates, [leafDer, caDer]);
  });

  test('without a MAC, the password is found by decrypting', () => {
    assert.equal(read('nomac-aes.p12').error?.code, 'pkcs12-password');
    assert.deepEqual(read('nomac-aes.p12', ['wrong', 'secret']).certificates, [leafDer, caDer]);
  });

  test('key bags are skipped: a clear private key appears nowhere in the result', () => {
    const f = read('plaintext.p12', ['secret']);
    assert.equal(f.error, undefined);
    assert.deepEqual(f.certificates, [leafDer, caDer]);
    assert.ok(readFileSync(s('p12/plaintext.p12')).includes(leafKeyScalar), 'the fixture should hold the key in clear');
    for (const c of f.certificates) assert.ok(!c.includes(leafKeyScalar));
    assert.ok(!JSON.stringify(f).includes(JSON.stringify([...leafKeyScalar]).slice(1, -1)));
  });

  test('a constructed (BER) authSafe OCTET STRING is read, and the MAC still verifies', () => {
    // Re-encode the authSafe content [0] { OCTET STRING } as [0] { OCTET STRING (constructed, indefinite) { two segments } }.
    const der = readFileSync(s('p12/default.p12'));
    const [version, authSafe, macData] = childrenOf(der, readDer(der));
    const [contentType, explicit] = childrenOf(der, authSafe!);
    const [octets] = childrenOf(der, explicit!);
    const value = der.subarray(octets!.contentStart, octets!.end);
    const half = Math.floor(value.length / 2);
    const constructed = Buffer.concat([Buffer.from([0x24, 0x80]), octetString(value.subarray(0, half)), octetString(value.subarray(half)), Buffer.alloc(2)]);
    const ber = seq(bytesOf(der, version!), seq(bytesOf(der, contentType!), tlv(0xa0, constructed)), bytesOf(der, macData!));
    const f = readCertificates('/x/ber.p12', ber, ['secret']);
    assert.equal(f.error, undefined, f.error?.message);
    assert.deepEqual(f.certificates, [leafDer, caDer]);
  });

  test('-legacy (RC2-40 for certificates) is read when this Node offers RC2, else pkcs12-unsupported with a way out', (t) => {
    if (!legacyMade) return t.skip(`this openssl cannot write -legacy: ${notes.join('; ')}`);
    const f = read('legacy.p12', ['secret']);
    assert.equal(f.format, 'pkcs12');
    if (legacyReadable()) {
      assert.equal(f.error, undefined);
      assert.deepEqual(f.certificates, [leafDer, caDer]);
    } else {
      assert.equal(f.error?.code, 'pkcs12-unsupported');
      assert.match(f.error!.message, /pbeWithSHAAnd40BitRC2-CBC/);
      assert.match(f.error!.message, /openssl pkcs12 -in \S+ -nokeys/);
    }
  });

  test('-legacy is read by a Node started with --openssl-legacy-provider', (t) => {
    if (!legacyMade) return t.skip(`this openssl cannot write -legacy: ${notes.join('; ')}`);
    const script = `const { readFileSync } = await import('node:fs');
      const { readCertificates } = await import(${JSON.stringify(filesModule)});
      const f = readCertificates('legacy.p12', readFileSync(${JSON.stringify(s('p12/legacy.p12'))}), ['secret']);
      console.log(JSON.stringify({ error: f.error, certs: f.certificates.map((c) => c.toString('base64')) }));`;
    let out: string;
    try {
      out = execFileSync(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      return t.skip(`this Node cannot load the OpenSSL legacy provider: ${String(e)}`);
    }
    const r = JSON.parse(out) as { error?: unknown; certs: string[] };
    assert.equal(r.error, undefined);
    assert.deepEqual(r.certs, [leafDer.toString('base64'), caDer.toString('base64')]);
  });
});
