/**
 * What counting a request costs on the ACME server's hot path: a fastify app with one POST route
 * like the ACME ones, driven through inject(), in interleaved rounds: without metrics, with the
 * server's RequestStats (src/server/metrics.ts: plain arrays behind nested maps, read only when
 * scraped), and with prom-client's Counter and Histogram children (labels().inc / observe) as the
 * alternative. Prints the median µs per request of each and the difference, and one JSON line.
 * Also the bare cost of one observation, without fastify.
 *
 *   node --import tsx bench/request-metrics.ts [--requests 20000] [--rounds 7]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { Counter, Histogram, Registry } from 'prom-client';
import { REQUEST_BUCKETS, RequestStats } from '../src/server/metrics.js';
import { intOption, median } from './common.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '7' } } });
const N = intOption('requests', values.requests, 100, 1_000_000);
const ROUNDS = intOption('rounds', values.rounds, 1, 50);

type Mode = 'none' | 'stats' | 'prom-client';

async function app(mode: Mode) {
  const a = Fastify({ logger: false });
  if (mode === 'stats') {
    const stats = new RequestStats();
    a.addHook('onResponse', (req, reply, done) => {
      stats.observe(req.routeOptions.url, req.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  } else if (mode === 'prom-client') {
    const registers = [new Registry()];
    const c = new Counter({ name: 'c_total', help: 'h', labelNames: ['route', 'method', 'status'], registers });
    const h = new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['route', 'method', 'status_class'], buckets: [...REQUEST_BUCKETS], registers });
    const children = new Map<string, { c: { inc(): void }; h: { observe(v: number): void } }>();
    a.addHook('onResponse', (req, reply, done) => {
      const route = req.routeOptions.url ?? 'unmatched';
      const key = `${route} ${req.method} ${reply.statusCode}`;
      let ch = children.get(key);
      if (!ch) {
        ch = { c: c.labels(route, req.method, String(reply.statusCode)), h: h.labels(route, req.method, `${Math.floor(reply.statusCode / 100)}xx`) };
        children.set(key, ch);
      }
      ch.c.inc();
      ch.h.observe(reply.elapsedTime / 1000);
      done();
    });
  }
  a.post('/acme/order/:id', async (_req, reply) => reply.code(200).type('application/json').send('{"status":"valid"}'));
  await a.ready();
  return a;
}

async function round(a: Awaited<ReturnType<typeof app>>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await a.inject({ method: 'POST', url: `/acme/order/${i}`, payload: '{}', headers: { 'content-type': 'application/json' } });
  return ((performance.now() - t0) * 1000) / N;
}

const modes: Mode[] = ['none', 'stats', 'prom-client'];
const apps = Object.fromEntries(await Promise.all(modes.map(async (m) => [m, await app(m)] as const))) as Record<Mode, Awaited<ReturnType<typeof app>>>;
for (const m of modes) await round(apps[m]); // warm-up
const us: Record<Mode, number[]> = { none: [], stats: [], 'prom-client': [] };
for (let r = 0; r < ROUNDS; r++) for (const m of modes) us[m].push(await round(apps[m]));

// One observation alone.
const bare = (f: (i: number) => void) => {
  const M = 2_000_000;
  const t0 = performance.now();
  for (let i = 0; i < M; i++) f(i);
  return ((performance.now() - t0) * 1e6) / M;
};
const stats = new RequestStats();
const reg = [new Registry()];
const pc = new Counter({ name: 'c2_total', help: 'h', labelNames: ['route', 'method', 'status'], registers: reg }).labels('/acme/order/:id', 'POST', '200');
const ph = new Histogram({ name: 'h2_seconds', help: 'h', labelNames: ['route', 'method', 'status_class'], buckets: [...REQUEST_BUCKETS], registers: reg }).labels('/acme/order/:id', 'POST', '2xx');
const bareStats = median([0, 1, 2].map(() => bare((i) => stats.observe('/acme/order/:id', 'POST', 200, 0.001 + (i % 7) * 0.003))));
const barePc = median([0, 1, 2].map(() => bare((i) => (pc.inc(), ph.observe(0.001 + (i % 7) * 0.003)))));

const out = {
  requests: N,
  rounds: ROUNDS,
  noneUs: Math.round(median(us.none) * 100) / 100,
  statsUs: Math.round(median(us.stats) * 100) / 100,
  promClientUs: Math.round(median(us['prom-client']) * 100) / 100,
  bareStatsNs: Math.round(bareStats),
  barePromClientNs: Math.round(barePc),
};
console.log(`per request through fastify inject (median of ${ROUNDS} interleaved rounds of ${N}):`);
console.log(`  no metrics                  ${out.noneUs.toFixed(2)} µs`);
console.log(`  RequestStats (the server's) ${out.statsUs.toFixed(2)} µs  (${(out.statsUs - out.noneUs).toFixed(2)} µs more)`);
console.log(`  prom-client children        ${out.promClientUs.toFixed(2)} µs  (${(out.promClientUs - out.noneUs).toFixed(2)} µs more)`);
console.log(`one observation alone: RequestStats ${out.bareStatsNs} ns, prom-client counter + histogram ${out.barePromClientNs} ns`);
console.log(JSON.stringify({ bench: 'request-metrics', ...out }));
for (const a of Object.values(apps)) await a.close();
