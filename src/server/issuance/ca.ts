/**
 * The certificate authority proper (Boulder's CA): CA creation, CSR checks, the leaf profile and
 * signing. It knows nothing of accounts or HTTP.
 */
import { createHash, createPublicKey, KeyObject, sign, verify, webcrypto } from 'node:crypto';
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import * as x509 from '../../lib/x509.js';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import { bytesOf, childrenOf, expectTag, integerOf, readDer } from '../../lib/der.js';
import { toPem } from '../../lib/pem.js';
import { cryptoRandom, type Random } from '../../lib/random.js';
import { canonicalIdentifier, sortIdentifiers } from '../../protocol/identifiers.js';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import { checkCsrKey, csrSignatureAlgorithm, importSpki, parseCsr, verifyKey, type CsrName, type CsrSignatureAlgorithm, type ParsedCsr } from './csr-der.js';
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem, keyParams } from './keys.js';
import { LeafTemplate, subjectNameOf } from './leaf-der.js';
import type { CaInitOptions, CsrInfo, IssuancePlan, IssuedCertificate, KeyAlgorithm } from './types.js';

const DAY = 86_400_000;

export const DEFAULT_CA_OPTIONS: CaInitOptions = {
  keyAlgorithm: 'ecdsa-p256',
  rootCommonName: 'Anvil Root CA',
  intermediateCommonName: 'Anvil Intermediate CA',
  rootLifetimeDays: 3650,
  intermediateLifetimeDays: 1825,
};

const FILES = ['root.pem', 'root.key', 'intermediate.pem', 'intermediate.key'] as const;

export interface CertDescription {
  subject: string;
  issuer: string;
  serial: string;
  keyAlgorithm: KeyAlgorithm;
  notBefore: Date;
  notAfter: Date;
  sha256: string;
}

export interface CaDescription {
  dir: string;
  root: CertDescription;
  intermediate: CertDescription;
}

/**
 * A serial: 16 random bytes (over 126 random bits) with the first byte in 0x10..0x7f, so the number
 * is positive, its DER has a fixed length, and its hex form has no leading zero (the stored form is
 * also the canonical form that `serialHex` gives for a parsed certificate).
 */
export function newSerial(random: Random = cryptoRandom): string {
  const b = random.bytes(16);
  b[0] = 0x10 + (b[0]! % 0x70);
  return b.toString('hex');
}

/** Canonical hex of a serial as printed by a parser: lower case, no leading zeros. */
export function serialHex(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, '');
}

