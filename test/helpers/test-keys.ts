/** Key pairs the issuance tests use: the kinds Anvil issues for, then kinds it must refuse. */
import { generateKeyPairSync } from 'node:crypto';

/** The certificate key types a CSR may carry (Ed25519 only where the CA allows it). */
export const ISSUABLE_KEYS = {
  'P-256': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  'P-384': () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  'RSA-2048': () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  'RSA-3072': () => generateKeyPairSync('rsa', { modulusLength: 3072 }),
  Ed25519: () => generateKeyPairSync('ed25519'),
} as const;

/** ISSUABLE_KEYS plus the kinds SECURITY.md refuses in a CSR. */
export const TEST_KEYS = {
  ...ISSUABLE_KEYS,
  'P-521': () => generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  secp256k1: () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }),
  'RSA-1024': () => generateKeyPairSync('rsa', { modulusLength: 1024 }),
  'RSA-2048 e=3': () => generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }),
  DSA: () => generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }),
} as const;
