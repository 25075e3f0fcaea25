/**
 * One `anvil bench` run: the directory, the http-01 responder, one account per virtual client,
 * a warm-up, then the measured phase, then the report. Each phase stops starting flows at its end
 * and waits for the flows in progress (their results count in that phase), so CPU snapshots taken
 * between phases attribute the server's work to the flows of the measured phase only.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Directory, Identifier } from '../protocol/types.js';
import { ownCpu, processTreeSample } from './cpu.js';
import { sanAttribute } from './csr.js';
import { BenchError, BenchSetupError } from './errors.js';
import { BenchHttp } from './http.js';
import { authorizationMode, type BenchReport, type StoppedBy } from './report.js';
import { MemoryTrace } from './memory.js';
import { Http01Responder } from './responder.js';
import { Sleeper } from './sleeper.js';
import { PhaseStats } from './stats.js';
import { VirtualClient } from './virtual-client.js';

/** Hard limits: every run is bounded in time and in flows, whatever the options say. */
export const LIMITS = {
  maxConcurrency: 1024,
  maxDurationSeconds: 3600,
  maxCount: 1_000_000,
  maxWarmupSeconds: 600,
  maxNames: 100,
  minPollIntervalMs: 1,
  maxPollIntervalMs: 60_000,
  maxFlowTimeoutSeconds: 600,
} as const;

export const DEFAULTS = {
  concurrency: 1,
  durationSeconds: 10,
  warmupSeconds: 2,
  names: 1,
  /**
   * Validation over loopback takes a few milliseconds, so the first poll 50 ms after the challenge
   * nearly always finds the authorization valid (requests per flow stay at their minimum), while
   * one flow at a time still completes in well under 100 ms: at concurrency 1 the wait, not the
   * server, sets the pace. Anvil's own Retry-After (1 s) would make the generator measure its sleep.
   */
  pollIntervalMs: 50,
  httpPort: 80,
  flowTimeoutSeconds: 60,
  requestTimeoutMs: 30_000,
} as const;

/** After an interruption, flows in progress get this long to finish before they are abandoned. */
const INTERRUPT_GRACE_MS = 3000;

export interface BenchOptions {
  directoryUrl: string;
  /** Trusted roots (PEM) replacing the system's, for a private CA. */
  caPem?: string;
  concurrency: number;
  /** Length of the measured phase; with `count`, whichever comes first. Neither: DEFAULTS.durationSeconds. */
  durationSeconds?: number;
  count?: number;
  warmupSeconds: number;
  names: number;
  challenge: 'http-01';
  pollIntervalMs: number;
  honourRetryAfter: boolean;
  httpPort: number;
  /** One address for the responder (e.g. 0.0.0.0); default: each identifier's address. */
  httpAddress?: string;
  serverPid?: number;
  flowTimeoutSeconds: number;
  requestTimeoutMs: number;
}

/** The IP identifiers of each order: 127.0.0.1, 127.0.0.2, ... (RFC 8738; no DNS needed). */
export function benchIdentifiers(names: number): Identifier[] {
  return Array.from({ length: names }, (_, i) => ({ type: 'ip' as const, value: `127.0.0.${i + 1}` }));
}

export interface RunHooks {
  /** Aborting it stops the run: no new flows, a short grace for those in progress, a partial report. */
  stop?: AbortSignal;
  /** Progress lines for people (stderr). */
  progress?: (line: string) => void;
}

const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

