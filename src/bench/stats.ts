/**
 * The load generator's statistics: a latency histogram of fixed size (memory stays flat however
 * long the run), error tallies by kind, and request counters. No I/O.
 */

/** Buckets below this many microseconds are exact; above it each power of two has HALF buckets. */
const SUB = 256;
const HALF = SUB / 2;
/** Values are clamped to 2^31 - 1 µs (about 36 minutes). */
const MAX_US = 0x7fffffff;
const BUCKETS = SUB + (31 - 8) * HALF;

/**
 * Latencies in a log-linear histogram (after HdrHistogram): exact below 256 µs, then within 1/128
 * (0.8 %) of the true value. Percentiles use the nearest-rank method; min, max and mean are exact.
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  #count = 0;
  #sumMs = 0;
  #minMs = Infinity;
  #maxMs = 0;

  static index(us: number): number {
    const v = Math.min(MAX_US, Math.max(0, Math.round(us)));
    if (v < SUB) return v;
    const msb = 31 - Math.clz32(v);
    const shift = msb - 7;
    return SUB + (shift - 1) * HALF + ((v >>> shift) - HALF);
  }

  /** The middle of bucket `i`, in microseconds. */
  static value(i: number): number {
    if (i < SUB) return i;
    const k = i - SUB;
    const shift = Math.floor(k / HALF) + 1;
    const mant = HALF + (k % HALF);
    return (mant * 2 ** shift + (mant + 1) * 2 ** shift - 1) / 2;
  }

  record(ms: number): void {
    this.#counts[LatencyHistogram.index(ms * 1000)]! += 1;
    this.#count++;
    this.#sumMs += ms;
    if (ms < this.#minMs) this.#minMs = ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
  }

  get count(): number {
    return this.#count;
  }

  /** The p-th percentile in ms (0 < p <= 100), or 0 when nothing was recorded. */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(this.#maxMs, Math.max(this.#minMs, LatencyHistogram.value(i) / 1000));
    }
    return this.#maxMs;
  }

  summary(): LatencySummary {
    const r = (v: number) => Math.round(v * 10) / 10;
    return {
      p50: r(this.percentile(50)),
      p90: r(this.percentile(90)),
      p99: r(this.percentile(99)),
      max: r(this.#maxMs),
      min: r(this.#count ? this.#minMs : 0),
      mean: r(this.#count ? this.#sumMs / this.#count : 0),
    };
  }
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  min: number;
  mean: number;
}

/** Failed flows by kind: a problem type URN, or a local kind (timeout, network, ...). One sample message each. */
export class ErrorTally {
  readonly #byKind = new Map<string, { count: number; sample: string }>();
  #total = 0;

  add(kind: string, message: string): void {
    this.#total++;
    const e = this.#byKind.get(kind);
    if (e) e.count++;
    // Only the first message of a kind is kept, cut short: memory stays flat.
    else this.#byKind.set(kind, { count: 1, sample: message.slice(0, 300) });
  }

  get total(): number {
    return this.#total;
  }

  /** Kinds by count, most frequent first. */
  toJSON(): { total: number; byKind: Record<string, number>; samples: Record<string, string> } {
    const sorted = [...this.#byKind.entries()].sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]));
    return {
      total: this.#total,
      byKind: Object.fromEntries(sorted.map(([k, v]) => [k, v.count])),
      samples: Object.fromEntries(sorted.map(([k, v]) => [k, v.sample])),
    };
  }
}

/** What one phase (warm-up or measured) counts. Flows of a phase all finish before the next starts. */
export class PhaseStats {
  readonly latency = new LatencyHistogram();
  readonly errors = new ErrorTally();
  started = 0;
  completed = 0;
  /** HTTP requests to the ACME server, all kinds. */
  requests = 0;
  /** JWS-signed POSTs (each one a signature check on the server). */
  signedPosts = 0;
  /** GET newNonce (only when no nonce from an earlier response is at hand). */
  newNonces = 0;
  /** POST-as-GET polls of pending authorizations and orders. */
  polls = 0;
  /** Requests sent again after badNonce (RFC 8555 §6.5) or, with --honour-retry-after, after 429/503. */
  retries = 0;
  /** Authorizations that needed a validation, and those already valid when the order was created. */
  authzValidated = 0;
  authzReused = 0;
  /** Validation requests the http-01 responder answered. */
  validationRequests = 0;
}
