/**
 * What the inventory's /metrics costs at scale: an inventory of N certificates (100,000 by default)
 * on SQLite (and, with --postgres, on PostgreSQL) is filled, then the inventory part of the
 * exposition is built: the first build (a fresh InventoryMetrics: open, read everything, write
 * every part), then builds with the cache off when nothing changed and after 1 % of the places and
 * certificates were written (each reads only the changed rows and writes only the changed parts),
 * and, for comparison, a build from scratch (no model kept); with the cache on a scrape only
 * returns the cached parts. Prints the milliseconds of each step, the size of the text, and one
 * JSON line.
 *
 * The certificates are realistic rows: the facts and DER of a few real certificates (made with
 * src/inventory/test-certs.ts: P-256 and RSA-2048, CA-issued and self-signed), with varied
 * fingerprints, names, issuers, sources, profiles and validity (a tenth expired, a tenth renewed by
 * a newer certificate for the same names, a few revoked), 60 % deployed at an endpoint or a file
 * (some missing), lineages with renewal failures, renewal events and discovery runs.
 *
 *   node --import tsx bench/inventory-metrics.ts [--certs 100000] [--rounds 5] [--postgres URL | --postgres-default]
 *
 * --keep FILE fills the SQLite inventory FILE once and keeps it (for profiling); later runs reuse it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { systemClock } from '../src/lib/clock.js';
import { openInventory, type InventoryLocation } from '../src/inventory/inventory.js';
import { directBuilder, InventoryMetrics, readInventorySnapshot, renderInventoryMetrics, startMetricsThread } from '../src/inventory/metrics.js';
import { recordScanRun } from '../src/inventory/scan-runs.js';
import { intOption, median } from './common.js';
import { fillInventory } from './inventory-fill.js';

const { values } = parseArgs({
  options: { certs: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '5' }, postgres: { type: 'string' }, 'postgres-default': { type: 'boolean' }, keep: { type: 'string' } },
  allowPositionals: true,
});
const N = intOption('certs', values.certs, 10, 1_000_000);
const ROUNDS = intOption('rounds', values.rounds, 1, 50);

async function measure(where: InventoryLocation, label: string) {
  const store = await openInventory(where);
  const t0 = performance.now();
  const reuse = values.keep !== undefined && (await store.countCertificates()) > 0;
  if (!reuse) await fillInventory(store.db, N);
  const fillMs = performance.now() - t0;
  for (const kind of reuse ? [] : (['network', 'files'] as const)) {
    for (let k = 0; k < 3; k++) {
      await recordScanRun(store, { kind, startedAt: new Date(Date.now() - (3 - k) * 3_600_000), durationMs: 12_345 + k, targets: 256, found: 200, failed: 56, failures: { timeout: 40, refused: 16 } });
    }
  }
  await store.close();

  // Cold: a new InventoryMetrics (its own connection), first scrape: everything is read and written.
  const cpu0 = process.cpuUsage();
  const coldStart = performance.now();
  const metrics = new InventoryMetrics({ cacheSeconds: 0 }, { builder: directBuilder(() => openInventory(where), { expiredRetentionDays: 30 }), clock: systemClock });
  const text = Buffer.concat(await metrics.render());
  const coldMs = performance.now() - coldStart;
  const coldCpu = process.cpuUsage(cpu0);
  // Warm, cache off: every scrape builds. Nothing changed; then 1 % of the places seen again and
  // 1 % of the certificates checked for revocation (what a scan and a revocation run write).
  const timed = async (before?: () => Promise<void>) => {
    const ms: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      await before?.();
      const c = process.cpuUsage();
      const s = performance.now();
      await metrics.render();
      ms.push(performance.now() - s);
      const u = process.cpuUsage(c);
      cpu.push((u.user + u.system) / 1000);
    }
    return { ms: median(ms), cpu: median(cpu) };
  };
  const idle = await timed();
  const writer = await openInventory(where);
  const placeIds = (await writer.db.selectFrom('inv_installations').select('id').execute()).map((r) => r.id);
  const certFps = (await writer.db.selectFrom('inv_certificates').select('fingerprint').execute()).map((r) => r.fingerprint);
  let round = 0;
  const changed = await timed(async () => {
    const t = Date.now();
    const k = round++;
    const some = <T>(xs: T[]) => xs.filter((_, i) => i % 100 === k % 100);
    await writer.db.transaction().execute(async (tx) => {
      for (const ids of chunks(some(placeIds), 500)) await tx.updateTable('inv_installations').set({ last_seen: t, last_checked: t }).where('id', 'in', ids).execute();
      for (const fps of chunks(some(certFps), 500)) await tx.updateTable('inv_certificates').set({ revocation_checked_at: t }).where('fingerprint', 'in', fps).execute();
    });
  });
  await writer.close();
  await metrics.close();
  // From scratch (no model kept): read everything and write everything, as every build did before.
  const split = await openInventory(where);
  const q: number[] = [];
  const rd: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let s = performance.now();
    const snap = await readInventorySnapshot(split.db);
    q.push(performance.now() - s);
    s = performance.now();
    renderInventoryMetrics(snap, new Date(), { expiredRetentionDays: 30 });
    rd.push(performance.now() - s);
  }
  await split.close();
  // Cached: the cache on, a scrape within cacheSeconds.
  const cached = new InventoryMetrics({ cacheSeconds: 60 }, { builder: directBuilder(() => openInventory(where), { expiredRetentionDays: 30 }), clock: systemClock });
  await cached.render();
  const c0 = performance.now();
  await cached.render();
  const cachedMs = performance.now() - c0;
  await cached.close();
  // Expired cache: the last answer is served at once while the next build runs (stale while revalidating).
  const swr = new InventoryMetrics({ cacheSeconds: 1 }, { builder: directBuilder(() => openInventory(where), { expiredRetentionDays: 30 }), clock: systemClock });
  await swr.render();
  await new Promise((r) => setTimeout(r, 1100));
  const s0 = performance.now();
  await swr.render();
  const staleMs = performance.now() - s0;
  await swr.close();

  const samples = text.toString().split('\n').filter((l) => l && !l.startsWith('#')).length;
  const out = {
    store: label,
    certs: N,
    fillS: Math.round(fillMs / 100) / 10,
    coldMs: Math.round(coldMs),
    coldCpuMs: Math.round((coldCpu.user + coldCpu.system) / 1000),
    idleMs: Math.round(idle.ms * 10) / 10,
    idleCpuMs: Math.round(idle.cpu * 10) / 10,
    changedMs: Math.round(changed.ms),
    changedCpuMs: Math.round(changed.cpu),
    queryMs: Math.round(median(q)),
    renderMs: Math.round(median(rd)),
    cachedMs: Math.round(cachedMs * 1000) / 1000,
    staleMs: Math.round(staleMs * 1000) / 1000,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    samples,
    megabytes: Math.round(text.length / 1e5) / 10,
  };
  console.log(`${label}: ${N} certificates (filled in ${out.fillS} s), ${samples} samples, ${out.megabytes} MB of text`);
  console.log(`  first build (open, read all, write all)   ${String(out.coldMs).padStart(6)} ms  (CPU ${out.coldCpuMs} ms, with GC)`);
  console.log(`  build, nothing changed (median)           ${String(out.idleMs).padStart(6)} ms  (CPU ${out.idleCpuMs} ms)`);
  console.log(`  build after 1 % of rows changed (median)  ${String(out.changedMs).padStart(6)} ms  (CPU ${out.changedCpuMs} ms)`);
  console.log(`  from scratch, no model kept (median)      ${String(out.queryMs + out.renderMs).padStart(6)} ms  = read ${out.queryMs} ms + write ${out.renderMs} ms`);
  console.log(`  scrape within the cache                   ${String(out.cachedMs).padStart(6)} ms`);
  console.log(`  scrape after it expired (stale)           ${String(out.staleMs).padStart(6)} ms  (the next build runs meanwhile)`);
  console.log(`  load average ${out.loadavg.join(' ')} on ${os.availableParallelism()} CPUs`);
  console.log(JSON.stringify({ bench: 'inventory-metrics', ...out }));
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-invmetrics-'));
try {
  await measure({ type: 'sqlite', path: values.keep ? path.resolve(values.keep) : path.join(dir, 'inventory.db') }, 'SQLite');
  const pgUrl = values.postgres ?? (values['postgres-default'] ? 'postgres://postgres@127.0.0.1:5432/postgres' : undefined);
  if (pgUrl) {
    const name = `anvil_bench_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const u = new URL(pgUrl);
      u.pathname = `/${name}`;
      await measure({ type: 'postgres', url: u.toString() }, 'PostgreSQL');
    } finally {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.end();
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
