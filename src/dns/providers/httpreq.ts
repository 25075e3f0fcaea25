/**
 * The "httpreq" DNS provider: lego's HTTP request contract, for a small web service of your own
 * that edits your DNS:
 *
 *   POST {endpoint}/present  {"fqdn": "_acme-challenge.example.com.", "value": "..."}
 *   POST {endpoint}/cleanup  (same body)
 *
 * with Content-Type application/json, optional HTTP basic authentication, and any 2xx status as
 * success. Env var names follow lego (HTTPREQ_ENDPOINT, HTTPREQ_MODE, HTTPREQ_USERNAME,
 * HTTPREQ_PASSWORD, HTTPREQ_HTTP_TIMEOUT).
 *
 * Stricter than lego: the endpoint must be https unless it is on loopback (the request carries a
 * password and decides what a CA will see); redirects are never followed; at most
 * MAX_RESPONSE_BYTES of a response are read; the whole request has one timeout.
 *
 * lego's RAW mode ({"domain", "token", "keyAuth"}) is not supported: a DnsProvider receives the
 * TXT value, not the token and key authorization (see src/dns/providers/exec.ts for why).
 */
import { Agent, type Dispatcher } from 'undici';
import { z } from 'zod';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../provider.js';
import { parseSeconds, type DnsProviderFactory } from '../registry.js';

const NAME = 'httpreq';

/** Enough for any error page worth quoting; the rest is not read. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export const httpReqSchema = z
  .strictObject({
    endpoint: z.string().superRefine((s, ctx) => {
      let u: URL;
      try {
        u = new URL(s);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'expected a URL such as https://dns-api.example.com/acme' });
        return;
      }
      if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'put credentials in username/password (HTTPREQ_USERNAME, HTTPREQ_PASSWORD), not in the URL' });
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname))) {
        ctx.addIssue({ code: 'custom', message: 'must be https (plain http only to localhost / 127.0.0.1 / ::1)' });
      }
      if (u.search || u.hash) ctx.addIssue({ code: 'custom', message: 'must not have a query or fragment' });
    }),
    /** lego's HTTPREQ_MODE: only the default mode (unset, "" or "none"). */
    mode: z
      .string()
      .optional()
      .refine((m) => m === undefined || ['', 'none', 'default'].includes(m.toLowerCase()), {
        message: 'RAW mode is not supported: DNS providers receive the TXT value, not the token and key authorization; leave the mode unset',
      }),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    timeoutMs: z.coerce.number().int().min(100).max(600_000).default(30_000),
  })
  .superRefine((c, ctx) => {
    if (Boolean(c.username) !== Boolean(c.password)) {
      ctx.addIssue({ code: 'custom', path: [c.username ? 'password' : 'username'], message: 'basic authentication needs both username and password' });
    }
  });

export type HttpReqConfig = z.output<typeof httpReqSchema>;

export interface HttpReqDeps {
  /** Outbound HTTP (DESIGN.md: passed in, so tests can pin it); default: a private undici Agent. */
  dispatcher?: Dispatcher;
}

function fail(message: string, cause?: unknown): DnsProviderError {
  return new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', message, cause === undefined ? undefined : { cause });
}

class HttpReqProvider implements DnsProvider {
  readonly name = NAME;
  readonly #base: URL;
  readonly #authorization: string | undefined;
  readonly #password: string | undefined;
  readonly #timeoutMs: number;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;

  constructor(config: HttpReqConfig, deps: HttpReqDeps) {
    const base = new URL(config.endpoint);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.#base = base;
    this.#password = config.password;
    this.#authorization = config.username && config.password ? `Basic ${Buffer.from(`${config.username}:${config.password}`).toString('base64')}` : undefined;
    this.#timeoutMs = config.timeoutMs;
    this.#ownsDispatcher = !deps.dispatcher;
    this.#dispatcher =
      deps.dispatcher ?? new Agent({ connect: { timeout: config.timeoutMs }, headersTimeout: config.timeoutMs, bodyTimeout: config.timeoutMs });
  }

