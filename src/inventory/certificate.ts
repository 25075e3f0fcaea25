/**
 * What the inventory records of a certificate: the facts read from its DER once, when it is first
 * seen, so that lists, checks and metrics never parse certificates again.
 *
 * Everything is read by walking the DER with der.ts (lib/cert-parts.ts), about ten times faster
 * than node:crypto's X509Certificate; the names are formatted as openssl (and X509Certificate)
 * print them, and the tests compare the two readings for every key type.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { certParts } from '../lib/cert-parts.js';
import { bytesOf, childrenOf, contentOf, DerError, octetsOfBitString, oidOf, readTlv, unsignedIntegerOf, type Tlv } from '../lib/der.js';
import { knownWeakModulus } from './weak-keys.js';

export type KeyType = 'rsa' | 'ec' | 'ed25519' | 'ed448' | 'dsa' | 'unknown';

export interface CertificateFacts {
  /** SHA-256 of the DER, lower-case hex: the certificate's identity in the inventory. */
  fingerprint: string;
  subject: string;
  issuer: string;
  /** Upper-case hex, as openssl prints it. */
  serial: string;
  /** subjectAltName DNS names (lower case) and IP addresses (text form), in certificate order. */
  names: string[];
  keyType: KeyType;
  /** RSA/DSA modulus bits; EC curve bits; 256 for Ed25519. */
  keyBits: number;
  /** EC curve name (e.g. prime256v1), RSA public exponent as a decimal string; otherwise null. */
  keyDetail: string | null;
  /** SHA-256 of the SubjectPublicKeyInfo, lower-case hex: the same key in several certificates. */
  spkiSha256: string;
  /** The signature algorithm's name (e.g. ecdsa-with-SHA256) or its OID when unknown. */
  signatureAlgorithm: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  /** Issuer equals subject and the certificate's own key verifies its signature. */
  selfSigned: boolean;
  /** Why the key is known to be weak beyond its size (weak-keys.ts), or null. */
  knownWeakKey: string | null;
}

/** Signature algorithm names (as openssl prints them) by OID (RFC 3279, 4055, 5758, 8410). */
const SIGNATURE_NAMES: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'rsassa-pss',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.2.840.10040.4.3': 'dsa-with-SHA1',
  '1.3.101.112': 'ED25519',
  '1.3.101.113': 'ED448',
};

/** The digest family of a signature algorithm name: 'md5', 'sha1' or null for the SHA-2 ones and EdDSA. */
export function weakDigestOf(signatureAlgorithm: string): 'md5' | 'sha1' | null {
  const s = signatureAlgorithm.toLowerCase();
  if (s.includes('md5') || s.includes('md2')) return 'md5';
  if (s.includes('sha1') || s.endsWith('-sha1')) return 'sha1';
  return null;
}

function ipText(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  if (b.length === 4) return [...b].join('.');
  if (b.length !== 16) return hex;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // The longest run of zero groups (two or more) becomes '::' (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** OpenSSL's short names of the attribute types of distinguished names (RFC 4519, PKCS #9, EV). */
const ATTRIBUTE_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'street',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.15': 'businessCategory',
  '2.5.4.17': 'postalCode',
  '2.5.4.42': 'GN',
  '2.5.4.43': 'initials',
  '2.5.4.46': 'dnQualifier',
  '2.5.4.65': 'pseudonym',
  '2.5.4.97': 'organizationIdentifier',
  '1.2.840.113549.1.9.1': 'emailAddress',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.3.6.1.4.1.311.60.2.1.1': 'jurisdictionL',
  '1.3.6.1.4.1.311.60.2.1.2': 'jurisdictionST',
  '1.3.6.1.4.1.311.60.2.1.3': 'jurisdictionC',
};

/** The text of a directory string (X.520), or null for a type that is not one. */
function directoryString(buf: Buffer, t: Tlv): string | null {
  const c = contentOf(buf, t);
  switch (t.tag) {
    case 0x0c: // UTF8String
      return c.toString('utf8');
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
    case 0x14: // TeletexString, read as Latin-1 as OpenSSL does
      return c.toString('latin1');
    case 0x1e: {
      // BMPString: UTF-16BE
      const le = Buffer.from(c);
      le.swap16();
      return le.toString('utf16le');
    }
    case 0x1c: {
      // UniversalString: UTF-32BE
      let out = '';
      for (let i = 0; i + 3 < c.length; i += 4) out += String.fromCodePoint(c.readUInt32BE(i));
      return out;
    }
    default:
      return null;
  }
}

