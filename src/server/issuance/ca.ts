/**
 * The certificate authority proper (Boulder's CA): CA creation, CSR checks, the leaf profile and
 * signing. It knows nothing of accounts or HTTP.
 */
import { createHash, createPublicKey, webcrypto } from 'node:crypto';
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import * as x509 from '../../lib/x509.js';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import { cryptoRandom, type Random } from '../../lib/random.js';
import { canonicalIdentifier, sortIdentifiers } from '../../protocol/identifiers.js';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem, keyParams } from './keys.js';
import type { CaInitOptions, CsrInfo, IssuancePlan, IssuedCertificate, KeyAlgorithm } from './types.js';

const DAY = 86_400_000;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

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

export async function loadCa(dir: string, opts: LoadCaOptions = {}): Promise<CertificateAuthority> {
  const read = (f: string) => readFile(path.join(dir, f), 'utf8');
  const [rootPem, interPem, interKeyPem] = await Promise.all([read('root.pem'), read('intermediate.pem'), read('intermediate.key')]);
  const { key, alg } = await importPrivateKeyPem(interKeyPem);
  const intermediate = new x509.X509Certificate(interPem);
  const aki = await x509.AuthorityKeyIdentifierExtension.create(intermediate.publicKey);
  return new CertificateAuthority({ rootPem, intermediate, key, alg, aki, ...opts });
}

