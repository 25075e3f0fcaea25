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
import { bytesOf, childrenOf, contentOf, DerError, oidText, readTlv, timeOf } from '../lib/der.js';
import { ipBytes } from './csr.js';
import { SIGNATURE_DIGESTS } from '../lib/signature-algorithms.js';
import { BenchError } from './errors.js';

const OID_SUBJECT_ALT_NAME = '2.5.29.17';

/** The parts of a certificate the check needs, as byte ranges of its DER. */
export interface CertParts {
  tbs: Buffer;
  issuer: Buffer;
  subject: Buffer;
  notBefore: number;
  notAfter: number;
  spki: Buffer;
  /** subjectAltName entries as "dns:<name>" and "ip:<hex of the address bytes>". */
  names: string[];
  signatureOid: string;
  signature: Buffer;
}

/** Walks an X.509 certificate (RFC 5280 §4.1); throws DerError when it does not have that shape. */
export function certParts(der: Buffer): CertParts {
  const cert = readTlv(der, 0);
  if (cert.tag !== 0x30 || cert.end !== der.length) throw new DerError('not one SEQUENCE');
  const [tbsT, algT, sigT] = childrenOf(der, cert);
  if (!tbsT || !algT || !sigT || tbsT.tag !== 0x30 || algT.tag !== 0x30 || sigT.tag !== 0x03) throw new DerError('not a Certificate');
  const f = childrenOf(der, tbsT);
  // version [0] is optional (absent means v1).
  const at = f[0]?.tag === 0xa0 ? 1 : 0;
  const issuer = f[at + 2];
  const validity = f[at + 3];
  const subject = f[at + 4];
  const spki = f[at + 5];
  if (!issuer || !validity || !subject || !spki || validity.tag !== 0x30 || spki.tag !== 0x30) throw new DerError('not a TBSCertificate');
  const [nb, na] = childrenOf(der, validity);
  if (!nb || !na) throw new DerError('bad validity');
  const names: string[] = [];
  const extsWrapper = f.slice(at + 6).find((t) => t.tag === 0xa3);
  if (extsWrapper) {
    const [exts] = childrenOf(der, extsWrapper);
    for (const ext of exts ? childrenOf(der, exts) : []) {
      const parts = childrenOf(der, ext);
      if (parts[0]?.tag !== 0x06 || oidText(contentOf(der, parts[0])) !== OID_SUBJECT_ALT_NAME) continue;
      const value = parts[parts.length - 1]!;
      const general = readTlv(der, value.contentStart, value.end);
      for (const n of childrenOf(der, general)) {
        if (n.tag === 0x82) names.push(`dns:${contentOf(der, n).toString('latin1').toLowerCase()}`);
        else if (n.tag === 0x87) names.push(`ip:${contentOf(der, n).toString('hex')}`);
        else names.push(`other:${n.tag}`);
      }
    }
  }
  const algOid = childrenOf(der, algT)[0];
  if (algOid?.tag !== 0x06) throw new DerError('bad signatureAlgorithm');
  return {
    tbs: bytesOf(der, tbsT),
    issuer: bytesOf(der, issuer),
    subject: bytesOf(der, subject),
    notBefore: timeOf(der, nb),
    notAfter: timeOf(der, na),
    spki: bytesOf(der, spki),
    names,
    signatureOid: oidText(contentOf(der, algOid)),
    // The BIT STRING's first octet counts unused bits (0 for signatures).
    signature: der.subarray(sigT.contentStart + 1, sigT.end),
  };
}

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
