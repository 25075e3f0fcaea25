/**
 * Concurrency and rate limits for the renewal runner: a bounded parallel map, a per-key token
 * bucket (one per CA), keyed mutexes (lineages sharing a port or hooks run one at a time), and a
 * sleep that an AbortSignal cuts short. Time comes from an injected clock and sleep, so tests move
 * fake time instead of waiting.
 */
import type { Clock } from '../../lib/clock.js';

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** setTimeout, resolved early (not rejected) when `signal` aborts. */
export const realSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * A token bucket: `ratePerMinute` tokens a minute, at most `burst` saved up. `take()` waits (with
 * the injected sleep) until a token is there; it returns false when `signal` aborted meanwhile.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;
  readonly #perMs: number;
  readonly #burst: number;

  constructor(
    ratePerMinute: number,
    burst: number,
    private readonly clock: Clock,
    private readonly sleep: Sleep,
  ) {
    this.#perMs = Math.max(ratePerMinute, 1e-6) / 60_000;
    this.#burst = Math.max(1, burst);
    this.#tokens = this.#burst;
    this.#last = clock.now().getTime();
  }

  #refill(): void {
    const now = this.clock.now().getTime();
    this.#tokens = Math.min(this.#burst, this.#tokens + Math.max(0, now - this.#last) * this.#perMs);
    this.#last = now;
  }

  async take(signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal?.aborted) return false;
      this.#refill();
      if (this.#tokens >= 1) {
        this.#tokens -= 1;
        return true;
      }
      await this.sleep(Math.ceil((1 - this.#tokens) / this.#perMs), signal);
    }
  }
}

/** Token buckets by key (a CA's directory URL), made on first use. */
export class RateLimits {
  readonly #buckets = new Map<string, TokenBucket>();
  constructor(
    private readonly ratePerMinute: number,
    private readonly burst: number,
    private readonly clock: Clock,
    private readonly sleep: Sleep,
  ) {}

  take(key: string, signal?: AbortSignal): Promise<boolean> {
    let b = this.#buckets.get(key);
    if (!b) this.#buckets.set(key, (b = new TokenBucket(this.ratePerMinute, this.burst, this.clock, this.sleep)));
    return b.take(signal);
  }
}

/** Mutexes by key. `lock(keys)` takes several in sorted order (so two callers cannot deadlock). */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async #one(key: string): Promise<() => void> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }

  async lock(keys: Iterable<string>): Promise<() => void> {
    const releases: Array<() => void> = [];
    for (const k of [...new Set(keys)].sort()) releases.push(await this.#one(k));
    return () => {
      for (const r of releases.reverse()) r();
    };
  }
}
