/**
 * Is a certificate revoked? Asks the OCSP responder named in the certificate (RFC 6960, POST with a
 * nonce), then the CRL distribution point (RFC 5280), and believes only answers that are signed by
 * the issuer (or by a responder the issuer delegated to), that answer for this very certificate and
 * that are fresh. Everything else gives 'unknown' with the reasons in `detail`: never 'good' on a
 * guess. The renewal engine renews at once on 'revoked'.
 *
 * The requests themselves go through client/http.ts fetchBounded (no redirects unless a checker's
 * maxRedirects allows some, each hop checked like the first URL; size caps; deadline),
 * and only to public addresses unless `allowPrivateAddresses` (the URLs come from the certificate,
 * i.e. from whoever issued it: without the check they are a blind SSRF into the client's network).
 */
import { createHash, createPublicKey, randomBytes, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import dns from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
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
  CRLDistributionPoints,
  CRLReason,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  id_ce_cRLDistributionPoints,
  id_ce_cRLReasons,
  id_ce_extKeyUsage,
  id_ce_issuingDistributionPoint,
  id_kp_OCSPSigning,
  id_pe_authorityInfoAccess,
  IssuingDistributionPoint,
  RevokedCertificate,
  Time,
} from '@peculiar/asn1-x509';
import { Agent, type Dispatcher } from 'undici';
// The validator's address classes (loopback, RFC 1918, link-local, cloud metadata), so that the CA
// and the client agree on what "private" means. (A client module importing a server one: checkAddress
// would sit better in src/lib.)
import { checkAddress } from '../server/validation/policy.js';
import { childrenOf, DerError, expectTag, readTlv, type Tlv } from '../lib/der.js';
import { SIGNATURE_DIGESTS } from '../lib/signature-algorithms.js';
import { AcmeClientError } from './errors.js';
import { fetchBounded } from './http.js';

export interface RevocationCheckResult {
  status: 'good' | 'revoked' | 'unknown';
  /** Which answer decided; null when none could be trusted. */
  source: 'ocsp' | 'crl' | null;
  revokedAt?: Date;
  /** RFC 5280 §5.3.1 CRLReason, when the answer gives one. */
  reason?: number;
  /** Why the answer is 'unknown' (every source tried), or which URL answered. */
  detail?: string;
  /** The URL whose answer decided. */
  url?: string;
  /** Each answer that could not be used, in the order tried (also before a later source decided). */
  problems?: RevocationProblem[];
}

/** Why an answer could not be used, as a closed set callers can count and switch on. */
export type RevocationProblemKind =
  /** The URL is not http(s), or its address is refused by the address policy. */
  | 'refused'
  | 'timeout'
  | 'network'
  /** Not 200 (or too many redirects). */
  | 'http-status'
  | 'too-large'
  /** The answer does not parse. */
  | 'malformed'
  /** The OCSP responder answered an error status (tryLater, unauthorized, ...). */
  | 'responder-error'
  /** Not signed by the issuer (or, for OCSP, by a responder it delegated to). */
  | 'signature'
  /** Signed, but about something else: another certificate, issuer, distribution point, or another request's nonce. */
  | 'mismatch'
  /** Past its nextUpdate, or thisUpdate in the future. */
  | 'stale'
  /** The OCSP responder does not know the certificate. */
  | 'unknown-certificate'
  /** A CRL feature this checker does not handle (an unknown critical extension, a relative name). */
  | 'unsupported'
  /** The certificates given cannot be used (the issuer did not sign the leaf, a PEM that does not parse). */
  | 'issuer'
  /** The certificate names no http(s) OCSP responder and no CRL distribution point. */
  | 'no-url'
  | 'other';

export interface RevocationProblem {
  /** null: about the inputs, before any source was asked. */
  source: 'ocsp' | 'crl' | null;
  url: string | null;
  kind: RevocationProblemKind;
  message: string;
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
  /**
   * Also fetch OCSP and CRL URLs whose host is, or resolves to, a loopback (127/8, ::1), private
   * (RFC 1918, 100.64/10, fc00::/7) or link-local (169.254/16, fe80::/10) address. Default false:
   * such URLs give 'unknown' ("not fetched"). Turn it on for a private CA on a LAN (or in tests),
   * i.e. when the CA's own directory is at such an address. Unspecified, multicast and cloud
   * metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) are refused even then.
   *
   * With the default connections (no `dispatcher`) the name is resolved once and the connection
   * goes to the address that was checked, so a second DNS answer cannot swap in another. With a
   * `dispatcher` of your own only an IP-literal host is checked: resolving is that dispatcher's.
   */
  allowPrivateAddresses?: boolean;
}

