/**
 * Issue #5: checkCsr on csr-der.ts must answer every CSR as the @peculiar/x509 code did
 * (x509-reference.ts): the same CsrInfo for good CSRs made by that library and by `openssl req`,
 * the same badCSR message for bad ones. Where the strict DER reader refuses what the old code let
 * through, the case says so. A bounded mutation fuzz checks that nothing but badCSR ever escapes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants, sign, webcrypto, type KeyObject, type KeyPairKeyObjectResult } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { NULL, oid, seq, set, tlv } from '../../lib/der.js';
import * as x509 from '../../lib/x509.js';
import { AcmeProblem } from '../../protocol/problems.js';
import { initCa, loadCa, type CertificateAuthority } from './ca.js';
import { importSpki } from './csr-der.js';
import type { CsrInfo } from './types.js';
import { loadReference, type X509Reference } from './x509-reference.js';
import { TEST_KEYS } from '../../../test/helpers/test-keys.js';

const run = promisify(execFile);

type Outcome = { ok: CsrInfo } | { problem: string; detail: string; status: number } | { thrown: string };

async function outcome(f: () => Promise<CsrInfo>): Promise<Outcome> {
  try {
    const info = await f();
    return { ok: { identifiers: info.identifiers, spki: Buffer.from(info.spki) } };
  } catch (e) {
    if (e instanceof AcmeProblem) return { problem: e.type, detail: e.detail, status: e.status };
    return { thrown: String(e) };
  }
}

let dir: string;
let ca: CertificateAuthority;
let caEd: CertificateAuthority;
let ref: X509Reference;
let refEd: X509Reference;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-csr-der-'));
  await initCa(path.join(dir, 'ca'));
  ca = await loadCa(path.join(dir, 'ca'));
  caEd = await loadCa(path.join(dir, 'ca'), { allowEd25519: true });
  ref = await loadReference(path.join(dir, 'ca'));
  refEd = await loadReference(path.join(dir, 'ca'), { allowEd25519: true });
});
after(async () => rm(dir, { recursive: true, force: true }));

/** Old and new answers for one CSR, with and without Ed25519 allowed. */
async function both(der: Buffer, opts: { accountKeySpki?: Buffer } = {}, ed25519 = false): Promise<{ old: Outcome; lean: Outcome }> {
  const [o, n] = ed25519 ? [refEd, caEd] : [ref, ca];
  return { old: await outcome(() => o.checkCsr(der, opts)), lean: await outcome(() => n.checkCsr(der, opts)) };
}

// ------------------------------------------------------------------ keys

const KEYS = TEST_KEYS;
type KeyName = keyof typeof KEYS;
const keys = new Map<KeyName, KeyPairKeyObjectResult>();
function key(k: KeyName): KeyPairKeyObjectResult {
  if (!keys.has(k)) keys.set(k, KEYS[k]());
  return keys.get(k)!;
}
const spkiOf = (k: KeyName): Buffer => key(k).publicKey.export({ type: 'spki', format: 'der' });

