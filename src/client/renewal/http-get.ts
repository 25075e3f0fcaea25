/**
 * An unauthenticated GET for renewalInfo (RFC 9773 §4.1), with the same limits AcmeHttp applies:
 * a timeout, a response size cap, no redirects, https only (http only to localhost when allowed).
 *
 * STYLE.md rule 1 wants HTTP in src/client/http.ts only; AcmeHttp has no public GET yet, so this
 * stands in until it has one (fetchRenewalInfo prefers `AcmeHttp.get` when it exists).
 * TODO(#4): move into AcmeHttp as `get(url)` and delete this file.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { AcmeClientError } from '../errors.js';
import { parseRetryAfter } from '../http.js';
import type { UnauthenticatedGet } from './ari.js';

const LOCAL = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export interface GetOptions {
  /** Trusted roots (PEM) in place of the system's, as for AcmeHttp. */
  ca?: string;
  allowInsecure?: boolean;
  timeoutMs?: number;
  maxResponseBytes?: number;
  userAgent?: string;
}

/** A GET function plus the connection pool to close when done. */
export function createUnauthenticatedGet(o: GetOptions = {}): UnauthenticatedGet & { close(): Promise<void> } {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const max = o.maxResponseBytes ?? 64 * 1024;
  const dispatcher: Dispatcher = new Agent({ connect: { ...(o.ca ? { ca: o.ca } : {}), timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const get = async (url: string) => {
    const u = new URL(url);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && o.allowInsecure && LOCAL.has(u.hostname))) {
      throw new AcmeClientError('INSECURE_DIRECTORY', `${url} is not https`);
    }
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, {
        method: 'GET',
        dispatcher,
        headers: { accept: 'application/json', 'user-agent': o.userAgent ?? 'anvil-client/0.1' },
        maxRedirections: 0,
        signal: AbortSignal.timeout(timeoutMs),
      } as Parameters<typeof request>[1]);
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'TimeoutError' || name === 'AbortError') throw new AcmeClientError('TIMEOUT', `GET ${url} timed out after ${timeoutMs} ms`, { cause: e });
      throw new AcmeClientError('NETWORK', `GET ${url} failed: ${(e as Error).message}`, { cause: e });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > max) {
        res.body.destroy();
        throw new AcmeClientError('RESPONSE_TOO_LARGE', `${url} answered with more than ${max} bytes`);
      }
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    const ct = String(res.headers['content-type'] ?? '');
    if (/json/.test(ct) && text.length) {
      try {
        body = JSON.parse(text);
      } catch {
        throw new AcmeClientError('BAD_RESPONSE', `${url} sent invalid JSON`);
      }
    }
    const ra = res.headers['retry-after'];
    return { status: res.statusCode, body, retryAfter: parseRetryAfter(Array.isArray(ra) ? ra[0] : ra) };
  };
  return Object.assign(get, { close: () => dispatcher.close() });
}
