/**
 * The client's HTTP layer (the only client code that touches HTTP): the directory, a nonce pool,
 * JWS-signed POSTs (RFC 8555 §6.2), badNonce retried with the server's fresh nonce (§6.5), bounded
 * retries with capped backoff on 429 and 5xx honouring Retry-After, response size caps, timeouts,
 * and refusal of resource URLs on another origin than the directory's (SECURITY.md, client rows).
 */
import type { KeyObject } from 'node:crypto';
import { FlattenedSign, type JWK } from 'jose';
import { Agent, request, type Dispatcher } from 'undici';
import type { Directory, ProblemJson } from '../protocol/types.js';
import { AcmeClientError, AcmeProblemError } from './errors.js';

export interface AccountSigner {
  privateKey: KeyObject;
  /** The public JWK. */
  jwk: JWK;
  alg: 'ES256' | 'ES384' | 'ES512' | 'RS256' | 'EdDSA';
}

export interface HttpOptions {
  /** Extra trusted roots (PEM), for private CAs. */
  ca?: string;
  /** Allow http:// directories other than to localhost (never for production). */
  allowInsecure?: boolean;
  timeoutMs?: number;
  /** Responses larger than this are refused. */
  maxResponseBytes?: number;
  /** Attempts for one request, counting the first (badNonce, 429 and 5xx are retried). */
  maxAttempts?: number;
  /** Upper bound on any wait between attempts, whatever Retry-After says. */
  maxRetryWaitMs?: number;
  userAgent?: string;
  /** For tests: how to wait. */
  sleep?: (ms: number) => Promise<void>;
}

export interface AcmeResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  /** Raw text (for PEM downloads). */
  text: string;
  location: string | undefined;
  links: Array<{ url: string; rel: string }>;
  retryAfter: number | undefined;
}

const LOCAL = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** RFC 8288 Link headers, as {url, rel}, resolved against the request URL. */
export function parseLinks(h: Record<string, string | string[] | undefined>, base: string): Array<{ url: string; rel: string }> {
  const raw = h.link;
  const values = Array.isArray(raw) ? raw : raw ? [raw] : [];
  const out: Array<{ url: string; rel: string }> = [];
  for (const v of values) {
    for (const m of v.matchAll(/<([^>]*)>\s*((?:;\s*[^,;]+)*)/g)) {
      const rel = /rel\s*=\s*"?([^";]+)"?/i.exec(m[2] ?? '')?.[1];
      if (!rel) continue;
      try {
        for (const r of rel.trim().split(/\s+/)) out.push({ url: new URL(m[1]!, base).href, rel: r });
      } catch {
        // ignore links that are not URLs
      }
    }
  }
  return out;
}

/** Retry-After as seconds (RFC 9110 §10.2.3: delay-seconds or HTTP-date). */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, Math.round((t - now) / 1000));
}

export class AcmeHttp {
  readonly directoryUrl: string;
  readonly #origin: string;
  readonly #dispatcher: Dispatcher;
  readonly #o: Required<Omit<HttpOptions, 'ca'>>;
  #directory: Directory | undefined;
  readonly #nonces: string[] = [];

