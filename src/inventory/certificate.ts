/**
 * What the inventory records of a certificate: the facts read from its DER once, when it is first
 * seen, so that lists, checks and metrics never parse certificates again.
 *
 * The structure (names, signature algorithm, validity) is walked with der.ts (lib/cert-parts.ts);
 * the distinguished names and the key's details come from node:crypto's X509Certificate, which
 * formats names the way openssl does.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { certParts } from '../lib/cert-parts.js';
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

/** Signature algorithm OIDs (RFC 3279, 4055, 5758, 8410) by name. */
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

const CURVE_BITS: Readonly<Record<string, number>> = {
  prime192v1: 192,
  secp224r1: 224,
  prime256v1: 256,
  secp384r1: 384,
  secp521r1: 521,
  secp256k1: 256,
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

/** Reads the facts of one DER certificate; throws when it is not an X.509 certificate. */
export function describeCertificate(der: Buffer): CertificateFacts {
  const x = new X509Certificate(der);
  const parts = certParts(der);
  const key = x.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  const type = key.asymmetricKeyType;
  let keyType: KeyType = 'unknown';
  let keyBits = 0;
  let keyDetail: string | null = null;
  let knownWeakKey: string | null = null;
  if (type === 'rsa' || type === 'rsa-pss') {
    keyType = 'rsa';
    keyBits = details.modulusLength ?? 0;
    keyDetail = details.publicExponent !== undefined ? String(details.publicExponent) : null;
    const n = key.export({ format: 'jwk' }).n;
    if (n) knownWeakKey = knownWeakModulus(BigInt(`0x${Buffer.from(n, 'base64url').toString('hex')}`));
  } else if (type === 'ec') {
    keyType = 'ec';
    keyDetail = details.namedCurve ?? null;
    keyBits = CURVE_BITS[keyDetail ?? ''] ?? 0;
  } else if (type === 'ed25519' || type === 'ed448') {
    keyType = type;
    keyBits = type === 'ed25519' ? 256 : 456;
  } else if (type === 'dsa') {
    keyType = 'dsa';
    keyBits = details.modulusLength ?? 0;
  }
  const names = parts.names.flatMap((n) => (n.startsWith('dns:') ? [n.slice(4)] : n.startsWith('ip:') ? [ipText(n.slice(3))] : []));
  let selfSigned = false;
  if (parts.issuer.equals(parts.subject)) {
    try {
      selfSigned = x.verify(key);
    } catch {
      selfSigned = false;
    }
  }
  return {
    fingerprint: createHash('sha256').update(der).digest('hex'),
    // An empty name (leaves named only by subjectAltName, as Anvil issues them) reads as ''.
    subject: (x.subject ?? '').replaceAll('\n', ', '),
    issuer: (x.issuer ?? '').replaceAll('\n', ', '),
    serial: x.serialNumber.toUpperCase(),
    names,
    keyType,
    keyBits,
    keyDetail,
    spkiSha256: createHash('sha256').update(parts.spki).digest('hex'),
    signatureAlgorithm: SIGNATURE_NAMES[parts.signatureOid] ?? parts.signatureOid,
    notBefore: new Date(parts.notBefore),
    notAfter: new Date(parts.notAfter),
    isCa: x.ca,
    selfSigned,
    knownWeakKey,
  };
}
