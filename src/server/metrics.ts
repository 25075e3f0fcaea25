/**
 * The ACME server's Prometheus metrics (docs/metrics.md): requests by route pattern, validations by
 * challenge type and result, orders, issuances by profile, revocations, and prom-client's default
 * process metrics, in a registry of each process's own (no global registry). With `--workers` each
 * worker counts its own, and the primary adds them up (prom-client's AggregatorRegistry); the
 * inventory part (src/inventory/metrics.ts) is built once, by the primary or the single process.
 *
 * No HTTP here: the API layer (api/metrics-routes.ts) serves what `ExpositionSource` gives.
 *
 * Requests are the hot path (every ACME request, thousands a second): prom-client's counters and
 * histograms hash their labels on every observation (about 1 µs per request for a counter and a
 * histogram). RequestStats counts into plain arrays reached through nested maps (route pattern,
 * method, status), without allocating, and turns them into prom-client's format only when scraped.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Histogram, Registry, type Metric } from 'prom-client';
import type { ChallengeType } from '../protocol/types.js';
import type { AuthorityObserver } from './authority/authority.js';

/** Request latency buckets, in seconds. */
export const REQUEST_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Validation latency buckets, in seconds (validations wait on the network: up to totalTimeoutMs). */
export const VALIDATION_BUCKETS: readonly number[] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

interface Series {
  /** Requests by status code. */
  byStatus: Map<number, number>;
  /** Per status class (index 0 = 1xx): cumulative-free bucket counts (one more for +Inf), sum, count. */
  hist: Array<{ buckets: Float64Array; sum: number; count: number } | undefined>;
}

type PromValue = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * Requests counted by route pattern (fastify's routeOptions.url, e.g. `/acme/order/:id`; never the
 * raw URL, so the series are bounded), method and status, with a latency histogram by route,
 * method and status class. `route` is "unmatched" for requests no route took (404s).
 */
export class RequestStats {
  readonly #routes = new Map<string, Map<string, Series>>();
  readonly #bounds: readonly number[];

  constructor(bounds: readonly number[] = REQUEST_BUCKETS) {
    this.#bounds = bounds;
  }

