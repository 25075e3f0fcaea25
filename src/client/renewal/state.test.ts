/** Renewal state files: round trip, atomic and private, and never a crash on a bad file. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { capTimes, freshState, normalizeState, recordIssued, RenewalStateStore, type RenewalState } from './state.js';

describe('RenewalStateStore', () => {
  let root: string;
  let store: RenewalStateStore;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-state-'));
    store = new RenewalStateStore(root);
  });
  after(async () => rm(root, { recursive: true, force: true }));

  const full: RenewalState = {
    version: 1,
    failures: 2,
    failuresAtCa: 1,
    caIndex: 1,
    nextAttempt: '2026-01-01T00:04:00.000Z',
    lastAttempt: '2026-01-01T00:00:00.000Z',
    lastResult: 'failed',
    lastError: 'the CA refused',
    lastExitCode: 3,
    ari: {
      serial: 'AA',
      certId: 'k.AKo',
      server: 'https://ca.example/dir',
      window: { start: '2026-03-01T00:00:00.000Z', end: '2026-03-02T00:00:00.000Z' },
      chosen: '2026-03-01T12:00:00.000Z',
      explanationURL: 'https://ca.example/why',
      fetchedAt: '2026-01-01T00:00:00.000Z',
      nextFetch: '2026-01-01T06:00:00.000Z',
    },
    revocation: { serial: 'AA', status: 'good', source: 'ocsp', checkedAt: '2026-01-01T00:00:00.000Z', nextCheck: '2026-01-01T12:00:00.000Z' },
    issued: {
      serial: 'AA',
      at: '2025-12-01T00:00:00.000Z',
      server: 'https://ca.example/dir',
      caIndex: 0,
      profile: 'classic',
      trigger: 'key-type',
      wanted: { names: ['dns:example.com'], keyType: 'ecdsa-p384', profile: 'classic' },
    },
    lockedSince: '2026-01-01T00:00:00.000Z',
  };

  test('a missing file is a fresh state, without a warning', async () => {
    assert.deepEqual(await store.read('nothing-yet'), { state: freshState() });
  });

  test('writes and reads back every field; the file is 0600 in a 0700 directory, no temporary files left', async () => {
    await store.write('example.com', full);
    assert.deepEqual((await store.read('example.com')).state, full);
    assert.equal((await stat(store.file('example.com'))).mode & 0o777, 0o600);
    assert.equal((await stat(store.dir)).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(store.dir)).filter((f) => f.endsWith('.tmp')), []);
  });

  const corrupt: Array<[string, string]> = [
    ['truncated JSON', '{"version":1,"failures":'],
    ['an empty file', ''],
    ['binary garbage', '\u0000\u0001\u0002'],
  ];
  for (const [name, text] of corrupt) {
    test(`${name} is a fresh state with a warning, not a crash`, async () => {
      await mkdir(store.dir, { recursive: true });
      await writeFile(store.file('broken'), text);
      const r = await store.read('broken');
      assert.deepEqual(r.state, freshState());
      assert.match(r.warning ?? '', /not valid JSON; starting with a fresh renewal state/);
    });
  }

  test('a state path that is a directory is a fresh state with a warning', async () => {
    await mkdir(store.file('weird'), { recursive: true });
    const r = await store.read('weird');
    assert.deepEqual(r.state, freshState());
    assert.match(r.warning ?? '', /cannot read/);
  });

  test('fields of the wrong type are dropped one by one, the rest kept', () => {
    const s = normalizeState({
      ...full,
      failures: -1,
      caIndex: 'one',
      nextAttempt: 'soon',
      ari: { ...full.ari, window: { start: 'x', end: 'y' } },
      revocation: { ...full.revocation, status: 'maybe' },
      issued: { ...full.issued, at: 12 },
    });
    assert.equal(s.failures, 0);
    assert.equal(s.caIndex, 0);
    assert.equal(s.nextAttempt, undefined);
    assert.equal(s.failuresAtCa, 1);
    assert.equal(s.ari?.window, undefined, 'a bad window goes');
    assert.equal(s.ari?.chosen, undefined, 'and its chosen time with it');
    assert.equal(s.revocation, undefined);
    assert.equal(s.issued, undefined);
    assert.equal(s.lastError, 'the CA refused');
  });

  for (const raw of [null, [], 'text', 42]) {
    test(`a file holding ${JSON.stringify(raw)} is a fresh state`, () => {
      assert.deepEqual(normalizeState(raw), freshState());
    });
  }

  test('recordIssued clears failures, backoff, the CA choice and the old certificate\'s ARI and revocation facts', () => {
    const s = recordIssued(full, { serial: 'BB', at: '2026-01-02T00:00:00.000Z', server: 'https://other.example/dir', caIndex: 1 });
    assert.equal(s.failures, 0);
    assert.equal(s.failuresAtCa, 0);
    assert.equal(s.caIndex, 0);
    assert.equal(s.nextAttempt, undefined);
    assert.equal(s.ari, undefined);
    assert.equal(s.revocation, undefined);
    assert.equal(s.lastError, undefined);
    assert.equal(s.lastResult, 'renewed');
    assert.equal(s.lastRenewal, '2026-01-02T00:00:00.000Z');
    assert.equal(s.lockedSince, undefined, 'the lock was obtained');
    assert.deepEqual(s.issued, { serial: 'BB', at: '2026-01-02T00:00:00.000Z', server: 'https://other.example/dir', caIndex: 1 });
  });

  // Regression (review of the renewal engine, finding 7): a backoff, renewalInfo or revocation time
  // written while the clock was far ahead was trusted as stored, stopping renewal until then.
  describe('capTimes: times further ahead than anvil ever waits', () => {
    const now = new Date('2026-01-01T00:00:00.000Z');
    const caps = { backoffMaxMs: 86_400_000, ariMaxMs: 86_400_000, revocationIntervalMs: 12 * 3_600_000 };
    const later = (ms: number) => new Date(now.getTime() + ms).toISOString();
    const year = 365 * 86_400_000;
    const cases: Array<{ name: string; state: Partial<RenewalState>; want: Partial<RenewalState>; changed: number }> = [
      { name: 'a backoff ending in a year ends in a day (backoffMaxMs)', state: { nextAttempt: later(year) }, want: { nextAttempt: later(86_400_000) }, changed: 1 },
      { name: 'a backoff within the maximum is kept', state: { nextAttempt: later(3_600_000) }, want: { nextAttempt: later(3_600_000) }, changed: 0 },
      {
        name: 'the next renewalInfo request is at most 24 h away',
        state: { ari: { ...full.ari!, nextFetch: later(year) } },
        want: { ari: { ...full.ari!, nextFetch: later(86_400_000) } },
        changed: 1,
      },
      {
        name: 'the next revocation check is at most the interval + 10 % away',
        state: { revocation: { ...full.revocation!, nextCheck: later(year) } },
        want: { revocation: { ...full.revocation!, nextCheck: later(13.2 * 3_600_000) } },
        changed: 1,
      },
      {
        name: 'a revocation check within the jitter is kept',
        state: { revocation: { ...full.revocation!, nextCheck: later(13 * 3_600_000) } },
        want: { revocation: { ...full.revocation!, nextCheck: later(13 * 3_600_000) } },
        changed: 0,
      },
      { name: 'a lock noticed in the future was noticed now', state: { lockedSince: later(year) }, want: { lockedSince: now.toISOString() }, changed: 0 },
    ];
    for (const c of cases) {
      test(c.name, () => {
        const st: RenewalState = structuredClone({ ...freshState(), ...c.state });
        const changed = capTimes(st, now, caps);
        assert.deepEqual(st, { ...freshState(), ...c.want });
        assert.equal(changed.length, c.changed, changed.join('; '));
      });
    }
  });
});