const OCSP_MAX_BYTES = 64 * 1024;
/**
 * Some 230,000 entries. Not lowered to 5 MiB: an Anvil CA's own CRL is one unpartitioned list (up
 * to CrlService's maxEntries, 1,000,000) that passes 5 MiB at ~120,000 unexpired revocations, and
 * reading one is cheap since scanCrl (a 5 MiB CRL: 0.5 s, fetch included, where parsing it whole
 * took 9 s); a createRevocationChecker reads it once per run.
 */
const CRL_MAX_BYTES = 10 * 1024 * 1024;
/** CRL bytes a createRevocationChecker keeps between checks (the oldest go first). */
const CRL_CACHE_BYTES = 64 * 1024 * 1024;
/** A CRL that was already stale when fetched is fetched again after this long, not for every check. */
const STALE_CRL_RETRY_MS = 60_000;
/** Clock skew tolerated between us and the responder. */
const SKEW_MS = 5 * 60_000;
/** A response without nextUpdate counts as fresh this long after its thisUpdate. */
const NO_NEXT_UPDATE_MS = 24 * 3_600_000;
/** URLs of each kind tried at most. */
const MAX_URLS = 2;

const SHA1 = '1.3.14.3.2.26';
const HASHES: Record<string, string> = { [SHA1]: 'sha1', '2.16.840.1.101.3.4.2.1': 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512' };
/** Signature algorithms we verify: OID -> digest (null: built into the algorithm). */
const SIGNATURES = SIGNATURE_DIGESTS;

class Unusable extends Error {
  constructor(
    message: string,
    readonly kind: RevocationProblemKind = 'malformed',
  ) {
    super(message);
  }
}

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
  if (!m) throw new Unusable(`the ${what} is not a PEM certificate`, 'issuer');
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
function verifySignature(alg: AlgorithmIdentifier, data: ArrayBuffer | Buffer, signature: ArrayBuffer | Buffer, key: KeyObject): boolean {
  if (!(alg.algorithm in SIGNATURES)) return false;
  const digest = SIGNATURES[alg.algorithm]!;
  const buf = (x: ArrayBuffer | Buffer) => (Buffer.isBuffer(x) ? x : Buffer.from(x));
  try {
    return cryptoVerify(digest, buf(data), { key, dsaEncoding: 'der' }, buf(signature));
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
    throw e instanceof Unusable ? e : new Unusable(`a certificate does not parse: ${(e as Error).message}`, 'issuer');
  }
  // CertIDs and CRL signatures are only meaningful for the real issuer: check it signed the leaf.
  if (!verifySignature(leaf.signatureAlgorithm, leaf.tbsCertificateRaw ?? AsnConvert.serialize(leaf.tbsCertificate), leaf.signatureValue, issuerKey)) {
    throw new Unusable('the issuer certificate given did not sign this certificate', 'issuer');
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

/** A CRL location from the certificate, with every name of its distribution point (RFC 5280 §4.2.1.13). */
interface CrlPoint {
  url: string;
  names: string[];
}

function urlsOf(p: Parsed): { ocsp: string[]; crl: CrlPoint[] } {
  const exts = p.leaf.tbsCertificate.extensions;
  const ocsp: string[] = [];
  const crl: CrlPoint[] = [];
  const web = (u: string) => /^https?:\/\//i.test(u);
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
      const names = (dp.distributionPoint?.fullName ?? []).flatMap((n) => (n.uniformResourceIdentifier ? [n.uniformResourceIdentifier] : []));
      for (const url of names) if (web(url)) crl.push({ url, names });
    }
  }
  return { ocsp: ocsp.filter(web).slice(0, MAX_URLS), crl: crl.slice(0, MAX_URLS) };
}

// ---------------------------------------------------------------------------------------------
// Where requests may go

/** Why `ip` must not be fetched from, or null. */
function refusedAddress(ip: string, allowPrivate: boolean): string | null {
  return checkAddress(ip, { allowLoopback: allowPrivate, allowPrivate, allowLinkLocal: allowPrivate, deny: [] });
}

const PRIVATE_HINT = ' (allowPrivateAddresses lets a private CA through)';

/**
 * Whether `url`'s host is, or resolves to, a loopback, private or link-local address. For callers
 * deciding `allowPrivateAddresses`: a CA whose own directory is at such an address (a private CA
 * on a LAN, a test CA) may name such addresses in its certificates. A name that does not resolve
 * is not private.
 */
export async function isPrivateUrl(url: string, lookup: (host: string) => Promise<string[]> = defaultLookup): Promise<boolean> {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return false;
  }
  const addresses = isIP(host) ? [host] : await lookup(host).catch(() => []);
  // Private: refused by default, allowed with allowPrivateAddresses (not metadata, not multicast).
  return addresses.length > 0 && addresses.every((a) => refusedAddress(a, false) !== null && refusedAddress(a, true) === null);
}

