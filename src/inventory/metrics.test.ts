import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseExposition, type Exposition } from '../../test/helpers/exposition.js';
import { FakeClock } from '../lib/clock.js';
import { assess, filePlace, openInventory, type InventoryLocation } from './inventory.js';
import {
  commonNameOf,
  directBuilder,
  INVENTORY_PARTS,
  InventoryMetrics,
  lazyBuilder,
  readInventorySnapshot,
  renderInventoryMetrics,
  renewalDueMs,
  startMetricsThread,
  type InventoryMetricsBuilder,
} from './metrics.js';
import { recordFilesRun, recordNetworkRun } from './scan-runs.js';
import type { InventoryStore } from './store.js';
import { testCa, testLeaf } from './test-certs.js';

const DAY = 86_400_000;
// Whole seconds: X.509 times have no milliseconds.
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const fp16 = (fp: string) => fp.slice(0, 16);
const text = (parts: Array<Buffer | null>) => Buffer.concat(parts.filter((p): p is Buffer => p !== null)).toString('utf8');

describe('inventory metrics', () => {
  let dir: string;
  let where: InventoryLocation;
  let store: InventoryStore;
  const fps: Record<string, string> = {};
  const dates: Record<string, { nb: Date; na: Date }> = {};
  let e: Exposition;

  async function add(key: string, o: Parameters<typeof testLeaf>[0], place?: { kind: 'endpoint' | 'file' | 'lineage'; location: string; sni?: string | null; found?: boolean }) {
    const leaf = await testLeaf(o);
    const r = await store.recordCertificate(leaf.der, place ? (place.kind === 'endpoint' ? 'network' : place.kind === 'file' ? 'file' : 'lineage') : 'import', NOW);
    fps[key] = r.fingerprint;
    dates[key] = { nb: o?.notBefore ?? new Date(NaN), na: o?.notAfter ?? new Date(NaN) };
    if (place) await store.recordSighting(place, { found: true, der: leaf.der }, 'network', NOW);
    return leaf;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-inv-metrics-'));
    where = { type: 'sqlite', path: path.join(dir, 'inventory.db') };
    store = await openInventory(where);
    // @peculiar/x509 reads these as RFC 4514 strings: \" is a quote in the name.
    const ca = await testCa('Metrics Test \\"Issuing\\" CA');
    const nb = new Date(NOW.getTime() - 10 * DAY);
    // 90 days: due at 60 days, a whole second.
    await add('known', { ca, names: ['known.example.test'], notBefore: nb, notAfter: new Date(nb.getTime() + 90 * DAY) }, { kind: 'endpoint', location: '127.0.0.1:443', sni: 'known.example.test' });
    await add('weird', { ca, cn: 'odd \\"quoted\\" \\\\ name', names: ['weird.example.test'], notBefore: nb, notAfter: new Date(nb.getTime() + 30 * DAY) });
    await add('nocn', { ca, cn: '', names: ['b.example.test', 'a.example.test'], notBefore: nb, notAfter: new Date(nb.getTime() + 30 * DAY) });
    // An old certificate and its renewal: the old one, deployed nowhere, is history.
    await add('old', { ca, names: ['renewed.example.test'], notBefore: new Date(NOW.getTime() - 80 * DAY), notAfter: new Date(NOW.getTime() + 10 * DAY) });
    await add('new', { ca, names: ['renewed.example.test'], notBefore: new Date(NOW.getTime() - DAY), notAfter: new Date(NOW.getTime() + 89 * DAY) });
    // Renewed but still served somewhere: exported (and stale-after-renewal).
    await add('stale', { ca, names: ['stale.example.test'], notBefore: new Date(NOW.getTime() - 80 * DAY), notAfter: new Date(NOW.getTime() + 10 * DAY) }, { kind: 'file', location: '/etc/ssl/stale.pem' });
    await add('staleNew', { ca, names: ['stale.example.test'], notBefore: new Date(NOW.getTime() - 3 * DAY), notAfter: new Date(NOW.getTime() + 87 * DAY) });
    // Expired 40 days ago and deployed nowhere: beyond the 30-day retention. Expired 10 days ago: kept.
    await add('longExpired', { ca, names: ['gone.example.test'], notBefore: new Date(NOW.getTime() - 130 * DAY), notAfter: new Date(NOW.getTime() - 40 * DAY) });
    await add('justExpired', { ca, names: ['late.example.test'], notBefore: new Date(NOW.getTime() - 100 * DAY), notAfter: new Date(NOW.getTime() - 10 * DAY) });
    // Expired long ago but still served: always exported (that is the emergency).
    await add('servedExpired', { ca, names: ['served.example.test'], notBefore: new Date(NOW.getTime() - 200 * DAY), notAfter: new Date(NOW.getTime() - 100 * DAY) }, { kind: 'endpoint', location: '10.0.0.9:8443', sni: null });
    // Revoked.
    const revoked = await testLeaf({ ca, names: ['revoked.example.test'], notBefore: nb, notAfter: new Date(nb.getTime() + 90 * DAY) });
    fps.revoked = (await store.recordCertificate(revoked.der, 'ca', NOW, { revoked: { at: new Date(NOW.getTime() - DAY), reason: 1 } })).fingerprint;
    // A file whose path needs escaping, and a lineage with failed renewals.
    const odd = await testLeaf({ ca, names: ['file.example.test'] });
    await store.recordSighting(filePlace('/srv/certs/"odd"\\dir\nname.pem', 0), { found: true, der: odd.der }, 'file', NOW);
    fps.odd = (await store.recordCertificate(odd.der, 'file', NOW)).fingerprint;
    const lin = await testLeaf({ ca, names: ['lineage.example.test'], notBefore: nb, notAfter: new Date(nb.getTime() + 90 * DAY) });
    const linId = await store.recordSighting({ kind: 'lineage', location: '/etc/anvil/live/web', sni: null }, { found: true, der: lin.der }, 'lineage', NOW);
    fps.lineage = (await store.recordCertificate(lin.der, 'lineage', NOW)).fingerprint;
    dates.lineage = { nb, na: new Date(nb.getTime() + 90 * DAY) };
    await store.addEvent(NOW, 'renewal-failed', fps.lineage, linId, { lineage: 'web', attempt: new Date(NOW.getTime() - 7200_000).toISOString(), error: 'x' });
    await store.addEvent(NOW, 'renewal-failed', fps.lineage, linId, { lineage: 'web', attempt: new Date(NOW.getTime() - 3600_000).toISOString(), error: 'x' });
    // Two network runs and a file run: the last of each kind counts.
    await recordNetworkRun(store, { startedAt: new Date(NOW.getTime() - 7200_000), targets: 9, observations: [], interrupted: false }, new Date(NOW.getTime() - 7100_000));
    await recordNetworkRun(
      store,
      {
        startedAt: new Date(NOW.getTime() - 60_000),
        targets: 4,
        observations: [{ chain: [Buffer.from('x')] }, { chain: [], error: { code: 'timeout' } }, { chain: [], error: { code: 'timeout' } }, { chain: [], error: { code: 'refused' } }],
        interrupted: false,
      },
      new Date(NOW.getTime() - 57_500),
    );
    await recordFilesRun(store, { startedAt: new Date(NOW.getTime() - 30_000), files: [{ certificates: [Buffer.from('x')] }, { certificates: [], error: { code: 'pkcs12-password' } }] }, new Date(NOW.getTime() - 29_000));
    e = parseExposition(renderInventoryMetrics(await readInventorySnapshot(store.db), NOW, { expiredRetentionDays: 30 }).toString('utf8'));
  });
  after(async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a certificate with a known notAfter gives exactly that Unix time, and its notBefore and renewal-due time too', () => {
    const labels = { fingerprint: fp16(fps.known!) };
    const { nb, na } = dates.known!;
    assert.equal(e.value('anvil_certificate_not_after_timestamp_seconds', labels), na.getTime() / 1000);
    assert.equal(e.value('anvil_certificate_not_before_timestamp_seconds', labels), nb.getTime() / 1000);
    // Two thirds of 90 days: 60 days after notBefore.
    assert.equal(e.value('anvil_certificate_renewal_due_timestamp_seconds', labels), nb.getTime() / 1000 + 60 * 86_400);
    assert.equal(renewalDueMs(nb.getTime(), na.getTime()), nb.getTime() + 60 * DAY);
  });

  test('the timestamp gauges carry the fingerprint (16 digits), the subject CN, the issuer CN and the source', () => {
    const [s] = e.find('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp16(fps.known!) });
    assert.deepEqual(s!.labels, { fingerprint: fp16(fps.known!), cn: 'known.example.test', issuer: 'Metrics Test "Issuing" CA', source: 'network' });
  });

  test('label values with quotes and backslashes (a CN, a file path with a line feed) come through the exposition unchanged', () => {
    assert.equal(e.find('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp16(fps.weird!) })[0]!.labels.cn, 'odd "quoted" \\ name');
    assert.equal(e.find('anvil_installation_info', { kind: 'file', location: '/srv/certs/"odd"\\dir\nname.pem' }).length, 1);
  });

  test('a certificate without a subject CN is named by the first of its sorted subjectAltNames', () => {
    assert.equal(e.find('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp16(fps.nocn!) })[0]!.labels.cn, 'a.example.test');
  });

  test('exported: deployed certificates, and the others unless renewed or expired beyond the retention', () => {
    const has = (k: string) => e.find('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp16(fps[k]!) }).length === 1;
    for (const k of ['known', 'new', 'stale', 'staleNew', 'justExpired', 'servedExpired', 'revoked', 'lineage']) assert.ok(has(k), `${k} is exported`);
    for (const k of ['old', 'longExpired']) assert.ok(!has(k), `${k} is not exported`);
    assert.equal(e.value('anvil_inventory_certificates_exported'), e.find('anvil_certificate_not_after_timestamp_seconds').length);
  });

  test('a revoked certificate has its revocation time', () => {
    assert.equal(e.value('anvil_certificate_revoked_timestamp_seconds', { fingerprint: fp16(fps.revoked!) }), (NOW.getTime() - DAY) / 1000);
    assert.equal(e.find('anvil_certificate_revoked_timestamp_seconds').length, 1);
  });

  test('installations link a place to the fingerprint seen there, with the time it was last seen', () => {
    assert.equal(e.value('anvil_installation_info', { kind: 'endpoint', location: '127.0.0.1:443', sni: 'known.example.test', status: 'present', fingerprint: fp16(fps.known!) }), 1);
    assert.equal(e.value('anvil_installation_last_seen_timestamp_seconds', { kind: 'endpoint', location: '127.0.0.1:443' }), NOW.getTime() / 1000);
    assert.equal(e.value('anvil_inventory_installations', { kind: 'endpoint', status: 'present' }), 2);
  });

  test('the estate gauges agree with anvil inventory health', async () => {
    const { estate } = await assess(store, NOW);
    for (const level of ['good', 'fair', 'poor', 'critical']) assert.equal(e.value('anvil_inventory_certificates', { health: level }), estate.byLevel[level as 'good'], level);
    for (const f of estate.byCheck) assert.equal(e.value('anvil_inventory_findings', { check: f.check, severity: f.severity }), f.certificates, f.check);
    assert.equal(e.value('anvil_inventory_health_score'), estate.score);
    assert.equal(e.find('anvil_inventory_findings').length, estate.byCheck.length);
  });

  test('renewals: events counted by result, and per lineage the last issuance, the last failure and the failures', () => {
    assert.equal(e.value('anvil_inventory_renewals_total', { result: 'renewed' }), 2);
    assert.equal(e.value('anvil_inventory_renewals_total', { result: 'failed' }), 2);
    const l = { lineage: 'web', location: '/etc/anvil/live/web' };
    assert.equal(e.value('anvil_lineage_renewal_failures_total', l), 2);
    assert.equal(e.value('anvil_lineage_last_renewal_failure_timestamp_seconds', l), (NOW.getTime() - 3600_000) / 1000);
    assert.equal(e.value('anvil_lineage_last_issued_timestamp_seconds', l), dates.lineage!.nb.getTime() / 1000);
  });

  test('discovery runs: the last run of each kind, its duration, targets, finds and failures by class', () => {
    assert.equal(e.value('anvil_scan_runs_total', { kind: 'network' }), 2);
    assert.equal(e.value('anvil_scan_last_run_timestamp_seconds', { kind: 'network' }), (NOW.getTime() - 60_000) / 1000);
    assert.equal(e.value('anvil_scan_last_duration_seconds', { kind: 'network' }), 2.5);
    assert.equal(e.value('anvil_scan_last_targets', { kind: 'network' }), 4);
    assert.equal(e.value('anvil_scan_last_found', { kind: 'network' }), 1);
    assert.equal(e.value('anvil_scan_last_failed', { kind: 'network' }), 3);
    assert.equal(e.value('anvil_scan_last_failures', { kind: 'network', class: 'timeout' }), 2);
    assert.equal(e.value('anvil_scan_last_failures', { kind: 'network', class: 'refused' }), 1);
    assert.equal(e.value('anvil_scan_last_failures', { kind: 'files', class: 'pkcs12-password' }), 1);
    assert.equal(e.value('anvil_scan_last_duration_seconds', { kind: 'files' }), 1);
  });

  test('an empty inventory renders a well-formed exposition', async () => {
    const empty = await openInventory({ type: 'sqlite', path: path.join(dir, 'empty.db') });
    try {
      const x = parseExposition(renderInventoryMetrics(await readInventorySnapshot(empty.db), NOW, { expiredRetentionDays: 30 }).toString());
      assert.equal(x.value('anvil_inventory_certificates', { health: 'good' }), 0);
      assert.equal(x.find('anvil_certificate_not_after_timestamp_seconds').length, 0);
    } finally {
      await empty.close();
    }
  });

  test('the metrics thread builds the same bytes as this thread', async () => {
    const thread = await startMetricsThread({ inventory: where, options: { expiredRetentionDays: 30 } });
    const direct = directBuilder(() => openInventory(where), { expiredRetentionDays: 30 });
    try {
      assert.equal(text(await thread.build(NOW, true)), text(await direct.build(NOW, true)));
    } finally {
      await thread.close();
      await direct.close();
    }
  });
});

describe('InventoryMetrics (the cache)', () => {
  function fakeBuilder() {
    const calls: Date[] = [];
    const fulls: boolean[] = [];
    let fail = false;
    let release: (() => void) | null = null;
    const b: InventoryMetricsBuilder & { calls: Date[]; fulls: boolean[]; fail(v: boolean): void; hold(): () => void } = {
      calls,
      fulls,
      fail: (v) => void (fail = v),
      hold: () => {
        let r!: () => void;
        const p = new Promise<void>((res) => (r = res));
        release = r;
        held = p;
        return r;
      },
      async build(now, full) {
        calls.push(now);
        fulls.push(full);
        await held;
        if (fail) throw new Error('the database is gone');
        // The first part only; the others as a real builder sends them when nothing changed.
        const first = Buffer.from(`# HELP inv_test t\n# TYPE inv_test gauge\ninv_test ${calls.length}\n`);
        return [first, ...Array.from({ length: INVENTORY_PARTS - 1 }, () => (full ? Buffer.from(`# part ${calls.length}\n`) : null))];
      },
      async close() {},
    };
    let held: Promise<void> | null = null;
    void release;
    return b;
  }

  test('concurrent scrapes share one build, a build is reused for cacheSeconds, then served while the next one runs', async () => {
    const clock = new FakeClock(NOW.getTime());
    const b = fakeBuilder();
    const m = new InventoryMetrics({ cacheSeconds: 30 }, { builder: b, clock });
    const release = b.hold();
    const both = Promise.all([m.render(), m.render(), m.render()]);
    release();
    const [x, y, z] = await both;
    assert.equal(b.calls.length, 1);
    assert.equal(text(x), text(y));
    assert.equal(text(y), text(z));
    clock.advance(29_000);
    await m.render();
    assert.equal(b.calls.length, 1, 'still cached');
    clock.advance(2_000);
    // Expired: the last answer at once, and a new build in the background for the next scrapes.
    const stale = parseExposition(text(await m.render()));
    assert.equal(stale.value('inv_test'), 1);
    assert.equal(b.calls.length, 2);
    await new Promise((r) => setTimeout(r, 10));
    const again = parseExposition(text(await m.render()));
    assert.equal(b.calls.length, 2);
    assert.equal(again.value('inv_test'), 2);
    assert.equal(again.value('anvil_inventory_metrics_up'), 1);
    assert.equal(again.value('anvil_inventory_metrics_generated_timestamp_seconds'), (NOW.getTime() + 31_000) / 1000);
  });

  test('a failed build keeps the last good body, says up 0, and is tried again at the next scrape', async () => {
    const clock = new FakeClock(NOW.getTime());
    const b = fakeBuilder();
    const errors: unknown[] = [];
    const m = new InventoryMetrics({ cacheSeconds: 30 }, { builder: b, clock, onError: (x) => errors.push(x) });
    await m.render();
    clock.advance(31_000);
    b.fail(true);
    // The stale answer at once; its background build fails; the next scrape waits for a new try.
    assert.equal(parseExposition(text(await m.render())).value('anvil_inventory_metrics_up'), 1);
    await new Promise((r) => setTimeout(r, 10));
    const failed = parseExposition(text(await m.render()));
    assert.equal(failed.value('anvil_inventory_metrics_up'), 0);
    assert.equal(failed.value('inv_test'), 1, 'the last good body');
    assert.equal(failed.value('anvil_inventory_metrics_generated_timestamp_seconds'), NOW.getTime() / 1000);
    assert.equal(errors.length, 2);
    b.fail(false);
    const ok = parseExposition(text(await m.render()));
    assert.equal(b.calls.length, 4, 'tried again at once, not after cacheSeconds');
    assert.equal(ok.value('anvil_inventory_metrics_up'), 1);
    // The first build and the one after a failure ask for every part; the others only for changes.
    assert.deepEqual(b.fulls, [true, false, true, true]);
    assert.match(text(await m.render()), /# part 4\n/);
  });
});

describe('commonNameOf', () => {
  const cases: Array<[string, string | null]> = [
    ['CN=www.example.com', 'www.example.com'],
    ['CN=a\\, b, O=x', 'a, b'],
    ['O=Example, CN=inner', 'inner'],
    ['O=x + CN=multi, C=DE', 'multi'],
    ['O=CN=not a cn', null],
    ['O=x\\, CN=escaped, C=DE', null],
    ['', null],
  ];
  for (const [name, cn] of cases) test(`${JSON.stringify(name)} has CN ${JSON.stringify(cn)}`, () => assert.equal(commonNameOf(name), cn));
});
