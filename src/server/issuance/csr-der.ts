/**
 * A strict PKCS#10 (RFC 2986) reader for CertificateAuthority.checkCsr, and the few facts the checks
 * need: the signed bytes, the signature and its algorithm, the key, the subject CNs and the SANs of
 * the extensionRequest (RFC 2985 §5.4.2). It replaced @peculiar/x509's Pkcs10CertificateRequest on
 * the issuance hot path (issue #5: 1.1 ms a CSR); csr-der.test.ts checks that every CSR gets the
 * answer the old code gave (x509-reference.ts), for CSRs made by that library and by openssl.
 *
 * Only DER is read (lib/der.ts); anything else throws DerError. Values are decoded the way the old
 * code decoded them, so the names and messages a client sees do not change.
 */
import { constants, createPublicKey, type KeyObject } from 'node:crypto';
import {
  DerError,
  booleanOf,
  bytesOf,
  childrenOf,
  contentOf,
  expectTag,
  nullOf,
  octetsOfBitString,
  oidOf,
  readDer,
  readTlv,
  smallIntegerOf,
  unsignedIntegerOf,
  type Tlv,
} from '../../lib/der.js';
import { AcmeProblem } from '../../protocol/problems.js';

const OID_CN = '2.5.4.3';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const OID_P256 = '1.2.840.10045.3.1.7';
const OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const OID_RSASSA_PSS = '1.2.840.113549.1.1.10';
const OID_ED25519 = '1.3.101.112';
const OID_GUID = '1.3.6.1.4.1.311.25.1';
const OID_UPN = '1.3.6.1.4.1.311.20.2.3';

/** One GeneralName of the CSR's subjectAltName (RFC 5280 §4.2.1.6). */
export type CsrName =
  | { type: 'dns'; value: string }
  | { type: 'ip'; value: string }
  /** Every other kind, named as the error message names it ("email", "url", "dn", ...). */
  | { type: 'other'; name: string };

export interface ParsedCsr {
  /** DER CertificationRequestInfo: the bytes the signature covers. */
  info: Buffer;
  /** DER SubjectPublicKeyInfo, verbatim. */
  spki: Buffer;
  /** The values of every CN attribute of the subject, in order. */
  commonNames: string[];
  /** The first subjectAltName of the first extensionRequest, in order; empty without one. */
  names: CsrName[];
  signatureAlgorithm: { oid: string; parameters: Buffer | null };
  signature: Buffer;
}

/** Reads a CSR; throws DerError when it is not a DER CertificationRequest. */
export function parseCsr(der: Buffer): ParsedCsr {
  const top = expectTag(readDer(der), 0x30, 'CertificationRequest');
  const parts = childrenOf(der, top);
  if (parts.length !== 3) throw new DerError('CertificationRequest has not three parts');
  const [infoT, algT, sigT] = parts as [Tlv, Tlv, Tlv];
  const f = childrenOf(der, expectTag(infoT, 0x30, 'certificationRequestInfo'));
  // RFC 2986 §4.1: version is 0 (v1), subject, subjectPKInfo and [0] attributes. @peculiar/x509 let
  // the attributes be absent, so this does too.
  if (f.length < 3 || f.length > 4) throw new DerError('certificationRequestInfo has the wrong number of parts');
  if (smallIntegerOf(der, f[0]!) !== 0) throw new DerError('CSR version is not v1');
  const spkiT = expectTag(f[2], 0x30, 'subjectPKInfo');
  checkSpki(der, spkiT);
  const attributes = f[3] ? childrenOf(der, expectTag(f[3], 0xa0, 'attributes')) : [];
  return {
    info: bytesOf(der, infoT),
    spki: bytesOf(der, spkiT),
    commonNames: commonNames(der, expectTag(f[1], 0x30, 'subject')),
    names: extensionRequestNames(der, attributes),
    signatureAlgorithm: algorithmIdentifier(der, algT),
    signature: octetsOfBitString(der, expectTag(sigT, 0x03, 'signature')),
  };
}

function algorithmIdentifier(der: Buffer, t: Tlv): { oid: string; parameters: Buffer | null } {
  const [o, params, ...rest] = childrenOf(der, expectTag(t, 0x30, 'AlgorithmIdentifier'));
  if (rest.length) throw new DerError('AlgorithmIdentifier has extra parts');
  return { oid: oidOf(der, o), parameters: params ? bytesOf(der, params) : null };
}

function checkSpki(der: Buffer, t: Tlv): void {
  const [alg, key, ...rest] = childrenOf(der, t);
  if (!alg || !key || rest.length) throw new DerError('SubjectPublicKeyInfo has the wrong number of parts');
  algorithmIdentifier(der, alg);
  octetsOfBitString(der, expectTag(key, 0x03, 'subjectPublicKey'));
}

