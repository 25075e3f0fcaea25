/**
 * `anvil renew --daemon`: runs the renewal runner again and again. Between runs it sleeps until
 * the next check interval, or earlier when some lineage's next check (an ARI time, a Retry-After,
 * the end of a backoff) comes first (RFC 9773 §4.2 step 4). When `signal` aborts (SIGTERM,
 * SIGINT) no new work starts; work in progress gets `graceMs` to finish, then the daemon returns
 * anyway (the store stays consistent: a new version goes live in one rename or not at all).
 */
import type { Clock } from '../../lib/clock.js';
import { realSleep, type Sleep } from './limits.js';
import type { RunSummary } from './runner.js';

export interface DaemonOptions {
  /** One run; it must stop starting new work when `signal` aborts. */
  runOnce(signal: AbortSignal): Promise<RunSummary>;
  clock: Clock;
  sleep?: Sleep;
  /** Longest sleep between runs (default 5 minutes). */
  intervalMs?: number;
  /** Shortest sleep between runs (default 10 s), so a lineage due again at once cannot spin. */
  minSleepMs?: number;
  /** How long work in progress may run on after the signal (default 60 s). */
  graceMs?: number;
  signal: AbortSignal;
  onRun?(summary: RunSummary): void;
  /** A run that threw (not a lineage failure: those are in the summary). */
  onError?(e: unknown): void;
  /** The daemon is about to sleep until `until`. */
  onSleep?(until: Date): void;
}

export interface DaemonResult {
  runs: number;
  /** True when work in progress was still running when the grace period ended. */
  abandoned: boolean;
}

/** Resolves `p`, or `undefined` after `ms` once `signal` aborted. */
function graceful<T>(p: Promise<T>, signal: AbortSignal, ms: number): Promise<{ value?: T; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => resolve({ timedOut: true }), ms);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (value) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve({ value, timedOut: false });
      },
      (e: unknown) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export async function runDaemon(o: DaemonOptions): Promise<DaemonResult> {
  const sleep = o.sleep ?? realSleep;
  const interval = o.intervalMs ?? 300_000;
  const minSleep = Math.min(o.minSleepMs ?? 10_000, interval);
  const grace = o.graceMs ?? 60_000;
  let runs = 0;
  while (!o.signal.aborted) {
    let next: number | undefined;
    try {
      const r = await graceful(o.runOnce(o.signal), o.signal, grace);
      runs++;
      if (r.timedOut) return { runs, abandoned: true };
      if (r.value) {
        o.onRun?.(r.value);
        if (r.value.nextCheck) next = Date.parse(r.value.nextCheck);
      }
    } catch (e) {
      runs++;
      o.onError?.(e);
    }
    if (o.signal.aborted) break;
    const now = o.clock.now().getTime();
    const wait = Math.min(interval, Math.max(minSleep, next !== undefined && Number.isFinite(next) ? next - now : interval));
    o.onSleep?.(new Date(now + wait));
    await sleep(wait, o.signal);
  }
  return { runs, abandoned: false };
}
