/**
 * The crypto floor: what the public-key operations an issuance needs cost on this machine, with
 * node:crypto (OpenSSL), measured in the same run as the load. A server cannot issue for less CPU
 * than this, so its CPU per issuance divided by the floor says how much it spends beyond the
 * cryptography it cannot avoid.
 *
 * Per issuance the server checks one ES256 signature per signed POST (RFC 8555 §6.2; the count is
 * the one the generator actually sent per flow), checks the CSR's signature once, and signs the
 * certificate once (ECDSA P-256 with SHA-256, the default CA key, over a TBSCertificate of
 * realistic size). Importing keys, hashing for nonces and serials, and everything else are left
 * out on purpose: they are what the floor is compared against.
 */
import { generateKeyPairSync, randomBytes, sign, verify, createPublicKey, type KeyObject } from 'node:crypto';
import { freshCsr, sanAttribute } from './csr.js';
import { bytesOf, childrenOf, readTlv } from '../lib/der.js';
import { Es256Signer } from './jws.js';

/** Size of the TBSCertificate of an Anvil leaf with one IP name (595-byte certificate, P-256 CA). */
export const DEFAULT_TBS_BYTES = 505;

export interface CryptoFloorUnits {
  /** CPU microseconds of one ES256 JWS signature check (key already imported). */
  jwsVerifyUs: number;
  /** CPU microseconds of one ECDSA P-256 CSR signature check (DER signature). */
  csrVerifyUs: number;
  /** CPU microseconds of one ECDSA P-256 signature over a TBSCertificate of `tbsBytes`. */
  certSignUs: number;
  tbsBytes: number;
}

export interface CryptoFloor {
  /** Signed POSTs per issuance the floor counts. */
  signedPostsPerFlow: number;
  jwsVerifyMs: number;
  csrVerifyMs: number;
  certSignMs: number;
  /** The sum: the floor, in CPU milliseconds per issuance. */
  totalMs: number;
}

/** Median CPU microseconds per call of `fn`, over `batches` batches of `n` calls. */
function cpuPerCall(fn: () => void, n: number, batches: number): number {
  for (let i = 0; i < Math.min(n, 50); i++) fn();
  const per: number[] = [];
  for (let b = 0; b < batches; b++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const c = process.cpuUsage(c0);
    per.push((c.user + c.system) / n);
  }
  per.sort((a, b) => a - b);
  return per[Math.floor(per.length / 2)]!;
}

/** Measures the three operations (about half a second of CPU with the defaults). */
export function measureCryptoFloorUnits(o: { iterations?: number; batches?: number; tbsBytes?: number } = {}): CryptoFloorUnits {
  const n = o.iterations ?? 400;
  const batches = o.batches ?? 5;
  const tbsBytes = o.tbsBytes ?? DEFAULT_TBS_BYTES;

  // A JWS as the generator sends it: POST-as-GET with a kid, nonce and url header.
  const account = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = new Es256Signer(account.privateKey);
  const jws = JSON.parse(
    signer.body('https://127.0.0.1:14000/acme/authz/0123456789abcdefghij', randomBytes(16).toString('base64url'), 'https://127.0.0.1:14000/acme/acct/0123456789abcdef', null),
  ) as { protected: string; payload: string; signature: string };
  const jwsInput = Buffer.from(`${jws.protected}.${jws.payload}`);
  const jwsSig = Buffer.from(jws.signature, 'base64url');
  const accountPub: KeyObject = account.publicKey;
  const jwsVerifyUs = cpuPerCall(() => {
    if (!verify('sha256', jwsInput, { key: accountPub, dsaEncoding: 'ieee-p1363' }, jwsSig)) throw new Error('JWS check failed');
  }, n, batches);

  // A CSR as the generator sends it; its signed part and signature cut out of the DER.
  const csr = freshCsr(sanAttribute([{ type: 'ip', value: '127.0.0.1' }]));
  const { info, signature } = splitSigned(csr.der);
  const csrKey = createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
  const csrVerifyUs = cpuPerCall(() => {
    if (!verify('sha256', info, csrKey, signature)) throw new Error('CSR check failed');
  }, n, batches);

  const ca = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const tbs = randomBytes(tbsBytes);
  const certSignUs = cpuPerCall(() => void sign('sha256', tbs, ca), n, batches);

  return { jwsVerifyUs: round1(jwsVerifyUs), csrVerifyUs: round1(csrVerifyUs), certSignUs: round1(certSignUs), tbsBytes };
}

/** The floor of an issuance that sent `signedPostsPerFlow` signed POSTs. */
export function cryptoFloor(units: CryptoFloorUnits, signedPostsPerFlow: number): CryptoFloor {
  const jwsVerifyMs = (units.jwsVerifyUs * signedPostsPerFlow) / 1000;
  const csrVerifyMs = units.csrVerifyUs / 1000;
  const certSignMs = units.certSignUs / 1000;
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return {
    signedPostsPerFlow: Math.round(signedPostsPerFlow * 100) / 100,
    jwsVerifyMs: r(jwsVerifyMs),
    csrVerifyMs: r(csrVerifyMs),
    certSignMs: r(certSignMs),
    totalMs: r(jwsVerifyMs + csrVerifyMs + certSignMs),
  };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** The signed part and the signature (BIT STRING content) of a signed DER object (CSR, certificate). */
export function splitSigned(der: Buffer): { info: Buffer; signature: Buffer } {
  const [info, , sig] = childrenOf(der, readTlv(der, 0));
  if (!info || !sig || sig.tag !== 0x03) throw new Error('not a signed DER object');
  // Skip the BIT STRING's unused-bits octet.
  return { info: bytesOf(der, info), signature: der.subarray(sig.contentStart + 1, sig.end) };
}