async function defaultLookup(host: string): Promise<string[]> {
  return (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
}

/** Refuses a URL whose host is an IP literal of a refused kind (names are checked when resolved). */
function checkUrlHost(url: string, allowPrivate: boolean): void {
  let host: string;
  try {
    // The WHATWG parser (the one undici uses) normalises 0x7f.1, 2130706433 and the like to 127.0.0.1.
    host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    throw new Unusable('not a URL', 'refused');
  }
  if (!isIP(host)) return;
  const why = refusedAddress(host, allowPrivate);
  if (why) throw new Unusable(`not fetched: ${why}${allowPrivate ? '' : PRIVATE_HINT}`, 'refused');
}

/**
 * dns.lookup for the connections: resolves once, refuses the name if any of its addresses is of a
 * refused kind, and hands net.connect the very addresses it checked (no second resolution).
 */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return void callback(err, '', 0);
      for (const a of addresses) {
        const why = refusedAddress(a.address, allowPrivate);
        if (why) {
          const e = Object.assign(new Error(`not fetched: ${hostname}: ${why}${allowPrivate ? '' : PRIVATE_HINT}`), { code: 'EADDRNOTALLOWED' });
          return void callback(e, '', 0);
        }
      }
      if (options.all) return void (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return void callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}

/** fetchBounded's connection pool (client/http.ts boundedAgent) with the guarded lookup. */
function revocationAgent(o: { ca?: string; timeoutMs: number; allowPrivate: boolean; connections?: number }): Dispatcher {
  return new Agent({
    ...(o.connections ? { connections: o.connections } : {}),
    connect: { ...(o.ca ? { ca: o.ca } : {}), timeout: o.timeoutMs, lookup: guardedLookup(o.allowPrivate) },
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
  });
}

interface Env {
  dispatcher: Dispatcher;
  allowPrivate: boolean;
  /** Largest CRL read (default CRL_MAX_BYTES). */
  crlMaxBytes?: number;
  /** Redirects followed per request (default none). */
  maxRedirects?: number;
  /** The CRL at `url`, fetched and scanned (createRevocationChecker shares and keeps them). */
  crl(url: string, deadline: number): Promise<ScannedCrl>;
}

/** http.ts fetchBounded, with its errors as reasons for 'unknown'. */
async function fetchOrUnusable(
  env: Pick<Env, 'dispatcher' | 'allowPrivate' | 'maxRedirects'>,
  url: string,
  init: { method: 'GET' | 'POST'; body?: Buffer; contentType?: string; accept: string },
  maxBytes: number,
  deadline: number,
): Promise<Buffer> {
  checkUrlHost(url, env.allowPrivate);
  try {
    // Each hop of a redirect passes the same address check as the first URL.
    const follow = env.maxRedirects ? { maxRedirects: env.maxRedirects, check: (u: string) => checkUrlHost(u, env.allowPrivate) } : undefined;
    return await fetchBounded(env.dispatcher, url, init, maxBytes, deadline, follow);
  } catch (e) {
    if (e instanceof Unusable) throw e;
    // guardedLookup's refusal, however deep undici wrapped it.
    for (let c: unknown = e; c instanceof Error; c = c.cause) {
      const refused = /not fetched: .*/.exec(c.message);
      if (refused) throw new Unusable(refused[0], 'refused');
    }
    if (!(e instanceof AcmeClientError)) throw new Unusable(`request failed: ${(e as Error).message}`, 'network');
    // undici's own timers (connect, headers, body) are timeouts too, not other network failures.
    for (let c: unknown = e; c instanceof Error; c = c.cause) {
      if (/^UND_ERR_(CONNECT|HEADERS|BODY)_TIMEOUT$/.test(String((c as { code?: unknown }).code))) throw new Unusable(e.message, 'timeout');
    }
    const kinds: Record<string, RevocationProblemKind> = { TIMEOUT: 'timeout', NETWORK: 'network', RESPONSE_TOO_LARGE: 'too-large', BAD_RESPONSE: 'http-status' };
    throw new Unusable(e.message, kinds[e.code] ?? 'network');
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

async function checkOcsp(p: Parsed, url: string, env: Env, deadline: number): Promise<RevocationCheckResult> {
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
    env,
    url,
    { method: 'POST', body: Buffer.from(AsnConvert.serialize(req)), contentType: 'application/ocsp-request', accept: 'application/ocsp-response' },
    OCSP_MAX_BYTES,
    deadline,
  );
  let resp: OCSPResponse;
  let basic: BasicOCSPResponse;
  try {
    resp = AsnConvert.parse(body, OCSPResponse);
    if (resp.responseStatus !== OCSPResponseStatus.successful) throw new Unusable(`the responder answered ${OCSPResponseStatus[resp.responseStatus] ?? resp.responseStatus}`, 'responder-error');
    if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new Unusable('the answer is not a basic OCSP response');
    basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  } catch (e) {
    throw e instanceof Unusable ? e : new Unusable(`the answer does not parse as an OCSP response: ${(e as Error).message}`);
  }
  const now = Date.now();
  const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  if (!ocspSigners(basic, p, now).some((k) => verifySignature(basic.signatureAlgorithm, tbs, basic.signature, k))) {
    throw new Unusable('the response is not signed by the issuer or a responder it authorised', 'signature');
  }
  const data = basic.tbsResponseData;
  const echoed = ext(data.responseExtensions, id_pkix_ocsp_nonce);
  // A response without our nonce may be a pre-signed one (RFC 5019), acceptable when fresh; one
  // with another nonce is a replay.
  if (echoed && !Buffer.from(echoed.extnValue.buffer).equals(Buffer.from(AsnConvert.serialize(new OctetString(nonce))))) {
    throw new Unusable('the response carries a different nonce than the request (a replay?)', 'mismatch');
  }
  const single = data.responses.find((r) => certIdMatches(r.certID, p));
  if (!single) throw new Unusable('the response does not answer for this certificate', 'mismatch');
  const stale = fresh(single.thisUpdate, single.nextUpdate, now);
  if (stale) throw new Unusable(`the response is not fresh: ${stale}`, 'stale');
  const st = single.certStatus;
  if (st.revoked) {
    const reason = st.revoked.revocationReason?.reason;
    return { status: 'revoked', source: 'ocsp', revokedAt: st.revoked.revocationTime, ...(reason !== undefined ? { reason } : {}), url, detail: `OCSP ${url}` };
  }
  if (st.good !== undefined) return { status: 'good', source: 'ocsp', url, detail: `OCSP ${url}` };
  throw new Unusable('the responder does not know this certificate (unknown)', 'unknown-certificate');
}

// ---------------------------------------------------------------------------------------------
// CRLs

/** A CRL read far enough to check certificates against it; shared by every check of its URL. */
interface ScannedCrl {
  /** The DER (kept: entries are read from it on a hit). */
  der: Buffer;
  /** The signed TBSCertList, its issuer Name, as they are in `der`. */
  tbs: Buffer;
  issuerDer: Buffer;
  signatureAlgorithm: AlgorithmIdentifier;
  signature: Buffer;
  thisUpdate: Date;
  nextUpdate?: Date;
  extensions: Extension[];
  /** Offset of each revokedCertificates entry in `der`, by serial (hex, no leading zero bytes); the first wins. */
  entries: Map<string, number>;
  /** Signature checks done, by the issuer key's bits (base64). */
  verified: Map<string, boolean>;
}

const isTime = (t: Tlv | undefined): t is Tlv => t?.tag === 0x17 || t?.tag === 0x18;

/**
 * Reads a DER CertificateList (RFC 5280 §5.1). The header fields go through the ASN.1 schema; the
 * revokedCertificates list is only walked, to index entries by serial: @peculiar/asn1-schema makes
 * some ten objects per entry, which took 9 s and 180 MB of heap for a 5 MiB CRL (120,000 entries),
 * all of it blocking the event loop. An entry is parsed when a certificate is found in it.
 */
function scanCrl(der: Buffer): ScannedCrl {
  const piece = (t: Tlv) => der.subarray(t.start, t.end);
  try {
    const top = readTlv(der, 0, der.length);
    if (top.tag !== 0x30 || top.end !== der.length) throw new DerError('not one DER SEQUENCE');
    const [tbs, alg, sig, ...extra] = childrenOf(der, top);
    expectTag(tbs, 0x30, 'tbsCertList');
    expectTag(alg, 0x30, 'signatureAlgorithm');
    expectTag(sig, 0x03, 'signatureValue');
    if (extra.length) throw new DerError('fields after signatureValue');
    if (der[sig!.contentStart] !== 0) throw new DerError('the signature BIT STRING has unused bits');
    const f = childrenOf(der, tbs!);
    let i = 0;
    if (f[i]?.tag === 0x02) i++; // version
    expectTag(f[i++], 0x30, 'signature');
    const issuer = expectTag(f[i++], 0x30, 'issuer');
    if (!isTime(f[i])) throw new DerError('thisUpdate is missing');
    const thisUpdate = AsnConvert.parse(piece(f[i++]!), Time).getTime();
    const nextUpdate = isTime(f[i]) ? AsnConvert.parse(piece(f[i++]!), Time).getTime() : undefined;
    const entries = new Map<string, number>();
    if (f[i]?.tag === 0x30) {
      const list = f[i++]!;
      for (let at = list.contentStart; at < list.end; ) {
        const e = readTlv(der, at, list.end);
        if (e.tag !== 0x30) throw new DerError(`revokedCertificates entry at byte ${at} is not a SEQUENCE`);
        const serial = expectTag(readTlv(der, e.contentStart, e.end), 0x02, `the serial of the entry at byte ${at}`);
        const key = intBytes(der.subarray(serial.contentStart, serial.end)).toString('hex');
        if (!entries.has(key)) entries.set(key, e.start);
        at = e.end;
      }
    }
    let extensions: Extension[] = [];
    if (f[i]?.tag === 0xa0) {
      const wrapped = f[i++]!;
      extensions = [...AsnConvert.parse(piece(readTlv(der, wrapped.contentStart, wrapped.end)), Extensions)];
    }
    if (i !== f.length) throw new DerError('unexpected fields in tbsCertList');
    return {
      der,
      tbs: piece(tbs!),
      issuerDer: piece(issuer),
      signatureAlgorithm: AsnConvert.parse(piece(alg!), AlgorithmIdentifier),
      signature: der.subarray(sig!.contentStart + 1, sig!.end),
      thisUpdate,
      ...(nextUpdate ? { nextUpdate } : {}),
      extensions,
      entries,
      verified: new Map(),
    };
  } catch (e) {
    throw new Unusable(`the CRL does not parse: ${(e as Error).message}`);
  }
}

/** Fetches and scans the CRL at `url` (one check's own copy; createRevocationChecker shares them). */
async function fetchCrl(env: Pick<Env, 'dispatcher' | 'allowPrivate' | 'crlMaxBytes' | 'maxRedirects'>, url: string, deadline: number): Promise<ScannedCrl> {
  let body = await fetchOrUnusable(env, url, { method: 'GET', accept: 'application/pkix-crl' }, env.crlMaxBytes ?? CRL_MAX_BYTES, deadline);
  // RFC 5280 §4.2.1.13 says DER; some servers send PEM.
  if (body.subarray(0, 10).toString('latin1') === '-----BEGIN') {
    const pem = /-----BEGIN X509 CRL-----([\s\S]+?)-----END X509 CRL-----/.exec(body.toString('latin1'));
    if (pem) body = Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64');
  }
  return scanCrl(body);
}

/** When a kept CRL must be fetched again: at its nextUpdate, or soon when it was stale already. */
function keepUntil(crl: ScannedCrl, now: number): number {
  const end = crl.nextUpdate ? crl.nextUpdate.getTime() : crl.thisUpdate.getTime() + NO_NEXT_UPDATE_MS;
  return end > now ? end : now + STALE_CRL_RETRY_MS;
}

async function checkCrl(p: Parsed, point: CrlPoint, env: Env, deadline: number): Promise<RevocationCheckResult> {
  const { url } = point;
  const crl = await env.crl(url, deadline);
  if (!crl.issuerDer.equals(p.issuerNameDer)) throw new Unusable("the CRL's issuer is not the certificate's issuer", 'mismatch');
  const keyId = p.issuerKeyBits.toString('base64');
  let signed = crl.verified.get(keyId);
  if (signed === undefined) {
    signed = verifySignature(crl.signatureAlgorithm, crl.tbs, crl.signature, p.issuerKey);
    crl.verified.set(keyId, signed);
  }
  if (!signed) throw new Unusable('the CRL is not signed by the issuer', 'signature');
  // RFC 5280 §5.2: a CRL with a critical extension we do not understand must not be used.
  for (const e of crl.extensions) {
    if (e.extnID === id_ce_issuingDistributionPoint) {
      const idp = AsnConvert.parse(e.extnValue.buffer, IssuingDistributionPoint);
      // RFC 5280 §6.3.3 (b)(2)(ii)-(iv), (d): a scoped CRL must cover end-entity certificates, for
      // all reasons, issued by the CRL's own issuer.
      const scope = [
        idp.onlyContainsCACerts && 'onlyContainsCACerts',
        idp.onlyContainsAttributeCerts && 'onlyContainsAttributeCerts',
        idp.onlySomeReasons && 'onlySomeReasons',
        idp.indirectCRL && 'indirectCRL',
      ].filter(Boolean);
      if (scope.length) throw new Unusable(`the CRL is scoped to other certificates or reasons (issuing distribution point: ${scope.join(', ')})`, 'mismatch');
      // RFC 5280 §6.3.3 (b)(2)(i): "If the distribution point name is present in the IDP CRL
      // extension and the distribution field is present in the DP, then verify that one of the
      // names in the IDP matches one of the names in the DP." Otherwise this is another shard.
      const dpn = idp.distributionPoint;
      if (dpn) {
        if (!dpn.fullName) throw new Unusable('the CRL names its distribution point relative to its issuer, which this client cannot match to the certificate', 'unsupported');
        const names = dpn.fullName.flatMap((n) => (n.uniformResourceIdentifier ? [n.uniformResourceIdentifier] : []));
        if (!names.some((n) => n === url || point.names.includes(n))) {
          throw new Unusable(`the CRL is for another distribution point (${names.join(', ') || 'no URI'}), not the certificate's`, 'mismatch');
        }
      }
    } else if (e.critical && e.extnID !== '2.5.29.20' && e.extnID !== '2.5.29.35') {
      throw new Unusable(`the CRL has a critical extension ${e.extnID} this client does not understand (a delta CRL?)`, 'unsupported');
    }
  }
  const stale = fresh(crl.thisUpdate, crl.nextUpdate, Date.now());
  if (stale) throw new Unusable(`the CRL is not fresh: ${stale}`, 'stale');
  const at = crl.entries.get(p.serial.toString('hex'));
  if (at === undefined) return { status: 'good', source: 'crl', url, detail: `CRL ${url}` };
  let r: RevokedCertificate;
  try {
    const e = readTlv(crl.der, at, crl.der.length);
    r = AsnConvert.parse(crl.der.subarray(e.start, e.end), RevokedCertificate);
  } catch (e) {
    throw new Unusable(`the CRL entry for this certificate does not parse: ${(e as Error).message}`);
  }
  const re = ext(r.crlEntryExtensions, id_ce_cRLReasons);
  const reason = re ? AsnConvert.parse(re.extnValue.buffer, CRLReason).reason : undefined;
  // removeFromCRL (8) only appears in delta CRLs: the certificate is no longer on hold.
  if (reason === 8) return { status: 'good', source: 'crl', url, detail: `CRL ${url}` };
  return { status: 'revoked', source: 'crl', revokedAt: r.revocationDate.getTime(), ...(reason !== undefined ? { reason } : {}), url, detail: `CRL ${url}` };
}

/**
 * Revocation status of `leafPem` (issued by `issuerPem`): OCSP first, then the CRL. Never throws
 * for network, protocol or input trouble; that is 'unknown' with the reasons in `detail`.
 * URLs at loopback, private or link-local addresses are not fetched unless
 * `opts.allowPrivateAddresses` (see RevocationCheckOptions).
 */
export async function checkRevocation(leafPem: string, issuerPem: string, opts: RevocationCheckOptions = {}): Promise<RevocationCheckResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const allowPrivate = opts.allowPrivateAddresses ?? false;
  const dispatcher = opts.dispatcher ?? revocationAgent({ ...(opts.ca ? { ca: opts.ca } : {}), timeoutMs, allowPrivate });
  const env: Env = { dispatcher, allowPrivate, crl: (url, deadline) => fetchCrl(env, url, deadline) };
  try {
    return await check(leafPem, issuerPem, timeoutMs, env);
  } finally {
    if (!opts.dispatcher) await dispatcher.destroy().catch(() => undefined);
  }
}

async function check(leafPem: string, issuerPem: string, timeoutMs: number, env: Env): Promise<RevocationCheckResult> {
  const deadline = Date.now() + timeoutMs;
  let p: Parsed;
  let urls: { ocsp: string[]; crl: CrlPoint[] };
  try {
    p = parseInputs(leafPem, issuerPem);
    urls = urlsOf(p);
  } catch (e) {
    const detail = e instanceof Unusable ? e.message : `the certificates cannot be read: ${(e as Error).message}`;
    return { status: 'unknown', source: null, detail, problems: [{ source: null, url: null, kind: 'issuer', message: detail }] };
  }
  if (!urls.ocsp.length && !urls.crl.length) {
    const detail = 'the certificate names no http(s) OCSP responder and no CRL distribution point';
    return { status: 'unknown', source: null, detail, problems: [{ source: null, url: null, kind: 'no-url', message: detail }] };
  }
  const why: string[] = [];
  const problems: RevocationProblem[] = [];
  const failed = (source: 'ocsp' | 'crl', url: string, e: unknown) => {
    const message = e instanceof Unusable ? e.message : `failed: ${(e as Error).message}`;
    why.push(`${source.toUpperCase()} ${url}: ${message}`);
    problems.push({ source, url, kind: e instanceof Unusable ? e.kind : 'other', message });
  };
  const withProblems = (r: RevocationCheckResult) => (problems.length ? { ...r, problems } : r);
  for (const url of urls.ocsp) {
    try {
      return withProblems(await checkOcsp(p, url, env, deadline));
    } catch (e) {
      failed('ocsp', url, e);
    }
  }
  for (const point of urls.crl) {
    try {
      return withProblems(await checkCrl(p, point, env, deadline));
    } catch (e) {
      failed('crl', point.url, e);
    }
  }
  return { status: 'unknown', source: null, detail: why.join('; '), problems };
}

/** `promise`, or Unusable once `deadline` passes (a check waiting for a CRL another check fetches). */
async function byDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  const left = deadline - Date.now();
  if (left <= 0) throw new Unusable('no time left', 'timeout');
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Unusable('timed out', 'timeout')), left)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RevocationCheckerOptions {
  /** Connection, header and body timeouts of the pools (default: the first check's timeoutMs, else 15 s). */
  timeoutMs?: number;
  /**
   * Fetch OCSP/CRL URLs at loopback, private and link-local addresses (default false); a check's
   * own `allowPrivateAddresses` overrides it. See RevocationCheckOptions.allowPrivateAddresses.
   */
  allowPrivateAddresses?: boolean;
  /** Largest CRL read, in bytes (default 10 MiB). */
  crlMaxBytes?: number;
  /** Redirects followed per request, each hop checked like the first URL (default 0: none). */
  maxRedirects?: number;
  /** Connections per origin (scheme, host, port) at a time: politeness to each responder (default: no limit). */
  connectionsPerOrigin?: number;
}

