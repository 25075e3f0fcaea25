/**
 * Issue #5: the leaf written by leaf-der.ts must be the certificate @peculiar/x509 wrote. For every
 * combination of CA key, leaf key, profile, subject and URLs the TBSCertificate is compared byte
 * for byte with x509-reference.ts, the signature is checked by @peculiar/x509, and a subset goes
 * through `openssl verify` and `openssl x509 -text`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { certificateText, verifyChain } from '../../../test/helpers/openssl.js';
import { FakeClock } from '../../lib/clock.js';
import { bytesOf, childrenOf, readDer } from '../../lib/der.js';
import * as x509 from '../../lib/x509.js';
import { ipToBytes, sortIdentifiers } from '../../protocol/identifiers.js';
import type { Identifier } from '../../protocol/types.js';
import { initCa, loadCa, serialHex, type CertificateAuthority } from './ca.js';
import type { IssuancePlan, KeyAlgorithm } from './types.js';
import { loadReference, type X509Reference } from './x509-reference.js';
import { ISSUABLE_KEYS } from '../../../test/helpers/test-keys.js';

const DAY = 86_400_000;
const URLS = { issuerUrl: 'http://ca.example/ca/intermediate.der', ocspUrl: 'http://ocsp.example/', crlUrl: 'http://ca.example/crl/1.crl' };

const tbsOf = (der: Buffer): Buffer => bytesOf(der, childrenOf(der, readDer(der))[0]!);

const LEAF_KEYS = ISSUABLE_KEYS;
type LeafKey = keyof typeof LEAF_KEYS;
const spkis = new Map<LeafKey, Buffer>();
const spkiOf = (k: LeafKey): Buffer => {
  if (!spkis.has(k)) spkis.set(k, LEAF_KEYS[k]().publicKey.export({ type: 'spki', format: 'der' }));
  return spkis.get(k)!;
};

const PROFILES = [
  { name: 'serverAuth only', clientAuth: false, serverAuth: true },
  { name: 'serverAuth and clientAuth', clientAuth: true, serverAuth: true },
  { name: 'clientAuth only', clientAuth: true, serverAuth: false },
] as const;

const NAME_SETS: Array<{ name: string; ids: Identifier[]; cn: string | undefined }> = [
  {
    name: 'DNS and IP names with a CN',
    ids: sortIdentifiers([
      { type: 'dns', value: 'www.example.com' },
      { type: 'dns', value: '*.example.com' },
      { type: 'ip', value: '192.0.2.1' },
      { type: 'ip', value: '2001:db8::1' },
    ]),
    cn: '*.example.com',
  },
  { name: 'IP names only, no CN', ids: sortIdentifiers([{ type: 'ip', value: '192.0.2.7' }, { type: 'ip', value: '2001:db8:0:1::7' }]), cn: undefined },
  {
    name: 'a DNS name over 64 characters, no CN',
    ids: sortIdentifiers([{ type: 'dns', value: `${'a'.repeat(60)}.example.com` }, { type: 'ip', value: '198.51.100.1' }]),
    cn: undefined,
  },
];

interface Pair {
  ca: CertificateAuthority;
  ref: X509Reference;
}

let dir: string;
const clock = new FakeClock(Date.now());
const cas = new Map<string, Pair>();
const caDirs = new Map<KeyAlgorithm, string>();
const CA_ALGS: KeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'];

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-leaf-der-'));
  for (const alg of CA_ALGS) {
    const caDir = path.join(dir, alg);
    await initCa(caDir, { keyAlgorithm: alg, organization: 'Anvil Tests' });
    caDirs.set(alg, caDir);
    for (const urls of [false, true]) {
      const o = urls ? URLS : {};
      cas.set(`${alg}${urls}`, { ca: await loadCa(caDir, { ...o, clock }), ref: await loadReference(caDir, o) });
    }
  }
});
after(async () => rm(dir, { recursive: true, force: true }));

function pair(alg: KeyAlgorithm, urls: boolean): Pair {
  return cas.get(`${alg}${urls}`)!;
}

async function checkAgainstReference(p: Pair, plan: IssuancePlan, alg: KeyAlgorithm): Promise<x509.X509Certificate> {
  const mine = await p.ca.sign(plan);
  const theirs = await p.ref.sign(plan);
  assert.equal(tbsOf(mine.der).toString('hex'), tbsOf(theirs.der).toString('hex'), 'TBSCertificate differs from @peculiar/x509');
  if (alg.startsWith('rsa-')) {
    // RSA PKCS#1 v1.5 signatures are deterministic: the whole certificate and chain must match.
    assert.deepEqual(mine.der, theirs.der);
    assert.equal(mine.chainPem, theirs.chainPem);
  }
  const cert = new x509.X509Certificate(mine.der);
  const inter = p.ca.issuerCertificate;
  assert.ok(await cert.verify({ publicKey: inter.publicKey, signatureOnly: true }), 'signature does not verify with the intermediate key');
  assert.equal(mine.chainPem, `${cert.toString('pem')}\n${p.ca.intermediatePem}`);
  return cert;
}

for (const alg of CA_ALGS) {
  for (const urls of [false, true]) {
    describe(`a ${alg} CA ${urls ? 'with' : 'without'} AIA and CRL URLs writes the leaf @peculiar/x509 wrote`, () => {
      for (const leaf of Object.keys(LEAF_KEYS) as LeafKey[]) {
        for (const profile of PROFILES) {
          for (const names of NAME_SETS) {
            test(`${leaf} key, ${profile.name}, ${names.name}`, async () => {
              const p = pair(alg, urls);
              const plan = p.ca.plan({ identifiers: names.ids, spki: spkiOf(leaf), clientAuth: profile.clientAuth, serverAuth: profile.serverAuth, lifetimeMs: 90 * DAY });
              assert.equal(plan.commonName, names.cn);
              const cert = await checkAgainstReference(p, plan, alg);
              assert.equal(cert.subject, names.cn ? `CN=${names.cn}` : '');
            });
          }
        }
      }
    });
  }
}

describe('edge cases of the leaf encoding match @peculiar/x509', () => {
  const ids: Identifier[] = [{ type: 'dns', value: 'edge.example.com' }];
  const base = (): IssuancePlan => ({
    serial: '1a2b3c4d5e6f708192a3b4c5d6e7f801',
    notBefore: new Date('2030-01-01T00:00:00Z'),
    notAfter: new Date('2030-04-01T00:00:00Z'),
    identifiers: ids,
    commonName: 'edge.example.com',
    spki: spkiOf('P-256'),
    clientAuth: false,
  });
  const cases: Array<[string, Partial<IssuancePlan>]> = [
    ['a serial with the top bit set gets a sign octet', { serial: '8f' + 'ab'.repeat(15) }],
    ['a serial of odd length', { serial: 'abc' }],
    ['a serial with leading zeros', { serial: '0000' + '7f'.repeat(8) }],
    ['a notAfter in 2050 is a GeneralizedTime', { notAfter: new Date('2050-01-01T00:00:00Z') }],
    ['the last UTCTime second', { notBefore: new Date('2049-12-31T23:59:59Z'), notAfter: new Date('2051-06-30T12:00:00Z') }],
    ['milliseconds are dropped', { notAfter: new Date('2030-04-01T00:00:00.999Z') }],
    ['no extended key usage at all (a profile with none)', { serverAuth: false, clientAuth: false }],
    ['a CN outside PrintableString is a UTF8String', { commonName: 'under_score.example.com' }],
    ['an IPv6 address with a zero run in the middle', { identifiers: [{ type: 'ip', value: '2001:db8::8:800:200c:417a' }], commonName: undefined }],
  ];
  for (const [name, change] of cases) {
    test(name, async () => {
      const p = pair('ecdsa-p256', true);
      await checkAgainstReference(p, { ...base(), ...change }, 'ecdsa-p256');
    });
  }
});

test('each URL on its own (caIssuers only, OCSP only, CRL only) gives the extensions @peculiar/x509 gave', async () => {
  const caDir = caDirs.get('ecdsa-p256')!;
  for (const urls of [{ issuerUrl: URLS.issuerUrl }, { ocspUrl: URLS.ocspUrl }, { crlUrl: URLS.crlUrl }, { ocspUrl: URLS.ocspUrl, crlUrl: URLS.crlUrl }]) {
    const p = { ca: await loadCa(caDir, { ...urls, clock }), ref: await loadReference(caDir, urls) };
    const plan = p.ca.plan({ identifiers: NAME_SETS[0]!.ids, spki: spkiOf('P-256'), clientAuth: false, lifetimeMs: DAY });
    await checkAgainstReference(p, plan, 'ecdsa-p256');
  }
});

test('inspect reads the serial and key that @peculiar/x509 read, and refuses what is not DER', async () => {
  const { ca } = pair('ecdsa-p256', false);
  for (const serial of ['8f' + 'ab'.repeat(15), '00007f' + '01'.repeat(8), '1'.repeat(32)]) {
    const plan = { ...ca.plan({ identifiers: [{ type: 'dns', value: 'inspect.example.com' }], spki: spkiOf('RSA-2048'), clientAuth: false, lifetimeMs: DAY }), serial };
    const { der } = await ca.sign(plan);
    const x = new x509.X509Certificate(der);
    assert.deepEqual(ca.inspect(der), { serial: serialHex(x.serialNumber), spki: Buffer.from(x.publicKey.rawData) });
    assert.equal(ca.inspect(der)?.serial, serialHex(serial));
    assert.equal(ca.inspect(Buffer.concat([der, Buffer.from([0])])), null);
    assert.equal(ca.inspect(der.subarray(0, -1)), null);
  }
  assert.equal(ca.inspect(Buffer.from('not a certificate')), null);
});

/** A SAN as OpenSSL 3.0 prints it: IPv6 in eight upper-case groups, uncompressed. */
function opensslSan(i: Identifier): string {
  if (i.type === 'dns') return `DNS:${i.value}`;
  if (!i.value.includes(':')) return `IP Address:${i.value}`;
  const b = ipToBytes(i.value);
  const groups = Array.from({ length: 8 }, (_, g) => b.readUInt16BE(g * 2).toString(16).toUpperCase());
  return `IP Address:${groups.join(':')}`;
}

