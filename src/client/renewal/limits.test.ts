/** Limits of the renewal runner with a fake clock: token buckets per CA, keyed mutexes, bounded maps. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../lib/clock.js';
import { KeyedMutex, mapLimit, RateLimits, realSleep, TokenBucket } from './limits.js';

function fakeTime() {
  const clock = new FakeClock(0);
  const slept: number[] = [];
  return { clock, slept, sleep: async (ms: number) => void (slept.push(ms), clock.advance(ms)) };
}

describe('TokenBucket', () => {
  test('gives the burst at once, then one token per 60/rate seconds', async () => {
    const { clock, sleep } = fakeTime();
    const b = new TokenBucket(6, 2, clock, sleep);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      await b.take();
      times.push(clock.now().getTime());
    }
    assert.deepEqual(times, [0, 0, 10_000, 20_000, 30_000]);
  });

  test('refills while idle, up to the burst only', async () => {
    const { clock, sleep, slept } = fakeTime();
    const b = new TokenBucket(60, 3, clock, sleep);
    for (let i = 0; i < 3; i++) await b.take();
    clock.advance(3_600_000);
    for (let i = 0; i < 3; i++) await b.take();
    assert.deepEqual(slept, []);
    await b.take();
    assert.deepEqual(slept, [1000]);
  });

  test('take() gives up (false) once the signal aborted', async () => {
    const { clock, sleep } = fakeTime();
    const b = new TokenBucket(1, 1, clock, sleep);
    await b.take();
    const ac = new AbortController();
    ac.abort();
    assert.equal(await b.take(ac.signal), false);
  });
});

describe('RateLimits', () => {
  test('one bucket per CA: an exhausted CA does not slow another', async () => {
    const { clock, sleep, slept } = fakeTime();
    const l = new RateLimits(1, 1, clock, sleep);
    await l.take('https://a.example/dir');
    await l.take('https://b.example/dir');
    assert.deepEqual(slept, []);
    await l.take('https://a.example/dir');
    assert.deepEqual(slept, [60_000]);
  });
});

describe('KeyedMutex', () => {
  test('holders of one key take turns; other keys run alongside', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const job = async (name: string, keys: string[]) => {
      const release = await m.lock(keys);
      log.push(`${name}+`);
      await new Promise((r) => setImmediate(r));
      log.push(`${name}-`);
      release();
    };
    await Promise.all([job('a', ['port:80']), job('b', ['port:80']), job('c', ['port:443'])]);
    assert.ok(log.indexOf('a-') < log.indexOf('b+'), log.join(' '));
    assert.ok(log.indexOf('c+') < log.indexOf('a-'), log.join(' '));
  });

  test('several keys taken in sorted order cannot deadlock', async () => {
    const m = new KeyedMutex();
    const run = async (keys: string[]) => (await m.lock(keys))();
    await Promise.all(Array.from({ length: 20 }, (_, i) => run(i % 2 ? ['x', 'y'] : ['y', 'x'])));
  });
});

describe('mapLimit', () => {
  test('keeps the order of results and never runs more than the limit', async () => {
    let running = 0;
    let most = 0;
    const out = await mapLimit([5, 4, 3, 2, 1, 0], 2, async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, n));
      running--;
      return n * 10;
    });
    assert.deepEqual(out, [50, 40, 30, 20, 10, 0]);
    assert.equal(most, 2);
  });
});

describe('realSleep', () => {
  test('returns at once when the signal aborts', async () => {
    const ac = new AbortController();
    const p = realSleep(60_000, ac.signal);
    ac.abort();
    await p;
  });
});
