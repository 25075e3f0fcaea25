/**
 * The acme-dns compatible HTTP API of `anvil dns` (the only HTTP code of the DNS server), as lego,
 * certbot-dns-acmedns and acme.sh's dns_acmedns call it:
 *
 *   POST /register  [{"allowfrom": ["CIDR", ...]}]  -> 201 {"username","password","fulldomain","subdomain","allowfrom"}
 *   POST /update    X-Api-User, X-Api-Key, {"subdomain","txt"} -> 200 {"txt"}
 *   GET  /health    -> 200
 *
 * Errors are {"error": "<acme-dns error string>"}. Bodies are capped, requests time out, and
 * internal failures are logged, never returned.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Logger } from '../../lib/logger.js';
import { addressInCidrs, normalizeAddress } from './cidr.js';
import { AcmeDnsError, type AcmeDnsRegistry } from './registry.js';

export interface AcmeDnsApiOptions {
  host: string;
  port: number;
  tls?: { cert: string; key: string } | undefined;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  trustForwardedFor: boolean;
  registration: { mode: 'open' | 'closed'; allowFrom: readonly string[] };
  log: Logger;
}

export interface AcmeDnsApi {
  url: string;
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

function send(res: http.ServerResponse, status: number, body?: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

function readBody(req: http.IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new BodyTooLarge());
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The client's address: the socket's, or the last X-Forwarded-For entry when the proxy is trusted. */
function clientAddress(req: http.IncomingMessage, trustForwardedFor: boolean): string {
  if (trustForwardedFor) {
    const xff = req.headers['x-forwarded-for'];
    const last = (Array.isArray(xff) ? xff.join(',') : (xff ?? '')).split(',').map((s) => s.trim()).filter(Boolean).pop();
    if (last && net.isIP(normalizeAddress(last))) return normalizeAddress(last);
  }
  return normalizeAddress(req.socket.remoteAddress ?? '');
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export async function startAcmeDnsApi(registry: AcmeDnsRegistry, o: AcmeDnsApiOptions): Promise<AcmeDnsApi> {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((e: unknown) => {
      o.log.error({ err: e, url: req.url }, 'dns api: request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal_error' });
      else res.destroy();
    });
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    const route = path === '/register' ? 'register' : path === '/update' ? 'update' : path === '/health' ? 'health' : null;
    if (!route) return send(res, 404, { error: 'not_found' });
    if (route === 'health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method_not_allowed' });
      res.writeHead(200, { 'content-length': 0 });
      return void res.end();
    }
    if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed' });
    let text: string;
    try {
      text = await readBody(req, o.maxBodyBytes);
    } catch (e) {
      if (e instanceof BodyTooLarge) return send(res, 413, { error: 'payload_too_large' });
      throw e;
    }
    const addr = clientAddress(req, o.trustForwardedFor);
    let body: Record<string, unknown> = {};
    let malformed = false;
    if (text.trim().length) {
      try {
        const v = JSON.parse(text) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) body = v as Record<string, unknown>;
        else malformed = true;
      } catch {
        malformed = true;
      }
    }
    try {
      if (route === 'register') {
        if (o.registration.mode === 'closed') throw new AcmeDnsError('registration_closed', 403);
        if (o.registration.allowFrom.length && !addressInCidrs(addr, o.registration.allowFrom)) throw new AcmeDnsError('forbidden', 403);
        if (malformed) throw new AcmeDnsError('malformed_json_payload', 400);
        const creds = await registry.register(body.allowfrom ?? []);
        o.log.info({ username: creds.username, subdomain: creds.subdomain, client: addr }, 'dns api: registered');
        return send(res, 201, creds);
      }
      // A malformed body cannot name the registration's subdomain: "forbidden", as acme-dns answers.
      const txt = await registry.update({
        user: header(req, 'x-api-user'),
        key: header(req, 'x-api-key'),
        clientAddress: addr,
        subdomain: malformed ? undefined : body.subdomain,
        txt: malformed ? undefined : body.txt,
      });
      o.log.info({ username: header(req, 'x-api-user'), client: addr }, 'dns api: TXT updated');
      return send(res, 200, { txt });
    } catch (e) {
      if (!(e instanceof AcmeDnsError)) throw e;
      if (e.status >= 500) o.log.error({ err: e }, 'dns api: request failed');
      else o.log.info({ route, client: addr, error: e.code }, 'dns api: refused');
      return send(res, e.status, { error: e.code });
    }
  };

  const common = {
    requestTimeout: o.requestTimeoutMs,
    headersTimeout: Math.min(o.requestTimeoutMs, 10_000),
    keepAliveTimeout: 5_000,
    maxHeaderSize: 8192,
  };
  const server = o.tls
    ? https.createServer({ ...common, cert: await readFile(o.tls.cert), key: await readFile(o.tls.key) }, handler)
    : http.createServer(common, handler);
  server.on('clientError', (_e, sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  const host = net.isIPv6(o.host) ? `[${o.host}]` : o.host;
  return {
    url: `${o.tls ? 'https' : 'http'}://${host}:${port}`,
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}
