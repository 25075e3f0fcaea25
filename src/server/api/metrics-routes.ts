/**
 * GET /metrics (config `metrics`, docs/metrics.md): the Prometheus text exposition, on the ACME
 * listener and, with `metrics.listen`, on a listener of its own. With `metrics.bearerTokenFile` a
 * scrape must carry `Authorization: Bearer <token>` (Prometheus: `authorization.credentials_file`);
 * anything else is 401. The body comes from an ExpositionSource (src/server/metrics.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { EXPOSITION_CONTENT_TYPE } from '../../lib/exposition.js';
import type { Logger } from '../../lib/logger.js';
import type { ExpositionSource } from '../metrics.js';

export interface MetricsRouteOptions {
  path: string;
  /** The token scrapes must present; null: none needed. */
  bearerToken: string | null;
  source: ExpositionSource;
  logger: Logger;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** True when the Authorization header carries the token (compared in constant time). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), digest(token));
}

export async function registerMetricsRoute(app: FastifyInstance, o: MetricsRouteOptions): Promise<void> {
  app.get(o.path, async (req, reply) => {
    reply.header('Cache-Control', 'no-store');
    if (o.bearerToken !== null && !bearerMatches(req.headers.authorization, o.bearerToken)) {
      return reply.code(401).header('WWW-Authenticate', 'Bearer realm="anvil metrics"').type('text/plain; charset=utf-8').send('a bearer token is needed (metrics.bearerTokenFile)\n');
    }
    let body: Buffer[];
    try {
      body = await o.source();
    } catch (e) {
      o.logger.warn({ err: e }, 'metrics could not be collected');
      return reply.code(503).type('text/plain; charset=utf-8').send('metrics could not be collected; see the server log\n');
    }
    reply.code(200).header('Content-Type', EXPOSITION_CONTENT_TYPE);
    if (body.length === 1) return reply.send(body[0]);
    // The pieces one after another, as they are (the inventory's may be many megabytes each).
    reply.header('Content-Length', body.reduce((n, b) => n + b.length, 0));
    return reply.send(Readable.from(body, { objectMode: false }));
  });
}

/** A listener that serves only the metrics (config `metrics.listen`). */
export async function startMetricsListener(o: MetricsRouteOptions & { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const app = Fastify({ logger: false, return503OnClosing: true }) as unknown as FastifyInstance;
  await registerMetricsRoute(app, o);
  await app.listen({ host: o.host, port: o.port });
  const a = app.server.address();
  const port = typeof a === 'object' && a ? a.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return { url: `http://${host}:${port}${o.path}`, close: () => app.close() };
}
