/**
 * Keys and CSRs for the client: account keys (ES256 by default, ES384, RS256, EdDSA), certificate
 * keys (ECDSA P-256 by default, P-384, RSA 2048/3072/4096, Ed25519), CSRs built with
 * @peculiar/x509, and a reader for CSRs users bring. Private keys leave this module only as
 * KeyObjects or PKCS#8 PEM; nothing here logs or prints them.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, webcrypto, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import type { JWK } from 'jose';
import { canonicalIdentifier } from '../protocol/identifiers.js';
import type { Identifier } from '../protocol/types.js';
import { parsePem } from '../lib/pem.js';
import * as x509 from '../lib/x509.js';
import { AcmeClientError } from './errors.js';
import type { AccountSigner } from './http.js';

const generate = promisify(generateKeyPair);

export const CERT_KEY_TYPES = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'] as const;
export type CertKeyType = (typeof CERT_KEY_TYPES)[number];

export const ACCOUNT_KEY_ALGS = ['ES256', 'ES384', 'RS256', 'EdDSA'] as const;
export type AccountKeyAlg = (typeof ACCOUNT_KEY_ALGS)[number];

/** Other spellings users know from certbot and lego, mapped to ours. */
const KEY_TYPE_ALIASES: Record<string, CertKeyType> = {
  ec256: 'ecdsa-p256',
  p256: 'ecdsa-p256',
  'ec-p256': 'ecdsa-p256',
  ecdsa: 'ecdsa-p256',
  ec384: 'ecdsa-p384',
  p384: 'ecdsa-p384',
  'ec-p384': 'ecdsa-p384',
  rsa: 'rsa-2048',
  rsa2048: 'rsa-2048',
  rsa3072: 'rsa-3072',
  rsa4096: 'rsa-4096',
  eddsa: 'ed25519',
};

/** Parses a key type name (ours or a certbot/lego alias); undefined if unknown. */
export function parseCertKeyType(s: string): CertKeyType | undefined {
  const v = s.trim().toLowerCase();
  if ((CERT_KEY_TYPES as readonly string[]).includes(v)) return v as CertKeyType;
  return KEY_TYPE_ALIASES[v];
}

export async function generateCertKey(type: CertKeyType): Promise<KeyObject> {
  switch (type) {
    case 'ecdsa-p256':
      return (await generate('ec', { namedCurve: 'P-256' })).privateKey;
    case 'ecdsa-p384':
      return (await generate('ec', { namedCurve: 'P-384' })).privateKey;
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return (await generate('rsa', { modulusLength: Number(type.slice(4)), publicExponent: 65537 })).privateKey;
    case 'ed25519':
      return (await generate('ed25519')).privateKey;
  }
}

/** The key type of a private or public key, or undefined when it is none of ours. */
export function keyTypeOf(k: KeyObject): CertKeyType | undefined {
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec') return d.namedCurve === 'prime256v1' ? 'ecdsa-p256' : d.namedCurve === 'secp384r1' ? 'ecdsa-p384' : undefined;
  if (k.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0;
    return bits === 2048 || bits === 3072 || bits === 4096 ? (`rsa-${bits}` as CertKeyType) : undefined;
  }
  if (k.asymmetricKeyType === 'ed25519') return 'ed25519';
  return undefined;
}

export function privateKeyPem(k: KeyObject): string {
  return k.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Reads a PEM private key (PKCS#8, SEC1 or PKCS#1); the error never quotes the file. */
export function readPrivateKey(pem: string, what = 'the private key'): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    throw new AcmeClientError('BAD_INPUT', `${what} is not a PEM private key`);
  }
}

export function spkiOf(k: KeyObject): Buffer {
  return createPublicKey(k).export({ type: 'spki', format: 'der' });
}

// ---------------------------------------------------------------------------------------------
// Account keys

export async function generateAccountKey(alg: AccountKeyAlg = 'ES256'): Promise<KeyObject> {
  switch (alg) {
    case 'ES256':
      return (await generate('ec', { namedCurve: 'P-256' })).privateKey;
    case 'ES384':
      return (await generate('ec', { namedCurve: 'P-384' })).privateKey;
    case 'RS256':
      return (await generate('rsa', { modulusLength: 3072, publicExponent: 65537 })).privateKey;
    case 'EdDSA':
      return (await generate('ed25519')).privateKey;
  }
}

