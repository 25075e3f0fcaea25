/**
 * `npm run bench`: end-to-end issuance throughput of an in-process `anvil server` (SQLite file,
 * plain HTTP on loopback, validation answered by a fake so that the figure is the CA's own cost),
 * plus the cost of the signing step alone. Bounded in count and time; prints one JSON line.
 *
 *   npm run bench -- [--orders N] [--concurrency C]
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { makeCsr } from '../test/helpers/flow.js';
import { startTestServer } from '../test/helpers/in-process.js';
import { RawAcme } from '../test/helpers/raw-acme.js';

const { values } = parseArgs({ options: { orders: { type: 'string', default: '200' }, concurrency: { type: 'string', default: '8' } } });
const total = Math.min(Number(values.orders), 5000);
const concurrency = Math.min(Number(values.concurrency), 64);
const deadline = Date.now() + 120_000;

const ts = await startTestServer({ acme: { maxPendingOrdersPerAccount: 100_000 } });
try {
  const csr = await makeCsr(['127.0.0.1']);
  const clients = await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const a = await new RawAcme(ts.directoryUrl).init();
      await a.register();
      return a;
    }),
  );
  const latencies: number[] = [];
  let issued = 0;
  let next = 0;

  async function one(a: RawAcme): Promise<void> {
    const t0 = performance.now();
    const r = await a.post(a.directory.newOrder!, { payload: { identifiers: [{ type: 'ip', value: '127.0.0.1' }] } });
    let order = r.body;
    const url = r.headers.get('location')!;
    for (const az of order.authorizations as string[]) {
      const z = await a.post(az, { payload: null });
      if (z.body.status === 'valid') continue;
      await a.post(z.body.challenges[0].url, { payload: {} });
      for (let i = 0; i < 200 && (await a.post(az, { payload: null })).body.status === 'pending'; i++) await new Promise((s) => setTimeout(s, 5));
    }
    for (let i = 0; i < 200 && order.status === 'pending'; i++) order = (await a.post(url, { payload: null })).body;
    const f = await a.post(order.finalize, { payload: { csr: csr.der.toString('base64url') } });
    if (f.status !== 200 || f.body.status !== 'valid') throw new Error(`finalize: ${f.status} ${f.text}`);
    const c = await a.post(f.body.certificate, { payload: null });
    if (c.status !== 200) throw new Error(`download: ${c.status}`);
    latencies.push(performance.now() - t0);
    issued++;
  }

  const start = performance.now();
  await Promise.all(
    clients.map(async (a) => {
      while (next < total && Date.now() < deadline) {
        next++;
        await one(a);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((x, y) => x - y);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!);
  console.log(
    JSON.stringify({
      bench: 'issuance',
      machine: `${os.cpus().length}x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      orders: issued,
      concurrency,
      seconds: Number(seconds.toFixed(2)),
      issuancesPerSecond: Number((issued / seconds).toFixed(1)),
      latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99) },
      note: 'per issuance: newOrder, authorization read (reused after the first), finalize, download; each signed request fetches its own nonce',
    }),
  );
} finally {
  await ts.stop();
}
