/**
 * What CRLs and OCSP responses need of the issuing CA: its name and key as bytes, the hashes an
 * OCSP CertID carries, and a signature over DER with the intermediate's key. The intermediate signs
 * both itself (RFC 5280 §5.1, RFC 6960 §4.2.2.2 case 1: no delegated responder).
 */
import { createHash, KeyObject, sign, webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import * as x509 from '../../lib/x509.js';

/** The part of CertificateAuthority (issuance/ca.ts) that revocation uses. */
export interface RevocationIssuer {
  readonly issuerCertificate: x509.X509Certificate;
  readonly signer: { key: webcrypto.CryptoKey; algorithm: webcrypto.EcdsaParams | webcrypto.Algorithm };
  readonly authorityKeyId: Buffer;
}

/** CertID hash algorithms we answer for (RFC 6960 §4.1.1; SHA-1 is what RFC 5019 clients send). */
export const CERT_ID_HASHES: Record<string, 'sha1' | 'sha256' | 'sha384' | 'sha512'> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

export interface IssuerIdentity {
  /** DER of the intermediate's subject Name (a CRL's issuer, the input of issuerNameHash). */
  nameDer: Buffer;
  /** The subjectPublicKey BIT STRING's value (the input of issuerKeyHash and of responderID byKey). */
  keyBits: Buffer;
  /** Hashes by CertID hash algorithm OID. */
  hashes: Map<string, { name: Buffer; key: Buffer }>;
  /** Where this issuer's CRL lives in the store: hex SHA-256 over name and key. */
  storeId: string;
}

export function issuerIdentity(issuer: RevocationIssuer): IssuerIdentity {
  const cert = AsnConvert.parse(issuer.issuerCertificate.rawData, Certificate);
  const nameDer = Buffer.from(AsnConvert.serialize(cert.tbsCertificate.subject));
  const keyBits = Buffer.from(cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey);
  const hashes = new Map<string, { name: Buffer; key: Buffer }>();
  for (const [oid, h] of Object.entries(CERT_ID_HASHES)) {
    hashes.set(oid, { name: createHash(h).update(nameDer).digest(), key: createHash(h).update(keyBits).digest() });
  }
  const storeId = createHash('sha256').update(nameDer).update(keyBits).digest('hex');
  return { nameDer, keyBits, hashes, storeId };
}

function signingParams(issuer: RevocationIssuer): webcrypto.Algorithm & { hash?: string | { name: string } } {
  const { key, algorithm } = issuer.signer;
  return { ...algorithm, ...key.algorithm } as webcrypto.Algorithm & { hash?: string | { name: string } };
}

/** The AlgorithmIdentifier of the issuer's signatures, as @peculiar/x509 writes it for certificates. */
export function signatureAlgorithm(issuer: RevocationIssuer): AlgorithmIdentifier {
  return new x509.AlgorithmProvider().toAsnAlgorithm(signingParams(issuer));
}

/** Signs DER `tbs` with the issuer's key; the signature in its DER form (ECDSA-Sig-Value for ECDSA). */
export function signDer(issuer: RevocationIssuer, tbs: ArrayBuffer | Uint8Array): ArrayBuffer {
  const alg = signingParams(issuer);
  const hashName = typeof alg.hash === 'string' ? alg.hash : alg.hash?.name;
  if (!hashName) throw new Error(`the CA key (${alg.name}) has no hash algorithm`);
  const data = tbs instanceof Uint8Array ? tbs : new Uint8Array(tbs);
  const sig = sign(hashName.replace('-', '').toLowerCase(), data, { key: KeyObject.from(issuer.signer.key), dsaEncoding: 'der' });
  return toArrayBuffer(sig);
}

export function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/** INTEGER content octets of a hex serial (positive: a leading 00 when the top bit is set). */
export function serialOctets(hex: string): ArrayBuffer {
  let h = hex.toLowerCase();
  if (h.length % 2) h = `0${h}`;
  let b = Buffer.from(h, 'hex');
  if (b.length === 0 || b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return toArrayBuffer(b);
}

/** Canonical hex (lower case, no leading zeros) of INTEGER content octets; null for a negative or empty one. */
export function serialFromOctets(octets: ArrayBuffer): string | null {
  const b = Buffer.from(octets);
  if (b.length === 0 || b[0]! & 0x80) return null;
  const hex = b.toString('hex').replace(/^0+(?=.)/, '');
  return hex;
}

/** Seconds precision: DER times carry no fractions (RFC 5280 §4.1.2.5, and so OCSP as well). */
export function floorToSecond(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