/** The JWS signer for an account key; the algorithm follows from the key (RFC 7518/8037). */
export function accountSigner(privateKey: KeyObject): AccountSigner {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const d = privateKey.asymmetricKeyDetails ?? {};
  let alg: AccountSigner['alg'];
  if (privateKey.asymmetricKeyType === 'ec' && d.namedCurve === 'prime256v1') alg = 'ES256';
  else if (privateKey.asymmetricKeyType === 'ec' && d.namedCurve === 'secp384r1') alg = 'ES384';
  else if (privateKey.asymmetricKeyType === 'rsa' && (d.modulusLength ?? 0) >= 2048) alg = 'RS256';
  else if (privateKey.asymmetricKeyType === 'ed25519') alg = 'EdDSA';
  else throw new AcmeClientError('BAD_INPUT', 'account keys must be ECDSA P-256/P-384, RSA of at least 2048 bits, or Ed25519');
  return { privateKey, jwk, alg };
}

// ---------------------------------------------------------------------------------------------
// CSRs

function webcryptoParams(k: KeyObject): { importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams | webcrypto.Algorithm; signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams } {
  const t = keyTypeOf(k);
  switch (t) {
    case 'ecdsa-p256':
      return { importParams: { name: 'ECDSA', namedCurve: 'P-256' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
    case 'ecdsa-p384':
      return { importParams: { name: 'ECDSA', namedCurve: 'P-384' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return { importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.RsaHashedImportParams, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } };
    case 'ed25519':
      return { importParams: { name: 'Ed25519' }, signingAlgorithm: { name: 'Ed25519' } };
    default:
      throw new AcmeClientError('BAD_INPUT', 'certificate keys must be ECDSA P-256/P-384, RSA 2048/3072/4096 or Ed25519');
  }
}

/**
 * A PKCS#10 CSR for the identifiers, signed by `key`: the names go into subjectAltName (DNS and IP
 * entries), the first DNS name of at most 64 characters also into the subject CN (as most CAs expect).
 */
export async function createCsr(key: KeyObject, identifiers: Identifier[]): Promise<Buffer> {
  const { importParams, signingAlgorithm } = webcryptoParams(key);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const spki = spkiOf(key);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, importParams, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', spki, importParams, true, ['verify']);
  const cn = identifiers.find((i) => i.type === 'dns' && i.value.length <= 64)?.value;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    ...(cn ? { name: [{ CN: [cn] }] } : {}),
    keys: { privateKey, publicKey },
    signingAlgorithm,
    extensions: [new x509.SubjectAlternativeNameExtension(identifiers.map((i) => ({ type: i.type === 'ip' ? ('ip' as const) : ('dns' as const), value: i.value })))],
  });
  return Buffer.from(csr.rawData);
}

export interface CsrInfo {
  der: Buffer;
  identifiers: Identifier[];
  /** DER SubjectPublicKeyInfo of the CSR's key. */
  spki: Buffer;
}

/** Reads a CSR a user brings (PEM or DER), checks its signature, and lists its names (SANs, else CN). */
export async function readCsr(data: Buffer): Promise<CsrInfo> {
  const text = data.toString('latin1');
  let der = data;
  if (text.includes('-----BEGIN')) {
    const block = parsePem(text).find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
    if (!block) throw new AcmeClientError('BAD_INPUT', 'the CSR file holds no CERTIFICATE REQUEST block');
    der = block.der;
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
  } catch {
    throw new AcmeClientError('BAD_INPUT', 'the CSR does not parse as PKCS#10 (PEM or DER)');
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw new AcmeClientError('BAD_INPUT', "the CSR's signature does not verify");
  const ids = new Map<string, Identifier>();
  const add = (type: 'dns' | 'ip', value: string) => {
    let id: Identifier;
    try {
      id = canonicalIdentifier({ type, value });
    } catch {
      throw new AcmeClientError('BAD_INPUT', `the CSR names ${JSON.stringify(value.slice(0, 80))}, which is not a valid ${type === 'ip' ? 'IP address' : 'DNS name'}`);
    }
    ids.set(`${id.type}:${id.value}`, id);
  };
  // Looked up by OID: lookup by class fails when two copies of the library are loaded.
  const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
  for (const n of san?.names.items ?? []) {
    if (n.type === 'dns' || n.type === 'ip') add(n.type, n.value);
    else throw new AcmeClientError('BAD_INPUT', `the CSR asks for a ${n.type} name; ACME certifies DNS names and IP addresses only`);
  }
  // The subject CN, if any, must be one of the names too (CAs add it to the order's identifiers).
  for (const cn of csr.subjectName.getField('CN')) add(isIP(cn) ? 'ip' : 'dns', cn);
  if (ids.size === 0) throw new AcmeClientError('BAD_INPUT', 'the CSR names no DNS name or IP address');
  return { der: Buffer.from(der), identifiers: [...ids.values()], spki: Buffer.from(csr.publicKey.rawData) };
}
