/**
 * The metrics build reads only what changed (change stamps, inventory migration 3) and writes only
 * the parts that changed: after every kind of write, and as time crosses thresholds, what it gives
 * must be byte for byte what a build from scratch gives. On SQLite and PostgreSQL; on PostgreSQL
 * also a writer whose transaction commits after a build has read.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { inventoryLocations } from '../../test/helpers/inventory-locations.js';
import { MAX_LABEL_VALUE } from '../lib/exposition.js';
import { parseExposition } from '../../test/helpers/exposition.js';
import { openInventory, type InventoryLocation } from './inventory.js';
import { directBuilder, INVENTORY_PARTS, lazyBuilder, readInventorySnapshot, renderInventoryMetrics, startMetricsThread, type InventoryMetricsBuilder } from './metrics.js';
import { recordNetworkRun } from './scan-runs.js';
import type { InventoryStore } from './store.js';
import { testCa, testLeaf } from './test-certs.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = new Date(Math.floor(Date.now() / 1000) * 1000);
const OPTS = { expiredRetentionDays: 30 };
const { sqlite, postgres } = inventoryLocations('anvil-metrics-inc-');

/** A builder kept across builds, with the parts it sent so far put together as the server does. */
function incremental(where: InventoryLocation) {
  const builder = directBuilder(() => openInventory(where), OPTS);
  let parts: Buffer[] | null = null;
  return {
    /** The whole exposition after one more build, and which parts this build sent. */
    async build(now: Date): Promise<{ text: string; sent: number[] }> {
      const got = await builder.build(now, parts === null);
      assert.equal(got.length, INVENTORY_PARTS);
      const prev = parts;
      parts = got.map((p, k) => p ?? prev![k]!);
      return { text: Buffer.concat(parts).toString('utf8'), sent: got.flatMap((p, k) => (p === null ? [] : [k])) };
    },
    close: () => builder.close(),
  };
}

async function fromScratch(store: InventoryStore, now: Date): Promise<string> {
  return renderInventoryMetrics(await readInventorySnapshot(store.db), now, OPTS).toString('utf8');
}

