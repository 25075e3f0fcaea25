/** The daemon loop with a fake clock: sleeps between runs, wakes early for a lineage, stops cleanly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../lib/clock.js';
import { runDaemon } from './daemon.js';
import type { RunSummary } from './runner.js';

const MIN = 60_000;

function summary(clock: FakeClock, nextCheckInMs?: number): RunSummary {
  const now = clock.now();
  return {
    results: [],
    startedAt: now.toISOString(),
    finishedAt: now.toISOString(),
    ...(nextCheckInMs !== undefined ? { nextCheck: new Date(now.getTime() + nextCheckInMs).toISOString() } : {}),
    aborted: false,
  };
}

describe('runDaemon', () => {
  test('runs every interval, or sooner when a lineage\'s next check comes first; stops when aborted', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    const slept: number[] = [];
    const nexts = [undefined, 2 * MIN, 1000, 60 * MIN];
    let runs = 0;
    const r = await runDaemon({
      clock,
      signal: ac.signal,
      intervalMs: 5 * MIN,
      sleep: async (ms) => {
        slept.push(ms);
        clock.advance(ms);
      },
      runOnce: async () => {
        const s = summary(clock, nexts[runs]);
        if (++runs === nexts.length) ac.abort();
        return s;
      },
    });
    assert.deepEqual(r, { runs: 4, abandoned: false });
    // No next check: the interval; 2 min: 2 min; 1 s: the 10 s minimum; the 4th run was aborted.
    assert.deepEqual(slept, [5 * MIN, 2 * MIN, 10_000]);
  });

  test('a run that throws is reported and the loop goes on', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    const errors: unknown[] = [];
    let runs = 0;
    await runDaemon({
      clock,
      signal: ac.signal,
      sleep: async (ms) => clock.advance(ms),
      onError: (e) => errors.push(e),
      runOnce: async () => {
        if (++runs === 1) throw new Error('store unreadable');
        ac.abort();
        return summary(clock);
      },
    });
    assert.equal(runs, 2);
    assert.equal((errors[0] as Error).message, 'store unreadable');
  });

  test('on abort, work in progress may finish within the grace period', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    let finished = false;
    const r = await runDaemon({
      clock,
      signal: ac.signal,
      graceMs: 5000,
      runOnce: async () => {
        ac.abort();
        await new Promise((res) => setTimeout(res, 20));
        finished = true;
        return summary(clock);
      },
    });
    assert.equal(finished, true);
    assert.deepEqual(r, { runs: 1, abandoned: false });
  });

  test('on abort, work in progress that outlasts the grace period is abandoned', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    let release!: () => void;
    const stuck = new Promise<void>((res) => (release = res));
    const r = await runDaemon({
      clock,
      signal: ac.signal,
      graceMs: 30,
      runOnce: async () => {
        ac.abort();
        await stuck;
        return summary(clock);
      },
    });
    release();
    assert.deepEqual(r, { runs: 1, abandoned: true });
  });
});
