/**
 * The load generator's HTTP client (with responder.ts, the only bench code that touches sockets):
 * one undici Pool per origin shared by every virtual client, so connections are kept alive and
 * reused (one TLS handshake per connection, not per request), and a count of the connections
 * opened, which a report shows to prove it.
 *
 * Requests use undici's dispatch API (callbacks, no response stream, no promise per chunk), and
 * no AbortSignal per request: stopping the run destroys the pools, which fails every request in
 * flight. (A Pool, not an Agent: undici 7's Agent closes an origin's whole pool when its count of
 * connections reaches zero after a reset, which made the generator reconnect.)
 */
import { buildConnector, Pool, type Dispatcher } from 'undici';
import { BenchError } from './errors.js';

export interface BenchResponse {
  status: number;
  /** Replay-Nonce, when the answer carried a well-formed one (RFC 8555 §6.5). */
  nonce: string | undefined;
  /** Location, resolved against the request URL. */
  location: string | undefined;
  /** Retry-After in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date). */
  retryAfter: number | undefined;
  contentType: string;
  text: string;
}

/** Answers larger than this are refused: an ACME answer (a chain included) is a few kB. */
const MAX_BODY = 1024 * 1024;
const NONCE = /^[A-Za-z0-9_-]+$/;

type Headers = Record<string, string | string[] | undefined>;

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

export function retryAfterSeconds(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const d = Date.parse(t);
  return Number.isNaN(d) ? undefined : Math.max(0, Math.round((d - now) / 1000));
}

function isTimeout(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  const name = (e as { name?: string }).name ?? '';
  return name === 'TimeoutError' || /TIMEOUT/.test(code);
}

const GET_HEADERS = { 'user-agent': 'anvil-bench/0.1' };
const POST_HEADERS = { 'user-agent': 'anvil-bench/0.1', 'content-type': 'application/jose+json' };

export class BenchHttp {
  /** TCP (and TLS) connections opened so far. */
  connections = 0;
  readonly #pools = new Map<string, Pool>();
  readonly #options: Pool.Options;
  readonly #timeoutMs: number;
  #destroyed: Error | undefined;

  /** `connections`: at most this many per origin (one per virtual client is enough: each has one request in flight). */
  constructor(o: { ca?: string; timeoutMs: number; connections?: number }) {
    this.#timeoutMs = o.timeoutMs;
    const connector = buildConnector({ ...(o.ca ? { ca: o.ca } : {}), timeout: o.timeoutMs });
    this.#options = {
      connect: (opts, cb) => {
        this.connections++;
        connector(opts, cb);
      },
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      keepAliveTimeout: 60_000,
      ...(o.connections ? { connections: o.connections } : {}),
    };
  }

  #pool(origin: string): Pool {
    let p = this.#pools.get(origin);
    if (!p) {
      p = new Pool(origin, this.#options);
      this.#pools.set(origin, p);
    }
    return p;
  }

  /**
   * One exchange. Failures to exchange are BenchErrors of kind timeout or network; after
   * destroy(), requests fail with the reason given to it.
   */
  request(method: 'GET' | 'HEAD' | 'POST', url: string, body: string | undefined): Promise<BenchResponse> {
    if (this.#destroyed) return Promise.reject(this.#destroyed);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return Promise.reject(new BenchError('badResponse', `"${url.slice(0, 100)}" is not a URL`));
    }
    return new Promise((resolve, reject) => {
      let status = 0;
      let headers: Headers = {};
      const chunks: Buffer[] = [];
      let size = 0;
      const fail = (e: unknown) => {
        if (this.#destroyed) return reject(this.#destroyed);
        if (e instanceof BenchError) return reject(e);
        if (isTimeout(e)) return reject(new BenchError('timeout', `${method} ${url}: no answer within ${this.#timeoutMs} ms`, { cause: e }));
        reject(new BenchError('network', `${method} ${url}: ${(e as Error).message}`, { cause: e }));
      };
      const handler: Dispatcher.DispatchHandler = {
        // Its presence selects undici's controller-style handler API.
        onRequestStart() {},
        onResponseStart(_c, statusCode, h) {
          status = statusCode;
          headers = h as Headers;
        },
        onResponseData(c, chunk) {
          size += chunk.length;
          if (size > MAX_BODY) c.abort(new BenchError('badResponse', `${method} ${url}: answer larger than ${MAX_BODY} bytes`));
          else chunks.push(chunk);
        },
        onResponseEnd() {
          const nonce = one(headers['replay-nonce']);
          const location = one(headers.location);
          let loc: string | undefined;
          try {
            loc = location ? new URL(location, url).href : undefined;
          } catch {
            return reject(new BenchError('badResponse', `${method} ${url}: the Location is not a URL`));
          }
          resolve({
            status,
            nonce: nonce && NONCE.test(nonce) ? nonce : undefined,
            location: loc,
            retryAfter: retryAfterSeconds(one(headers['retry-after'])),
            contentType: one(headers['content-type']) ?? '',
            text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8'),
          });
        },
        onResponseError(_c, e) {
          fail(e);
        },
      };
      try {
        this.#pool(u.origin).dispatch(
          { path: `${u.pathname}${u.search}`, method, headers: body === undefined ? GET_HEADERS : POST_HEADERS, body: body ?? null },
          handler,
        );
      } catch (e) {
        fail(e);
      }
    });
  }

  /** Fails every request in flight and every later one with `reason` (stopping the run). */
  async destroy(reason: Error): Promise<void> {
    this.#destroyed = reason;
    await Promise.all([...this.#pools.values()].map((p) => p.destroy(reason)));
    this.#pools.clear();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => (p.destroyed ? undefined : p.close())));
    this.#pools.clear();
  }
}