for (const [name, location] of [
  ['SQLite', sqlite],
  ['PostgreSQL', postgres],
] as const) {
  describe(`incremental inventory metrics on ${name}`, () => {
    test('after every kind of write, and as time crosses thresholds, a build equals a build from scratch', async () => {
      const where = await location();
      const store = await openInventory(where);
      const inc = incremental(where);
      try {
        const ca = await testCa('Incremental CA');
        const leaf = (names: string[], nbDaysAgo: number, days: number) =>
          testLeaf({ ca, names, notBefore: new Date(T0.getTime() - nbDaysAgo * DAY), notAfter: new Date(T0.getTime() + (days - nbDaysAgo) * DAY) });
        const web = await leaf(['web.example.test'], 60, 90);
        const api = await leaf(['api.example.test'], 10, 90);
        const old = await leaf(['old.example.test'], 100, 90);
        await store.recordCertificate(web.der, 'network', T0);
        await store.recordSighting({ kind: 'endpoint', location: '127.0.0.1:443', sni: 'web.example.test' }, { found: true, der: web.der }, 'network', T0);
        await store.recordSighting({ kind: 'file', location: '/etc/ssl/api.pem', sni: null }, { found: true, der: api.der }, 'file', T0);
        await store.recordCertificate(old.der, 'import', T0);
        let now = T0;
        const check = async (what: string) => {
          const got = await inc.build(now);
          const want = await fromScratch(store, now);
          if (got.text !== want) assert.fail(`${what}: the incremental build differs from a build from scratch\n${diffLines(got.text, want)}`);
          return got;
        };
        const first = await check('the first build');
        assert.deepEqual(first.sent, [0, 1, 2, 3, 4], 'the first build sends every part');
        const idle = await check('nothing changed');
        assert.deepEqual(idle.sent, [], 'nothing changed: nothing is sent again');

        // A renewal of web (a new certificate for the same names), not yet deployed.
        const web2 = await leaf(['web.example.test'], 0, 90);
        await store.recordCertificate(web2.der, 'ca', now);
        await check('a renewal');
        // 25 hours on, web is stale after its renewal: only its health changes.
        now = new Date(T0.getTime() + 25 * HOUR);
        const stale = await check('stale after renewal');
        assert.ok(!stale.sent.includes(0) && !stale.sent.includes(3), `no timestamps and no places sent again: ${stale.sent.join(',')}`);
        assert.ok(stale.sent.includes(1), 'the info part (health levels) is sent');
        // The endpoint now serves the renewal; the file is gone on a rescan.
        await store.recordSighting({ kind: 'endpoint', location: '127.0.0.1:443', sni: 'web.example.test' }, { found: true, der: web2.der }, 'network', now);
        await store.recordSighting({ kind: 'file', location: '/etc/ssl/api.pem', sni: null }, { found: false, error: 'ENOENT' }, 'file', now);
        await check('a redeployment and a missing place');
        // A revocation found by a CRL/OCSP look, and one recorded by the CA sync.
        await store.recordRevocationCheck(await fp(store, api.der), now, { source: 'ocsp', error: null, revoked: { at: now, reason: 1, url: 'http://127.0.0.1/ocsp' } });
        const ca2 = await leaf(['ca-revoked.example.test'], 1, 90);
        await store.recordCertificate(ca2.der, 'ca', now, { revoked: { at: now, reason: 4 } });
        await check('revocations');
        // A renewal failure of a lineage and a scan run (event statistics).
        const lin = await store.recordSighting({ kind: 'lineage', location: '/etc/anvil/live/api', sni: null }, { found: true, der: api.der }, 'lineage', now);
        await store.addEvent(now, 'renewal-failed', null, lin, { attempt: now.toISOString(), error: 'x' });
        await recordNetworkRun(store, { startedAt: now, targets: 2, observations: [{ chain: [web2.der] }, { chain: [], error: { code: 'timeout' } }], interrupted: false }, now);
        await check('a lineage failure and a scan run');
        // Time alone: api's expiry passes its warning and critical thresholds, web2's notBefore is
        // long past, old expires beyond the retention and leaves the per-certificate gauges.
        for (const d of [45, 75, 78, 81, 100, 130]) {
          now = new Date(T0.getTime() + d * DAY);
          await check(`day ${d}`);
        }
        // The clock stepped back: nothing assessed for a later instant is kept.
        now = new Date(T0.getTime() + 50 * DAY);
        await check('the clock stepped back');
      } finally {
        await inc.close();
        await store.close();
      }
    });

    test('rows that went away (nothing deletes them today) make the next build read everything again', async () => {
      const where = await location();
      const store = await openInventory(where);
      const inc = incremental(where);
      try {
        const ca = await testCa('Deleting CA');
        const a = await testLeaf({ ca, names: ['a.example.test'] });
        const b = await testLeaf({ ca, names: ['b.example.test'] });
        await store.recordCertificate(a.der, 'import', T0);
        await store.recordCertificate(b.der, 'import', T0);
        await inc.build(T0);
        await store.db.deleteFrom('inv_events').execute();
        await store.db.deleteFrom('inv_certificates').where('fingerprint', '=', await fp(store, b.der)).execute();
        const got = await inc.build(T0);
        assert.equal(got.text, await fromScratch(store, T0));
        assert.equal(parseExposition(got.text).find('anvil_certificate_not_after_timestamp_seconds').length, 1);
        // One deleted and one added (the same count), then every one deleted: no series of a deleted one stays.
        const c = await testLeaf({ ca, names: ['c.example.test'] });
        await store.db.deleteFrom('inv_certificates').execute();
        await store.recordCertificate(c.der, 'import', T0);
        assert.equal((await inc.build(T0)).text, await fromScratch(store, T0));
        await store.db.deleteFrom('inv_events').execute();
        await store.db.deleteFrom('inv_certificates').execute();
        const none = await inc.build(T0);
        assert.equal(none.text, await fromScratch(store, T0));
        assert.equal(parseExposition(none.text).find('anvil_certificate_info').length, 0);
      } finally {
        await inc.close();
        await store.close();
      }
    });
  });
}

describe('incremental inventory metrics on PostgreSQL, concurrent writers', () => {
  test('a write whose transaction began before a build read and commits after it is in the next build', async () => {
    const where = await postgres();
    assert.equal(where.type, 'postgres');
    const store = await openInventory(where);
    const inc = incremental(where);
    const writer = new pg.Client({ connectionString: where.url });
    await writer.connect();
    try {
      const ca = await testCa('Concurrent CA');
      const a = await testLeaf({ ca, names: ['a.example.test'] });
      const b = await testLeaf({ ca, names: ['b.example.test'] });
      await store.recordCertificate(a.der, 'import', T0);
      await inc.build(T0);
      // The writer takes its transaction id now, and writes b...
      await writer.query('BEGIN');
      await writer.query('SELECT txid_current()');
      // ...while another transaction, begun later, commits first (a later stamp).
      await store.recordSighting({ kind: 'endpoint', location: '127.0.0.1:8443', sni: null }, { found: true, der: a.der }, 'network', T0);
      const row = await store.db.selectFrom('inv_certificates').selectAll().where('fingerprint', '=', await fp(store, a.der)).executeTakeFirstOrThrow();
      const copy = { ...row, fingerprint: 'f'.repeat(64), serial: 'beef', changed: undefined };
      delete copy.changed;
      const cols = Object.keys(copy);
      await writer.query(`INSERT INTO inv_certificates (${cols.join(', ')}) VALUES (${cols.map((_, k) => `$${k + 1}`).join(', ')})`, Object.values(copy));
      const between = await inc.build(T0);
      assert.equal(between.text, await fromScratch(store, T0), 'the later commit is read');
      assert.doesNotMatch(between.text, /fingerprint="ffffffffffffffff"/);
      await writer.query('COMMIT');
      const after = await inc.build(T0);
      assert.equal(after.text, await fromScratch(store, T0));
      assert.match(after.text, /fingerprint="ffffffffffffffff"/, 'the earlier transaction, committed after the read, is read by the next build');
      void b;
    } finally {
      await writer.end();
      await inc.close();
      await store.close();
    }
  });
});