/** Names a CSR asks for: SAN dNSName and iPAddress entries plus the subject CN. */
function csrNames(csr: x509.Pkcs10CertificateRequest): Identifier[] {
  const out: Identifier[] = [];
  const bad: string[] = [];
  const add = (type: 'dns' | 'ip', value: string) => {
    try {
      out.push(canonicalIdentifier({ type, value }));
    } catch {
      bad.push(value);
    }
  };
  // Looked up by OID: lookup by class fails when two copies of the library are loaded.
  const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
  for (const n of san?.names.items ?? []) {
    if (n.type === 'dns') add('dns', n.value);
    else if (n.type === 'ip') add('ip', n.value);
    else throw new AcmeProblem('badCSR', `the CSR asks for a ${n.type} name; only DNS names and IP addresses are issued`);
  }
  for (const cn of csr.subjectName.getField('CN')) {
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
  readonly #issuerUrl: string | undefined;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #backdateMs: number;
  readonly #allowEd25519: boolean;
  readonly #crlUrl: string | undefined;
  readonly #ocspUrl: string | undefined;

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
    this.#issuerUrl = o.issuerUrl;
    this.#clock = o.clock ?? systemClock;
    this.#random = o.random ?? cryptoRandom;
    this.#backdateMs = Math.min(Math.max(o.backdateMs ?? 60_000, 0), 60_000);
    this.#allowEd25519 = o.allowEd25519 ?? false;
    this.#crlUrl = o.crlUrl;
    this.#ocspUrl = o.ocspUrl;
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
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrDer);
    } catch {
      throw new AcmeProblem('badCSR', 'the CSR does not parse as a PKCS#10 request (DER)');
    }
    const sigAlg = csr.signatureAlgorithm as { name?: string; hash?: { name?: string } };
    const hash = sigAlg.hash?.name?.toUpperCase() ?? '';
    // Ed25519 has its digest built in (RFC 8032); the key check below decides whether it is accepted.
    if (sigAlg.name !== 'Ed25519' && !['SHA-256', 'SHA-384', 'SHA-512'].includes(hash)) {
      throw new AcmeProblem('badCSR', `the CSR is signed with ${hash || 'an unknown digest'}; use SHA-256, SHA-384 or SHA-512`);
    }
    const spki = Buffer.from(csr.publicKey.rawData);
    let key;
    try {
      key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    } catch {
      throw new AcmeProblem('badCSR', "the CSR's public key does not parse");
    }
    const d = key.asymmetricKeyDetails ?? {};
    if (key.asymmetricKeyType === 'rsa') {
      const bits = d.modulusLength ?? 0;
      if (bits < 2048 || bits > 8192) throw new AcmeProblem('badCSR', `RSA keys must have 2048 to 8192 bits, not ${bits}`);
      if (d.publicExponent !== 65537n) throw new AcmeProblem('badCSR', 'RSA keys must use the public exponent 65537');
    } else if (key.asymmetricKeyType === 'ec') {
      if (d.namedCurve !== 'prime256v1' && d.namedCurve !== 'secp384r1') {
        throw new AcmeProblem('badCSR', `EC curve ${d.namedCurve ?? 'unknown'} is not supported; use P-256 or P-384`);
      }
    } else if (!(key.asymmetricKeyType === 'ed25519' && this.#allowEd25519)) {
      throw new AcmeProblem(
        'badCSR',
        `${key.asymmetricKeyType ?? 'this'} keys are not supported; use ECDSA P-256/P-384 or RSA${key.asymmetricKeyType === 'ed25519' ? ' (this CA does not accept Ed25519)' : ''}`,
      );
    }
    let ok = false;
    try {
      ok = await csr.verify();
    } catch {
      ok = false;
    }
    if (!ok) throw new AcmeProblem('badCSR', "the CSR's signature does not verify");
    // RFC 8555 §11.1: the certificate key must not be the account key.
    if (opts.accountKeySpki && opts.accountKeySpki.equals(spki)) {
      throw new AcmeProblem('badCSR', 'the CSR uses the account key; certificates need a key of their own');
    }
    const identifiers = csrNames(csr);
    if (identifiers.length === 0) throw new AcmeProblem('badCSR', 'the CSR names no DNS name or IP address');
    return { identifiers, spki };
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
    const publicKey = new x509.PublicKey(plan.spki);
    const isRsa = createPublicKey({ key: plan.spki, format: 'der', type: 'spki' }).asymmetricKeyType === 'rsa';
    const ekus = [...(plan.serverAuth === false ? [] : [OID_SERVER_AUTH]), ...(plan.clientAuth ? [OID_CLIENT_AUTH] : [])];
    const extensions: x509.Extension[] = [
      // RFC 5280 §4.2.1.9: end-entity certificates say CA:FALSE.
      new x509.BasicConstraintsExtension(false, undefined, true),
      // RFC 5280 §4.2.1.3; keyEncipherment only makes sense for RSA key transport.
      new x509.KeyUsagesExtension(
        isRsa ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(ekus, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      this.#aki,
      // RFC 5280 §4.2.1.6: with an empty subject the SAN extension is critical.
      new x509.SubjectAlternativeNameExtension(
        plan.identifiers.map((i): x509.JsonGeneralName => ({ type: i.type === 'ip' ? 'ip' : 'dns', value: i.value })),
        !plan.commonName,
      ),
    ];
    if (this.#issuerUrl || this.#ocspUrl) {
      extensions.push(
        new x509.AuthorityInfoAccessExtension({
          ...(this.#ocspUrl ? { ocsp: [new x509.GeneralName('url', this.#ocspUrl)] } : {}),
          ...(this.#issuerUrl ? { caIssuers: [new x509.GeneralName('url', this.#issuerUrl)] } : {}),
        }),
      );
    }
    if (this.#crlUrl) extensions.push(new x509.CRLDistributionPointsExtension([this.#crlUrl]));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: plan.serial,
      subject: plan.commonName ? caName(plan.commonName) : '',
      issuer: this.#intermediate.subject,
      notBefore: plan.notBefore,
      notAfter: plan.notAfter,
      signingAlgorithm: keyParams(this.#alg).signingAlgorithm,
      publicKey,
      signingKey: this.#key,
      extensions,
    });
    return { der: Buffer.from(cert.rawData), chainPem: `${cert.toString('pem')}\n${this.intermediatePem}` };
  }

  inspect(der: Buffer): { serial: string; spki: Buffer } | null {
    try {
      const x = new x509.X509Certificate(der);
      return { serial: serialHex(x.serialNumber), spki: Buffer.from(x.publicKey.rawData) };
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
