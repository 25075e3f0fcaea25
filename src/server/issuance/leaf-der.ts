/**
 * The leaf certificate profile written directly as DER (RFC 5280 §4.1), for CertificateAuthority.sign.
 * It replaced @peculiar/x509's X509CertificateGenerator on the issuance hot path (issue #5: 1.7 ms
 * a certificate, most of it in ASN.1 schema code); the TBSCertificate it writes is byte for byte
 * the one that code wrote, which leaf-der.test.ts checks against x509-reference.ts and openssl.
 *
 * Everything that is the same for every leaf of one intermediate is encoded once, in the
 * constructor; per certificate only the serial, validity, subject, key and SANs are written.
 */
import { createHash } from 'node:crypto';
import { ipToBytes } from '../../protocol/identifiers.js';
import {
  DerError,
  NULL,
  TRUE,
  bitString,
  bytesOf,
  childrenOf,
  expectTag,
  namedBits,
  octetString,
  octetsOfBitString,
  oid,
  oidOf,
  readDer,
  seq,
  set,
  time,
  tlv,
  unsignedInteger,
} from '../../lib/der.js';
import type { IssuancePlan } from './types.js';

const OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** AlgorithmIdentifier of a signature: RSA PKCS#1 v1.5 carries NULL parameters (RFC 4055 §5), ECDSA none (RFC 5758 §3.2). */
export function signatureAlgorithmDer(signatureOid: string): Buffer {
  return signatureOid.startsWith('1.2.840.113549.1.1.') ? seq(oid(signatureOid), NULL) : seq(oid(signatureOid));
}

/** One Extension (RFC 5280 §4.1): criticality is written only when true (DER omits the DEFAULT). */
function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(extnId), TRUE, octetString(value)) : seq(oid(extnId), octetString(value));
}

const uri = (url: string): Buffer => tlv(0x86, Buffer.from(url, 'latin1'));

// RFC 5280 §4.2.1.9: end-entity certificates say CA:FALSE, which DER writes as an empty SEQUENCE.
const BASIC_CONSTRAINTS = extension('2.5.29.19', true, seq());
// RFC 5280 §4.2.1.3: digitalSignature (bit 0); keyEncipherment (bit 2) only for RSA key transport.
const KEY_USAGE = extension('2.5.29.15', true, namedBits([0]));
const KEY_USAGE_RSA = extension('2.5.29.15', true, namedBits([0, 2]));
const EKU = new Map<string, Buffer>(
  [
    [true, false],
    [true, true],
    [false, true],
    [false, false],
  ].map(([server, client]) => [
    `${server}${client}`,
    extension('2.5.29.37', false, seq(...(server ? [oid(OID_SERVER_AUTH)] : []), ...(client ? [oid(OID_CLIENT_AUTH)] : []))),
  ]),
);
const CN = oid('2.5.4.3');
const VERSION_3 = tlv(0xa0, tlv(0x02, Buffer.from([2])));
const EMPTY_NAME = seq();

/** What a leaf takes from its issuer and the CA's configuration. */
export interface LeafIssuer {
  /** DER Name of the intermediate's subject: the leaf's issuer, copied verbatim (RFC 5280 §4.1.2.4). */
  name: Buffer;
  /** The intermediate's key identifier, for the leaf's authorityKeyIdentifier (RFC 5280 §4.2.1.1). */
  keyId: Buffer;
  /** OID of the signature algorithm of the intermediate's key. */
  signatureOid: string;
  /** AIA caIssuers URL (RFC 5280 §4.2.2.1). */
  issuerUrl?: string | undefined;
  /** AIA OCSP URL. */
  ocspUrl?: string | undefined;
  /** CRL distribution point URL (RFC 5280 §4.2.1.13). */
  crlUrl?: string | undefined;
}

/** The subject Name DER of a certificate (RFC 5280 §4.1.2.6), verbatim. */
export function subjectNameOf(certDer: Buffer): Buffer {
  const cert = readDer(certDer);
  const tbs = expectTag(childrenOf(certDer, cert)[0], 0x30, 'tbsCertificate');
  const f = childrenOf(certDer, tbs);
  const at = f[0]?.tag === 0xa0 ? 1 : 0;
  return Buffer.from(bytesOf(certDer, expectTag(f[at + 4], 0x30, 'subject')));
}