describe('inventory metrics labels', () => {
  test('label values from outside data are cut to a bound, and two long values sharing their start stay two series', async () => {
    const where = await sqlite();
    const store = await openInventory(where);
    try {
      const ca = await testCa('Label CA');
      const dir = `/srv/${'d'.repeat(600)}`;
      for (const n of ['one', 'two']) {
        const c = await testLeaf({ ca, names: [`${n}.example.test`] });
        await store.recordSighting({ kind: 'file', location: `${dir}/${n}.pem`, sni: null }, { found: true, der: c.der }, 'file', T0);
      }
      const e = parseExposition(await fromScratch(store, T0));
      const places = e.find('anvil_installation_info');
      assert.equal(places.length, 2);
      const locations = places.map((p) => p.labels.location!);
      assert.notEqual(locations[0], locations[1]);
      for (const l of locations) {
        assert.ok(l.length <= MAX_LABEL_VALUE, `${l.length} code units`);
        assert.ok(l.startsWith('/srv/ddd'));
        assert.match(l, /\u2026[0-9a-f]{8}$/);
      }
    } finally {
      await store.close();
    }
  });
});

describe('inventory metrics thread', () => {
  test('through the thread, a build with nothing changed sends no part; a new thread sends every part even when not asked to', async () => {
    const where = await sqlite();
    const store = await openInventory(where);
    try {
      const ca = await testCa('Thread CA');
      await store.recordCertificate((await testLeaf({ ca, names: ['t.example.test'] })).der, 'import', T0);
    } finally {
      await store.close();
    }
    const thread = await startMetricsThread({ inventory: where, options: OPTS });
    const fresh = await startMetricsThread({ inventory: where, options: OPTS });
    try {
      const first = await thread.build(T0, true);
      assert.ok(first.every((p) => p !== null));
      assert.deepEqual(await thread.build(T0, false), Array(INVENTORY_PARTS).fill(null));
      const unasked = await fresh.build(T0, false);
      assert.equal(Buffer.concat(unasked.map((p) => p ?? Buffer.alloc(0))).toString(), Buffer.concat(first as Buffer[]).toString());
    } finally {
      await thread.close();
      await fresh.close();
    }
  });

  test('a build past its deadline ends the thread; a build after a pause starts a new one', async () => {
    const where = await sqlite();
    const store = await openInventory(where);
    await store.close();
    let deadlineMs = 1;
    let starts = 0;
    let clock = 0;
    const b: InventoryMetricsBuilder = lazyBuilder(
      () => {
        starts++;
        return startMetricsThread({ inventory: where, options: OPTS }, deadlineMs);
      },
      () => clock,
    );
    try {
      await assert.rejects(b.build(T0, true), /did not finish within/);
      deadlineMs = 60_000;
      // A thread that ended right after it started is not started again at once.
      await assert.rejects(b.build(T0, true), /a new one is started in 5 s/);
      assert.equal(starts, 1);
      clock += 5_000;
      const parts = await b.build(T0, true);
      assert.equal(parts.length, INVENTORY_PARTS);
      assert.equal(starts, 2);
      assert.match(Buffer.concat(parts as Buffer[]).toString(), /anvil_inventory_health_score 100/);
    } finally {
      await b.close();
    }
  });
});

async function fp(store: InventoryStore, der: Buffer): Promise<string> {
  return (await store.recordCertificate(der, 'import', T0)).fingerprint;
}

/** The lines only one of the two texts has (for a readable failure). */
function diffLines(got: string, want: string): string {
  const g = new Set(got.split('\n'));
  const w = new Set(want.split('\n'));
  return [...[...g].filter((l) => !w.has(l)).map((l) => `+ ${l}`), ...[...w].filter((l) => !g.has(l)).map((l) => `- ${l}`)].join('\n');
}