test('openssl verifies leaves from every CA key and prints the profile', async () => {
  const subset: Array<[KeyAlgorithm, LeafKey, (typeof PROFILES)[number], (typeof NAME_SETS)[number]]> = [
    ['ecdsa-p256', 'P-256', PROFILES[0], NAME_SETS[0]!],
    ['ecdsa-p256', 'Ed25519', PROFILES[2], NAME_SETS[1]!],
    ['ecdsa-p384', 'RSA-2048', PROFILES[1], NAME_SETS[2]!],
    ['ecdsa-p384', 'P-384', PROFILES[0], NAME_SETS[1]!],
    ['rsa-2048', 'P-256', PROFILES[1], NAME_SETS[0]!],
    ['rsa-2048', 'RSA-3072', PROFILES[2], NAME_SETS[1]!],
  ];
  for (const [alg, leaf, profile, names] of subset) {
    const what = `${alg} CA, ${leaf} leaf, ${profile.name}, ${names.name}`;
    const { ca } = pair(alg, true);
    const plan = ca.plan({ identifiers: names.ids, spki: spkiOf(leaf), clientAuth: profile.clientAuth, serverAuth: profile.serverAuth, lifetimeMs: DAY });
    const issued = await ca.sign(plan);
    const root = await readFile(path.join(caDirs.get(alg)!, 'root.pem'), 'utf8');
    const sans = await verifyChain(issued.chainPem, root);
    assert.deepEqual(sans, names.ids.map(opensslSan).sort(), what);
    const text = await certificateText(issued.chainPem);
    const ekus = [...(profile.serverAuth ? ['TLS Web Server Authentication'] : []), ...(profile.clientAuth ? ['TLS Web Client Authentication'] : [])];
    const expect: RegExp[] = [
      /Version: 3 \(0x2\)/,
      /X509v3 Basic Constraints: critical\s+CA:FALSE/,
      leaf.startsWith('RSA') ? /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\n/ : /X509v3 Key Usage: critical\s+Digital Signature\n/,
      new RegExp(`X509v3 Extended Key Usage: \\s+${ekus.join(', ')}\\n`),
      /X509v3 Subject Key Identifier: \s+[0-9A-F:]{59}/,
      /X509v3 Authority Key Identifier: \s+(keyid:)?[0-9A-F:]{59}/,
      names.cn ? /X509v3 Subject Alternative Name: \n/ : /X509v3 Subject Alternative Name: critical/,
      /Authority Information Access: \s+OCSP - URI:http:\/\/ocsp\.example\/\s+CA Issuers - URI:http:\/\/ca\.example\/ca\/intermediate\.der/,
      /X509v3 CRL Distribution Points: \s+Full Name:\s+URI:http:\/\/ca\.example\/crl\/1\.crl/,
      names.cn ? new RegExp(`Subject: CN *= *${names.cn.replace(/[.*]/g, '\\$&')}\\n`) : /Subject: *\n/,
      alg.startsWith('rsa') ? /Signature Algorithm: sha256WithRSAEncryption/ : alg === 'ecdsa-p384' ? /Signature Algorithm: ecdsa-with-SHA384/ : /Signature Algorithm: ecdsa-with-SHA256/,
    ];
    for (const re of expect) assert.match(text, re, `${what}: ${re}`);
  }
});
