/**
 * Wiring of the metrics (config `metrics`, docs/metrics.md) for the three kinds of server process:
 *
 * - one process (`workers` 1): its ACME metrics and the inventory's, on the ACME listener at
 *   `metrics.path`, and on `metrics.listen` if set;
 * - a worker of `--workers`: counts its own ACME metrics and answers the primary's requests for
 *   them; its /metrics on the ACME listener serves the primary's sum of all workers (asked over
 *   IPC), so a scrape sees the same whichever worker takes it;
 * - the primary of `--workers`: adds the workers' metrics up, builds the inventory part once, and
 *   serves `metrics.listen` if set (the cheaper path for a large inventory: no IPC copy).
 *
 * The inventory part is built in a thread of its own (src/inventory/metrics.ts startMetricsThread).
 */
import cluster from 'node:cluster';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../lib/clock.js';
import { ConfigError } from '../lib/config-file.js';
import type { Logger } from '../lib/logger.js';
import { registerMetricsRoute, startMetricsListener } from './api/metrics-routes.js';
import type { ServerConfig } from './config.js';
import { AcmeMetrics, localExposition, primaryExposition, workerExposition, type ExpositionSource } from './metrics.js';

/** The token of `metrics.bearerTokenFile` (its first line, trimmed); null when none is configured. */
export async function readBearerToken(config: ServerConfig): Promise<string | null> {
  const f = config.metrics.bearerTokenFile;
  if (!f) return null;
  const text = await readFile(path.resolve(f), 'utf8').catch((e: Error) => {
    throw new ConfigError(`metrics.bearerTokenFile: cannot read ${f}: ${e.message}`);
  });
  const token = text.split(/\r?\n/)[0]!.trim();
  if (token.length < 16) throw new ConfigError(`metrics.bearerTokenFile: ${f} must hold a token of at least 16 characters on its first line`);
  return token;
}

/** The inventory part, built in a thread of its own and cached; null when `metrics.inventory` is off. */
async function inventoryMetricsOf(config: ServerConfig, log: Logger, clock: Clock) {
  if (!config.metrics.inventory) return null;
  const [{ InventoryMetrics, lazyBuilder, startMetricsThread }, { inventoryLocationOf }] = await Promise.all([import('../inventory/metrics.js'), import('../inventory/inventory.js')]);
  // The thread starts at the first build: warm() at start-up where the inventory part is served
  // (a bearer token or metrics.listen), else never (a server that shows no inventory pays nothing).
  const builder = lazyBuilder(() =>
    startMetricsThread({
      inventory: inventoryLocationOf(config.storage, path.resolve(config.dataDir)),
      options: { expiredRetentionDays: config.metrics.expiredRetentionDays },
    }),
  );
  return new InventoryMetrics(
    { cacheSeconds: config.metrics.inventoryCacheSeconds },
    { builder, clock, onError: (e) => log.warn({ err: e }, 'building the inventory metrics failed; they are tried again at the next scrape') },
  );
}

async function listenerOf(config: ServerConfig, token: string | null, source: ExpositionSource, log: Logger) {
  const l = config.metrics.listen;
  if (!l) return null;
  const listener = await startMetricsListener({ host: l.host, port: l.port, path: config.metrics.path, bearerToken: token, source, logger: log });
  log.info({ url: listener.url }, 'metrics listener started');
  return listener;
}

export interface ServerMetrics {
  /** The authority's observer and the API's request counter. */
  acme: AcmeMetrics;
  /** Adds GET metrics.path to the ACME listener (before it listens), and starts metrics.listen (one process only). */
  attach(app: FastifyInstance): Promise<void>;
  close(): Promise<void>;
}

/** For startServer (one process, or a worker); null when `metrics.enabled` is false. */
export async function serverMetrics(config: ServerConfig, deps: { logger: Logger; clock: Clock }): Promise<ServerMetrics | null> {
  if (!config.metrics.enabled) return null;
  const log = deps.logger;
  const token = await readBearerToken(config);
  const acme = new AcmeMetrics();
  const worker = cluster.isWorker;
  const inventory = worker ? null : await inventoryMetricsOf(config, log, deps.clock);
  // The inventory (every certificate's names, where each is deployed, what is weak) is shown on
  // the ACME listener, which clients reach, only to scrapes with the bearer token; metrics.listen
  // (an address of the operator's choosing) always shows it.
  const onAcmeListener = token !== null;
  // The first build of a large inventory takes seconds: done now, not by the first scrape.
  if (inventory && (onAcmeListener || config.metrics.listen)) inventory.warm();
  const source = worker ? workerExposition(acme, { inventory: onAcmeListener }) : localExposition(acme, onAcmeListener ? inventory : null);
  const listenerSource = worker ? source : localExposition(acme, inventory);
  let listener: { close(): Promise<void> } | null = null;
  return {
    acme,
    async attach(app) {
      await registerMetricsRoute(app, { path: config.metrics.path, bearerToken: token, source, logger: log });
      if (!worker) listener = await listenerOf(config, token, listenerSource, log);
    },
    async close() {
      await listener?.close();
      await inventory?.close();
    },
  };
}

/** For the primary of `--workers` (cluster.ts runPrimary's background); null when `metrics.enabled` is false. */
export async function startPrimaryMetrics(config: ServerConfig, log: Logger, clock: Clock): Promise<{ stop(): Promise<void> } | null> {
  if (!config.metrics.enabled) return null;
  const token = await readBearerToken(config);
  const inventory = await inventoryMetricsOf(config, log, clock);
  if (inventory && (token !== null || config.metrics.listen)) inventory.warm();
  const primary = primaryExposition(inventory);
  const listener = await listenerOf(config, token, () => primary.source(true), log);
  return {
    async stop() {
      primary.stop();
      await listener?.close();
      await inventory?.close();
    },
  };
}