  createTxtRecord(r: TxtRecord): Promise<void> {
    return this.#post('present', r);
  }

  deleteTxtRecord(r: TxtRecord): Promise<void> {
    return this.#post('cleanup', r);
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  /** Never let the password reach a message, even if the server echoes it back. */
  #redact(s: string): string {
    return this.#password ? s.split(this.#password).join('[redacted]') : s;
  }

  async #post(action: 'present' | 'cleanup', r: TxtRecord): Promise<void> {
    const url = new URL(action, this.#base);
    const body = JSON.stringify({ fqdn: `${r.fqdn.replace(/\.$/, '')}.`, value: r.value });
    const what = `POST ${url.href}`;
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let res: Dispatcher.ResponseData;
    try {
      // Dispatcher.request never follows redirects: a 3xx is reported below.
      res = await this.#dispatcher.request({
        origin: url.origin,
        path: url.pathname,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/plain;q=0.9, */*;q=0.1',
          'user-agent': 'anvil-dns-httpreq/0.1',
          ...(this.#authorization ? { authorization: this.#authorization } : {}),
        },
        body,
        signal,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
    } catch (e) {
      const name = (e as { name?: string }).name;
      const code = (e as { code?: string }).code;
      if (signal.aborted || name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
        throw new DnsProviderError(NAME, 'DNS_PROVIDER_TIMEOUT', `${what}: no answer within ${this.#timeoutMs} ms`, { cause: e });
      }
      throw fail(`${what}: ${this.#redact(code ?? (e as Error).message)}`, e);
    }
    const text = await this.#readCapped(res, signal);
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    if (res.statusCode >= 300 && res.statusCode < 400) throw fail(`${what}: the server answered ${res.statusCode} (a redirect); redirects are not followed: set the endpoint to the final URL`);
    const snippet = this.#redact(text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim()).slice(0, 200);
    const hint = res.statusCode === 401 || res.statusCode === 403 ? ' (check username and password)' : '';
    throw fail(`${what}: the server answered ${res.statusCode}${hint}${snippet ? `: ${snippet}` : ''}`);
  }

  /** Reads at most MAX_RESPONSE_BYTES of the body, then drops the connection. */
  async #readCapped(res: Dispatcher.ResponseData, signal: AbortSignal): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res.body) {
        const b = c as Buffer;
        const room = MAX_RESPONSE_BYTES - size;
        chunks.push(b.subarray(0, room));
        size += Math.min(b.length, room);
        if (b.length >= room) {
          res.body.destroy();
          break;
        }
      }
    } catch (e) {
      if (signal.aborted) throw new DnsProviderError(NAME, 'DNS_PROVIDER_TIMEOUT', `reading the answer took more than ${this.#timeoutMs} ms`, { cause: e });
      // A body cut short is still a status we can report.
    }
    return Buffer.concat(chunks).toString('utf8');
  }
}

export function createHttpReqProvider(config: HttpReqConfig, deps: HttpReqDeps = {}): DnsProvider {
  return new HttpReqProvider(config, deps);
}

export const httpReqFactory: DnsProviderFactory<HttpReqConfig> = {
  name: NAME,
  description: "POSTs lego's httpreq JSON ({fqdn, value}) to ENDPOINT/present and ENDPOINT/cleanup",
  schema: httpReqSchema,
  env: {
    HTTPREQ_ENDPOINT: 'endpoint',
    HTTPREQ_MODE: 'mode',
    HTTPREQ_USERNAME: 'username',
    HTTPREQ_PASSWORD: 'password',
    HTTPREQ_HTTP_TIMEOUT: 'timeoutMs',
  },
  envParse: { HTTPREQ_HTTP_TIMEOUT: parseSeconds },
  create: (config) => createHttpReqProvider(config),
};