export async function runBench(o: BenchOptions, hooks: RunHooks = {}): Promise<BenchReport> {
  const progress = hooks.progress ?? (() => undefined);
  const startedAt = new Date().toISOString();
  /** Aborted when the flows in progress are abandoned: requests and waits fail at once. */
  const hard = new AbortController();
  let stopping = false;
  let grace: NodeJS.Timeout | undefined;
  const onStop = () => {
    if (stopping) return;
    stopping = true;
    progress(`interrupted: finishing the flows in progress (at most ${INTERRUPT_GRACE_MS / 1000} s)`);
    grace = setTimeout(() => hard.abort(new Error('interrupted')), INTERRUPT_GRACE_MS);
  };
  if (hooks.stop?.aborted) onStop();
  hooks.stop?.addEventListener('abort', onStop, { once: true });

  const identifiers = benchIdentifiers(o.names);
  const addresses = o.httpAddress ? [o.httpAddress] : identifiers.map((i) => i.value);
  const http = new BenchHttp({ ...(o.caPem ? { ca: o.caPem } : {}), timeoutMs: o.requestTimeoutMs, connections: o.concurrency });
  const responder = new Http01Responder();
  const sleeper = new Sleeper();
  hard.signal.addEventListener('abort', () => {
    const reason = new Error('interrupted');
    sleeper.cancelAll(reason);
    void http.destroy(reason);
  });
  try {
    // ---------------------------------------------------------------- setup
    const setup = new PhaseStats();
    let directory: Directory;
    try {
      const r = await http.request('GET', o.directoryUrl, undefined);
      if (r.status !== 200) throw new BenchError('badResponse', `HTTP ${r.status}`);
      directory = JSON.parse(r.text) as Directory;
      if (typeof directory?.newNonce !== 'string' || typeof directory.newAccount !== 'string' || typeof directory.newOrder !== 'string') {
        throw new BenchError('badResponse', 'not an ACME directory (no newNonce, newAccount or newOrder)');
      }
    } catch (e) {
      throw new BenchSetupError('DIRECTORY', `cannot read the ACME directory ${o.directoryUrl}: ${(e as Error).message}`, { cause: e });
    }
    await responder.listen(addresses, o.httpPort);
    const clients = Array.from(
      { length: o.concurrency },
      () =>
        new VirtualClient({
          http,
          directory,
          responder,
          identifiers,
          sanAttribute: sanAttribute(identifiers),
          pollIntervalMs: o.pollIntervalMs,
          honourRetryAfter: o.honourRetryAfter,
          flowTimeoutMs: o.flowTimeoutSeconds * 1000,
          sleep: (ms) => sleeper.sleep(ms),
        }),
    );
    progress(`registering ${clients.length} account(s) at ${o.directoryUrl}`);
    for (let i = 0; i < clients.length && !stopping; i += 16) await Promise.all(clients.slice(i, i + 16).map((c) => c.register(setup)));

    // ---------------------------------------------------------------- phases
    /** Flows cut short by an interruption, per phase. */
    const abandoned = new Map<PhaseStats, number>();
    /** Runs flows on every client until `until` (performance.now() ms) or `count` flows were started. */
    const phase = async (stats: PhaseStats, until: number, count: number | undefined): Promise<number> => {
      const t0 = performance.now();
      await Promise.all(
        clients.map(async (vc) => {
          while (!stopping && performance.now() < until && (count === undefined || stats.started < count)) {
            stats.started++;
            const f0 = performance.now();
            try {
              await vc.flow(stats);
              stats.completed++;
              stats.latency.record(performance.now() - f0);
            } catch (e) {
              if (hard.signal.aborted) {
                abandoned.set(stats, (abandoned.get(stats) ?? 0) + 1);
                return;
              }
              if (e instanceof BenchError) stats.errors.add(e.kind, e.message);
              else stats.errors.add('generator', `a bug in anvil bench: ${(e as Error).stack ?? String(e)}`);
              // A failing server is not hammered: the client pauses before its next flow.
              await sleeper.sleep(o.pollIntervalMs).catch(() => undefined);
            }
          }
        }),
      );
      return (performance.now() - t0) / 1000;
    };
    const warm = new PhaseStats();
    let warmSeconds = 0;
    if (o.warmupSeconds > 0 && !stopping) {
      progress(`warm-up: ${o.warmupSeconds} s with ${o.concurrency} client(s)`);
      warmSeconds = await phase(warm, performance.now() + o.warmupSeconds * 1000, undefined);
    }

    const duration = o.durationSeconds ?? (o.count === undefined ? DEFAULTS.durationSeconds : LIMITS.maxDurationSeconds);
    progress(
      `measuring: ${o.count !== undefined ? `${o.count} flows` : ''}${o.count !== undefined && o.durationSeconds !== undefined ? ' or ' : ''}` +
        `${o.count === undefined || o.durationSeconds !== undefined ? `${duration} s` : ''} with ${o.concurrency} client(s)`,
    );
    const stats = new PhaseStats();
    const validationsBefore = responder.served;
    const connectionsBefore = http.connections;
    const server0 = o.serverPid !== undefined ? processTreeSample(o.serverPid) : undefined;
    const own0 = ownCpu();
    const t0 = performance.now();
    const memory = new MemoryTrace();
    const sampleMemory = () => {
      const m = process.memoryUsage();
      const server = o.serverPid !== undefined ? processTreeSample(o.serverPid)?.rssMb : undefined;
      memory.add({ t: Math.round((performance.now() - t0) / 100) / 10, generatorRssMb: mb(m.rss), generatorHeapMb: mb(m.heapUsed), serverRssMb: server ?? null });
    };
    sampleMemory();
    let memoryTimer: NodeJS.Timeout | undefined;
    const nextSample = () => {
      memoryTimer = setTimeout(() => {
        sampleMemory();
        nextSample();
      }, memory.intervalMs);
      memoryTimer.unref();
    };
    nextSample();
    const seconds = stopping ? 0 : await phase(stats, t0 + duration * 1000, o.count);
    clearTimeout(memoryTimer);
    sampleMemory();
    const own1 = ownCpu();
    const server1 = o.serverPid !== undefined ? processTreeSample(o.serverPid) : undefined;

    const stoppedBy: StoppedBy = stopping
      ? 'interrupted'
      : o.count !== undefined && stats.started >= o.count
        ? 'count'
        : o.durationSeconds !== undefined || o.count === undefined
          ? 'duration'
          : 'cap';
    const per = (n: number) => (stats.completed > 0 ? Math.round((n / stats.completed) * 100) / 100 : 0);
    const cpuSeconds = own1.seconds - own0.seconds;
    const serverCpu = server0 && server1 ? server1.seconds - server0.seconds : undefined;
    const report: BenchReport = {
      tool: 'anvil bench',
      reportVersion: 1,
      directoryUrl: o.directoryUrl,
      startedAt,
      options: {
        concurrency: o.concurrency,
        durationSeconds: o.durationSeconds ?? (o.count === undefined ? duration : null),
        count: o.count ?? null,
        warmupSeconds: o.warmupSeconds,
        names: o.names,
        identifiers: identifiers.map((i) => i.value),
        challenge: o.challenge,
        pollIntervalMs: o.pollIntervalMs,
        honourRetryAfter: o.honourRetryAfter,
        httpPort: o.httpPort,
        httpAddresses: addresses,
        flowTimeoutSeconds: o.flowTimeoutSeconds,
      },
      stoppedBy,
      interrupted: stopping,
      warmup: { seconds: Math.round(warmSeconds * 100) / 100, completed: warm.completed, failed: warm.errors.total },
      seconds: Math.round(seconds * 1000) / 1000,
      flows: { started: stats.started, completed: stats.completed, failed: stats.errors.total, abandoned: abandoned.get(stats) ?? 0 },
      flowsPerSecond: seconds > 0 ? Math.round((stats.completed / seconds) * 10) / 10 : 0,
      latencyMs: stats.latency.summary(),
      errors: stats.errors.toJSON(),
      requests: {
        total: stats.requests,
        perFlow: per(stats.requests),
        signedPosts: stats.signedPosts,
        signedPostsPerFlow: per(stats.signedPosts),
        newNonce: stats.newNonces,
        polls: stats.polls,
        pollsPerFlow: per(stats.polls),
        retries: stats.retries,
      },
      authorizations: { validated: stats.authzValidated, reused: stats.authzReused, mode: authorizationMode(stats.authzValidated, stats.authzReused) },
      validationRequests: responder.served - validationsBefore,
      connections: { measured: http.connections - connectionsBefore, total: http.connections },
      memory: { intervalSeconds: memory.intervalMs / 1000, ...memory.summary(), samples: [...memory.samples] },
      generator: {
        cpuSeconds: Math.round(cpuSeconds * 1000) / 1000,
        cpuMsPerFlow: stats.completed > 0 ? Math.round(((cpuSeconds * 1000) / stats.completed) * 1000) / 1000 : null,
      },
      server:
        o.serverPid !== undefined && serverCpu !== undefined
          ? {
              pid: o.serverPid,
              processes: server1!.processes,
              cpuSeconds: Math.round(serverCpu * 1000) / 1000,
              cpuMsPerIssuance: stats.completed > 0 ? Math.round(((serverCpu * 1000) / stats.completed) * 1000) / 1000 : null,
            }
          : null,
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}` },
    };
    return report;
  } finally {
    if (grace) clearTimeout(grace);
    hooks.stop?.removeEventListener('abort', onStop);
    await responder.close();
    await http.close();
  }
}
