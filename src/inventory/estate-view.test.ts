/**
 * The dashboard's view of the estate (estate-view.ts): pages, filters and counts cut from one
 * snapshot, which notices what the inventory records (a small estate is rebuilt before answering),
 * read in chunks that give the event loop back in between.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EstateView } from './estate-view.js';
import { openInventory } from './inventory.js';
import type { InventoryStore } from './store.js';
import { testCa, testLeaf } from './test-certs.js';

const DAY = 86_400_000;

describe('EstateView', () => {
  let dir: string;
  let inv: InventoryStore;
  const now = new Date();
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-view-'));
    inv = await openInventory({ type: 'sqlite', path: path.join(dir, 'inventory.db') });
  });
  after(async () => {
    await inv.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('pages, searches, filters and counts; sees a certificate recorded after its first build', async () => {
    const ca = await testCa('View CA');
    const soon = await testLeaf({ names: ['soon.example'], ca, notBefore: new Date(now.getTime() - 80 * DAY), notAfter: new Date(now.getTime() + 3 * DAY) });
    const later = await testLeaf({ names: ['later.example'], ca, notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + 89 * DAY) });
    await inv.recordCertificate(soon.der, 'file', now);
    await inv.recordCertificate(Buffer.from(ca.cert.rawData), 'file', now);
    // A small chunk: the build reads several pages.
    const view = new EstateView(inv, { now: () => new Date(), chunk: 1 });
    const first = await view.page({});
    assert.equal(first.total, 1, 'CA certificates are left out by default');
    assert.equal((await view.page({ leavesOnly: false })).total, 2);
    await inv.recordCertificate(later.der, 'file', now);
    const p = await view.page({ limit: 1 });
    assert.equal(p.total, 2, 'the new certificate is seen at once (a small estate is rebuilt on change)');
    assert.deepEqual(p.items[0]!.certificate.names, ['soon.example'], 'soonest expiry first');
    assert.equal(p.next, 1);
    assert.deepEqual((await view.page({ offset: 1, limit: 1 })).items[0]!.certificate.names, ['later.example']);
    assert.equal((await view.page({ q: 'LATER' })).total, 1);
    assert.equal((await view.page({ health: 'critical' })).items[0]?.certificate.names[0], 'soon.example');
    assert.equal((await view.page({ expiringWithinDays: 7 })).total, 1);
    assert.equal((await view.page({ check: 'expiring' })).total, 1);
    assert.deepEqual((await view.page({ sort: '-notAfter' })).items.map((a) => a.certificate.names[0]), ['later.example', 'soon.example']);
    const s = await view.summary();
    assert.equal(s.leaves, 2);
    assert.deepEqual(s.expiring, { days7: 1, days30: 1 });
    const tl = await view.timeline(14, 7);
    assert.deepEqual(tl.buckets.map((b) => b.total), [1, 0]);
    assert.equal(tl.buckets[0]!.bySeverity.critical, 1);
  });

  test('a change made meanwhile is not lost: refresh() checks one certificate again in place; a build begun before invalidate() is not kept', async () => {
    const ca = await testCa('View CA 3');
    const leaf = await testLeaf({ names: ['refresh.example'], ca });
    const { fingerprint } = await inv.recordCertificate(leaf.der, 'import', now);
    const view = new EstateView(inv, { now: () => new Date(), chunk: 2 });
    await view.page({});
    await inv.recordCertificate(leaf.der, 'import', new Date(), { revoked: { at: new Date(), reason: 1 } });
    await view.refresh(fingerprint);
    const [a] = (await view.page({ q: 'refresh.example' })).items;
    assert.ok(a!.certificate.revoked);
    assert.ok(a!.health.findings.some((f) => f.check === 'revoked'));

    // A build that read the estate before a change, and the invalidate() after it.
    const leaf2 = await testLeaf({ names: ['late.example'], ca });
    const view2 = new EstateView(inv, { now: () => new Date(), chunk: 2 });
    const early = view2.page({ q: 'late.example' });
    await inv.recordCertificate(leaf2.der, 'import', new Date());
    view2.invalidate();
    const after = await view2.page({ q: 'late.example' });
    await early;
    assert.equal(after.total, 1, 'the read after invalidate() sees the change');
    assert.equal((await view2.page({ q: 'late.example' })).total, 1, 'and the older build did not replace it');
  });

  test('while a build runs, the event loop is given back between chunks', async () => {
    const ca = await testCa('View CA 2');
    for (let i = 0; i < 20; i++) await inv.recordCertificate((await testLeaf({ names: [`n${i}.example`], ca })).der, 'import', now);
    const view = new EstateView(inv, { now: () => new Date(), chunk: 2 });
    let done = false;
    let sawUnfinished = false;
    const built = view.page({}).then((p) => ((done = true), p));
    setImmediate(() => (sawUnfinished = !done));
    await built;
    assert.ok(sawUnfinished, 'a callback queued when the build started ran before the build finished');
    assert.equal((await built).total, 24);
  });
});
