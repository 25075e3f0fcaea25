/**
 * X.509 signature algorithm OIDs Anvil verifies, with the digest node:crypto needs for each (RFC
 * 5758 ECDSA, RFC 4055 RSA PKCS#1 v1.5, RFC 8410 Ed25519: null, the algorithm has its own).
 */
export const SIGNATURE_DIGESTS: Readonly<Record<string, string | null>> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};