/** RFC 4514 §2.4 escaping, as OpenSSL's ESC_2253 does it. */
function escapeValue(v: string): string {
  let out = v.replace(/[,+"\\<>;]/g, (ch) => `\\${ch}`).replace(/[\x00-\x1f\x7f]/g, (ch) => `\\${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  // A trailing space, unless it is the leading one just escaped (a value of one space).
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** A Name (RFC 5280 §4.1.2.4) as "CN=..., O=...", in the certificate's order (as openssl prints it). */
export function nameText(der: Buffer): string {
  const name = readTlv(der, 0);
  if (name.tag !== 0x30) throw new DerError('a Name is a SEQUENCE');
  const rdns: string[] = [];
  for (const rdn of childrenOf(der, name)) {
    if (rdn.tag !== 0x31) throw new DerError('an RDN is a SET');
    const parts: string[] = [];
    for (const atv of childrenOf(der, rdn)) {
      const [typeT, valueT] = childrenOf(der, atv);
      const oid = oidOf(der, typeT);
      if (!valueT) throw new DerError('an attribute without a value');
      const text = directoryString(der, valueT);
      parts.push(`${ATTRIBUTE_NAMES[oid] ?? oid}=${text === null ? `#${bytesOf(der, valueT).toString('hex')}` : escapeValue(text)}`);
    }
    rdns.push(parts.join(' + '));
  }
  return rdns.join(', ');
}

const CURVES: Readonly<Record<string, { name: string; bits: number }>> = {
  '1.2.840.10045.3.1.1': { name: 'prime192v1', bits: 192 },
  '1.3.132.0.33': { name: 'secp224r1', bits: 224 },
  '1.2.840.10045.3.1.7': { name: 'prime256v1', bits: 256 },
  '1.3.132.0.34': { name: 'secp384r1', bits: 384 },
  '1.3.132.0.35': { name: 'secp521r1', bits: 521 },
  '1.3.132.0.10': { name: 'secp256k1', bits: 256 },
  '1.3.36.3.3.2.8.1.1.7': { name: 'brainpoolP256r1', bits: 256 },
  '1.3.36.3.3.2.8.1.1.11': { name: 'brainpoolP384r1', bits: 384 },
  '1.3.36.3.3.2.8.1.1.13': { name: 'brainpoolP512r1', bits: 512 },
};

const bitLength = (magnitude: Buffer): number => {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  if (i === magnitude.length) return 0;
  return (magnitude.length - i - 1) * 8 + (32 - Math.clz32(magnitude[i]!));
};
const toBigInt = (magnitude: Buffer): bigint => (magnitude.length ? BigInt(`0x${magnitude.toString('hex')}`) : 0n);

/** The key of a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): type, size, curve or exponent, and the RSA modulus. */
export function keyOf(spki: Buffer): { keyType: KeyType; keyBits: number; keyDetail: string | null; modulus: bigint | null } {
  const top = readTlv(spki, 0);
  const [algT, keyT] = childrenOf(spki, top);
  if (!algT || !keyT) throw new DerError('a SubjectPublicKeyInfo has an algorithm and a key');
  const [oidT, paramsT] = childrenOf(spki, algT);
  const alg = oidOf(spki, oidT);
  const key = octetsOfBitString(spki, keyT);
  switch (alg) {
    case '1.2.840.113549.1.1.1': // rsaEncryption
    case '1.2.840.113549.1.1.10': {
      // RSASSA-PSS: an RSA key too
      const seq = readTlv(key, 0);
      const [nT, eT] = childrenOf(key, seq);
      if (!nT || !eT) throw new DerError('an RSA key has a modulus and an exponent');
      const n = unsignedIntegerOf(key, nT);
      return { keyType: 'rsa', keyBits: bitLength(n), keyDetail: toBigInt(unsignedIntegerOf(key, eT)).toString(), modulus: toBigInt(n) };
    }
    case '1.2.840.10045.2.1': {
      // id-ecPublicKey with a named curve
      const curveOid = paramsT?.tag === 0x06 ? oidOf(spki, paramsT) : null;
      const curve = curveOid ? CURVES[curveOid] : undefined;
      return { keyType: 'ec', keyBits: curve?.bits ?? 0, keyDetail: curve?.name ?? curveOid, modulus: null };
    }
    case '1.3.101.112':
      return { keyType: 'ed25519', keyBits: 256, keyDetail: null, modulus: null };
    case '1.3.101.113':
      return { keyType: 'ed448', keyBits: 456, keyDetail: null, modulus: null };
    case '1.2.840.10040.4.1': {
      // DSA: the size of p, in the parameters
      const p = paramsT?.tag === 0x30 ? childrenOf(spki, paramsT)[0] : undefined;
      return { keyType: 'dsa', keyBits: p ? bitLength(unsignedIntegerOf(spki, p)) : 0, keyDetail: null, modulus: null };
    }
    default:
      return { keyType: 'unknown', keyBits: 0, keyDetail: alg, modulus: null };
  }
}

/** The serial as openssl prints it: upper-case hex, without DER's sign octet before a high bit. */
function serialHex(octets: Buffer): string {
  const v = octets.length > 1 && octets[0] === 0 && octets[1]! >= 0x80 ? octets.subarray(1) : octets;
  return v.toString('hex').toUpperCase();
}

/**
 * Reads the facts of one DER certificate; throws when it is not an X.509 certificate. Walked with
 * der.ts (about 20 µs), not parsed with X509Certificate (about 190 µs, most of a sync from the CA:
 * `node --import tsx bench/inventory-sync.ts`); the tests compare the two on every key type.
 */
export function describeCertificate(der: Buffer): CertificateFacts {
  const parts = certParts(der);
  const key = keyOf(parts.spki);
  const names = parts.names.flatMap((n) => (n.startsWith('dns:') ? [n.slice(4)] : n.startsWith('ip:') ? [ipText(n.slice(3))] : []));
  let selfSigned = false;
  if (parts.issuer.equals(parts.subject)) {
    // Self-issued: is it also self-signed? Rare (roots, test leaves), so the full parse is fine here.
    try {
      const x = new X509Certificate(der);
      selfSigned = x.verify(x.publicKey);
    } catch {
      selfSigned = false;
    }
  }
  return {
    fingerprint: createHash('sha256').update(der).digest('hex'),
    subject: nameText(parts.subject),
    issuer: nameText(parts.issuer),
    serial: serialHex(parts.serial),
    names,
    keyType: key.keyType,
    keyBits: key.keyBits,
    keyDetail: key.keyDetail,
    spkiSha256: createHash('sha256').update(parts.spki).digest('hex'),
    signatureAlgorithm: SIGNATURE_NAMES[parts.signatureOid] ?? parts.signatureOid,
    notBefore: new Date(parts.notBefore),
    notAfter: new Date(parts.notAfter),
    isCa: parts.isCa,
    selfSigned,
    knownWeakKey: key.modulus === null ? null : knownWeakModulus(key.modulus),
  };
}
