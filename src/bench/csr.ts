/**
 * A fresh certificate key and its PKCS#10 CSR (RFC 2986) per flow, built with node:crypto and the
 * DER writer of der.ts instead of an X.509 library: a P-256 key, its SPKI (from the JWK export,
 * which is 25 times cheaper than OpenSSL 3's SPKI encoder) and one ECDSA signature cost about
 * 0.1 ms, where the client library's @peculiar/x509 path (WebCrypto, ASN.1 schemas) costs
 * several times that (docs/benchmarks.md).
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { Identifier } from '../protocol/types.js';
import { oid, seq, set, tlv } from '../lib/der.js';

const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
/** SubjectPublicKeyInfo of a P-256 key up to its point: id-ecPublicKey, prime256v1, BIT STRING, 0x04. */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');

/** The address as the 4 or 16 bytes of an iPAddress GeneralName (RFC 5280 §4.2.1.6). */
export function ipBytes(value: string): Buffer {
  if (isIP(value) === 4) return Buffer.from(value.split('.').map(Number));
  if (isIP(value) === 6 && !value.includes('.')) {
    const [head, tail] = value.includes('::') ? value.split('::') : [value, undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
    return b;
  }
  throw new Error(`${value} is not an IP address this generator can write`);
}

/** The DER of an extensionRequest attribute holding one subjectAltName extension. */
export function sanAttribute(identifiers: readonly Identifier[]): Buffer {
  // RFC 5280 §4.2.1.6: dNSName [2] IA5String, iPAddress [7] OCTET STRING (both IMPLICIT).
  const names = identifiers.map((i) => (i.type === 'ip' ? tlv(0x87, ipBytes(i.value)) : tlv(0x82, Buffer.from(i.value, 'ascii'))));
  const extension = seq(oid(OID_SUBJECT_ALT_NAME), tlv(0x04, seq(...names)));
  return seq(oid(OID_EXTENSION_REQUEST), set(seq(extension)));
}

/** DER SubjectPublicKeyInfo of a P-256 key, from its JWK coordinates. */
export function p256Spki(key: KeyObject): Buffer {
  const j = key.export({ format: 'jwk' }) as { x?: string; y?: string; crv?: string };
  if (j.crv !== 'P-256' || !j.x || !j.y) throw new Error('not a P-256 key');
  return Buffer.concat([P256_SPKI_PREFIX, Buffer.from(j.x, 'base64url'), Buffer.from(j.y, 'base64url')]);
}

export interface FreshCsr {
  der: Buffer;
  /** DER SubjectPublicKeyInfo of the new key, to compare with the certificate's. */
  spki: Buffer;
  key: KeyObject;
}

/**
 * A new ECDSA P-256 key and a CSR for it naming the identifiers in subjectAltName, with an empty
 * subject (RFC 8555 §7.4: the names are in the extension). `attribute` is sanAttribute(identifiers),
 * which callers compute once per set of names.
 */
export function freshCsr(attribute: Buffer): FreshCsr {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = p256Spki(publicKey);
  const info = seq(tlv(0x02, Buffer.from([0])), seq(), spki, tlv(0xa0, attribute));
  const signature = sign('sha256', info, privateKey);
  const der = seq(info, seq(oid(OID_ECDSA_WITH_SHA256)), tlv(0x03, Buffer.from([0]), signature));
  return { der, spki, key: privateKey };
}
