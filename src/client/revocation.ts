/**
 * Is a certificate revoked? Asks the OCSP responder named in the certificate (RFC 6960, POST with a
 * nonce), then the CRL distribution point (RFC 5280), and believes only answers that are signed by
 * the issuer (or by a responder the issuer delegated to), that answer for this very certificate and
 * that are fresh. Everything else gives 'unknown' with the reasons in `detail`: never 'good' on a
 * guess. The renewal engine renews at once on 'revoked'.
 *
 * The requests themselves go through client/http.ts fetchBounded (no redirects, size caps, deadline).
 */
import { createHash, createPublicKey, randomBytes, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import {
  BasicOCSPResponse,
  CertID,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  TBSRequest,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityInfoAccessSyntax,
  Certificate,
  CertificateList,
  CRLDistributionPoints,
  CRLReason,
  ExtendedKeyUsage,
  Extension,
  id_ce_cRLDistributionPoints,
  id_ce_cRLReasons,
  id_ce_extKeyUsage,
  id_ce_issuingDistributionPoint,
  id_kp_OCSPSigning,
  id_pe_authorityInfoAccess,
  IssuingDistributionPoint,
} from '@peculiar/asn1-x509';
import type { Dispatcher } from 'undici';
import { AcmeClientError } from './errors.js';
import { boundedAgent, fetchBounded } from './http.js';

export interface RevocationCheckResult {
  status: 'good' | 'revoked' | 'unknown';
  /** Which answer decided; null when none could be trusted. */
  source: 'ocsp' | 'crl' | null;
  revokedAt?: Date;
  /** RFC 5280 §5.3.1 CRLReason, when the answer gives one. */
  reason?: number;
  /** Why the answer is 'unknown' (every source tried), or which URL answered. */
  detail?: string;
}

export interface RevocationCheckOptions {
  /** Budget for the whole check, all requests together (default 15 s). */
  timeoutMs?: number;
  /** Trusted roots (PEM) for https URLs, in place of the system's (as for AcmeHttp). */
  ca?: string;
  /**
   * Connections to reuse (createRevocationChecker passes one per `ca`); without it each check opens
   * and closes its own, a TLS handshake and a trust store load per check.
   */
  dispatcher?: Dispatcher;
}

const OCSP_MAX_BYTES = 64 * 1024;
const CRL_MAX_BYTES = 10 * 1024 * 1024;
/** Clock skew tolerated between us and the responder. */
const SKEW_MS = 5 * 60_000;
/** A response without nextUpdate counts as fresh this long after its thisUpdate. */
const NO_NEXT_UPDATE_MS = 24 * 3_600_000;
/** URLs of each kind tried at most. */
const MAX_URLS = 2;

const SHA1 = '1.3.14.3.2.26';
const HASHES: Record<string, string> = { [SHA1]: 'sha1', '2.16.840.1.101.3.4.2.1': 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512' };
/** Signature algorithms we verify: OID -> digest (null: built into the algorithm). */
const SIGNATURES: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};

class Unusable extends Error {}

interface Parsed {
  leaf: Certificate;
  issuer: Certificate;
  issuerKey: KeyObject;
  /** DER of the leaf's issuer Name and the issuer's public key bits (CertID inputs). */
  issuerNameDer: Buffer;
  issuerKeyBits: Buffer;
  serial: Buffer;
}

function pemToDer(pem: string, what: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Unusable(`the ${what} is not a PEM certificate`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

function ext(extensions: Extension[] | undefined, oid: string): Extension | undefined {
  return extensions?.find((e) => e.extnID === oid);
}

/** Positive INTEGER octets without leading zero bytes, for comparing serials. */
function intBytes(b: ArrayBuffer | Buffer): Buffer {
  let x = Buffer.from(b as ArrayBuffer);
  while (x.length > 1 && x[0] === 0) x = x.subarray(1);
  return x;
}

function spkiKey(cert: Certificate): KeyObject {
  return createPublicKey({ key: Buffer.from(AsnConvert.serialize(cert.tbsCertificate.subjectPublicKeyInfo)), format: 'der', type: 'spki' });
}

/** Verifies `signature` over `data` with `key`, for the algorithms of SIGNATURES; false for others. */
function verifySignature(alg: AlgorithmIdentifier, data: ArrayBuffer, signature: ArrayBuffer, key: KeyObject): boolean {
  if (!(alg.algorithm in SIGNATURES)) return false;
  const digest = SIGNATURES[alg.algorithm]!;
  try {
    return cryptoVerify(digest, Buffer.from(data), { key, dsaEncoding: 'der' }, Buffer.from(signature));
  } catch {
    return false;
  }
}

/** Parsed issuers by PEM: a fleet has few issuers and many leaves. */
const issuers = new Map<string, { issuer: Certificate; issuerKey: KeyObject }>();

function parseIssuer(issuerPem: string): { issuer: Certificate; issuerKey: KeyObject } {
  const hit = issuers.get(issuerPem);
  if (hit) return hit;
  const issuer = AsnConvert.parse(pemToDer(issuerPem, 'issuer certificate'), Certificate);
  const v = { issuer, issuerKey: spkiKey(issuer) };
  if (issuers.size >= 32) issuers.delete(issuers.keys().next().value!);
  issuers.set(issuerPem, v);
  return v;
}

function parseInputs(leafPem: string, issuerPem: string): Parsed {
  let leaf: Certificate;
  let issuer: Certificate;
  let issuerKey: KeyObject;
  try {
    leaf = AsnConvert.parse(pemToDer(leafPem, 'certificate'), Certificate);
    ({ issuer, issuerKey } = parseIssuer(issuerPem));
  } catch (e) {
    throw e instanceof Unusable ? e : new Unusable(`a certificate does not parse: ${(e as Error).message}`);
  }
  // CertIDs and CRL signatures are only meaningful for the real issuer: check it signed the leaf.
  if (!verifySignature(leaf.signatureAlgorithm, leaf.tbsCertificateRaw ?? AsnConvert.serialize(leaf.tbsCertificate), leaf.signatureValue, issuerKey)) {
    throw new Unusable('the issuer certificate given did not sign this certificate');
  }
  return {
    leaf,
    issuer,
    issuerKey,
    issuerNameDer: Buffer.from(AsnConvert.serialize(leaf.tbsCertificate.issuer)),
    issuerKeyBits: Buffer.from(issuer.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey),
    serial: intBytes(leaf.tbsCertificate.serialNumber),
  };
}

function urlsOf(p: Parsed): { ocsp: string[]; crl: string[] } {
  const exts = p.leaf.tbsCertificate.extensions;
  const ocsp: string[] = [];
  const crl: string[] = [];
  const aia = ext(exts, id_pe_authorityInfoAccess);
  if (aia) {
    for (const d of AsnConvert.parse(aia.extnValue.buffer, AuthorityInfoAccessSyntax)) {
      if (d.accessMethod === '1.3.6.1.5.5.7.48.1' && d.accessLocation.uniformResourceIdentifier) ocsp.push(d.accessLocation.uniformResourceIdentifier);
    }
  }
  const cdp = ext(exts, id_ce_cRLDistributionPoints);
  if (cdp) {
    for (const dp of AsnConvert.parse(cdp.extnValue.buffer, CRLDistributionPoints)) {
      // Only CRLs the certificate's issuer signs for all reasons: no cRLIssuer, no reasons subset.
      if (dp.cRLIssuer || dp.reasons) continue;
      for (const n of dp.distributionPoint?.fullName ?? []) if (n.uniformResourceIdentifier) crl.push(n.uniformResourceIdentifier);
    }
  }
  const web = (u: string) => /^https?:\/\//i.test(u);
  return { ocsp: ocsp.filter(web).slice(0, MAX_URLS), crl: crl.filter(web).slice(0, MAX_URLS) };
}

/** http.ts fetchBounded, with its errors as reasons for 'unknown'. */
async function fetchOrUnusable(
  dispatcher: Dispatcher,
  url: string,
  init: { method: 'GET' | 'POST'; body?: Buffer; contentType?: string; accept: string },
  maxBytes: number,
  deadline: number,
): Promise<Buffer> {
  try {
    return await fetchBounded(dispatcher, url, init, maxBytes, deadline);
  } catch (e) {
    throw new Unusable(e instanceof AcmeClientError ? e.message : `request failed: ${(e as Error).message}`);
  }
}

function certIdMatches(id: CertID, p: Parsed): boolean {
  const h = HASHES[id.hashAlgorithm.algorithm];
  if (!h) return false;
  const name = createHash(h).update(p.issuerNameDer).digest();
  const key = createHash(h).update(p.issuerKeyBits).digest();
  const eq = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);
  return eq(name, Buffer.from(id.issuerNameHash.buffer)) && eq(key, Buffer.from(id.issuerKeyHash.buffer)) && intBytes(id.serialNumber).equals(p.serial);
}

/** Certificates that may sign the OCSP response: the issuer, and responders it delegated to (RFC 6960 §4.2.2.2). */
function ocspSigners(basic: BasicOCSPResponse, p: Parsed, now: number): KeyObject[] {
  const keys = [p.issuerKey];
  for (const c of basic.certs ?? []) {
    const tbs = c.tbsCertificate;
    const eku = ext(tbs.extensions, id_ce_extKeyUsage);
    if (!eku || !AsnConvert.parse(eku.extnValue.buffer, ExtendedKeyUsage).includes(id_kp_OCSPSigning)) continue;
    if (tbs.validity.notBefore.getTime().getTime() > now || tbs.validity.notAfter.getTime().getTime() < now) continue;
    if (!verifySignature(c.signatureAlgorithm, c.tbsCertificateRaw ?? AsnConvert.serialize(tbs), c.signatureValue, p.issuerKey)) continue;
    try {
      keys.push(spkiKey(c));
    } catch {
      // a key we cannot read cannot have signed anything we accept
    }
  }
  return keys;
}

function fresh(thisUpdate: Date, nextUpdate: Date | undefined, now: number): string | null {
  if (thisUpdate.getTime() > now + SKEW_MS) return `its thisUpdate (${thisUpdate.toISOString()}) is in the future`;
  const end = nextUpdate ? nextUpdate.getTime() : thisUpdate.getTime() + NO_NEXT_UPDATE_MS;
  if (end < now - SKEW_MS) return `it is stale (${nextUpdate ? 'nextUpdate' : 'thisUpdate'} ${(nextUpdate ?? thisUpdate).toISOString()})`;
  return null;
}

async function checkOcsp(p: Parsed, url: string, dispatcher: Dispatcher, deadline: number): Promise<RevocationCheckResult> {
  const nonce = randomBytes(32);
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: new OctetString(createHash('sha1').update(p.issuerNameDer).digest()),
    issuerKeyHash: new OctetString(createHash('sha1').update(p.issuerKeyBits).digest()),
    serialNumber: new Uint8Array(p.leaf.tbsCertificate.serialNumber).slice().buffer,
  });
  const req = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: [new Request({ reqCert: certId })],
      // RFC 9654 §2.1: a 32-octet nonce binds the answer to this request.
      requestExtensions: [new Extension({ extnID: id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))) })],
    }),
  });
  const body = await fetchOrUnusable(
    dispatcher,
    url,
    { method: 'POST', body: Buffer.from(AsnConvert.serialize(req)), contentType: 'application/ocsp-request', accept: 'application/ocsp-response' },
    OCSP_MAX_BYTES,
    deadline,
  );
  let resp: OCSPResponse;
  let basic: BasicOCSPResponse;
  try {
    resp = AsnConvert.parse(body, OCSPResponse);
    if (resp.responseStatus !== OCSPResponseStatus.successful) throw new Unusable(`the responder answered ${OCSPResponseStatus[resp.responseStatus] ?? resp.responseStatus}`);
    if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new Unusable('the answer is not a basic OCSP response');
    basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  } catch (e) {
    throw e instanceof Unusable ? e : new Unusable(`the answer does not parse as an OCSP response: ${(e as Error).message}`);
  }
  const now = Date.now();
  const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  if (!ocspSigners(basic, p, now).some((k) => verifySignature(basic.signatureAlgorithm, tbs, basic.signature, k))) {
    throw new Unusable('the response is not signed by the issuer or a responder it authorised');
  }
  const data = basic.tbsResponseData;
  const echoed = ext(data.responseExtensions, id_pkix_ocsp_nonce);
  // A response without our nonce may be a pre-signed one (RFC 5019), acceptable when fresh; one
  // with another nonce is a replay.
  if (echoed && !Buffer.from(echoed.extnValue.buffer).equals(Buffer.from(AsnConvert.serialize(new OctetString(nonce))))) {
    throw new Unusable('the response carries a different nonce than the request (a replay?)');
  }
  const single = data.responses.find((r) => certIdMatches(r.certID, p));
  if (!single) throw new Unusable('the response does not answer for this certificate');
  const stale = fresh(single.thisUpdate, single.nextUpdate, now);
  if (stale) throw new Unusable(`the response is not fresh: ${stale}`);
  const st = single.certStatus;
  if (st.revoked) {
    const reason = st.revoked.revocationReason?.reason;
    return { status: 'revoked', source: 'ocsp', revokedAt: st.revoked.revocationTime, ...(reason !== undefined ? { reason } : {}), detail: `OCSP ${url}` };
  }
  if (st.good !== undefined) return { status: 'good', source: 'ocsp', detail: `OCSP ${url}` };
  throw new Unusable('the responder does not know this certificate (unknown)');
}

