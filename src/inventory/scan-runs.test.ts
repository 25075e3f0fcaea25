/**
 * Scan runs (src/inventory/scan-runs.ts): each target has one outcome, found or failed in exactly
 * one class, so the classes of `failures` add up to `failed` (review finding: a file read in part
 * was counted in its class but not in `failed`, and a file's refused certificates each counted as
 * a failure of its own).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inventoryLocations } from '../../test/helpers/inventory-locations.js';
import { openInventory, recordFileScan } from './inventory.js';
import { fileFailureClass, networkFailureClass, recordFilesRun, recordNetworkRun, recordScanRun } from './scan-runs.js';
import type { InventoryStore } from './store.js';
import { testLeaf } from './test-certs.js';

const { sqlite } = inventoryLocations('anvil-inv-scan-runs-');
const cert = Buffer.from('a certificate (scan runs only count them)');

describe('scan runs: one outcome per target', () => {
  let store: InventoryStore;
  before(async () => {
    store = await openInventory(await sqlite());
  });
  after(async () => {
    await store.close();
  });
  const last = async (kind: 'network' | 'files') => {
    const r = await store.db.selectFrom('inv_scans').selectAll().where('kind', '=', kind).orderBy('id', 'desc').limit(1).executeTakeFirstOrThrow();
    const detail = JSON.parse(r.detail) as { failures: Record<string, number>; partial?: Record<string, number>; [k: string]: unknown };
    return { targets: Number(r.targets), found: Number(r.found), failed: Number(r.failed), detail };
  };
  const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

  test('files: a file read in part is found, its error counted apart; the classes add up to failed', async () => {
    const files = [
      { certificates: [cert] },
      { certificates: [cert, cert], error: { code: 'bad-pem' } }, // one bad block of three: read in part
      { certificates: [], error: { code: 'bad-pem' } },
      { certificates: [], error: { code: 'pkcs12-password' } },
      { certificates: [cert], error: { code: 'pkcs12-unsupported' } },
      { certificates: [] }, // recognised, nothing read, no error: still a target without a certificate
    ];
    assert.deepEqual(files.map(fileFailureClass), [null, null, 'bad-pem', 'pkcs12-password', null, 'no-certificate']);
    await recordFilesRun(store, { startedAt: new Date(Date.now() - 1000), files, extra: { recorded: { failed: 99 } } });
    const r = await last('files');
    assert.deepEqual([r.targets, r.found, r.failed], [6, 3, 3]);
    assert.deepEqual(r.detail.failures, { 'bad-pem': 1, 'pkcs12-password': 1, 'no-certificate': 1 });
    assert.equal(sum(r.detail.failures), r.failed);
    assert.equal(r.found + r.failed, r.targets);
    assert.deepEqual(r.detail.partial, { 'bad-pem': 1, 'pkcs12-unsupported': 1 });
    assert.deepEqual(r.detail.recorded, { failed: 99 }, 'what the recording said is kept apart from the run');
  });

  test('network: an error or no certificate is one failure of one class; an interrupted run leaves targets unscanned', async () => {
    const observations = [
      { chain: [cert] },
      { chain: [], error: { code: 'timeout' } },
      { chain: [], error: { code: 'timeout' } },
      { chain: [], error: { code: 'refused' } },
      { chain: [] },
    ];
    assert.deepEqual(observations.map(networkFailureClass), [null, 'timeout', 'timeout', 'refused', 'no-certificate']);
    await recordNetworkRun(store, { startedAt: new Date(Date.now() - 1000), targets: 7, observations, interrupted: true });
    const r = await last('network');
    assert.deepEqual([r.targets, r.found, r.failed], [7, 1, 4]);
    assert.deepEqual(r.detail.failures, { timeout: 2, refused: 1, 'no-certificate': 1 });
    assert.equal(sum(r.detail.failures), r.failed);
    assert.deepEqual([r.detail.interrupted, r.detail.scanned], [true, 5]);
  });

  test('a run whose classes do not add up to failed is refused', async () => {
    await assert.rejects(
      recordScanRun(store, { kind: 'files', startedAt: new Date(), durationMs: 1, targets: 2, found: 0, failed: 1, failures: { 'bad-pem': 2 } }),
      /2 failure\(s\) by class for 1 failed target\(s\)/,
    );
  });

  test("recordFileScan counts a failed file once, however many of its certificates the inventory's reader refuses", async () => {
    const good = await testLeaf({ names: ['scan-runs.test'] });
    const s = await recordFileScan(
      store,
      [
        { path: '/srv/a.pem', certificates: [good.der] },
        { path: '/srv/junk.pem', certificates: [Buffer.from('not DER'), Buffer.from('nor this')] },
        { path: '/srv/locked.p12', certificates: [], error: { code: 'pkcs12-password', message: 'no password fits' } },
        { path: '/srv/part.pem', certificates: [good.der], error: { code: 'bad-pem', message: 'block 2 does not parse' } },
      ],
      ['/srv'],
      new Date(),
    );
    assert.deepEqual([s.places, s.certificates, s.failed], [2, 1, 2]);
  });
});