/** Whether the SPKI holds an RSA key, and its subjectPublicKey octets (what SKIs hash). */
function spkiParts(spki: Buffer): { isRsa: boolean; publicKey: Buffer } {
  const top = readDer(spki);
  const [alg, key] = childrenOf(spki, expectTag(top, 0x30, 'SubjectPublicKeyInfo'));
  const algorithm = oidOf(spki, childrenOf(spki, expectTag(alg, 0x30, 'algorithm'))[0]);
  return { isRsa: algorithm === OID_RSA_ENCRYPTION, publicKey: octetsOfBitString(spki, expectTag(key, 0x03, 'subjectPublicKey')) };
}

/** A hex serial as the positive INTEGER @peculiar/x509 wrote for it (odd lengths get a leading 0). */
function serialInteger(hex: string): Buffer {
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new DerError(`serial "${hex.slice(0, 40)}" is not hex`);
  const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  // RFC 5280 §4.1.2.2: positive. The old code replaced a zero serial by a random one; plans never have one.
  if (!bytes.some((b) => b !== 0)) throw new DerError('the serial is zero');
  return unsignedInteger(bytes);
}

/**
 * The CN of a leaf as @peculiar/x509's Name wrote it: PrintableString when every character is in
 * its repertoire (X.680 §41.4), else UTF8String.
 */
function commonName(cn: string): Buffer {
  const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(cn);
  return seq(set(seq(CN, printable ? tlv(0x13, Buffer.from(cn, 'latin1')) : tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

export class LeafTemplate {
  readonly signatureAlgorithm: Buffer;
  readonly #issuerName: Buffer;
  readonly #aki: Buffer;
  readonly #tail: Buffer;

  constructor(issuer: LeafIssuer) {
    this.signatureAlgorithm = signatureAlgorithmDer(issuer.signatureOid);
    this.#issuerName = issuer.name;
    this.#aki = extension('2.5.29.35', false, seq(tlv(0x80, issuer.keyId)));
    const tail: Buffer[] = [];
    if (issuer.ocspUrl || issuer.issuerUrl) {
      // RFC 5280 §4.2.2.1, OCSP first as before.
      const access = [
        ...(issuer.ocspUrl ? [seq(oid('1.3.6.1.5.5.7.48.1'), uri(issuer.ocspUrl))] : []),
        ...(issuer.issuerUrl ? [seq(oid('1.3.6.1.5.5.7.48.2'), uri(issuer.issuerUrl))] : []),
      ];
      tail.push(extension('1.3.6.1.5.5.7.1.1', false, seq(...access)));
    }
    if (issuer.crlUrl) {
      // DistributionPoint { distributionPoint [0] { fullName [0] { uniformResourceIdentifier } } }.
      tail.push(extension('2.5.29.31', false, seq(seq(tlv(0xa0, tlv(0xa0, uri(issuer.crlUrl)))))));
    }
    this.#tail = Buffer.concat(tail);
  }

  /** The TBSCertificate of a plan (RFC 5280 §4.1.2). */
  tbs(plan: IssuancePlan): Buffer {
    const { isRsa, publicKey } = spkiParts(plan.spki);
    // RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits.
    const ski = extension('2.5.29.14', false, octetString(createHash('sha1').update(publicKey).digest()));
    // RFC 5280 §4.2.1.6: dNSName [2] IA5String, iPAddress [7] OCTET STRING; critical when the subject is empty.
    const names = plan.identifiers.map((i) => (i.type === 'ip' ? tlv(0x87, ipToBytes(i.value)) : tlv(0x82, Buffer.from(i.value, 'latin1'))));
    const san = extension('2.5.29.17', !plan.commonName, seq(...names));
    const eku = EKU.get(`${plan.serverAuth !== false}${plan.clientAuth}`)!;
    const extensions = tlv(0xa3, seq(BASIC_CONSTRAINTS, isRsa ? KEY_USAGE_RSA : KEY_USAGE, eku, ski, this.#aki, san, this.#tail));
    return seq(
      VERSION_3,
      serialInteger(plan.serial),
      this.signatureAlgorithm,
      this.#issuerName,
      seq(time(plan.notBefore), time(plan.notAfter)),
      plan.commonName ? commonName(plan.commonName) : EMPTY_NAME,
      plan.spki,
      extensions,
    );
  }

  /** The Certificate around a signed TBSCertificate (RFC 5280 §4.1.1). */
  certificate(tbs: Buffer, signature: Buffer): Buffer {
    return seq(tbs, this.signatureAlgorithm, bitString(signature));
  }
}