async function checkCrl(p: Parsed, url: string, dispatcher: Dispatcher, deadline: number): Promise<RevocationCheckResult> {
  let body = await fetchOrUnusable(dispatcher, url, { method: 'GET', accept: 'application/pkix-crl' }, CRL_MAX_BYTES, deadline);
  // RFC 5280 §4.2.1.13 says DER; some servers send PEM.
  if (body.subarray(0, 10).toString('latin1') === '-----BEGIN') {
    const pem = /-----BEGIN X509 CRL-----([\s\S]+?)-----END X509 CRL-----/.exec(body.toString('latin1'));
    if (pem) body = Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64');
  }
  let crl: CertificateList;
  try {
    // asn1js stops at 10,000 nodes by default; a CRL has about ten per entry. Parsing a CRL of
    // CRL_MAX_BYTES (some 200,000 entries) takes seconds of CPU: the size cap is what bounds it.
    crl = AsnConvert.parse(body, CertificateList, { berOptions: { maxNodes: Math.ceil(body.length / 2), maxContentLength: CRL_MAX_BYTES } });
  } catch (e) {
    throw new Unusable(`the CRL does not parse: ${(e as Error).message}`);
  }
  const tbs = crl.tbsCertList;
  if (!Buffer.from(AsnConvert.serialize(tbs.issuer)).equals(p.issuerNameDer)) throw new Unusable("the CRL's issuer is not the certificate's issuer");
  if (!verifySignature(crl.signatureAlgorithm, crl.tbsCertListRaw ?? AsnConvert.serialize(tbs), crl.signature, p.issuerKey)) {
    throw new Unusable('the CRL is not signed by the issuer');
  }
  // RFC 5280 §5.2: a CRL with a critical extension we do not understand must not be used; a
  // scoped CRL (issuing distribution point) must cover end-entity certificates for all reasons.
  for (const e of tbs.crlExtensions ?? []) {
    if (e.extnID === id_ce_issuingDistributionPoint) {
      const idp = AsnConvert.parse(e.extnValue.buffer, IssuingDistributionPoint);
      if (idp.onlyContainsCACerts || idp.onlyContainsAttributeCerts || idp.onlySomeReasons || idp.indirectCRL) throw new Unusable('the CRL is scoped to other certificates or reasons');
    } else if (e.critical && e.extnID !== '2.5.29.20' && e.extnID !== '2.5.29.35') {
      throw new Unusable(`the CRL has a critical extension ${e.extnID} this client does not understand (a delta CRL?)`);
    }
  }
  const stale = fresh(tbs.thisUpdate.getTime(), tbs.nextUpdate?.getTime(), Date.now());
  if (stale) throw new Unusable(`the CRL is not fresh: ${stale}`);
  for (const r of tbs.revokedCertificates ?? []) {
    if (!intBytes(r.userCertificate).equals(p.serial)) continue;
    const re = ext(r.crlEntryExtensions, id_ce_cRLReasons);
    const reason = re ? AsnConvert.parse(re.extnValue.buffer, CRLReason).reason : undefined;
    // removeFromCRL (8) only appears in delta CRLs: the certificate is no longer on hold.
    if (reason === 8) break;
    return { status: 'revoked', source: 'crl', revokedAt: r.revocationDate.getTime(), ...(reason !== undefined ? { reason } : {}), detail: `CRL ${url}` };
  }
  return { status: 'good', source: 'crl', detail: `CRL ${url}` };
}