/** Name (RFC 5280 §4.1.2.4): SEQUENCE OF RelativeDistinguishedName, each a SET OF type and value. */
function commonNames(der: Buffer, name: Tlv): string[] {
  const out: string[] = [];
  for (const rdn of childrenOf(der, name)) {
    for (const atv of childrenOf(der, expectTag(rdn, 0x31, 'RelativeDistinguishedName'))) {
      const [type, value, ...rest] = childrenOf(der, expectTag(atv, 0x30, 'AttributeTypeAndValue'));
      if (!value || rest.length) throw new DerError('AttributeTypeAndValue has the wrong number of parts');
      const isCn = oidOf(der, type) === OID_CN;
      // Every value is decoded, not only CNs: the old parser refused a CSR with an undecodable O or OU too.
      const text = directoryString(der, value);
      if (isCn) out.push(text);
    }
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The text of an attribute value as @peculiar/x509 gave it: the string types decoded (invalid
 * UTF-8 read byte by byte, UniversalString by the low 16 bits of each character as asn1js does),
 * NULL as "", any other type as the hex of its whole encoding.
 */
function directoryString(der: Buffer, t: Tlv): string {
  const c = contentOf(der, t);
  switch (t.tag) {
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x16: // IA5String
      return c.toString('latin1');
    case 0x0c: // UTF8String
      try {
        return utf8.decode(c);
      } catch {
        return c.toString('latin1');
      }
    case 0x1e: {
      // BMPString: UTF-16BE.
      if (c.length % 2) throw new DerError('BMPString of odd length');
      let s = '';
      for (let i = 0; i < c.length; i += 2) s += String.fromCharCode(c.readUInt16BE(i));
      return s;
    }
    case 0x1c: {
      // UniversalString: UCS-4BE.
      if (c.length % 4) throw new DerError('UniversalString of a length not a multiple of 4');
      let s = '';
      for (let i = 0; i < c.length; i += 4) s += String.fromCharCode(c.readUInt16BE(i + 2));
      return s;
    }
    case 0x05:
      nullOf(t);
      return '';
    default:
      return bytesOf(der, t).toString('hex');
  }
}

/** SANs of the first extensionRequest attribute's first value, as @peculiar/x509 looked them up. */
function extensionRequestNames(der: Buffer, attributes: Tlv[]): CsrName[] {
  let extensions: Tlv | undefined;
  let found = false;
  for (const a of attributes) {
    const [type, values, ...rest] = childrenOf(der, expectTag(a, 0x30, 'Attribute'));
    if (!values || rest.length) throw new DerError('Attribute has the wrong number of parts');
    const vs = childrenOf(der, expectTag(values, 0x31, 'Attribute values'));
    if (!found && oidOf(der, type) === OID_EXTENSION_REQUEST) {
      found = true;
      extensions = vs[0];
    }
  }
  if (!extensions) return [];
  for (const e of childrenOf(der, expectTag(extensions, 0x30, 'Extensions'))) {
    const parts = childrenOf(der, expectTag(e, 0x30, 'Extension'));
    if (parts.length < 2 || parts.length > 3) throw new DerError('Extension has the wrong number of parts');
    if (parts.length === 3) booleanOf(der, parts[1]!);
    const value = expectTag(parts[parts.length - 1], 0x04, 'extnValue');
    if (oidOf(der, parts[0]) !== OID_SUBJECT_ALT_NAME) continue;
    const inner = readTlv(der, value.contentStart, value.end);
    if (inner.end !== value.end) throw new DerError('trailing bytes in subjectAltName');
    return childrenOf(der, expectTag(inner, 0x30, 'GeneralNames')).flatMap((n) => generalName(der, n) ?? []);
  }
  return [];
}

/**
 * One GeneralName, or null for the otherNames @peculiar/x509 skipped (any but a well-formed GUID
 * or UPN), which the old code never saw. x400Address and ediPartyName made that library throw,
 * which became an internal error; they are refused like every other kind now.
 */
function generalName(der: Buffer, n: Tlv): CsrName | null {
  switch (n.tag) {
    case 0x82: // dNSName [2] IA5String
      return { type: 'dns', value: contentOf(der, n).toString('latin1') };
    case 0x87: // iPAddress [7] OCTET STRING
      return { type: 'ip', value: ipText(contentOf(der, n)) };
    case 0x81:
      return { type: 'other', name: 'email' };
    case 0x86:
      return { type: 'other', name: 'url' };
    case 0x88:
      return { type: 'other', name: 'id' };
    case 0xa4:
      return { type: 'other', name: 'dn' };
    case 0xa0: {
      // OtherName ::= SEQUENCE { type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY }
      const [typeId, wrapper, ...rest] = childrenOf(der, n);
      if (rest.length) throw new DerError('otherName has extra parts');
      const value = childrenOf(der, expectTag(wrapper, 0xa0, 'otherName value'));
      if (value.length !== 1) throw new DerError('otherName value is not one element');
      const id = oidOf(der, typeId);
      const v = value[0]!;
      if (id === OID_GUID && v.tag === 0x04 && v.end - v.contentStart === 16) return { type: 'other', name: 'guid' };
      // A UPN is a DirectoryString (TeletexString, PrintableString, UniversalString, UTF8String, BMPString).
      if (id === OID_UPN && [0x14, 0x13, 0x1c, 0x0c, 0x1e].includes(v.tag)) return { type: 'other', name: 'upn' };
      return null;
    }
    case 0xa3:
      return { type: 'other', name: 'x400Address' };
    case 0xa5:
      return { type: 'other', name: 'ediPartyName' };
    default:
      throw new DerError(`0x${n.tag.toString(16)} is not a GeneralName`);
  }
}

/**
 * Text of an iPAddress as @peculiar/x509 wrote it, so that an address that is not one shows in the
 * error message as before: 4 octets dotted, 16 as IPv6, 8 and 32 as address/prefix, others as hex.
 */
function ipText(b: Buffer): string {
  const v6 = (x: Buffer) => {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(x.readUInt16BE(i).toString(16));
    return groups.join(':');
  };
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) return v6(b);
  if (b.length === 8 || b.length === 32) {
    if (b.every((x) => x === 0)) return b.length === 8 ? '0.0.0.0/0' : '::/0';
    const half = b.length / 2;
    let prefix = 0;
    for (const x of b.subarray(half)) for (let v = x; v; v >>= 1) prefix += v & 1;
    return `${b.length === 8 ? [...b.subarray(0, half)].join('.') : v6(b.subarray(0, half))}/${prefix}`;
  }
  return b.toString('hex');
}

// ------------------------------------------------------------------ signature algorithms

/** How a CSR's signature is checked: the digest's name as the error message gives it, and node:crypto's view. */
export interface CsrSignatureAlgorithm {
  /** 'Ed25519', or the digest's name ('SHA-256', 'SHA-1', ...), or '' when none is known. */
  hash: string;
  ed25519: boolean;
  /** The key type the signature needs (KeyObject.asymmetricKeyType). */
  keyType?: 'ec' | 'rsa' | 'ed25519';
  digest?: string | null;
  pssSaltLength?: number;
}

const HASHES: Record<string, string> = {
  '1.3.14.3.2.26': 'SHA-1',
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};

/** RFC 5758 §3.2 ECDSA, RFC 4055 §5 RSA PKCS#1 v1.5, RFC 8410 Ed25519; SHA-1 kept to name it when refusing it. */
const ALGORITHMS: Record<string, { keyType: 'ec' | 'rsa' | 'ed25519'; hash: string }> = {
  '1.2.840.10045.4.1': { keyType: 'ec', hash: 'SHA-1' },
  '1.2.840.10045.4.3.2': { keyType: 'ec', hash: 'SHA-256' },
  '1.2.840.10045.4.3.3': { keyType: 'ec', hash: 'SHA-384' },
  '1.2.840.10045.4.3.4': { keyType: 'ec', hash: 'SHA-512' },
  '1.2.840.113549.1.1.5': { keyType: 'rsa', hash: 'SHA-1' },
  '1.2.840.113549.1.1.11': { keyType: 'rsa', hash: 'SHA-256' },
  '1.2.840.113549.1.1.12': { keyType: 'rsa', hash: 'SHA-384' },
  '1.2.840.113549.1.1.13': { keyType: 'rsa', hash: 'SHA-512' },
  [OID_ED25519]: { keyType: 'ed25519', hash: '' },
};

const nodeDigest = (hash: string): string => hash.replace('-', '').toLowerCase();

/** The CSR's signatureAlgorithm; throws DerError for RSASSA-PSS parameters that do not parse. */
export function csrSignatureAlgorithm(alg: ParsedCsr['signatureAlgorithm']): CsrSignatureAlgorithm {
  if (alg.oid === OID_RSASSA_PSS) return pssAlgorithm(alg.parameters);
  const a = ALGORITHMS[alg.oid];
  if (!a) return { hash: '', ed25519: false };
  if (a.keyType === 'ed25519') return { hash: '', ed25519: true, keyType: 'ed25519', digest: null };
  return { hash: a.hash, ed25519: false, keyType: a.keyType, digest: nodeDigest(a.hash) };
}

/**
 * RFC 4055 §3.1 RSASSA-PSS-params: [0] hashAlgorithm (default SHA-1), [1] maskGenAlgorithm,
 * [2] saltLength (default 20), [3] trailerField. MGF1 is taken to use the signature's hash, as
 * WebCrypto (and so the old code) did.
 */
function pssAlgorithm(params: Buffer | null): CsrSignatureAlgorithm {
  if (!params || (params[0] === 0x05 && params.length === 2)) return { hash: '', ed25519: false };
  const top = expectTag(readDer(params), 0x30, 'RSASSA-PSS-params');
  let hash = 'SHA-1';
  let saltLength = 20;
  for (const p of childrenOf(params, top)) {
    const inner = readTlv(params, p.contentStart, p.end);
    if (inner.end !== p.end) throw new DerError('trailing bytes in RSASSA-PSS-params');
    if (p.tag === 0xa0) {
      const o = oidOf(params, childrenOf(params, expectTag(inner, 0x30, 'hashAlgorithm'))[0]);
      hash = HASHES[o] ?? o;
    } else if (p.tag === 0xa2) {
      saltLength = smallIntegerOf(params, inner);
    } else if (p.tag !== 0xa1 && p.tag !== 0xa3) {
      throw new DerError('bad RSASSA-PSS-params');
    }
  }
  return { hash, ed25519: false, keyType: 'rsa', digest: nodeDigest(hash), pssSaltLength: saltLength };
}

// ------------------------------------------------------------------ keys

/** P-256's field prime: coordinates at or above it are not canonical (SEC 1 §2.3.5). */
const P256_P = Buffer.from('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff', 'hex');

/**
 * The CSR's key as a KeyObject. node:crypto's SPKI decoder costs 75-150 µs on OpenSSL 3, its JWK
 * import 4-6 µs for RSA and Ed25519 and half the SPKI cost for P-256 (but three times it for
 * P-384), so the common shapes are read here and imported as JWK; everything else, including
 * every shape this does not fully check, goes to the SPKI decoder as before.
 */
export function importSpki(spki: Buffer): KeyObject {
  const fast = jwkOf(spki);
  if (fast) {
    try {
      return createPublicKey({ key: fast, format: 'jwk' });
    } catch {
      // Let the SPKI decoder give its verdict.
    }
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function jwkOf(spki: Buffer): Record<string, string> | null {
  try {
    const [alg, key] = childrenOf(spki, readDer(spki));
    const [o, params, ...rest] = childrenOf(spki, alg!);
    if (rest.length) return null;
    const algorithm = oidOf(spki, o);
    const bits = octetsOfBitString(spki, key!);
    if (algorithm === OID_EC_PUBLIC_KEY && params?.tag === 0x06 && oidOf(spki, params) === OID_P256) {
      if (bits.length !== 65 || bits[0] !== 0x04) return null;
      const x = bits.subarray(1, 33);
      const y = bits.subarray(33);
      if (x.compare(P256_P) >= 0 || y.compare(P256_P) >= 0) return null;
      return { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') };
    }
    if (algorithm === OID_RSA_ENCRYPTION && params) {
      nullOf(params);
      const rsaKey = readDer(bits);
      const [n, e, ...more] = childrenOf(bits, expectTag(rsaKey, 0x30, 'RSAPublicKey'));
      if (!n || !e || more.length) return null;
      return { kty: 'RSA', n: unsignedIntegerOf(bits, n).toString('base64url'), e: unsignedIntegerOf(bits, e).toString('base64url') };
    }
    if (algorithm === OID_ED25519 && !params && bits.length === 32) {
      return { kty: 'OKP', crv: 'Ed25519', x: bits.toString('base64url') };
    }
  } catch {
    // Not a shape read here.
  }
  return null;
}

/** RSA-PSS verification options for node:crypto, or the plain key. */
export function verifyKey(key: KeyObject, alg: CsrSignatureAlgorithm): KeyObject | { key: KeyObject; padding: number; saltLength: number } {
  return alg.pssSaltLength === undefined ? key : { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pssSaltLength };
}

/** SECURITY.md's certificate key rules: RSA 2048-8192 bits with e = 65537, EC P-256/P-384, Ed25519 when allowed. */
export function checkCsrKey(key: KeyObject, allowEd25519: boolean): void {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0;
    if (bits < 2048 || bits > 8192) throw new AcmeProblem('badCSR', `RSA keys must have 2048 to 8192 bits, not ${bits}`);
    if (d.publicExponent !== 65537n) throw new AcmeProblem('badCSR', 'RSA keys must use the public exponent 65537');
  } else if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve !== 'prime256v1' && d.namedCurve !== 'secp384r1') {
      throw new AcmeProblem('badCSR', `EC curve ${d.namedCurve ?? 'unknown'} is not supported; use P-256 or P-384`);
    }
  } else if (!(key.asymmetricKeyType === 'ed25519' && allowEd25519)) {
    throw new AcmeProblem(
      'badCSR',
      `${key.asymmetricKeyType ?? 'this'} keys are not supported; use ECDSA P-256/P-384 or RSA${key.asymmetricKeyType === 'ed25519' ? ' (this CA does not accept Ed25519)' : ''}`,
    );
  }
}
