/** The load generator's statistics: histogram accuracy and size, error tallies. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorTally, LatencyHistogram } from './stats.js';

describe('LatencyHistogram', () => {
  test('values below 256 µs are kept exactly', () => {
    for (const us of [0, 1, 17, 128, 255]) assert.equal(LatencyHistogram.value(LatencyHistogram.index(us)), us);
  });

  test('every value from 256 µs to 30 minutes comes back within 0.4 % (the middle of a 1/128 bucket)', () => {
    for (let us = 256; us < 1.8e9; us = Math.ceil(us * 1.013) + 1) {
      const back = LatencyHistogram.value(LatencyHistogram.index(us));
      assert.ok(Math.abs(back - us) / us <= 0.004, `${us} µs came back as ${back}`);
    }
  });

  test('bucket indexes grow with the value and stay below the fixed size', () => {
    let prev = -1;
    for (let us = 0; us < 2 ** 31; us = us < 1000 ? us + 1 : Math.ceil(us * 1.001)) {
      const i = LatencyHistogram.index(us);
      assert.ok(i >= prev, `index of ${us} went down`);
      prev = i;
    }
    assert.ok(LatencyHistogram.index(2 ** 40) === LatencyHistogram.index(2 ** 31 - 1), 'huge values are clamped');
    assert.ok(prev < 3200);
  });

  const cases: Array<{ name: string; values: number[]; p: Record<number, number> }> = [
    { name: 'one value is every percentile', values: [42], p: { 50: 42, 90: 42, 99: 42, 100: 42 } },
    { name: 'nearest rank on 1..100 ms', values: Array.from({ length: 100 }, (_, i) => i + 1), p: { 50: 50, 90: 90, 99: 99, 100: 100 } },
    { name: 'an outlier shows only at the top', values: [...Array<number>(99).fill(10), 500], p: { 50: 10, 99: 10, 100: 500 } },
  ];
  for (const c of cases) {
    test(`percentiles: ${c.name}`, () => {
      const h = new LatencyHistogram();
      for (const v of c.values) h.record(v);
      for (const [p, want] of Object.entries(c.p)) {
        const got = h.percentile(Number(p));
        assert.ok(Math.abs(got - want) / want < 0.005, `p${p}: ${got}, expected ${want}`);
      }
    });
  }

  test('the summary has exact min, max and mean, and zeros when empty', () => {
    const h = new LatencyHistogram();
    assert.deepEqual(h.summary(), { p50: 0, p90: 0, p99: 0, max: 0, min: 0, mean: 0 });
    for (const v of [5.04, 7.5, 12.25]) h.record(v);
    const s = h.summary();
    assert.equal(s.min, 5);
    assert.equal(s.max, 12.3);
    assert.equal(s.mean, 8.3);
    assert.equal(h.count, 3);
  });
});

describe('ErrorTally', () => {
  test('counts by kind, most frequent first, keeping the first message of each kind (cut to 300 characters)', () => {
    const t = new ErrorTally();
    t.add('timeout', 'first timeout');
    t.add('urn:ietf:params:acme:error:rateLimited', 'slow down');
    t.add('urn:ietf:params:acme:error:rateLimited', 'slow down again');
    t.add('badCertificate', 'x'.repeat(1000));
    const j = t.toJSON();
    assert.equal(j.total, 4);
    assert.deepEqual(Object.keys(j.byKind), ['urn:ietf:params:acme:error:rateLimited', 'badCertificate', 'timeout']);
    assert.equal(j.byKind['urn:ietf:params:acme:error:rateLimited'], 2);
    assert.equal(j.samples['urn:ietf:params:acme:error:rateLimited'], 'slow down');
    assert.equal(j.samples.badCertificate!.length, 300);
  });
});
