/**
 * ACME Renewal Information (RFC 9773): the certificate identifier (§4.1), fetching and validating
 * a RenewalInfo object (§4.2), and the Retry-After rules (§4.3.2, §4.3.3).
 */
import { X509Certificate } from 'node:crypto';
import type { RenewalInfoJson } from '../../protocol/types.js';
import { AcmeClientError, type ClientErrorCode } from '../errors.js';
import type { AcmeHttp, AcmeResponse } from '../http.js';

/** RFC 9773 §4.3.2: Retry-After below one minute counts as one minute ... */
export const ARI_MIN_RETRY_MS = 60_000;
/** ... and above one day as one day. */
export const ARI_MAX_RETRY_MS = 86_400_000;
/** RFC 9773 §4.3.3: after a long-term error (or without Retry-After), ask again after six hours. */
export const ARI_DEFAULT_RETRY_MS = 6 * 3_600_000;
/** A window longer than this is not a suggestion anybody can act on; it is refused. */
const MAX_WINDOW_MS = 366 * 86_400_000;
/** Window bounds further than this from now are refused as absurd. */
const MAX_DISTANCE_MS = 20 * 366 * 86_400_000;

/** An ARI failure; `temporary` (timeouts, 5xx) versus long-term (everything else), as in §4.3.3. */
export class AriError extends AcmeClientError {
  readonly temporary: boolean;
  constructor(code: ClientErrorCode, message: string, temporary: boolean, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'AriError';
    this.temporary = temporary;
  }
}

/**
 * The DER content octets of a positive INTEGER given as hex (the form node and @peculiar/x509
 * report serial numbers in): minimal big-endian bytes, with a leading 0x00 when the top bit is set.
 */
export function serialDerBytes(hex: string): Buffer {
  let h = hex.replace(/[^0-9a-fA-F]/g, '').replace(/^0+/, '');
  if (h === '') h = '0';
  if (h.length % 2) h = `0${h}`;
  const b = Buffer.from(h, 'hex');
  return b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b;
}

/** The AKI keyIdentifier of a certificate, read with @peculiar/x509 (loaded only when needed). */
async function akiKeyId(der: Buffer): Promise<Buffer> {
  const x509 = await import('../../lib/x509.js');
  const cert = new x509.X509Certificate(der);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  if (!aki?.keyId) {
    throw new AcmeClientError('BAD_INPUT', `the certificate ${cert.serialNumber} has no Authority Key Identifier keyIdentifier, so it has no ARI certificate identifier`);
  }
  return Buffer.from(aki.keyId, 'hex');
}

/**
 * RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(DER serial number content octets),
 * without padding.
 */
export async function certIdOf(cert: string | Buffer | X509Certificate): Promise<string> {
  const c = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  const keyId = await akiKeyId(c.raw);
  return `${keyId.toString('base64url')}.${serialDerBytes(c.serialNumber).toString('base64url')}`;
}

/** A validated RenewalInfo response. */
export interface RenewalInfo {
  start: Date;
  end: Date;
  explanationURL?: string;
  /** When to ask again: Retry-After clamped to [1 min, 24 h], 6 h when absent or invalid. */
  retryAfterMs: number;
}

/** RFC 9773 §4.3.2: the server's Retry-After (seconds), clamped; the six-hour default when absent. */
export function clampRetryAfter(seconds: number | undefined): number {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return ARI_DEFAULT_RETRY_MS;
  return Math.min(Math.max(seconds * 1000, ARI_MIN_RETRY_MS), ARI_MAX_RETRY_MS);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function timestamp(v: unknown, what: string): Date {
  if (typeof v !== 'string' || !RFC3339.test(v)) throw new AriError('BAD_RESPONSE', `renewalInfo: ${what} is not an RFC 3339 timestamp`, false);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new AriError('BAD_RESPONSE', `renewalInfo: ${what} is not a valid time`, false);
  return new Date(t);
}

/**
 * Checks a RenewalInfo body. RFC 9773 §4.2: a window whose end is not after its start is invalid
 * and treated as no answer; windows of absurd size or distance are refused the same way.
 */
export function parseRenewalInfo(body: unknown, retryAfterSeconds: number | undefined, now: Date): RenewalInfo {
  const b = body as Partial<RenewalInfoJson> | null;
  if (!b || typeof b !== 'object' || !b.suggestedWindow || typeof b.suggestedWindow !== 'object') {
    throw new AriError('BAD_RESPONSE', 'renewalInfo: the answer has no suggestedWindow', false);
  }
  const start = timestamp(b.suggestedWindow.start, 'suggestedWindow.start');
  const end = timestamp(b.suggestedWindow.end, 'suggestedWindow.end');
  if (end.getTime() <= start.getTime()) throw new AriError('BAD_RESPONSE', 'renewalInfo: the suggested window ends before it starts', false);
  if (end.getTime() - start.getTime() > MAX_WINDOW_MS) throw new AriError('BAD_RESPONSE', 'renewalInfo: the suggested window is longer than a year', false);
  if (Math.abs(start.getTime() - now.getTime()) > MAX_DISTANCE_MS || Math.abs(end.getTime() - now.getTime()) > MAX_DISTANCE_MS) {
    throw new AriError('BAD_RESPONSE', 'renewalInfo: the suggested window is decades away', false);
  }
  const info: RenewalInfo = { start, end, retryAfterMs: clampRetryAfter(retryAfterSeconds) };
  // Only an http(s) URL of printable ASCII is shown to the operator (no terminal escapes); anything
  // else is dropped.
  if (typeof b.explanationURL === 'string' && /^https?:\/\/[\x21-\x7e]{1,2000}$/.test(b.explanationURL)) info.explanationURL = b.explanationURL;
  return info;
}

/** An unauthenticated GET (RFC 9773 §4.1 asks for GET, not POST-as-GET). */
export type UnauthenticatedGet = (url: string) => Promise<Pick<AcmeResponse, 'status' | 'body' | 'retryAfter'>>;

/**
 * Fetches the RenewalInfo of `certId` from the CA of `http`. Null when the CA's directory has no
 * renewalInfo (it does not speak ARI). Errors are AriError, temporary or long-term.
 */
export async function fetchRenewalInfo(http: AcmeHttp, certId: string, o: { /** Replaces http.get (tests). */ get?: UnauthenticatedGet; now: Date }): Promise<RenewalInfo | null> {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(certId)) throw new AcmeClientError('BAD_INPUT', `"${certId.slice(0, 80)}" is not an ARI certificate identifier`);
  const d = await http.directory();
  if (!d.renewalInfo) return null;
  // SECURITY.md (client): resource URLs on another origin than the directory's are refused.
  const base = http.checkOrigin(d.renewalInfo);
  const url = `${base.replace(/\/+$/, '')}/${certId}`;
  const get: UnauthenticatedGet = o.get ?? ((u) => http.get(u));
  let r: Awaited<ReturnType<UnauthenticatedGet>>;
  try {
    r = await get(url);
  } catch (e) {
    const code = e instanceof AcmeClientError ? e.code : 'NETWORK';
    const temporary = code === 'TIMEOUT' || (code === 'NETWORK' && !/ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test((e as Error).message));
    throw new AriError(code, `renewalInfo ${url}: ${(e as Error).message}`, temporary, { cause: e });
  }
  if (r.status >= 500) throw new AriError('BAD_RESPONSE', `renewalInfo ${url} answered HTTP ${r.status}`, true);
  if (r.status !== 200) throw new AriError('BAD_RESPONSE', `renewalInfo ${url} answered HTTP ${r.status}`, false);
  return parseRenewalInfo(r.body, r.retryAfter, o.now);
}
