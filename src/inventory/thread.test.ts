import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { startInventoryThread } from './thread.js';

test('a background thread that dies is reported and started again until stop()', async () => {
  // The threads and their restart timers are unref'd (they never hold a server open): this holds the test open.
  const hold = setInterval(() => {}, 1000);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-thread-'));
  const file = path.join(dir, 'starts');
  const reports: Array<{ type: string; message?: string; start?: number }> = [];
  let alive!: () => void;
  const up = new Promise<void>((resolve) => (alive = resolve));
  const t = startInventoryThread<{ type: 'alive'; start: number }>('../../test/fixtures/crashing-worker', { file, crashes: 2 }, (r) => {
    reports.push(r);
    if (r.type === 'alive') alive();
  }, 50);
  try {
    await up;
    const stops = reports.filter((r) => r.type === 'error' && /stopped \(exit code 1\); it is started again/.test(r.message ?? ''));
    assert.equal(stops.length, 2, JSON.stringify(reports));
    assert.ok(reports.some((r) => r.type === 'error' && /crash number 1/.test(r.message ?? '')), 'the crash itself is reported');
    assert.deepEqual(reports.at(-1), { type: 'alive', start: 3 });
  } finally {
    await t.stop();
  }
  // Stopped: not started again.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await readFile(file, 'utf8'), '3');
  await rm(dir, { recursive: true, force: true });
  clearInterval(hold);
});
