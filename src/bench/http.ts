/**
 * The load generator's HTTP client (with responder.ts, the only bench code that touches sockets):
 * one undici Pool per origin shared by every virtual client, so connections are kept alive and
 * reused (one TLS handshake per connection, not per request), and a count of the connections
 * opened, which a report shows to prove it. (A Pool, not an Agent: undici 7's Agent closes an
 * origin's whole pool when its connection count reaches zero after a reset, which made the
 * generator reconnect.)
 */
import { buildConnector, Pool } from 'undici';
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

export class BenchHttp {
  /** TCP (and TLS) connections opened so far. */
  connections = 0;
  readonly #pools = new Map<string, Pool>();
  readonly #options: ConstructorParameters<typeof Pool>[1];
  readonly #timeoutMs: number;

  /** `connections`: at most this many to the server (one per virtual client is enough: each has one request in flight). */
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
   * One exchange. Failures to exchange are BenchErrors of kind timeout or network; an aborted
   * request (the run is being stopped) rethrows the abort reason.
   */
  async request(method: 'GET' | 'HEAD' | 'POST', url: string, body: string | undefined, signal: AbortSignal): Promise<BenchResponse> {
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      const u = new URL(url);
      res = await this.#pool(u.origin).request({
        path: `${u.pathname}${u.search}`,
        method,
        headers: body === undefined ? { 'user-agent': 'anvil-bench/0.1' } : { 'user-agent': 'anvil-bench/0.1', 'content-type': 'application/jose+json' },
        ...(body !== undefined ? { body } : {}),
        signal,
      });
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (isTimeout(e)) throw new BenchError('timeout', `${method} ${url}: no answer within ${this.#timeoutMs} ms`, { cause: e });
      throw new BenchError('network', `${method} ${url}: ${(e as Error).message}`, { cause: e });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res.body) {
        size += (c as Buffer).length;
        if (size > MAX_BODY) {
          res.body.destroy();
          throw new BenchError('badResponse', `${method} ${url}: answer larger than ${MAX_BODY} bytes`);
        }
        chunks.push(c as Buffer);
      }
    } catch (e) {
      if (e instanceof BenchError) throw e;
      if (signal.aborted) throw signal.reason;
      throw new BenchError(isTimeout(e) ? 'timeout' : 'network', `${method} ${url}: reading the answer failed: ${(e as Error).message}`, { cause: e });
    }
    const h = res.headers;
    const nonce = one(h['replay-nonce']);
    const location = one(h.location);
    return {
      status: res.statusCode,
      nonce: nonce && /^[A-Za-z0-9_-]+$/.test(nonce) ? nonce : undefined,
      location: location ? new URL(location, url).href : undefined,
      retryAfter: retryAfterSeconds(one(h['retry-after'])),
      contentType: one(h['content-type']) ?? '',
      text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8'),
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
  }
}
