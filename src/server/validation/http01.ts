/**
 * http-01 (RFC 8555 §8.3): GET http://<name>/.well-known/acme-challenge/<token> on a pinned,
 * policy-checked address, redirects followed under SECURITY.md's rules, bounded in time and size.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import { checkAddress } from './policy.js';
import type { DnsLookup } from './resolver.js';
import type { ValidationConfig, ValidationRecord, ValidationResult } from './types.js';

/** Enough for a key authorization (token + "." + thumbprint, ~90 bytes) plus whitespace. */
const MAX_BODY = 8 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 307, 308]);

interface Fetched {
  status: number;
  location: string | undefined;
  body: string;
}

function fetchOnce(url: URL, address: string, connectTimeoutMs: number, signal: AbortSignal): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const isHttps = url.protocol === 'https:';
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || (isHttps ? 443 : 80));
    const options: https.RequestOptions = {
      host: address,
      port,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { Host: url.host, 'User-Agent': 'anvil-validator', Accept: '*/*', Connection: 'close' },
      agent: false,
      signal,
      // https hops: the certificate is not checked (like Let's Encrypt), but SNI names the host.
      ...(isHttps ? { servername: isIP(host) ? '' : host, rejectUnauthorized: false } : {}),
    };
    const req = (isHttps ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size >= MAX_BODY) return;
        chunks.push(c);
        size += c.length;
        // SECURITY.md: read only what a key authorization needs, then hang up.
        if (size >= MAX_BODY) {
          res.destroy();
          finish();
        }
      });
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve({
          status: res.statusCode ?? 0,
          location: typeof res.headers.location === 'string' ? res.headers.location : undefined,
          body: Buffer.concat(chunks).subarray(0, MAX_BODY).toString('utf8'),
        });
      };
      res.on('end', finish);
      res.on('close', finish);
      res.on('error', (e) => (done ? undefined : reject(e)));
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), connectTimeoutMs);
    req.on('socket', (s) => {
      s.once(isHttps ? 'secureConnect' : 'connect', () => clearTimeout(timer));
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('close', () => clearTimeout(timer));
    req.end();
  });
}

function connectionProblem(url: URL, address: string, e: unknown): AcmeProblem {
  const code = (e as { code?: string; name?: string }).code ?? (e as { name?: string }).name;
  const why =
    code === 'ETIMEDOUT' || code === 'ABORT_ERR' || code === 'AbortError' || code === 'TimeoutError'
      ? 'timeout'
      : code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ECONNRESET'
          ? 'connection reset'
          : code ?? 'error';
  return new AcmeProblem('connection', `fetching ${url.href} from ${address}: ${why}`);
}

function printable(s: string, max = 120): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

export async function validateHttp01(
  identifier: Identifier,
  token: string,
  keyAuthorization: string,
  cfg: ValidationConfig,
  dns: DnsLookup,
  signal: AbortSignal,
): Promise<ValidationResult> {
  const records: ValidationRecord[] = [];
  const allowedPorts = new Set([80, 443, cfg.httpPort, cfg.tlsPort]);
  const hostPart = identifier.type === 'ip' && isIP(identifier.value) === 6 ? `[${identifier.value}]` : identifier.value;
  let url = new URL(`http://${hostPart}:${cfg.httpPort}/.well-known/acme-challenge/${token}`);
  const seen = new Set<string>();
  for (let hop = 0; ; hop++) {
    if (seen.has(url.href)) {
      return { ok: false, problem: new AcmeProblem('connection', `redirect loop at ${url.href}`), records };
    }
    seen.add(url.href);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const record: ValidationRecord = { url: url.href, hostname: host, port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) };
    records.push(record);
    let addresses: string[];
    try {
      addresses = isIP(host) ? [host] : await dns.addresses(host);
    } catch (e) {
      if (e instanceof AcmeProblem) return { ok: false, problem: e, records };
      throw e;
    }
    record.addressesResolved = addresses;
    // Every address is checked before any connection (SECURITY.md: no request sent).
    const refusal = addresses.map((a) => checkAddress(a, cfg.addressPolicy)).find((r) => r !== null);
    if (refusal) {
      return { ok: false, problem: new AcmeProblem('connection', `refusing to connect to ${host}: ${refusal}`), records };
    }
    let res: Fetched | undefined;
    let lastError: AcmeProblem | undefined;
    for (const address of addresses) {
      record.addressUsed = address;
      try {
        res = await fetchOnce(url, address, cfg.connectTimeoutMs, signal);
        break;
      } catch (e) {
        lastError = connectionProblem(url, address, signal.aborted ? Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }) : e);
        if (signal.aborted) break;
      }
    }
    if (!res) return { ok: false, problem: lastError!, records };

    if (REDIRECT_STATUSES.has(res.status)) {
      if (hop >= cfg.maxRedirects) {
        return { ok: false, problem: new AcmeProblem('connection', `too many redirects (more than ${cfg.maxRedirects})`), records };
      }
      if (!res.location) return { ok: false, problem: new AcmeProblem('connection', `redirect from ${url.href} without Location`), records };
      let next: URL;
      try {
        next = new URL(res.location, url);
      } catch {
        return { ok: false, problem: new AcmeProblem('connection', `redirect to an invalid URL "${printable(res.location)}"`), records };
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        return { ok: false, problem: new AcmeProblem('connection', `redirect to a ${printable(next.protocol)} URL is not allowed (http and https only)`), records };
      }
      const port = Number(next.port || (next.protocol === 'https:' ? 443 : 80));
      if (!allowedPorts.has(port)) {
        return { ok: false, problem: new AcmeProblem('connection', `redirect to port ${port} is not allowed (only ${[...allowedPorts].join(', ')})`), records };
      }
      url = next;
      continue;
    }
    if (res.status >= 300 && res.status < 400) {
      return { ok: false, problem: new AcmeProblem('connection', `${url.href} answered ${res.status}; only 301, 302, 307 and 308 redirects are followed`), records };
    }
    if (res.status !== 200) {
      return {
        ok: false,
        problem: new AcmeProblem('unauthorized', `invalid response from ${url.href}: HTTP ${res.status}`),
        records,
      };
    }
    // RFC 8555 §8.3: the body is compared after trimming trailing whitespace.
    const body = res.body.replace(/[ \t\r\n]+$/, '');
    if (body !== keyAuthorization) {
      return {
        ok: false,
        problem: new AcmeProblem(
          'incorrectResponse',
          `the key authorization at ${url.href} is wrong: got "${printable(body)}", expected "${keyAuthorization}"`,
        ),
        records,
      };
    }
    return { ok: true, records };
  }
}