  observe(route: string | undefined, method: string, status: number, seconds: number): void {
    const r = route ?? 'unmatched';
    let byMethod = this.#routes.get(r);
    if (!byMethod) this.#routes.set(r, (byMethod = new Map()));
    const m = METHODS.has(method) ? method : 'other';
    let s = byMethod.get(m);
    if (!s) byMethod.set(m, (s = { byStatus: new Map(), hist: [] }));
    s.byStatus.set(status, (s.byStatus.get(status) ?? 0) + 1);
    const cls = Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1;
    let h = s.hist[cls];
    if (!h) s.hist[cls] = h = { buckets: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
    let i = 0;
    while (i < this.#bounds.length && seconds > this.#bounds[i]!) i++;
    h.buckets[i]!++;
    h.sum += seconds;
    h.count++;
  }

  /** The counter's samples, as prom-client's Counter.get() gives them. */
  counterValues(): PromValue[] {
    const out: PromValue[] = [];
    for (const [route, byMethod] of this.#routes) {
      for (const [method, s] of byMethod) {
        for (const [status, n] of s.byStatus) out.push({ labels: { route, method, status: String(status) }, value: n });
      }
    }
    return out;
  }

  /** The histogram's samples, as prom-client's Histogram.get() gives them (cumulative buckets, then sum and count). */
  histogramValues(name: string): PromValue[] {
    const out: PromValue[] = [];
    for (const [route, byMethod] of this.#routes) {
      for (const [method, s] of byMethod) {
        for (const [k, h] of s.hist.entries()) {
          if (!h) continue;
          const labels = { route, method, status_class: STATUS_CLASSES[k]! };
          let acc = 0;
          for (const [i, b] of this.#bounds.entries()) {
            acc += h.buckets[i]!;
            out.push({ labels: { ...labels, le: b }, value: acc, metricName: `${name}_bucket` });
          }
          out.push({ labels: { ...labels, le: '+Inf' }, value: h.count, metricName: `${name}_bucket` });
          out.push({ labels, value: h.sum, metricName: `${name}_sum` });
          out.push({ labels, value: h.count, metricName: `${name}_count` });
        }
      }
    }
    return out;
  }

  reset(): void {
    this.#routes.clear();
  }
}

/** A metric of RequestStats that prom-client's Registry (and AggregatorRegistry) can hold. */
function statsMetric(name: string, help: string, type: 'counter' | 'histogram', values: () => PromValue[], reset: () => void): Metric {
  const get = async () => ({ name, help, type, values: values(), aggregator: 'sum' as const });
  return { name, help, type, aggregator: 'sum', get, reset } as unknown as Metric;
}

export interface AcmeMetricsOptions {
  /** prom-client's default metrics (process CPU, memory, event loop lag, GC, Node version). Default true. */
  processMetrics?: boolean;
}

export class AcmeMetrics implements AuthorityObserver {
  readonly registry = new Registry();
  readonly requests = new RequestStats();
  readonly #orders: Counter<'profile'>;
  readonly #issued: Counter<'profile'>;
  readonly #revoked: Counter<'reason'>;
  readonly #validations: Counter<'type' | 'result' | 'problem'>;
  readonly #validationSeconds: Histogram<'type' | 'result'>;
  /** Children bound once per label set (validations are not the hot path, but there is no reason to hash twice). */
  readonly #children = new Map<string, { inc(): void } | { observe(v: number): void }>();

  constructor(opts: AcmeMetricsOptions = {}) {
    const registers = [this.registry];
    this.registry.registerMetric(
      statsMetric(
        'anvil_http_requests_total',
        'ACME server requests by route pattern, method and status code.',
        'counter',
        () => this.requests.counterValues(),
        () => this.requests.reset(),
      ),
    );
    this.registry.registerMetric(
      statsMetric(
        'anvil_http_request_duration_seconds',
        'ACME server request latency in seconds, by route pattern, method and status class.',
        'histogram',
        () => this.requests.histogramValues('anvil_http_request_duration_seconds'),
        () => this.requests.reset(),
      ),
    );
    this.#orders = new Counter({ name: 'anvil_orders_created_total', help: 'Orders created (newOrder), by profile.', labelNames: ['profile'], registers });
    this.#issued = new Counter({ name: 'anvil_certificates_issued_total', help: 'Certificates issued (signed and stored), by profile.', labelNames: ['profile'], registers });
    this.#revoked = new Counter({ name: 'anvil_certificates_revoked_total', help: 'Certificates revoked (revokeCert), by RFC 5280 reason code.', labelNames: ['reason'], registers });
    this.#validations = new Counter({
      name: 'anvil_validations_total',
      help: 'Challenge validations, by challenge type, result (valid, invalid) and the problem type of a failure (CAA included).',
      labelNames: ['type', 'result', 'problem'],
      registers,
    });
    this.#validationSeconds = new Histogram({
      name: 'anvil_validation_duration_seconds',
      help: 'How long validations took (the checks of the outside world, CAA included), by challenge type and result.',
      labelNames: ['type', 'result'],
      buckets: [...VALIDATION_BUCKETS],
      registers,
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  #counter(c: Counter<string>, key: string, labels: Record<string, string>): { inc(): void } {
    let child = this.#children.get(key) as { inc(): void } | undefined;
    if (!child) this.#children.set(key, (child = c.labels(labels)));
    return child;
  }

  orderCreated(profile: string): void {
    this.#counter(this.#orders, `o\n${profile}`, { profile }).inc();
  }

  certificateIssued(profile: string): void {
    this.#counter(this.#issued, `i\n${profile}`, { profile }).inc();
  }

  certificateRevoked(reason: number): void {
    this.#counter(this.#revoked, `r\n${reason}`, { reason: String(reason) }).inc();
  }

  validationFinished(type: ChallengeType, problem: string | null, seconds: number): void {
    const result = problem === null ? 'valid' : 'invalid';
    this.#counter(this.#validations, `v\n${type}\n${problem ?? ''}`, { type, result, problem: problem ?? '' }).inc();
    let h = this.#children.get(`vs\n${type}\n${result}`) as { observe(v: number): void } | undefined;
    if (!h) this.#children.set(`vs\n${type}\n${result}`, (h = this.#validationSeconds.labels({ type, result })));
    h.observe(seconds);
  }