  constructor(directoryUrl: string, opts: HttpOptions = {}) {
    let u: URL;
    try {
      u = new URL(directoryUrl);
    } catch {
      throw new AcmeClientError('BAD_RESPONSE', `"${directoryUrl}" is not a URL`);
    }
    // SECURITY.md: a directory over plain http is refused, except to localhost with an explicit flag.
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && opts.allowInsecure && LOCAL.has(u.hostname))) {
      throw new AcmeClientError(
        'INSECURE_DIRECTORY',
        `the directory ${directoryUrl} is not https; plain http is allowed only to localhost, with --insecure-localhost`,
      );
    }
    this.directoryUrl = u.href;
    this.#origin = u.origin;
    this.#o = {
      allowInsecure: opts.allowInsecure ?? false,
      timeoutMs: opts.timeoutMs ?? 30_000,
      maxResponseBytes: opts.maxResponseBytes ?? 1024 * 1024,
      maxAttempts: opts.maxAttempts ?? 5,
      maxRetryWaitMs: opts.maxRetryWaitMs ?? 60_000,
      userAgent: opts.userAgent ?? 'anvil-client/0.1',
      sleep: opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    };
    this.#dispatcher = new Agent({
      connect: { ...(opts.ca ? { ca: opts.ca } : {}), timeout: this.#o.timeoutMs },
      headersTimeout: this.#o.timeoutMs,
      bodyTimeout: this.#o.timeoutMs,
    });
  }

  /** Refuses URLs the server hands out on another origin than the directory's. */
  checkOrigin(url: string): string {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new AcmeClientError('BAD_RESPONSE', `the server sent "${String(url).slice(0, 100)}", which is not a URL`);
    }
    if (u.origin !== this.#origin) {
      throw new AcmeClientError('CROSS_ORIGIN', `the server sent a URL on another origin (${u.origin}) than its directory (${this.#origin}); refusing it`);
    }
    return u.href;
  }

  async #raw(method: 'GET' | 'HEAD' | 'POST', url: string, body?: string): Promise<AcmeResponse> {
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, {
        method,
        dispatcher: this.#dispatcher,
        headers: {
          'user-agent': this.#o.userAgent,
          ...(body !== undefined ? { 'content-type': 'application/jose+json' } : {}),
        },
        ...(body !== undefined ? { body } : {}),
        maxRedirections: 0,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      } as Parameters<typeof request>[1]);
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'TimeoutError' || name === 'AbortError') throw new AcmeClientError('TIMEOUT', `${method} ${url} timed out after ${this.#o.timeoutMs} ms`, { cause: e });
      throw new AcmeClientError('NETWORK', `${method} ${url} failed: ${(e as Error).message}`, { cause: e });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > this.#o.maxResponseBytes) {
        res.body.destroy();
        throw new AcmeClientError('RESPONSE_TOO_LARGE', `${url} answered with more than ${this.#o.maxResponseBytes} bytes`);
      }
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    const headers = res.headers as Record<string, string | string[] | undefined>;
    const nonce = header(headers, 'replay-nonce');
    if (nonce && /^[A-Za-z0-9_-]+$/.test(nonce)) {
      this.#nonces.push(nonce);
      if (this.#nonces.length > 16) this.#nonces.shift();
    }
    const ct = header(headers, 'content-type') ?? '';
    let parsed: unknown = text;
    if (/json/.test(ct) && text.length) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new AcmeClientError('BAD_RESPONSE', `${url} sent invalid JSON`);
      }
    }
    const loc = header(headers, 'location');
    return {
      status: res.statusCode,
      headers,
      body: parsed,
      text,
      location: loc ? new URL(loc, url).href : undefined,
      links: parseLinks(headers, url),
      retryAfter: parseRetryAfter(header(headers, 'retry-after')),
    };
  }

  /**
   * An unauthenticated GET of a URL on the directory's origin (RFC 9773 renewalInfo is fetched this
   * way, not with POST-as-GET), with the same limits, timeouts and retries as every other request.
   */
  async get(url: string): Promise<AcmeResponse> {
    const target = this.checkOrigin(url);
    return this.#withRetries('GET', target, async () => this.#raw('GET', target));
  }

  async directory(): Promise<Directory> {
    if (this.#directory) return this.#directory;
    const r = await this.#withRetries('GET', this.directoryUrl, async () => this.#raw('GET', this.directoryUrl));
    const d = r.body as Directory;
    if (typeof d !== 'object' || d === null || typeof d.newNonce !== 'string' || typeof d.newAccount !== 'string' || typeof d.newOrder !== 'string') {
      throw new AcmeClientError('BAD_RESPONSE', `${this.directoryUrl} is not an ACME directory`);
    }
    for (const k of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange'] as const) if (d[k]) this.checkOrigin(d[k]);
    this.#directory = d;
    return d;
  }

  async #nonce(): Promise<string> {
    const n = this.#nonces.pop();
    if (n) return n;
    const d = await this.directory();
    const r = await this.#raw('HEAD', d.newNonce);
    const fresh = this.#nonces.pop();
    if (!fresh) throw new AcmeClientError('BAD_RESPONSE', `newNonce (${r.status}) sent no Replay-Nonce`);
    return fresh;
  }

  /** Turns an error response into AcmeProblemError (or BAD_RESPONSE when it is not a problem document). */
  #problem(r: AcmeResponse, url: string): AcmeClientError {
    const b = r.body as ProblemJson;
    if (b && typeof b === 'object' && typeof b.type === 'string') return new AcmeProblemError(b, r.status, r.retryAfter, url);
    return new AcmeClientError('BAD_RESPONSE', `${url} answered HTTP ${r.status} without a problem document`);
  }

  async #withRetries(method: string, url: string, attempt: () => Promise<AcmeResponse>): Promise<AcmeResponse> {
    let last: AcmeClientError | undefined;
    for (let i = 0; i < this.#o.maxAttempts; i++) {
      const r = await attempt();
      if (r.status < 400) return r;
      const err = this.#problem(r, url);
      last = err;
      const type = err instanceof AcmeProblemError ? err.type : '';
      // RFC 8555 §6.5: badNonce is retried at once with the nonce the error carried.
      if (type === 'badNonce') continue;
      if (r.status === 429 || r.status >= 500) {
        const backoff = Math.min(1000 * 2 ** i, this.#o.maxRetryWaitMs);
        const wait = Math.min(r.retryAfter !== undefined ? r.retryAfter * 1000 : backoff, this.#o.maxRetryWaitMs);
        // An absurd Retry-After (beyond the cap) is not waited out: the caller hears of it now.
        if (r.retryAfter !== undefined && r.retryAfter * 1000 > this.#o.maxRetryWaitMs) throw err;
        if (i + 1 < this.#o.maxAttempts) await this.#o.sleep(wait);
        continue;
      }
      throw err;
    }
    throw new AcmeClientError('RETRIES_EXHAUSTED', `${method} ${url}: gave up after ${this.#o.maxAttempts} attempts: ${last?.message ?? ''}`, {
      cause: last,
    });
  }

  /**
   * A signed POST. `payload` null is POST-as-GET (RFC 8555 §6.3). `kid` null signs with the JWK
   * (newAccount, revokeCert by certificate key).
   */
  async post<T = unknown>(url: string, payload: unknown, signer: AccountSigner, kid: string | null): Promise<AcmeResponse<T>> {
    const target = this.checkOrigin(url);
    const r = await this.#withRetries('POST', target, async () => {
      const body = await this.sign(target, payload, signer, kid, await this.#nonce());
      return this.#raw('POST', target, JSON.stringify(body));
    });
    if (r.location) this.checkOrigin(r.location);
    return r as AcmeResponse<T>;
  }

  /** A flattened JWS for `url` (exported for keyChange's inner JWS, which has no nonce). */
  async sign(url: string, payload: unknown, signer: AccountSigner, kid: string | null, nonce: string | null): Promise<Record<string, string>> {
    const header: Record<string, unknown> = { alg: signer.alg, url };
    if (nonce !== null) header.nonce = nonce;
    if (kid) header.kid = kid;
    else header.jwk = signer.jwk;
    const bytes = payload === null ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(payload));
    return (await new FlattenedSign(bytes).setProtectedHeader(header as never).sign(signer.privateKey)) as unknown as Record<string, string>;
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}

/** A connection pool for fetchBounded: `ca` replaces the system roots when given. */
export function boundedAgent(o: { ca?: string; timeoutMs: number }): Dispatcher {
  return new Agent({ connect: { ...(o.ca ? { ca: o.ca } : {}), timeout: o.timeoutMs }, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs });
}

/**
 * One bounded HTTP exchange outside ACME (OCSP, CRLs): a size cap, a deadline, and only a 200
 * counts. Redirects are not followed unless `follow` says how many (GET: 301, 302, 303, 307, 308;
 * POST: 307 and 308 only, which keep the method and body); each hop must be http or https and
 * pass `follow.check` (which throws to refuse it). Errors are AcmeClientError: TIMEOUT, NETWORK,
 * RESPONSE_TOO_LARGE, BAD_RESPONSE.
 */
export async function fetchBounded(
  dispatcher: Dispatcher,
  url: string,
  init: { method: 'GET' | 'POST'; body?: Buffer; contentType?: string; accept: string },
  maxBytes: number,
  deadline: number,
  follow?: { maxRedirects: number; check?(url: string): void },
): Promise<Buffer> {
  let res: Dispatcher.ResponseData;
  for (let hop = 0; ; hop++) {
    const left = deadline - Date.now();
    if (left <= 0) throw new AcmeClientError('TIMEOUT', `${url}: no time left`);
    try {
      res = await request(url, {
        method: init.method,
        dispatcher,
        headers: { accept: init.accept, 'user-agent': 'anvil-client/0.1', ...(init.contentType ? { 'content-type': init.contentType } : {}) },
        ...(init.body ? { body: init.body } : {}),
        signal: AbortSignal.timeout(left),
      });
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'TimeoutError' || name === 'AbortError') throw new AcmeClientError('TIMEOUT', 'timed out', { cause: e });
      throw new AcmeClientError('NETWORK', `request failed: ${(e as Error).message}`, { cause: e });
    }
    // A body we stop reading is destroyed, which undici reports as an 'error' event: swallow it.
    res.body.on('error', () => undefined);
    const redirect = init.method === 'GET' ? [301, 302, 303, 307, 308] : [307, 308];
    const location = res.headers.location;
    if (follow && redirect.includes(res.statusCode) && typeof location === 'string') {
      res.body.destroy();
      if (hop >= follow.maxRedirects) throw new AcmeClientError('BAD_RESPONSE', `HTTP ${res.statusCode}: more than ${follow.maxRedirects} redirect(s)`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new AcmeClientError('BAD_RESPONSE', `HTTP ${res.statusCode} to a Location that is not a URL`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new AcmeClientError('BAD_RESPONSE', `HTTP ${res.statusCode} to a ${next.protocol} URL (only http and https are followed)`);
      follow.check?.(next.href);
      url = next.href;
      continue;
    }
    break;
  }
  if (res.statusCode !== 200) {
    res.body.destroy();
    throw new AcmeClientError('BAD_RESPONSE', `HTTP ${res.statusCode}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new AcmeClientError('RESPONSE_TOO_LARGE', `the answer is larger than ${maxBytes} bytes`);
      }
      chunks.push(c as Buffer);
    }
  } catch (e) {
    if (e instanceof AcmeClientError) throw e;
    throw new AcmeClientError('NETWORK', `reading the answer failed: ${(e as Error).message}`, { cause: e });
  }
  return Buffer.concat(chunks);
}