/**
 * checkRevocation for runs over many certificates; close() when the run is over.
 *
 * - Connections are kept between checks, one pool per set of trusted roots (`ca`) and address
 *   policy.
 * - A CRL is fetched, scanned and its signature checked once per URL (and pool), then kept until
 *   its nextUpdate (up to 64 MiB of CRLs, the oldest dropped first) or close(). Checks of the same
 *   URL at the same time share one fetch. Failures are not kept: the next check tries again.
 * - `allowPrivateAddresses` (default false): OCSP and CRL URLs come from the certificate, so by
 *   default a URL whose host is, or resolves to, a loopback (127/8, ::1), private (RFC 1918,
 *   100.64/10, fc00::/7) or link-local (169.254/16, fe80::/10) address is not fetched, and the
 *   check says 'unknown' ("not fetched: ..."). Names are resolved once and the connection goes to
 *   the address checked (no second DNS answer in between). Pass true when the certificate comes
 *   from a CA whose directory is itself at such an address (a private CA on a LAN, a test CA on
 *   127.0.0.1); either for the whole checker, or per check in `check(..., { allowPrivateAddresses })`.
 *   Cloud metadata, unspecified and multicast addresses are refused even then.
 */
export function createRevocationChecker(o: RevocationCheckerOptions = {}): {
  check: (leafPem: string, issuerPem: string, opts?: RevocationCheckOptions) => Promise<RevocationCheckResult>;
  /**
   * A certificate at `url` (an AIA caIssuers URL: DER, or PEM whose first CERTIFICATE block is
   * taken), fetched like OCSP and CRLs (same pools, address policy, redirects), at most `maxBytes`
   * (default 64 KiB). Throws an error with a `kind` (RevocationProblemKind) when it cannot.
   */
  fetchCertificate(url: string, opts?: { timeoutMs?: number; maxBytes?: number; allowPrivateAddresses?: boolean; ca?: string }): Promise<Buffer>;
  close(): Promise<void>;
} {
  const pools = new Map<string, Dispatcher>();
  const crls = new Map<string, { scanned: Promise<ScannedCrl>; until: number; bytes: number }>();
  let crlBytes = 0;
  let closed = false;

  const drop = (key: string) => {
    const e = crls.get(key);
    if (!e) return;
    crls.delete(key);
    crlBytes -= e.bytes;
  };

  /** The CRL at `url` through `pool`: the kept one, the one being fetched, or a new fetch. */
  const sharedCrl = (poolKey: string, env: Pick<Env, 'dispatcher' | 'allowPrivate'>, url: string, deadline: number): Promise<ScannedCrl> => {
    const key = `${poolKey}\n${url}`;
    const hit = crls.get(key);
    if (hit && hit.until > Date.now()) return byDeadline(hit.scanned, deadline);
    drop(key);
    const entry = { scanned: fetchCrl(env, url, deadline), until: Infinity, bytes: 0 };
    crls.set(key, entry);
    entry.scanned.then(
      (crl) => {
        if (crls.get(key) !== entry) return;
        if (closed) return void drop(key);
        entry.until = keepUntil(crl, Date.now());
        entry.bytes = crl.der.length;
        crlBytes += entry.bytes;
        // Oldest first (Map order is insertion order); never the one just added.
        for (const [k, e] of crls) {
          if (crlBytes <= CRL_CACHE_BYTES || k === key) break;
          if (e.bytes) drop(k);
        }
      },
      () => {
        if (crls.get(key) === entry) drop(key);
      },
    );
    return byDeadline(entry.scanned, deadline);
  };

  const pool = (allowPrivate: boolean, ca: string | undefined, timeoutMs: number) => {
    const poolKey = `${allowPrivate ? 'private' : 'public'}\n${ca ?? ''}`;
    let dispatcher = pools.get(poolKey);
    if (!dispatcher) {
      dispatcher = revocationAgent({ ...(ca ? { ca } : {}), timeoutMs: o.timeoutMs ?? timeoutMs, allowPrivate, ...(o.connectionsPerOrigin ? { connections: o.connectionsPerOrigin } : {}) });
      pools.set(poolKey, dispatcher);
    }
    return { poolKey, dispatcher };
  };
  const limits = { ...(o.crlMaxBytes ? { crlMaxBytes: o.crlMaxBytes } : {}), ...(o.maxRedirects ? { maxRedirects: o.maxRedirects } : {}) };

  return {
    check(leafPem, issuerPem, opts = {}) {
      const allowPrivate = opts.allowPrivateAddresses ?? o.allowPrivateAddresses ?? false;
      const timeoutMs = opts.timeoutMs ?? o.timeoutMs ?? 15_000;
      if (opts.dispatcher) return checkRevocation(leafPem, issuerPem, { ...opts, allowPrivateAddresses: allowPrivate, timeoutMs });
      const { poolKey, dispatcher } = pool(allowPrivate, opts.ca, timeoutMs);
      const env: Env = { dispatcher, allowPrivate, ...limits, crl: (url, deadline) => sharedCrl(poolKey, env, url, deadline) };
      return check(leafPem, issuerPem, timeoutMs, env);
    },
    async fetchCertificate(url, opts = {}) {
      const allowPrivate = opts.allowPrivateAddresses ?? o.allowPrivateAddresses ?? false;
      const timeoutMs = opts.timeoutMs ?? o.timeoutMs ?? 15_000;
      if (!/^https?:\/\//i.test(url)) throw Object.assign(new Error('only http and https URLs are fetched'), { kind: 'refused' as RevocationProblemKind });
      const { dispatcher } = pool(allowPrivate, opts.ca, timeoutMs);
      try {
        const body = await fetchOrUnusable(
          { dispatcher, allowPrivate, ...limits },
          url,
          { method: 'GET', accept: 'application/pkix-cert, application/x-x509-ca-cert, application/x-pem-file' },
          opts.maxBytes ?? 64 * 1024,
          Date.now() + timeoutMs,
        );
        if (body.subarray(0, 64).toString('latin1').includes('-----BEGIN')) {
          const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(body.toString('latin1'));
          if (!m) throw new Unusable('a PEM answer without a CERTIFICATE block', 'malformed');
          return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
        }
        return body;
      } catch (e) {
        if (e instanceof Unusable) throw Object.assign(new Error(e.message), { kind: e.kind });
        throw e;
      }
    },
    async close() {
      closed = true;
      crls.clear();
      crlBytes = 0;
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((d) => d.close().catch(() => undefined)));
    },
  };
}