  /** This process's metrics, as text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * What /metrics serves: the whole exposition, as UTF-8, in pieces sent one after another (the
 * inventory's parts are kept once and never copied into one buffer).
 */
export type ExpositionSource = () => Promise<Buffer[]>;

/** One process: its ACME metrics, then the inventory's (if any). */
export function localExposition(acme: AcmeMetrics, inventory: { render(): Promise<Buffer[]> } | null): ExpositionSource {
  return async () => {
    const [a, i] = await Promise.all([acme.text(), inventory ? inventory.render() : Promise.resolve([])]);
    return [Buffer.from(a, 'utf8'), ...i];
  };
}

// ------------------------------------------------------------------ --workers

interface ExpositionRequest {
  type: 'anvil-metrics-request';
  id: number;
  /** With the inventory part (the scrape had the bearer token). */
  inventory: boolean;
}

interface ExpositionAnswer {
  type: 'anvil-metrics-answer';
  id: number;
  text?: string;
  error?: string;
}

/**
 * In a worker of `--workers`: answers the primary's requests for this process's metrics (the
 * primary adds every worker's up), and returns the source the worker's own /metrics serves: the
 * primary's whole exposition, asked for over IPC, so that a scrape of the ACME listener sees every
 * worker and the inventory, whichever worker takes it.
 */
export function workerExposition(acme: AcmeMetrics, opts: { inventory: boolean }, timeoutMs = 10_000): ExpositionSource {
  AggregatorRegistry.setRegistries([acme.registry]);
  // The constructor installs prom-client's worker-side listener (once per process).
  new AggregatorRegistry();
  let next = 0;
  const waiting = new Map<number, (a: ExpositionAnswer) => void>();
  process.on('message', (m: unknown) => {
    const a = m as ExpositionAnswer;
    if (a?.type !== 'anvil-metrics-answer') return;
    waiting.get(a.id)?.(a);
    waiting.delete(a.id);
  });
  return () =>
    new Promise<Buffer[]>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`the primary process did not answer for the metrics within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, (a) => {
        clearTimeout(timer);
        if (a.error !== undefined || a.text === undefined) reject(new Error(a.error ?? 'no metrics'));
        else resolve([Buffer.from(a.text, 'utf8')]);
      });
      process.send?.({ type: 'anvil-metrics-request', id, inventory: opts.inventory } satisfies ExpositionRequest);
    });
}

/**
 * In the primary of `--workers`: the sum of every worker's metrics (prom-client's
 * AggregatorRegistry asks each worker over IPC and adds counters and histogram buckets up per label
 * set), then the inventory's, built once here. The primary serves no ACME request and adds no
 * process metrics of its own (their names would clash with the workers' sums). Workers' requests
 * for the exposition (workerExposition) are answered. stop() detaches the answering.
 */
export function primaryExposition(inventory: { render(): Promise<Buffer[]> } | null): { source: (withInventory: boolean) => Promise<Buffer[]>; stop(): void } {
  const aggregator = new AggregatorRegistry();
  const source = async (withInventory: boolean): Promise<Buffer[]> => {
    const [workers, inv] = await Promise.all([aggregator.clusterMetrics(), inventory && withInventory ? inventory.render() : Promise.resolve([])]);
    return [Buffer.from(workers.endsWith('\n') || workers === '' ? workers : `${workers}\n`, 'utf8'), ...inv];
  };
  const onMessage = (worker: import('node:cluster').Worker, m: unknown) => {
    const r = m as ExpositionRequest;
    if (r?.type !== 'anvil-metrics-request') return;
    source(r.inventory === true).then(
      (b) => worker.isConnected() && worker.send({ type: 'anvil-metrics-answer', id: r.id, text: b.map((x) => x.toString('utf8')).join('') } satisfies ExpositionAnswer),
      (e: unknown) => worker.isConnected() && worker.send({ type: 'anvil-metrics-answer', id: r.id, error: (e as Error).message } satisfies ExpositionAnswer),
    );
  };
  cluster.on('message', onMessage);
  return { source, stop: () => void cluster.off('message', onMessage) };
}
