/**
 * The check each downloaded certificate passes, cheap enough for every flow: the chain parses,
 * each certificate names the next as its issuer (issuer and subject DER equal) and its signature
 * verifies with the next one's key, the leaf is valid now, its key is the CSR's and its
 * subjectAltName holds exactly the order's identifiers.
 *
 * The leaf is walked with der.ts rather than parsed by X509Certificate (160 µs a parse on OpenSSL 3);
 * what follows the leaf (the issuers) is the same for every flow, so it is checked once per distinct
 * chain and remembered with its first certificate's key: per flow this costs one signature check
 * and a few microseconds of byte walking.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { parsePem } from '../lib/pem.js';
import type { Identifier } from '../protocol/types.js';
import { ipBytes } from './csr.js';
import { SIGNATURE_DIGESTS } from '../lib/signature-algorithms.js';
import { BenchError } from './errors.js';

import { certParts, type CertParts } from '../lib/cert-parts.js';

export { certParts, type CertParts };

const bad = (why: string) => new BenchError('badCertificate', `the certificate ${why}`);

function verifySigned(c: CertParts, issuerKey: KeyObject): boolean {
  const digest = SIGNATURE_DIGESTS[c.signatureOid];
  if (digest === undefined) throw bad(`is signed with algorithm ${c.signatureOid}, which this check does not know`);
  try {
    return verify(digest, c.tbs, issuerKey, c.signature);
  } catch {
    return false;
  }
}

interface Issuer {
  subject: Buffer;
  key: KeyObject;
}

/** Chains after the leaf, checked once each (a CA has one or a few): PEM text -> issuer or failure. */
const issuers = new Map<string, Issuer | BenchError>();
const MAX_REMEMBERED = 16;

function checkIssuers(tailPem: string): Issuer {
  const known = issuers.get(tailPem);
  if (known instanceof BenchError) throw known;
  if (known) return known;
  let result: Issuer | BenchError;
  try {
    const certs = parsePem(tailPem)
      .filter((b) => b.label === 'CERTIFICATE')
      .map((b) => certParts(b.der));
    if (certs.length === 0) throw bad('chain holds no issuer certificate after the leaf');
    const keys = certs.map((c) => createPublicKey({ key: c.spki, format: 'der', type: 'spki' }));
    for (let i = 0; i + 1 < certs.length; i++) {
      if (!certs[i]!.issuer.equals(certs[i + 1]!.subject)) throw bad(`chain is broken: certificate ${i + 2} is not issued by certificate ${i + 3}`);
      if (!verifySigned(certs[i]!, keys[i + 1]!)) throw bad(`chain is broken: the signature of certificate ${i + 2} does not verify`);
    }
    result = { subject: certs[0]!.subject, key: keys[0]! };
  } catch (e) {
    result = e instanceof BenchError ? e : bad(`chain does not parse: ${(e as Error).message}`);
  }
  if (issuers.size >= MAX_REMEMBERED) issuers.delete(issuers.keys().next().value!);
  issuers.set(tailPem, result);
  if (result instanceof BenchError) throw result;
  return result;
}

function nameOf(i: Identifier): string {
  return i.type === 'ip' ? `ip:${ipBytes(i.value).toString('hex')}` : `dns:${i.value.toLowerCase()}`;
}

export function checkCertificate(pem: string, expected: { spki: Buffer; identifiers: readonly Identifier[] }, now = Date.now()): void {
  const END = '-----END CERTIFICATE-----';
  const cut = pem.indexOf(END);
  if (cut < 0) throw bad('download holds no CERTIFICATE block');
  const [leafBlock] = parsePem(pem.slice(0, cut + END.length));
  if (!leafBlock || leafBlock.label !== 'CERTIFICATE') throw bad('download does not start with a CERTIFICATE block');
  let leaf: CertParts;
  try {
    leaf = certParts(leafBlock.der);
  } catch (e) {
    throw bad(`does not parse: ${(e as Error).message}`);
  }
  const issuer = checkIssuers(pem.slice(cut + END.length));
  if (!leaf.issuer.equals(issuer.subject)) throw bad('is not issued by the next certificate of the chain');
  if (!verifySigned(leaf, issuer.key)) throw bad("signature does not verify with its issuer's key");
  if (leaf.notBefore > now || leaf.notAfter < now) throw bad(`is not valid now (${new Date(leaf.notBefore).toISOString()} .. ${new Date(leaf.notAfter).toISOString()})`);
  if (!leaf.spki.equals(expected.spki)) throw bad("key is not the CSR's key");
  const got = [...leaf.names].sort();
  const want = expected.identifiers.map(nameOf).sort();
  if (got.length !== want.length || got.some((g, i) => g !== want[i])) throw bad(`names ${got.join(', ') || '(none)'}, not ${want.join(', ')}`);
}
