/**
 * Certificates for the inventory's tests, made with @peculiar/x509 over WebCrypto: any key type,
 * names, validity and digest, self-signed or issued by a given CA. Test support only.
 */
import { webcrypto } from 'node:crypto';
import { toPem } from '../lib/pem.js';
import * as x509 from '../lib/x509.js';

export type TestKeyKind = 'ec256' | 'ec384' | 'rsa1024' | 'rsa2048';

export interface TestCa {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  alg: EcdsaParams;
}

type EcdsaParams = { name: 'ECDSA'; namedCurve: string; hash: string };
type RsaParams = { name: 'RSASSA-PKCS1-v1_5'; modulusLength: number; publicExponent: Uint8Array; hash: string };

function algOf(kind: TestKeyKind, hash = 'SHA-256'): EcdsaParams | RsaParams {
  switch (kind) {
    case 'ec256':
      return { name: 'ECDSA', namedCurve: 'P-256', hash };
    case 'ec384':
      return { name: 'ECDSA', namedCurve: 'P-384', hash };
    case 'rsa1024':
      return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash };
    case 'rsa2048':
      return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash };
  }
}

let serial = 1;
const nextSerial = () => (serial++).toString(16).padStart(4, '0');

/** A CA: self-signed, or issued by `parent` (an intermediate). */
export async function testCa(name = 'Test Root', parent?: TestCa): Promise<TestCa> {
  const alg = algOf('ec256');
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const common = {
    serialNumber: nextSerial(),
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 3650 * 86_400_000),
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  };
  const cert = parent
    ? await x509.X509CertificateGenerator.create({ ...common, subject: `CN=${name}`, issuer: parent.cert.subject, publicKey: keys.publicKey, signingKey: parent.keys.privateKey })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: `CN=${name}`, keys });
  return { cert, keys, alg: alg as EcdsaParams };
}

export interface TestLeafOptions {
  names?: string[];
  ips?: string[];
  cn?: string;
  notBefore?: Date;
  notAfter?: Date;
  key?: TestKeyKind;
  /** Digest of the signature; for a CA-issued leaf, the CA's key signs (ECDSA). */
  hash?: 'SHA-1' | 'SHA-256';
  /** Issued by this CA; otherwise self-signed. */
  ca?: TestCa;
}

/** A leaf certificate as DER, and its PEM. */
export async function testLeaf(o: TestLeafOptions = {}): Promise<{ der: Buffer; pem: string; keyPem: string; cert: x509.X509Certificate }> {
  const names = o.names ?? ['www.example.test'];
  const hash = o.hash ?? 'SHA-256';
  const alg = algOf(o.key ?? 'ec256', hash);
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notBefore = o.notBefore ?? new Date(Date.now() - 3_600_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + 90 * 86_400_000);
  const extensions = [
    new x509.SubjectAlternativeNameExtension([...names.map((value) => ({ type: 'dns' as const, value })), ...(o.ips ?? []).map((value) => ({ type: 'ip' as const, value }))]),
    new x509.BasicConstraintsExtension(false, undefined, true),
  ];
  // cn '' makes an empty subject (a leaf named only by its subjectAltNames, as Anvil issues them).
  const subject = o.cn === '' ? '' : `CN=${o.cn ?? names[0] ?? 'test'}`;
  const cert = o.ca
    ? await x509.X509CertificateGenerator.create({
        serialNumber: nextSerial(),
        subject,
        issuer: o.ca.cert.subject,
        notBefore,
        notAfter,
        signingAlgorithm: { ...o.ca.alg, hash },
        publicKey: keys.publicKey,
        signingKey: o.ca.keys.privateKey,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: nextSerial(), name: subject, notBefore, notAfter, signingAlgorithm: alg, keys, extensions });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { der: Buffer.from(cert.rawData), pem: cert.toString('pem'), keyPem: toPem('PRIVATE KEY', pkcs8), cert };
}