function caName(cn: string, organization?: string): string {
  const esc = (v: string) => v.replace(/([,+"\\<>;=])/g, '\\$1');
  return organization ? `CN=${esc(cn)}, O=${esc(organization)}` : `CN=${esc(cn)}`;
}

export async function caExists(dir: string): Promise<boolean> {
  for (const f of FILES) {
    try {
      await access(path.join(dir, f));
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

/** Creates a root and an intermediate in `dir`. Refuses (code CA_EXISTS) if any CA file exists. */
export async function initCa(
  dir: string,
  options: Partial<CaInitOptions> = {},
  deps: { clock?: Clock; random?: Random } = {},
): Promise<CaDescription> {
  const o = { ...DEFAULT_CA_OPTIONS, ...options };
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? cryptoRandom;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of FILES) {
    const p = path.join(dir, f);
    try {
      await access(p);
      throw Object.assign(new Error(`a CA already exists: ${p} is present; refusing to overwrite it`), { code: 'CA_EXISTS' });
    } catch (e) {
      if ((e as { code?: string }).code === 'CA_EXISTS') throw e;
    }
  }
  const params = keyParams(o.keyAlgorithm);
  const now = clock.now();
  const rootKeys = await generateKeyPair(o.keyAlgorithm);
  const rootName = caName(o.rootCommonName, o.organization);
  // RFC 5280 §4.2.1.9 / §4.2.1.3: CA certificates have critical basicConstraints CA:TRUE and
  // critical keyUsage with keyCertSign (and cRLSign, for the CRLs a later release publishes).
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(random),
    name: rootName,
    notBefore: now,
    notAfter: new Date(now.getTime() + o.rootLifetimeDays * DAY),
    signingAlgorithm: params.signingAlgorithm,
    keys: rootKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const interKeys = await generateKeyPair(o.keyAlgorithm);
  const interNotAfter = Math.min(now.getTime() + o.intermediateLifetimeDays * DAY, root.notAfter.getTime());
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: newSerial(random),
    subject: caName(o.intermediateCommonName, o.organization),
    issuer: root.subject,
    notBefore: now,
    notAfter: new Date(interNotAfter),
    signingAlgorithm: params.signingAlgorithm,
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    extensions: [
      // pathLenConstraint 0: the intermediate signs only end-entity certificates.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  // Keys first (0600), certificates last: a CA counts as existing once any file is there.
  await writeFileAtomic(path.join(dir, 'root.key'), await exportPrivateKeyPem(rootKeys.privateKey), { mode: 0o600, exclusive: true });
  await writeFileAtomic(path.join(dir, 'intermediate.key'), await exportPrivateKeyPem(interKeys.privateKey), { mode: 0o600, exclusive: true });
  await writeFileAtomic(path.join(dir, 'intermediate.pem'), inter.toString('pem') + '\n', { mode: 0o644, exclusive: true });
  await writeFileAtomic(path.join(dir, 'root.pem'), root.toString('pem') + '\n', { mode: 0o644, exclusive: true });
  return (await describeCa(dir))!;
}

function keyAlgOf(cert: x509.X509Certificate): KeyAlgorithm {
  const k = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' });
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec') return d.namedCurve === 'secp384r1' ? 'ecdsa-p384' : 'ecdsa-p256';
  return `rsa-${d.modulusLength}` as KeyAlgorithm;
}

function describe(cert: x509.X509Certificate): CertDescription {
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: cert.serialNumber.toLowerCase(),
    keyAlgorithm: keyAlgOf(cert),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    sha256: createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex').replace(/(..)(?!$)/g, '$1:').toUpperCase(),
  };
}

export async function describeCa(dir: string): Promise<CaDescription | null> {
  let rootPem: string;
  let interPem: string;
  try {
    rootPem = await readFile(path.join(dir, 'root.pem'), 'utf8');
    interPem = await readFile(path.join(dir, 'intermediate.pem'), 'utf8');
  } catch {
    return null;
  }
  return { dir, root: describe(new x509.X509Certificate(rootPem)), intermediate: describe(new x509.X509Certificate(interPem)) };
}

export interface LoadCaOptions {
  /** AIA caIssuers URL put into every leaf. */
  issuerUrl?: string;
  clock?: Clock;
  random?: Random;
  /** notBefore is moved back by this much; at most 60 s. */
  backdateMs?: number;
  /** Accept Ed25519 keys in CSRs (RFC 8410); off by default, as public CAs do. */
  allowEd25519?: boolean;
  /** CRL distribution point URL put into every leaf (RFC 5280 §4.2.1.13). */
  crlUrl?: string;
  /** OCSP responder URL put into every leaf's AIA (RFC 5280 §4.2.2.1). */
  ocspUrl?: string;
}

/** The issuing side of a CA directory: the root's PEM, the intermediate, its key and key identifier. */
export async function readIssuer(dir: string): Promise<{
  rootPem: string;
  intermediate: x509.X509Certificate;
  key: webcrypto.CryptoKey;
  alg: KeyAlgorithm;
  aki: x509.AuthorityKeyIdentifierExtension;
}> {
  const read = (f: string) => readFile(path.join(dir, f), 'utf8');
  const [rootPem, interPem, interKeyPem] = await Promise.all([read('root.pem'), read('intermediate.pem'), read('intermediate.key')]);
  const { key, alg } = await importPrivateKeyPem(interKeyPem);
  const intermediate = new x509.X509Certificate(interPem);
  const aki = await x509.AuthorityKeyIdentifierExtension.create(intermediate.publicKey);
  return { rootPem, intermediate, key, alg, aki };
}

export async function loadCa(dir: string, opts: LoadCaOptions = {}): Promise<CertificateAuthority> {
  return new CertificateAuthority({ ...(await readIssuer(dir)), ...opts });
}

/** Names a CSR asks for: SAN dNSName and iPAddress entries plus the subject CN. */
/**
 * The identifiers a CSR asks for (SAN dNSName and iPAddress entries plus the subject CN), normalised
 * and sorted; badCSR for other name types or invalid names.
 */
export function csrIdentifiers(names: readonly CsrName[], commonNames: readonly string[]): Identifier[] {
  const out: Identifier[] = [];
  const bad: string[] = [];
  const add = (type: 'dns' | 'ip', value: string) => {
    try {
      out.push(canonicalIdentifier({ type, value }));
    } catch {
      bad.push(value);
    }
  };
  for (const n of names) {
    if (n.type === 'other') throw new AcmeProblem('badCSR', `the CSR asks for a ${n.name} name; only DNS names and IP addresses are issued`);
    add(n.type, n.value);
  }
  for (const cn of commonNames) {
    add(/^[0-9.]+$|:/.test(cn) ? 'ip' : 'dns', cn);
  }
  if (bad.length) throw new AcmeProblem('badCSR', `the CSR has invalid names: ${bad.map((b) => JSON.stringify(b.slice(0, 80))).join(', ')}`);
  return sortIdentifiers(out);
}

export class CertificateAuthority {
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly #intermediate: x509.X509Certificate;
  readonly #key: webcrypto.CryptoKey;
  readonly #alg: KeyAlgorithm;
  readonly #aki: x509.AuthorityKeyIdentifierExtension;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #backdateMs: number;
  readonly #allowEd25519: boolean;
  /** The issuing key for node:crypto's synchronous sign, and its digest. */
  readonly #signingKey: KeyObject;
  readonly #digest: string;
  readonly #leaf: LeafTemplate;

  constructor(o: {
    rootPem: string;
    intermediate: x509.X509Certificate;
    key: webcrypto.CryptoKey;
    alg: KeyAlgorithm;
    aki: x509.AuthorityKeyIdentifierExtension;
    issuerUrl?: string;
    clock?: Clock;
    random?: Random;
    backdateMs?: number;
    allowEd25519?: boolean;
    crlUrl?: string;
    ocspUrl?: string;
  }) {
    this.rootPem = o.rootPem;
    this.#intermediate = o.intermediate;
    this.intermediatePem = `${o.intermediate.toString('pem')}\n`;
    this.#key = o.key;
    this.#alg = o.alg;
    this.#aki = o.aki;
    this.#clock = o.clock ?? systemClock;
    this.#random = o.random ?? cryptoRandom;
    this.#backdateMs = Math.min(Math.max(o.backdateMs ?? 60_000, 0), 60_000);
    this.#allowEd25519 = o.allowEd25519 ?? false;
    const params = keyParams(o.alg);
    this.#signingKey = KeyObject.from(o.key);
    this.#digest = params.digest;
    this.#leaf = new LeafTemplate({
      name: subjectNameOf(Buffer.from(o.intermediate.rawData)),
      keyId: Buffer.from(o.aki.keyId ?? '', 'hex'),
      signatureOid: params.signatureOid,
      issuerUrl: o.issuerUrl,
      ocspUrl: o.ocspUrl,
      crlUrl: o.crlUrl,
    });
  }

  get chainPem(): string {
    return this.intermediatePem;
  }

  /** The issuing (intermediate) certificate, for CRLs, OCSP responses and ARI certIDs. */
  get issuerCertificate(): x509.X509Certificate {
    return this.#intermediate;
  }

  /** The issuing key and its signature algorithm, for CRLs and OCSP responses (never leaves the process). */
  get signer(): { key: webcrypto.CryptoKey; algorithm: webcrypto.EcdsaParams | webcrypto.Algorithm } {
    return { key: this.#key, algorithm: keyParams(this.#alg).signingAlgorithm };
  }

  /** keyIdentifier of the AKI in every leaf (the intermediate's key id), as ARI certIDs carry it. */
  get authorityKeyId(): Buffer {
    return Buffer.from(this.#aki.keyId ?? '', 'hex');
  }

  newSerial(): string {
    return newSerial(this.#random);
  }

  /** Every CSR check of SECURITY.md; returns the requested names and the key. */
  async checkCsr(csrDer: Buffer, opts: { accountKeySpki?: Buffer } = {}): Promise<CsrInfo> {
    let csr: ParsedCsr;
    let sigAlg: CsrSignatureAlgorithm;
    try {
      csr = parseCsr(csrDer);
      sigAlg = csrSignatureAlgorithm(csr.signatureAlgorithm);
    } catch {
      throw new AcmeProblem('badCSR', 'the CSR does not parse as a PKCS#10 request (DER)');
    }
    const hash = sigAlg.hash;
    // Ed25519 has its digest built in (RFC 8032); the key check below decides whether it is accepted.
    if (!sigAlg.ed25519 && !['SHA-256', 'SHA-384', 'SHA-512'].includes(hash)) {
      throw new AcmeProblem('badCSR', `the CSR is signed with ${hash || 'an unknown digest'}; use SHA-256, SHA-384 or SHA-512`);
    }
    const spki = csr.spki;
    let key;
    try {
      key = importSpki(spki);
    } catch {
      throw new AcmeProblem('badCSR', "the CSR's public key does not parse");
    }
    checkCsrKey(key, this.#allowEd25519);
    // The algorithm must fit the key: node:crypto picks the scheme from the key alone, so an RSA
    // signature labelled ECDSA (or the reverse) would otherwise be checked as what it is.
    let ok = false;
    // A negative RSA-PSS salt length is not a count (RFC 4055 §3.1); OpenSSL would read it as "any".
    if (sigAlg.keyType === key.asymmetricKeyType && !((sigAlg.pssSaltLength ?? 0) < 0)) {
      try {
        // With a callback: in libuv's thread pool, off the event loop (as the JWS checks).
        const k = verifyKey(key, sigAlg);
        ok = await new Promise<boolean>((resolve, reject) =>
          verify(sigAlg.digest ?? null, csr.info, k, csr.signature, (e, r) => (e ? reject(e) : resolve(r))),
        );
      } catch {
        ok = false;
      }
    }
    if (!ok) throw new AcmeProblem('badCSR', "the CSR's signature does not verify");
    // RFC 8555 §11.1: the certificate key must not be the account key.
    if (opts.accountKeySpki && opts.accountKeySpki.equals(spki)) {
      throw new AcmeProblem('badCSR', 'the CSR uses the account key; certificates need a key of their own');
    }
    const identifiers = csrIdentifiers(csr.names, csr.commonNames);
    if (identifiers.length === 0) throw new AcmeProblem('badCSR', 'the CSR names no DNS name or IP address');
    // A copy: the request body the CSR came from must not pin the whole buffer.
    return { identifiers, spki: Buffer.from(spki) };
  }

  plan(input: { identifiers: Identifier[]; spki: Buffer; clientAuth: boolean; serverAuth?: boolean; lifetimeMs: number }): IssuancePlan {
    const now = this.#clock.now().getTime();
    const notBefore = new Date(Math.floor((now - this.#backdateMs) / 1000) * 1000);
    const notAfter = new Date(Math.min(notBefore.getTime() + input.lifetimeMs, this.#intermediate.notAfter.getTime()));
    const cn = input.identifiers.find((i) => i.type === 'dns' && i.value.length <= 64)?.value;
    return {
      serial: this.newSerial(),
      notBefore,
      notAfter,
      identifiers: input.identifiers,
      ...(cn ? { commonName: cn } : {}),
      spki: input.spki,
      clientAuth: input.clientAuth,
      ...(input.serverAuth === false ? { serverAuth: false } : {}),
    };
  }

  /** Signs a plan. Two signatures of one plan have identical TBS content apart from nothing: only the signature differs. */
  async sign(plan: IssuancePlan): Promise<IssuedCertificate> {
    const tbs = this.#leaf.tbs(plan);
    // ECDSA signatures come out DER-encoded (dsaEncoding 'der'), as X.509 wants them (RFC 5758 §3.2).
    const signature = await new Promise<Buffer>((resolve, reject) =>
      sign(this.#digest, tbs, this.#signingKey, (e, r) => (e ? reject(e) : resolve(r))),
    );
    const der = this.#leaf.certificate(tbs, signature);
    return { der, chainPem: `${toPem('CERTIFICATE', der)}${this.intermediatePem}` };
  }

  /** Serial and key of a DER certificate (RFC 5280 §4.1), or null when it is not one. */
  inspect(der: Buffer): { serial: string; spki: Buffer } | null {
    try {
      const [tbs, alg, sig, ...rest] = childrenOf(der, expectTag(readDer(der), 0x30, 'Certificate'));
      if (!alg || !sig || rest.length) return null;
      const f = childrenOf(der, expectTag(tbs, 0x30, 'tbsCertificate'));
      const at = f[0]?.tag === 0xa0 ? 1 : 0;
      const serial = integerOf(der, expectTag(f[at], 0x02, 'serialNumber'));
      const spki = expectTag(f[at + 5], 0x30, 'subjectPublicKeyInfo');
      return { serial: serialHex(serial.toString('hex')), spki: Buffer.from(bytesOf(der, spki)) };
    } catch {
      return null;
    }
  }

  /** A TLS server certificate for the CA's own HTTPS listener, with a fresh P-256 key. */
  async issueServerCertificate(names: string[], lifetimeDays: number): Promise<{ certPem: string; keyPem: string }> {
    const keys = await generateKeyPair('ecdsa-p256');
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    const identifiers = sortIdentifiers(
      names.map((n) => (/^[0-9.]+$|:/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n.toLowerCase() })),
    );
    const p = this.plan({ identifiers, spki, clientAuth: false, lifetimeMs: lifetimeDays * DAY });
    // The listener's name may be a single label such as "localhost": skip the ACME name rules here.
    const issued = await this.sign(p);
    return { certPem: issued.chainPem, keyPem: await exportPrivateKeyPem(keys.privateKey) };
  }
}
