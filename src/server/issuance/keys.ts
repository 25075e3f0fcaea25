/** CA key pairs: generation, PKCS#8 PEM import/export, and the signature algorithm each key uses. */
import { createPrivateKey, webcrypto } from 'node:crypto';
import { toPem } from '../../lib/pem.js';
import type { KeyAlgorithm } from './types.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const subtle = webcrypto.subtle;

export interface KeyParams {
  /** WebCrypto import/generate parameters. */
  importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  /** WebCrypto signing parameters, as @peculiar/x509 expects them. */
  signingAlgorithm: webcrypto.EcdsaParams | webcrypto.Algorithm;
  /** The same for node:crypto `sign` and X.509: digest, and the signatureAlgorithm OID (RFC 5758, RFC 4055). */
  digest: 'sha256' | 'sha384';
  signatureOid: string;
}

export function keyParams(alg: KeyAlgorithm): KeyParams {
  switch (alg) {
    case 'ecdsa-p256':
      return {
        importParams: { name: 'ECDSA', namedCurve: 'P-256' },
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        digest: 'sha256',
        signatureOid: '1.2.840.10045.4.3.2',
      };
    case 'ecdsa-p384':
      return {
        importParams: { name: 'ECDSA', namedCurve: 'P-384' },
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
        digest: 'sha384',
        signatureOid: '1.2.840.10045.4.3.3',
      };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      // The hash comes from importParams: the imported key carries it into every signature.
      return {
        importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
        signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' },
        digest: 'sha256',
        signatureOid: '1.2.840.113549.1.1.11',
      };
  }
}

export async function generateKeyPair(alg: KeyAlgorithm): Promise<CryptoKeyPair> {
  const p = keyParams(alg);
  if (alg.startsWith('rsa-')) {
    const modulusLength = Number(alg.slice(4));
    return subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength, publicExponent: new Uint8Array([1, 0, 1]) },
      true,
      ['sign', 'verify'],
    ) as Promise<CryptoKeyPair>;
  }
  return subtle.generateKey(p.importParams as webcrypto.EcKeyGenParams, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  return toPem('PRIVATE KEY', new Uint8Array(await subtle.exportKey('pkcs8', key)));
}

/** Which KeyAlgorithm a PKCS#8 PEM key is. */
export function detectKeyAlgorithm(pem: string): KeyAlgorithm {
  const k = createPrivateKey(pem);
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1') return 'ecdsa-p256';
    if (d.namedCurve === 'secp384r1') return 'ecdsa-p384';
  }
  if (k.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa-${bits}` as KeyAlgorithm;
  }
  throw new Error(`unsupported CA key: ${k.asymmetricKeyType} ${d.namedCurve ?? d.modulusLength ?? ''}`);
}

export async function importPrivateKeyPem(pem: string): Promise<{ key: CryptoKey; alg: KeyAlgorithm }> {
  const alg = detectKeyAlgorithm(pem);
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  const key = await subtle.importKey('pkcs8', der, keyParams(alg).importParams, false, ['sign']);
  return { key, alg };
}