/**
 * Revocation status of `leafPem` (issued by `issuerPem`): OCSP first, then the CRL. Never throws
 * for network, protocol or input trouble; that is 'unknown' with the reasons in `detail`.
 */
export async function checkRevocation(leafPem: string, issuerPem: string, opts: RevocationCheckOptions = {}): Promise<RevocationCheckResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  let p: Parsed;
  let urls: { ocsp: string[]; crl: string[] };
  try {
    p = parseInputs(leafPem, issuerPem);
    urls = urlsOf(p);
  } catch (e) {
    return { status: 'unknown', source: null, detail: e instanceof Unusable ? e.message : `the certificates cannot be read: ${(e as Error).message}` };
  }
  if (!urls.ocsp.length && !urls.crl.length) {
    return { status: 'unknown', source: null, detail: 'the certificate names no http(s) OCSP responder and no CRL distribution point' };
  }
  const dispatcher = opts.dispatcher ?? boundedAgent({ ...(opts.ca ? { ca: opts.ca } : {}), timeoutMs });
  const why: string[] = [];
  try {
    for (const url of urls.ocsp) {
      try {
        return await checkOcsp(p, url, dispatcher, deadline);
      } catch (e) {
        why.push(`OCSP ${url}: ${e instanceof Unusable ? e.message : `failed: ${(e as Error).message}`}`);
      }
    }
    for (const url of urls.crl) {
      try {
        return await checkCrl(p, url, dispatcher, deadline);
      } catch (e) {
        why.push(`CRL ${url}: ${e instanceof Unusable ? e.message : `failed: ${(e as Error).message}`}`);
      }
    }
  } finally {
    if (!opts.dispatcher) await dispatcher.destroy().catch(() => undefined);
  }
  return { status: 'unknown', source: null, detail: why.join('; ') };
}

/**
 * checkRevocation with connections kept between checks (one pool per set of trusted roots), for
 * runs over many certificates; close() when the run is over.
 */
export function createRevocationChecker(o: { timeoutMs?: number } = {}): {
  check: (leafPem: string, issuerPem: string, opts?: RevocationCheckOptions) => Promise<RevocationCheckResult>;
  close(): Promise<void>;
} {
  const pools = new Map<string, Dispatcher>();
  return {
    check(leafPem, issuerPem, opts = {}) {
      const key = opts.ca ?? '';
      let d = pools.get(key);
      if (!d) {
        d = boundedAgent({ ...(opts.ca ? { ca: opts.ca } : {}), timeoutMs: o.timeoutMs ?? opts.timeoutMs ?? 15_000 });
        pools.set(key, d);
      }
      return checkRevocation(leafPem, issuerPem, { ...opts, dispatcher: d });
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((d) => d.close().catch(() => undefined)));
    },
  };
}
