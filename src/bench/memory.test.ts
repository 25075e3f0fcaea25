/** The bounded memory trace: thinning keeps the whole run in view. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryTrace } from './memory.js';

test('a full trace drops every other sample and doubles its interval, keeping first and recent samples', () => {
  const m = new MemoryTrace(1000, 10);
  for (let t = 0; t <= 10; t++) m.add({ t, generatorRssMb: 100 + t, generatorHeapMb: 20, serverRssMb: t === 3 ? 500 : 120 });
  assert.equal(m.intervalMs, 2000);
  assert.deepEqual(
    m.samples.map((s) => s.t),
    [0, 2, 4, 6, 8, 10],
  );
  for (let t = 12; t <= 30; t += 2) m.add({ t, generatorRssMb: 100, generatorHeapMb: 20, serverRssMb: null });
  assert.ok(m.samples.length <= 10);
  assert.equal(m.samples[0]!.t, 0);
  assert.equal(m.samples[m.samples.length - 1]!.t, 30);
});

test('the summary gives start, end and peak of each series, null when never read', () => {
  const m = new MemoryTrace();
  m.add({ t: 0, generatorRssMb: 90, generatorHeapMb: 20, serverRssMb: null });
  m.add({ t: 5, generatorRssMb: 110, generatorHeapMb: 25, serverRssMb: null });
  m.add({ t: 10, generatorRssMb: 95, generatorHeapMb: 22, serverRssMb: null });
  assert.deepEqual(m.summary(), { generatorRssMb: { start: 90, end: 95, max: 110 }, generatorHeapMb: { start: 20, end: 22, max: 25 }, serverRssMb: null });
});
