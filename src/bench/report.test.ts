/** Report text, the standard scenario's table, and the authorization mode. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cryptoFloor } from './floor.js';
import { authorizationMode, formatReport, formatStandardTable, type BenchReport } from './report.js';

function sample(over: Partial<BenchReport> = {}): BenchReport {
  return {
    tool: 'anvil bench',
    reportVersion: 1,
    directoryUrl: 'https://127.0.0.1:14000/directory',
    startedAt: '2026-11-25T12:00:00.000Z',
    options: {
      concurrency: 16,
      durationSeconds: 20,
      count: null,
      warmupSeconds: 5,
      names: 1,
      identifiers: ['127.0.0.1'],
      challenge: 'http-01',
      pollIntervalMs: 50,
      honourRetryAfter: false,
      httpPort: 5002,
      httpAddresses: ['127.0.0.1'],
      flowTimeoutSeconds: 60,
    },
    stoppedBy: 'duration',
    interrupted: false,
    warmup: { seconds: 5.1, completed: 900, failed: 0 },
    seconds: 20.2,
    flows: { started: 4002, completed: 4000, failed: 2, abandoned: 0 },
    flowsPerSecond: 198,
    latencyMs: { p50: 75.2, p90: 90.4, p99: 130.9, max: 210.3, min: 55, mean: 78.1 },
    errors: { total: 2, byKind: { 'urn:ietf:params:acme:error:rateLimited': 2 }, samples: { 'urn:ietf:params:acme:error:rateLimited': 'newOrder: HTTP 429' } },
    requests: { total: 24012, perFlow: 6, signedPosts: 24012, signedPostsPerFlow: 6, newNonce: 0, polls: 4000, pollsPerFlow: 1, retries: 0 },
    authorizations: { validated: 4000, reused: 0, mode: 'validated' },
    validationRequests: 4000,
    connections: { measured: 0, total: 16 },
    memory: {
      intervalSeconds: 5,
      generatorRssMb: { start: 90, end: 92, max: 95 },
      generatorHeapMb: { start: 20, end: 24, max: 30 },
      serverRssMb: { start: 120, end: 121, max: 125 },
      samples: [],
    },
    generator: { cpuSeconds: 8.5, cpuMsPerFlow: 2.125 },
    server: { pid: 4242, processes: 1, cpuSeconds: 6, cpuMsPerIssuance: 1.5 },
    machine: { cpus: 2, model: 'Test CPU', node: 'v20.20.2', platform: 'linux 6' },
    ...over,
  };
}

describe('formatReport', () => {
  test('says what ran and every figure a reader looks for', () => {
    const t = formatReport(sample());
    for (const re of [
      /16 virtual client\(s\), 1 name\(s\) per order \(127\.0\.0\.1\), http-01, polls every 50 ms \(Retry-After ignored\)/,
      /flows +4000 completed, 2 failed: 198\.0 flows\/s/,
      /latency +p50 75\.2 ms, p90 90\.4 ms, p99 130\.9 ms, max 210\.3 ms/,
      /requests +6\.00 per flow/,
      /authz +4000 validated .* 0 reused: mode validated/,
      /2 +urn:ietf:params:acme:error:rateLimited: newOrder: HTTP 429/,
      /generator +CPU 8\.50 s \(2\.13 ms per flow\)/,
      /server +pid 4242: CPU 6\.00 s \(1\.50 ms per issuance\)/,
      /memory +generator RSS 90\.0 -> 92\.0 MB \(peak 95\.0\), heap 20\.0 -> 24\.0 MB \(peak 30\.0\), server RSS 120\.0 -> 121\.0 MB \(peak 125\.0\)/,
    ]) {
      assert.match(t, re);
    }
  });

  test('an interrupted run says its report is partial; without a pid the server line says how to get one', () => {
    const t = formatReport(sample({ interrupted: true, stoppedBy: 'interrupted', server: null }));
    assert.match(t, /INTERRUPTED: partial report/);
    assert.match(t, /give --server-pid/);
  });
});

test('the standard table has a row per level, the floor multiple, and the floor parts', () => {
  const units = { jwsVerifyUs: 100, csrVerifyUs: 90, certSignUs: 40, tbsBytes: 560 };
  const t = formatStandardTable(
    [
      { report: sample({ options: { ...sample().options, concurrency: 1 } }), floor: cryptoFloor(units, 6) },
      { report: sample({ server: null }), floor: cryptoFloor(units, 6) },
    ],
    units,
  );
  const lines = t.split('\n');
  assert.match(lines[0]!, /^clients +flows\/s +p50 ms +p90 ms +p99 ms +max ms +errors +req\/flow +gen CPU s +srv ms\/iss +floor ms +x floor$/);
  assert.match(lines[2]!, /^1 +198\.0 +75\.2 +90\.4 +130\.9 +210\.3 +2 +6\.00 +8\.50 +1\.50 +0\.73 +2\.05$/);
  assert.match(lines[3]!, /^16 .* +- +0\.73 +-$/);
  assert.match(t, /6\.00 x 100\.0 us = 0\.60 ms \+ 0\.09 ms \+ 0\.04 ms = 0\.73 ms/);
  assert.match(t, /errors:\n +1 clients: 2 x urn:ietf:params:acme:error:rateLimited/);
});

const modes: Array<[number, number, string]> = [
  [0, 0, 'none'],
  [5, 0, 'validated'],
  [0, 5, 'reused'],
  [3, 2, 'mixed'],
];
for (const [v, r, m] of modes) test(`${v} validated and ${r} reused authorizations are mode ${m}`, () => assert.equal(authorizationMode(v, r), m));
