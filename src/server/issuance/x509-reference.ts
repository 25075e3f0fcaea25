/**
 * The @peculiar/x509 implementation of leaf signing and CSR checks that ca.ts used before issue #5,
 * kept unchanged as the reference the lean DER code (leaf-der.ts, csr-der.ts) is checked against.
 * Used by tests and bench/issuance-der.ts only; nothing on the server imports it.
 */
import { createPublicKey, webcrypto } from 'node:crypto';
import * as x509 from '../../lib/x509.js';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import { csrIdentifiers, readIssuer } from './ca.js';
import { checkCsrKey, type CsrName } from './csr-der.js';
import { keyParams } from './keys.js';
import type { CsrInfo, IssuancePlan, IssuedCertificate, KeyAlgorithm } from './types.js';

const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function caName(cn: string): string {
  const esc = (v: string) => v.replace(/([,+"\\<>;=])/g, '\\$1');
  return `CN=${esc(cn)}`;
}

export interface ReferenceOptions {
  issuerUrl?: string;
  ocspUrl?: string;
  crlUrl?: string;
  allowEd25519?: boolean;
}

/** The old CertificateAuthority's sign and checkCsr over the CA files in `dir`. */
export async function loadReference(dir: string, opts: ReferenceOptions = {}): Promise<X509Reference> {
  const { intermediate, key, alg, aki } = await readIssuer(dir);
  return new X509Reference({ intermediate, key, alg, aki, ...opts });
}

/** The old code read the names through @peculiar/x509; the rules on them are shared (csrIdentifiers). */
function csrNames(csr: x509.Pkcs10CertificateRequest): Identifier[] {
  const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
  const names = (san?.names.items ?? []).map((n): CsrName => (n.type === 'dns' || n.type === 'ip' ? { type: n.type, value: n.value } : { type: 'other', name: n.type }));
  return csrIdentifiers(names, csr.subjectName.getField('CN'));
}

export class X509Reference {
  readonly #intermediate: x509.X509Certificate;
  readonly #key: webcrypto.CryptoKey;
  readonly #alg: KeyAlgorithm;
  readonly #aki: x509.AuthorityKeyIdentifierExtension;
  readonly #issuerUrl: string | undefined;
  readonly #allowEd25519: boolean;
  readonly #crlUrl: string | undefined;
  readonly #ocspUrl: string | undefined;

  constructor(o: {
    intermediate: x509.X509Certificate;
    key: webcrypto.CryptoKey;
    alg: KeyAlgorithm;
    aki: x509.AuthorityKeyIdentifierExtension;
  } & ReferenceOptions) {
    this.#intermediate = o.intermediate;
    this.#key = o.key;
    this.#alg = o.alg;
    this.#aki = o.aki;
    this.#issuerUrl = o.issuerUrl;
    this.#allowEd25519 = o.allowEd25519 ?? false;
    this.#crlUrl = o.crlUrl;
    this.#ocspUrl = o.ocspUrl;
  }

  async checkCsr(csrDer: Buffer, opts: { accountKeySpki?: Buffer } = {}): Promise<CsrInfo> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrDer);
    } catch {
      throw new AcmeProblem('badCSR', 'the CSR does not parse as a PKCS#10 request (DER)');
    }
    const sigAlg = csr.signatureAlgorithm as { name?: string; hash?: { name?: string } };
    const hash = sigAlg.hash?.name?.toUpperCase() ?? '';
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
    checkCsrKey(key, this.#allowEd25519);
    let ok = false;
    try {
      ok = await csr.verify();
    } catch {
      ok = false;
    }
    if (!ok) throw new AcmeProblem('badCSR', "the CSR's signature does not verify");
    if (opts.accountKeySpki && opts.accountKeySpki.equals(spki)) {
      throw new AcmeProblem('badCSR', 'the CSR uses the account key; certificates need a key of their own');
    }
    const identifiers = csrNames(csr);
    if (identifiers.length === 0) throw new AcmeProblem('badCSR', 'the CSR names no DNS name or IP address');
    return { identifiers, spki };
  }

  async sign(plan: IssuancePlan): Promise<IssuedCertificate> {
    const publicKey = new x509.PublicKey(plan.spki);
    const isRsa = createPublicKey({ key: plan.spki, format: 'der', type: 'spki' }).asymmetricKeyType === 'rsa';
    const ekus = [...(plan.serverAuth === false ? [] : [OID_SERVER_AUTH]), ...(plan.clientAuth ? [OID_CLIENT_AUTH] : [])];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        isRsa ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(ekus, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      this.#aki,
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
    return { der: Buffer.from(cert.rawData), chainPem: `${cert.toString('pem')}\n${this.#intermediate.toString('pem')}\n` };
  }
}
