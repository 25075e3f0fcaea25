/**
 * `anvil server --workers N`: one primary process and N worker processes that each run the whole
 * server (src/server/main.ts) on one listening socket, which the primary hands connections to in
 * turn (node:cluster round-robin). State lives only in the store (SQLite with IMMEDIATE
 * transactions, or PostgreSQL), so every worker sees one consistent CA: nonces, orders, rate
 * limits and CRL numbers are in the database, as they are for replicas on several machines.
 *
 * The primary prepares what must happen once (the CA, the schema, a fixed port for port 0), then
 * forks, passes the config over IPC when a worker asks for it (never in the environment), waits for every worker, restarts
 * a worker that dies (giving up when they keep dying at start-up), and on SIGTERM/SIGINT stops the
 * workers and waits for them.
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../lib/free-port.js';
import type { ServerConfig } from './config.js';

/** How many worker processes a `workers` setting means here. */
export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? Math.max(1, os.availableParallelism()) : setting;
}

interface ReadyMessage {
  type: 'anvil-ready';
  directoryUrl: string;
  caDir: string;
}

interface ConfigMessage {
  type: 'anvil-config';
  config: unknown;
}

export const isWorker = (): boolean => cluster.isWorker;

/**
 * In a worker: the config the primary sends (re-validated by the caller). Resolves once; the
 * primary sends it right after the fork.
 */
export function configFromPrimary(): Promise<unknown> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      if ((m as ConfigMessage)?.type === 'anvil-config') {
        process.off('message', on);
        resolve((m as ConfigMessage).config);
      }
    };
    process.on('message', on);
    // Asked for only once listening, so that the answer cannot arrive before the listener.
    process.send?.({ type: 'anvil-want-config' });
  });
}

/** In a worker: tells the primary this worker serves. */
export function reportReady(info: { directoryUrl: string; caDir: string }): void {
  process.send?.({ type: 'anvil-ready', ...info } satisfies ReadyMessage);
}

/**
 * The config as the workers get it: plain data with every secret intact. JSON.stringify would show
 * the storage URL without its password (config.ts printedWithoutPassword, for logs), and a worker
 * would then fail to log in to PostgreSQL; structuredClone copies the values and not that toJSON.
 */
export function configForWorkers(config: ServerConfig): unknown {
  return structuredClone(config);
}

export interface PrimaryOptions {
  /** Creates the CA if missing and migrates the store, once, before any worker starts. */
  prepare(config: ServerConfig): Promise<void>;
  onReady(info: { directoryUrl: string; caDir: string; workers: number }): void;
  log(line: string): void;
  /** Work that must run once for all workers (the inventory sync), started after prepare, stopped last. */
  background?(config: ServerConfig): Promise<{ stop(): Promise<void> } | null>;
}

/** Runs the primary until SIGTERM/SIGINT; resolves with the exit code. */
export async function runPrimary(config: ServerConfig, n: number, o: PrimaryOptions): Promise<number> {
  await mkdir(path.resolve(config.dataDir), { recursive: true, mode: 0o700 });
  await o.prepare(config);
  const background = (await o.background?.(config)) ?? null;
  // Every worker must bind the same port, and URLs (AIA, CRL, OCSP) must name it: fix port 0 now.
  const fixed = config.listen.port === 0 ? { ...config, listen: { ...config.listen, port: await freePort(config.listen.host) } } : config;
  const payload: ConfigMessage = { type: 'anvil-config', config: configForWorkers(fixed) };

  let stopping = false;
  let ready = 0;
  let announced = false;
  const recentDeaths: number[] = [];
  const workers = new Set<Worker>();

  const fork = () => {
    const w = cluster.fork();
    workers.add(w);
    w.on('message', (m: unknown) => {
      if ((m as { type?: string })?.type === 'anvil-want-config') {
        w.send(payload);
        return;
      }
      if ((m as ReadyMessage)?.type !== 'anvil-ready') return;
      ready++;
      if (!announced && ready >= n) {
        announced = true;
        const r = m as ReadyMessage;
        o.onReady({ directoryUrl: r.directoryUrl, caDir: r.caDir, workers: n });
      }
    });
    w.once('exit', (code, signal) => {
      workers.delete(w);
      if (stopping) return;
      const now = Date.now();
      recentDeaths.push(now);
      while (recentDeaths.length && recentDeaths[0]! < now - 60_000) recentDeaths.shift();
      o.log(`anvil server: worker ${w.process.pid} exited (${signal ?? code}); starting another`);
      if (recentDeaths.length > 2 * n + 3) {
        o.log('anvil server: workers keep exiting; giving up (see the errors above)');
        void stop(1);
        return;
      }
      setTimeout(() => {
        if (!stopping) fork();
      }, 500).unref();
    });
  };

  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const all = [...workers];
    for (const w of all) w.process.kill('SIGTERM');
    const deadline = setTimeout(() => {
      for (const w of all) if (!w.isDead()) w.process.kill('SIGKILL');
    }, 15_000);
    await Promise.all(all.map((w) => (w.isDead() ? Promise.resolve() : new Promise((r) => w.once('exit', r)))));
    clearTimeout(deadline);
    await background?.stop().catch(() => {});
    resolveExit(code);
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      o.log(`anvil server: ${sig}, stopping ${workers.size} worker(s)`);
      void stop(0);
    });
  }
  for (let i = 0; i < n; i++) fork();
  return exited;
}