async function keyFile(k: KeyName): Promise<string> {
  const f = path.join(dir, `${k.replace(/\W/g, '_')}.pem`);
  await writeFile(f, key(k).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return f;
}

// ------------------------------------------------------------------ CSR makers

let seqNo = 0;
/** `openssl req` with the given key; `args` adds -subj, -addext, digest options. */
async function opensslCsr(k: KeyName, args: string[]): Promise<Buffer> {
  const out = path.join(dir, `req-${seqNo++}.der`);
  await run('openssl', ['req', '-new', '-key', await keyFile(k), '-outform', 'DER', '-out', out, ...args]);
  return readFile(out);
}

const WEBCRYPTO: Partial<Record<KeyName, { importAlg: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams | webcrypto.Algorithm; sign: webcrypto.Algorithm | webcrypto.EcdsaParams }>> = {
  'P-256': { importAlg: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams },
  'P-384': { importAlg: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams },
  'RSA-2048': { importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  'RSA-3072': { importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  Ed25519: { importAlg: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
};

/** A CSR made by @peculiar/x509, as clients using that library make them. */
async function x509Csr(k: KeyName, name: string, sans: x509.JsonGeneralName[]): Promise<Buffer> {
  const w = WEBCRYPTO[k]!;
  const pair = key(k);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pair.privateKey.export({ type: 'pkcs8', format: 'der' }), w.importAlg, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', spkiOf(k), w.importAlg, true, ['verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys: { privateKey, publicKey },
    signingAlgorithm: w.sign,
    extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
  });
  return Buffer.from(csr.rawData);
}

const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const san = (...names: Buffer[]): Buffer =>
  tlv(0xa0, seq(oid('1.2.840.113549.1.9.14'), set(seq(seq(oid('2.5.29.17'), tlv(0x04, seq(...names)))))));
const dnsName = (v: string): Buffer => tlv(0x82, Buffer.from(v, 'latin1'));
const cnName = (value: Buffer): Buffer => seq(set(seq(oid('2.5.4.3'), value)));

/** A CSR put together by hand and signed with `k`, for shapes no tool makes. */
function craft(
  k: KeyName,
  o: {
    version?: Buffer;
    subject?: Buffer;
    attributes?: Buffer | null;
    sigAlg?: Buffer;
    digest?: string | null;
    signer?: KeyObject | { key: KeyObject; padding: number; saltLength: number };
  } = {},
): Buffer {
  const info = seq(o.version ?? tlv(0x02, Buffer.from([0])), o.subject ?? seq(), spkiOf(k), ...(o.attributes === null ? [] : [o.attributes ?? san(dnsName('crafted.example.com'))]));
  const signature = sign(o.digest === undefined ? 'sha256' : o.digest, info, o.signer ?? key(k).privateKey);
  return seq(info, o.sigAlg ?? seq(oid(OID_ECDSA_SHA256)), tlv(0x03, Buffer.from([0]), signature));
}

// ------------------------------------------------------------------ good CSRs

describe('good CSRs get the CsrInfo the @peculiar/x509 code gave', () => {
  const goodKeys: KeyName[] = ['P-256', 'P-384', 'RSA-2048', 'RSA-3072', 'Ed25519'];
  const openssl: Array<[string, string[]]> = [
    ['SANs only, empty subject', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com,DNS:*.example.com,IP:192.0.2.1,IP:2001:db8::1']],
    ['a CN only', ['-subj', '/CN=cn-only.example.com']],
    ['a CN and other SANs, upper case', ['-subj', '/O=Org/CN=www.example.com', '-addext', 'subjectAltName=DNS:WWW.Example.COM,DNS:other.example.com']],
    ['an IPv6 CN', ['-subj', '/CN=2001:db8::7', '-addext', 'subjectAltName=DNS:v6.example.com']],
    ['an IPv4 CN and a UTF8String O', ['-utf8', '-subj', '/O=Bücher/CN=192.0.2.44']],
  ];
  for (const k of goodKeys) {
    for (const [name, args] of openssl) {
      const digests = k === 'Ed25519' ? [[]] : [['-sha256'], ['-sha384'], ['-sha512']];
      for (const digest of digests) {
        test(`openssl req, ${k}${digest.length ? ` ${digest[0]}` : ''}, ${name}`, async () => {
          const der = await opensslCsr(k, [...args, ...digest]);
          const r = await both(der, {}, k === 'Ed25519');
          assert.deepEqual(r.lean, r.old);
          assert.ok('ok' in r.lean, JSON.stringify(r.lean));
        });
      }
    }
    test(`@peculiar/x509, ${k}, SANs with an empty subject and with a CN`, async () => {
      for (const [subject, sans] of [
        ['', [{ type: 'dns', value: 'x509.example.com' }, { type: 'ip', value: '198.51.100.3' }]],
        ['CN=cn.example.com, O=Anvil', [{ type: 'dns', value: 'san.example.com' }, { type: 'ip', value: '2001:db8::3' }]],
        ['CN=only-cn.example.com', []],
      ] as Array<[string, x509.JsonGeneralName[]]>) {
        const der = await x509Csr(k, subject, sans);
        const r = await both(der, {}, k === 'Ed25519');
        assert.deepEqual(r.lean, r.old, subject);
        assert.ok('ok' in r.lean, JSON.stringify(r.lean));
      }
    });
  }

  test('an RSA-PSS signature (openssl -sigopt rsa_padding_mode:pss) is accepted as before', async () => {
    for (const salt of ['digest', '32', '0']) {
      const der = await opensslCsr('RSA-2048', ['-subj', '/', '-addext', 'subjectAltName=DNS:pss.example.com', '-sha256', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', `rsa_pss_saltlen:${salt}`]);
      const r = await both(der);
      assert.deepEqual(r.lean, r.old);
      assert.ok('ok' in r.lean, JSON.stringify(r.lean));
    }
  });

  test('unusual attribute string types decode as before', async () => {
    const bmp = (s: string) => tlv(0x1e, Buffer.from(s, 'utf16le').swap16());
    const subjects = [
      cnName(bmp('bmp.example.com')),
      cnName(tlv(0x1c, Buffer.from([...'u.example.com'].flatMap((c) => [0, 0, 0, c.charCodeAt(0)])))),
      cnName(tlv(0x14, Buffer.from('teletex.example.com'))),
      cnName(tlv(0x16, Buffer.from('ia5.example.com'))),
      cnName(tlv(0x0c, Buffer.from('\ufeffbom.example.com', 'utf8'))),
      seq(set(seq(oid('2.5.4.3'), tlv(0x13, Buffer.from('one.example.com'))), seq(oid('2.5.4.10'), tlv(0x13, Buffer.from('Multi')))), set(seq(oid('2.5.4.3'), tlv(0x13, Buffer.from('two.example.com'))))),
    ];
    for (const subject of subjects) {
      const r = await both(craft('P-256', { subject }));
      assert.deepEqual(r.lean, r.old, subject.toString('hex'));
    }
  });

  test('otherName SANs @peculiar/x509 skipped (unknown types, a short GUID, a UPN that is no string) are still skipped', async () => {
    const attributes = san(
      dnsName('kept.example.com'),
      tlv(0xa0, oid('1.3.6.1.5.5.7.8.7'), tlv(0xa0, tlv(0x16, Buffer.from('_x.example.com')))),
      tlv(0xa0, oid('1.3.6.1.4.1.311.25.1'), tlv(0xa0, tlv(0x04, Buffer.alloc(3)))),
      tlv(0xa0, oid('1.3.6.1.4.1.311.20.2.3'), tlv(0xa0, tlv(0x02, Buffer.from([1])))),
    );
    const r = await both(craft('P-256', { attributes }));
    assert.deepEqual(r.lean, r.old);
    assert.ok('ok' in r.lean && r.lean.ok.identifiers.length === 1);
  });

  test('a CSR without the attributes field is read as before', async () => {
    const r = await both(craft('P-256', { subject: cnName(tlv(0x13, Buffer.from('noattrs.example.com'))), attributes: null }));
    assert.deepEqual(r.lean, r.old);
    assert.ok('ok' in r.lean);
  });
});

// ------------------------------------------------------------------ bad CSRs

interface BadCase {
  name: string;
  make: () => Promise<Buffer> | Buffer;
  /** The detail both implementations give. */
  detail: string | RegExp;
  account?: () => Buffer;
  ed25519?: boolean;
  /**
   * The old code did not give this badCSR: it accepted the CSR ('accepted') or threw something
   * other than an AcmeProblem ('threw'). The strict reader refuses it; the test checks both facts.
   */
  before?: 'accepted' | 'threw';
}

const flip = (b: Buffer, at: number): Buffer => {
  const c = Buffer.from(b);
  c[at] = c[at]! ^ 0x55;
  return c;
};
const valid = () => craft('P-256');
const NOT_DER = 'the CSR does not parse as a PKCS#10 request (DER)';
const NOT_VERIFIED = "the CSR's signature does not verify";
const pssParams = (hashOid: string | null, salt: number) =>
  seq(
    ...(hashOid ? [tlv(0xa0, seq(oid(hashOid), NULL)), tlv(0xa1, seq(oid('1.2.840.113549.1.1.8'), seq(oid(hashOid), NULL)))] : []),
    tlv(0xa2, tlv(0x02, Buffer.from([salt]))),
  );

const BAD: BadCase[] = [
  { name: 'garbage bytes', make: () => Buffer.from('garbage'), detail: NOT_DER },
  { name: 'an empty body', make: () => Buffer.alloc(0), detail: NOT_DER },
  { name: 'a truncated CSR', make: () => valid().subarray(0, -7), detail: NOT_DER },
  { name: 'trailing garbage after the CSR', make: () => Buffer.concat([valid(), Buffer.from([0, 0])]), detail: NOT_DER, before: 'accepted' },
  {
    name: 'a length in the long form where the short one fits',
    make: () => {
      const d = valid();
      return Buffer.concat([Buffer.from([0x30, 0x81, d[1]!]), d.subarray(2)]);
    },
    detail: NOT_DER,
  },
  { name: 'an indefinite length', make: () => Buffer.concat([Buffer.from([0x30, 0x80]), valid().subarray(2), Buffer.from([0, 0])]), detail: NOT_DER },
  { name: 'version 2 (not v1)', make: () => craft('P-256', { version: tlv(0x02, Buffer.from([1])) }), detail: NOT_DER, before: 'accepted' },
  { name: 'a broken signature', make: () => flip(valid(), valid().length - 5), detail: NOT_VERIFIED },
  { name: 'a name changed after signing', make: () => flip(valid(), valid().indexOf(Buffer.from('crafted'))), detail: NOT_VERIFIED },
  { name: 'an RSA signature labelled ECDSA', make: () => craft('RSA-2048', { sigAlg: seq(oid(OID_ECDSA_SHA256)) }), detail: NOT_VERIFIED },
  { name: 'an ECDSA signature labelled RSA', make: () => craft('P-256', { sigAlg: seq(oid('1.2.840.113549.1.1.11'), NULL) }), detail: NOT_VERIFIED },
  { name: 'an Ed25519 signature labelled ECDSA', make: () => craft('Ed25519', { digest: null }), detail: NOT_VERIFIED, ed25519: true },
  {
    name: 'SHA-1 (openssl req -sha1)',
    make: () => opensslCsr('RSA-2048', ['-subj', '/', '-sha1', '-addext', 'subjectAltName=DNS:a.example.com']),
    detail: 'the CSR is signed with SHA-1; use SHA-256, SHA-384 or SHA-512',
  },
  { name: 'ecdsa-with-SHA224', make: () => craft('P-256', { digest: 'sha224', sigAlg: seq(oid('1.2.840.10045.4.3.1')) }), detail: /an unknown digest/ },
  { name: 'md5WithRSAEncryption', make: () => craft('RSA-2048', { digest: 'md5', sigAlg: seq(oid('1.2.840.113549.1.1.4'), NULL) }), detail: /an unknown digest/ },
  {
    name: 'RSA-PSS without parameters',
    make: () => craft('RSA-2048', { sigAlg: seq(oid('1.2.840.113549.1.1.10')) }),
    detail: 'the CSR is signed with an unknown digest; use SHA-256, SHA-384 or SHA-512',
  },
  {
    name: 'RSA-PSS with the default (SHA-1) hash',
    make: () => craft('RSA-2048', { sigAlg: seq(oid('1.2.840.113549.1.1.10'), pssParams(null, 20)), digest: 'sha1', signer: { key: key('RSA-2048').privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 } }),
    detail: 'the CSR is signed with SHA-1; use SHA-256, SHA-384 or SHA-512',
  },
  {
    name: 'RSA-PSS whose salt length is not the one used',
    make: () =>
      craft('RSA-2048', {
        sigAlg: seq(oid('1.2.840.113549.1.1.10'), pssParams('2.16.840.1.101.3.4.2.1', 20)),
        signer: { key: key('RSA-2048').privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
      }),
    detail: NOT_VERIFIED,
  },
  {
    // OpenSSL would read -2 as "any salt length"; the old WebCrypto path refused it too.
    name: 'RSA-PSS with a negative salt length',
    make: () =>
      craft('RSA-2048', {
        sigAlg: seq(oid('1.2.840.113549.1.1.10'), pssParams('2.16.840.1.101.3.4.2.1', -2)),
        signer: { key: key('RSA-2048').privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
      }),
    detail: NOT_VERIFIED,
  },
  { name: 'a P-521 key', make: () => opensslCsr('P-521', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']), detail: 'EC curve secp521r1 is not supported; use P-256 or P-384' },
  { name: 'a secp256k1 key', make: () => opensslCsr('secp256k1', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']), detail: 'EC curve secp256k1 is not supported; use P-256 or P-384' },
  { name: 'an RSA 1024 key', make: () => opensslCsr('RSA-1024', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']), detail: 'RSA keys must have 2048 to 8192 bits, not 1024' },
  { name: 'an RSA key with e=3', make: () => opensslCsr('RSA-2048 e=3', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']), detail: 'RSA keys must use the public exponent 65537' },
  {
    name: 'a DSA key (dsa-with-SHA256 is refused as a digest first)',
    make: () => opensslCsr('DSA', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']),
    detail: 'the CSR is signed with an unknown digest; use SHA-256, SHA-384 or SHA-512',
  },
  {
    name: 'a DSA key under an ECDSA label',
    make: () => craft('DSA'),
    detail: 'dsa keys are not supported; use ECDSA P-256/P-384 or RSA',
  },
  {
    name: 'an Ed25519 key where Ed25519 is off',
    make: () => opensslCsr('Ed25519', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']),
    detail: 'ed25519 keys are not supported; use ECDSA P-256/P-384 or RSA (this CA does not accept Ed25519)',
  },
  {
    name: 'a URI SAN',
    make: () => opensslCsr('P-256', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com,URI:https://a.example.com/']),
    detail: 'the CSR asks for a url name; only DNS names and IP addresses are issued',
  },
  {
    name: 'an email SAN',
    make: () => opensslCsr('P-256', ['-subj', '/', '-addext', 'subjectAltName=email:x@example.com,DNS:a.example.com']),
    detail: 'the CSR asks for a email name; only DNS names and IP addresses are issued',
  },
  {
    name: 'a directoryName SAN',
    make: () => craft('P-256', { attributes: san(dnsName('a.example.com'), tlv(0xa4, cnName(tlv(0x13, Buffer.from('x'))))) }),
    detail: 'the CSR asks for a dn name; only DNS names and IP addresses are issued',
  },
  {
    name: 'a registeredID SAN',
    make: () => craft('P-256', { attributes: san(tlv(0x88, Buffer.from([0x2a, 0x03]))) }),
    detail: 'the CSR asks for a id name; only DNS names and IP addresses are issued',
  },
  {
    name: 'a UPN otherName SAN',
    make: () => craft('P-256', { attributes: san(tlv(0xa0, oid('1.3.6.1.4.1.311.20.2.3'), tlv(0xa0, tlv(0x0c, Buffer.from('u@example.com'))))) }),
    detail: 'the CSR asks for a upn name; only DNS names and IP addresses are issued',
  },
  {
    name: 'a GUID otherName SAN',
    make: () => craft('P-256', { attributes: san(tlv(0xa0, oid('1.3.6.1.4.1.311.25.1'), tlv(0xa0, tlv(0x04, Buffer.alloc(16, 0xab))))) }),
    detail: 'the CSR asks for a guid name; only DNS names and IP addresses are issued',
  },
  {
    name: 'only an otherName SAN of a type @peculiar/x509 skipped',
    make: () => craft('P-256', { attributes: san(tlv(0xa0, oid('1.3.6.1.5.5.7.8.7'), tlv(0xa0, tlv(0x16, Buffer.from('_x.example.com'))))) }),
    detail: 'the CSR names no DNS name or IP address',
  },
  {
    name: 'an x400Address SAN',
    make: () => craft('P-256', { attributes: san(dnsName('a.example.com'), tlv(0xa3, seq())) }),
    detail: 'the CSR asks for a x400Address name; only DNS names and IP addresses are issued',
    before: 'threw',
  },
  {
    name: 'an ediPartyName SAN',
    make: () => craft('P-256', { attributes: san(dnsName('a.example.com'), tlv(0xa5, tlv(0xa1, tlv(0x0c, Buffer.from('party'))))) }),
    detail: 'the CSR asks for a ediPartyName name; only DNS names and IP addresses are issued',
    before: 'threw',
  },
  {
    name: 'a subjectAltName that is not GeneralNames',
    make: () => craft('P-256', { attributes: tlv(0xa0, seq(oid('1.2.840.113549.1.9.14'), set(seq(seq(oid('2.5.29.17'), tlv(0x04, tlv(0x04, Buffer.from('x')))))))) }),
    detail: NOT_DER,
    before: 'threw',
  },
  {
    name: 'an iPAddress SAN of 8 octets (a name constraint, not an address)',
    make: () => craft('P-256', { attributes: san(tlv(0x87, Buffer.from([192, 0, 2, 0, 255, 255, 255, 0]))) }),
    detail: 'the CSR has invalid names: "192.0.2.0/24"',
  },
  {
    name: 'an iPAddress SAN of 5 octets',
    make: () => craft('P-256', { attributes: san(tlv(0x87, Buffer.from([1, 2, 3, 4, 5]))) }),
    detail: 'the CSR has invalid names: "0102030405"',
  },
  {
    name: 'a CN with an invalid name',
    make: () => opensslCsr('P-256', ['-subj', '/CN=bad_name.example.com', '-addext', 'subjectAltName=DNS:a.example.com']),
    detail: 'the CSR has invalid names: "bad_name.example.com"',
  },
  {
    name: 'SANs and a CN that are invalid',
    make: () => opensslCsr('P-256', ['-subj', '/CN=999.1.1.1', '-addext', 'subjectAltName=DNS:-x.example.com,DNS:ok.example.com,DNS:single']),
    detail: 'the CSR has invalid names: "-x.example.com", "single", "999.1.1.1"',
  },
  { name: 'a CN of another string type', make: () => craft('P-256', { subject: cnName(tlv(0x12, Buffer.from('123'))) }), detail: 'the CSR has invalid names: "1203313233"' },
  { name: 'a BMPString CN of odd length', make: () => craft('P-256', { subject: cnName(tlv(0x1e, Buffer.from([0, 0x61, 0]))) }), detail: NOT_DER },
  { name: 'no names at all', make: () => opensslCsr('P-256', ['-subj', '/O=Nobody']), detail: 'the CSR names no DNS name or IP address' },
  {
    name: 'the account key',
    make: () => opensslCsr('P-384', ['-subj', '/', '-addext', 'subjectAltName=DNS:a.example.com']),
    account: () => spkiOf('P-384'),
    detail: 'the CSR uses the account key; certificates need a key of their own',
  },
];

describe('bad CSRs get the badCSR the @peculiar/x509 code gave', () => {
  for (const c of BAD) {
    test(`a CSR with ${c.name}${c.before ? ` (the old code ${c.before === 'accepted' ? 'accepted it' : 'threw a plain error'})` : ''}`, async () => {
      const der = await c.make();
      const r = await both(der, c.account ? { accountKeySpki: c.account() } : {}, c.ed25519);
      assert.ok('problem' in r.lean, JSON.stringify(r.lean));
      assert.equal(r.lean.problem, 'badCSR');
      assert.equal(r.lean.status, 400);
      if (typeof c.detail === 'string') assert.equal(r.lean.detail, c.detail);
      else assert.match(r.lean.detail, c.detail);
      if (c.before === 'accepted') assert.ok('ok' in r.old, JSON.stringify(r.old));
      else if (c.before === 'threw') assert.ok('thrown' in r.old, JSON.stringify(r.old));
      else assert.deepEqual(r.lean, r.old);
    });
  }
});

// ------------------------------------------------------------------ keys

test('the JWK fast path gives the KeyObject the SPKI decoder gives, and refuses what it refuses', () => {
  for (const k of ['P-256', 'P-384', 'RSA-2048', 'Ed25519', 'RSA-2048 e=3', 'secp256k1'] as KeyName[]) {
    const spki = spkiOf(k);
    const a = importSpki(spki);
    assert.ok(a.equals(key(k).publicKey), k);
    assert.deepEqual(a.asymmetricKeyDetails, key(k).publicKey.asymmetricKeyDetails, k);
  }
  // A P-256 point off the curve, and one with x >= p (a non-canonical encoding of nothing).
  const p256 = spkiOf('P-256');
  assert.throws(() => importSpki(flip(p256, p256.length - 1)));
  const big = Buffer.from(p256);
  big.fill(0xff, p256.length - 64, p256.length - 32);
  assert.throws(() => importSpki(big));
});

// ------------------------------------------------------------------ fuzz

test('2000 random mutations of valid CSRs give badCSR and nothing else, and none is accepted', async () => {
  // A fixed-seed generator (xorshift32), so a failure can be replayed.
  let s = 0x9e3779b9;
  const rnd = (n: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const seeds = [
    await opensslCsr('P-256', ['-subj', '/CN=fuzz.example.com', '-addext', 'subjectAltName=DNS:fuzz.example.com,IP:192.0.2.1']),
    await x509Csr('RSA-2048', 'CN=fuzz.example.com', [{ type: 'dns', value: 'fuzz.example.com' }]),
    await x509Csr('Ed25519', '', [{ type: 'ip', value: '2001:db8::5' }]),
  ];
  for (const seed of seeds) assert.ok('ok' in (await outcome(() => caEd.checkCsr(seed))));
  const counts = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const seed = seeds[i % seeds.length]!;
    let m: Buffer;
    const at = rnd(seed.length);
    switch (rnd(4)) {
      case 0:
        m = Buffer.from(seed);
        m[at] = m[at]! ^ (1 + rnd(255));
        break;
      case 1:
        m = Buffer.concat([seed.subarray(0, at), Buffer.from([rnd(256)]), seed.subarray(at)]);
        break;
      case 2:
        m = Buffer.concat([seed.subarray(0, at), seed.subarray(at + 1 + rnd(4))]);
        break;
      default:
        m = seed.subarray(0, at);
    }
    const r = await outcome(() => caEd.checkCsr(m));
    assert.ok('problem' in r, `mutation ${i} at ${at}: ${JSON.stringify(r).slice(0, 300)}`);
    assert.equal(r.problem, 'badCSR', `mutation ${i}`);
    counts.set(r.detail.slice(0, 40), (counts.get(r.detail.slice(0, 40)) ?? 0) + 1);
  }
  // Most mutations break the DER; some must reach the signature check.
  assert.ok((counts.get(NOT_VERIFIED.slice(0, 40)) ?? 0) > 50, JSON.stringify([...counts]));
});
