/**
 * The issuance contract (Boulder's CA): CSR checks, certificate profile, signing.
 * Knows nothing of accounts or HTTP.
 */
import type { Identifier } from '../../protocol/types.js';

export type KeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

export interface CaInitOptions {
  keyAlgorithm: KeyAlgorithm;
  rootCommonName: string;
  intermediateCommonName: string;
  organization?: string;
  /** Days. */
  rootLifetimeDays: number;
  intermediateLifetimeDays: number;
}

/** What a CSR says, after every check of SECURITY.md passed. */
export interface CsrInfo {
  /** The names the CSR asks for (SANs plus CN), normalised like order identifiers, sorted. */
  identifiers: Identifier[];
  /** DER SubjectPublicKeyInfo of the CSR's key. */
  spki: Buffer;
}

/**
 * Everything that defines a certificate, recorded before signing. Signing the same plan twice gives
 * certificates with the same content (only the signature may differ), so a crash between recording
 * and storing can be recovered by signing again.
 */
export interface IssuancePlan {
  /** Hex, lower case, no leading zeros beyond what DER needs; at least 64 random bits. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  identifiers: Identifier[];
  /** Optional subject CN (the first DNS identifier that fits in 64 characters), RFC 8555 leaves this to the CA. */
  commonName?: string;
  spki: Buffer;
  /** EKUs: clientAuth when the profile asks for it. */
  clientAuth: boolean;
  /** serverAuth unless false (absent in plans recorded before profiles: serverAuth). */
  serverAuth?: boolean;
}

export interface IssuedCertificate {
  der: Buffer;
  /** Leaf PEM followed by the intermediate: what ACME serves as application/pem-certificate-chain. */
  chainPem: string;
}
