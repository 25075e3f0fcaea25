/**
 * What the dashboard's pages cost at scale: an inventory of N certificates (100,000 by default) on
 * SQLite (and, with --postgres URL, on PostgreSQL), served by the management API (src/web/api.ts)
 * on a loopback listener, timed over HTTP as a browser asks:
 *
 * - cold: the first list page after start (the estate snapshot is built: every certificate's row
 *   without DER, its places and renewals, every check);
 * - warm: the next list pages (the snapshot is reused for up to 10 s): the first page, a search,
 *   a filter by health, a deep page, and the summary, timeline and forecast;
 * - rebuild: a list page with the snapshot expired (what a request pays every 10 s at most).
 *
 *   node --import tsx bench/inventory-views.ts [--certs 100000] [--rounds 5] [--postgres URL]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { EstateView } from '../src/inventory/estate-view.js';
import { openInventory, type InventoryLocation } from '../src/inventory/inventory.js';
import { silentLogger } from '../src/lib/logger.js';
import { registerManagement } from '../src/web/api.js';
import { TokenStore } from '../src/web/tokens.js';
import { intOption, median } from './common.js';
import { fillInventory } from './inventory-fill.js';

const { values } = parseArgs({ options: { certs: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '5' }, postgres: { type: 'string' } } });
const N = intOption('certs', values.certs, 10, 1_000_000);
const ROUNDS = intOption('rounds', values.rounds, 1, 50);

async function measure(where: InventoryLocation, label: string) {
  const fillStore = await openInventory(where);
  const f0 = performance.now();
  await fillInventory(fillStore.db, N);
  const fillMs = performance.now() - f0;
  const { token } = await new TokenStore(fillStore.db).create({ name: 'bench', role: 'viewer', createdBy: 'bench' }, new Date());
  await fillStore.close();

  const inventory = await openInventory(where);
  // The clock moves on by 11 s when `expire` is set, so that the next request rebuilds.
  let skew = 0;
  const now = () => new Date(Date.now() + skew);
  const view = new EstateView(inventory, { now });
  const app = Fastify({ loggerInstance: silentLogger() }) as unknown as FastifyInstance;
  await registerManagement(app, { inventory, view, logger: silentLogger(), now, secureCookie: false, auditKey: Buffer.alloc(32, 1) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  const base = `http://127.0.0.1:${addr.port}/api/v1`;
  const get = async (p: string) => {
    const t = performance.now();
    const r = await fetch(`${base}${p}`, { headers: { authorization: `Bearer ${token}` } });
    const body = await r.text();
    if (r.status !== 200) throw new Error(`${p}: ${r.status} ${body}`);
    return { ms: performance.now() - t, bytes: body.length, json: JSON.parse(body) as { total?: number } };
  };

  const cold = await get('/certificates?limit=50');
  const pages: Record<string, string> = {
    'list, first page': '/certificates?limit=50',
    'list, search "host-4242"': '/certificates?q=host-4242&limit=50',
    'list, health=critical': '/certificates?health=critical&limit=50',
    'list, page 1000': `/certificates?limit=50&cursor=${Math.min(50_000, Math.floor(N / 2))}`,
    'list, sort=health': '/certificates?sort=health&limit=50',
    summary: '/summary',
    'timeline 90 d': '/timeline?days=90&bucket=7',
    'forecast 365 d': '/forecast?days=365',
  };
  const warm: Record<string, number> = {};
  for (const [name, p] of Object.entries(pages)) {
    const xs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) xs.push((await get(p)).ms);
    warm[name] = median(xs);
  }
  const rebuild: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    skew += 11_000;
    rebuild.push((await get('/certificates?limit=50')).ms);
  }
  await app.close();
  await inventory.close();

  console.log(`\n${label}: ${N} certificates (filled in ${(fillMs / 1000).toFixed(1)} s); total listed ${cold.json.total}`);
  console.log(`  cold list page (snapshot built):    ${cold.ms.toFixed(0)} ms`);
  console.log(`  list page, snapshot expired:        ${median(rebuild).toFixed(0)} ms (median of ${ROUNDS})`);
  for (const [name, ms] of Object.entries(warm)) console.log(`  warm ${name.padEnd(30)}  ${ms.toFixed(1)} ms`);
  console.log(JSON.stringify({ bench: 'inventory-views', store: label, certificates: N, fillMs: Math.round(fillMs), coldMs: Math.round(cold.ms), rebuildMs: Math.round(median(rebuild)), warmMs: Object.fromEntries(Object.entries(warm).map(([k, v]) => [k, Math.round(v * 10) / 10])) }));
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-views-'));
try {
  await measure({ type: 'sqlite', path: path.join(dir, 'inventory.db') }, 'SQLite');
  if (values.postgres) await measure({ type: 'postgres', url: values.postgres }, 'PostgreSQL');
} finally {
  await rm(dir, { recursive: true, force: true });
}
