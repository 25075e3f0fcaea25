/**
 * Memory over the measured phase, for long runs ("does memory stay flat?"): a bounded trace of
 * samples. When it is full, every other sample is dropped and the interval doubles, so any run
 * length fits in `max` samples spread over the whole run.
 */
export interface MemorySample {
  /** Seconds since the measured phase started. */
  t: number;
  generatorRssMb: number;
  generatorHeapMb: number;
  /** The server process and its descendants, when --server-pid is given and readable. */
  serverRssMb: number | null;
}

export class MemoryTrace {
  readonly #samples: MemorySample[] = [];
  #intervalMs: number;

  constructor(
    intervalMs = 5000,
    private readonly max = 240,
  ) {
    this.#intervalMs = intervalMs;
  }

  /** How long to wait before the next sample. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  add(s: MemorySample): void {
    this.#samples.push(s);
    if (this.#samples.length > this.max) {
      // Keep the first sample and every other one after it.
      const kept = this.#samples.filter((_, i) => i % 2 === 0);
      this.#samples.splice(0, this.#samples.length, ...kept);
      this.#intervalMs *= 2;
    }
  }

  get samples(): readonly MemorySample[] {
    return this.#samples;
  }

  /** Start, end and peak of each series. */
  summary(): MemorySummary {
    const pick = (f: (s: MemorySample) => number | null) => {
      const v = this.#samples.map(f).filter((x): x is number => x !== null);
      return v.length ? { start: v[0]!, end: v[v.length - 1]!, max: Math.max(...v) } : null;
    };
    return { generatorRssMb: pick((s) => s.generatorRssMb), generatorHeapMb: pick((s) => s.generatorHeapMb), serverRssMb: pick((s) => s.serverRssMb) };
  }
}

export interface SeriesSummary {
  start: number;
  end: number;
  max: number;
}

export interface MemorySummary {
  generatorRssMb: SeriesSummary | null;
  generatorHeapMb: SeriesSummary | null;
  serverRssMb: SeriesSummary | null;
}
