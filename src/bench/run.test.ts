/**
 * Whole runs of the generator against FakeAcmeServer (real sockets on 127.0.0.1, real http-01
 * fetches of the responder): the report's shape, and how each kind of failure is counted.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { formatReport } from './report.js';
import { DEFAULTS, runBench, type BenchOptions } from './run.js';
import { FakeAcmeServer, type FakeFaults } from './testing.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

let fake: FakeAcmeServer | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function run(faults: FakeFaults, o: Partial<BenchOptions> = {}, stop?: AbortSignal) {
  const httpPort = await freePort();
  fake = await FakeAcmeServer.start(httpPort, faults);
  return runBench(
    {
      directoryUrl: fake.directoryUrl,
      concurrency: 2,
      count: 6,
      warmupSeconds: 0,
      names: 1,
      challenge: 'http-01',
      pollIntervalMs: 5,
      honourRetryAfter: false,
      httpPort,
      serverPid: process.pid,
      flowTimeoutSeconds: 10,
      requestTimeoutMs: DEFAULTS.requestTimeoutMs,
      ...o,
    },
    stop ? { stop } : {},
  );
}

describe('runBench against a fake ACME server', { timeout: 60_000 }, () => {
  test('six flows on two clients complete, each validated, with a full report', async () => {
    const r = await run({});
    assert.equal(r.tool, 'anvil bench');
    assert.equal(r.reportVersion, 1);
    assert.equal(r.stoppedBy, 'count');
    assert.equal(r.interrupted, false);
    assert.deepEqual(r.flows, { started: 6, completed: 6, failed: 0, abandoned: 0 });
    assert.equal(r.errors.total, 0);
    assert.deepEqual(r.authorizations, { validated: 6, reused: 0, mode: 'validated' });
    assert.equal(r.validationRequests, 6);
    // newOrder, authorization, challenge, at least one poll, finalize, download; nonces from answers.
    assert.ok(r.requests.signedPostsPerFlow >= 6, `${r.requests.signedPostsPerFlow}`);
    assert.equal(r.requests.newNonce, 0);
    assert.ok(r.connections.total <= 4, `connections are kept alive and reused (${r.connections.total} for ${r.requests.total} requests)`);
    assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max);
    assert.ok(r.flowsPerSecond > 0);
    assert.ok(r.generator.cpuSeconds > 0);
    assert.equal(r.server?.pid, process.pid);
    assert.match(formatReport(r), /flows +6 completed, 0 failed/);
  });

  test('several names per order: one responder per address, one authorization each', { skip: process.platform !== 'linux' && '127.0.0.2 is loopback on Linux only' }, async () => {
    const r = await run({}, { names: 3, count: 2, concurrency: 1 });
    assert.equal(r.flows.completed, 2);
    assert.deepEqual(r.options.identifiers, ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    assert.equal(r.authorizations.validated, 6);
  });

  test('badNonce is retried with the nonce of the error, not counted as an error', async () => {
    const r = await run({ badNonceFirst: true }, { warmupSeconds: 0 });
    // The first request of each account (its newAccount is exempt) is refused once.
    assert.equal(r.errors.total, 0);
    assert.equal(r.flows.completed, 6);
    assert.equal(r.requests.retries, 2);
  });

  test('a refused newOrder is counted under its problem type', async () => {
    const r = await run({ rateLimitEvery: 3 });
    assert.equal(r.errors.byKind['urn:ietf:params:acme:error:rateLimited'], 2);
    assert.equal(r.flows.completed + r.flows.failed, 6);
    assert.match(r.errors.samples['urn:ietf:params:acme:error:rateLimited'] ?? '', /newOrder: HTTP 429/);
  });

  test('with --honour-retry-after, a 429 with Retry-After is waited out and retried', async () => {
    const r = await run({ rateLimitEvery: 4 }, { honourRetryAfter: true, count: 4 });
    assert.equal(r.errors.total, 0);
    assert.equal(r.flows.completed, 4);
    assert.ok(r.requests.retries >= 1);
  });

  test('a failed validation is counted under the challenge error type', async () => {
    const r = await run({ failValidation: true }, { count: 2 });
    assert.deepEqual(r.errors.byKind, { 'urn:ietf:params:acme:error:incorrectResponse': 2 });
    assert.equal(r.flows.completed, 0);
  });

  test('a certificate for another key is counted as badCertificate', async () => {
    const r = await run({ wrongCertificateKey: true }, { count: 2 });
    assert.deepEqual(r.errors.byKind, { badCertificate: 2 });
  });

  test('a flow whose authorization never becomes valid fails as timeout', async () => {
    const r = await run({ neverValidate: true }, { count: 1, concurrency: 1, flowTimeoutSeconds: 1 });
    assert.deepEqual(r.errors.byKind, { timeout: 1 });
  });

  test('an interruption stops the run with a partial report', async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 300);
    const r = await run({}, { count: undefined, durationSeconds: 30, warmupSeconds: 0 }, stop.signal);
    assert.equal(r.interrupted, true);
    assert.equal(r.stoppedBy, 'interrupted');
    assert.ok(r.seconds < 10);
    assert.ok(r.flows.completed >= 1);
  });

  test('a directory that is not there is a setup error, not a report', async () => {
    await assert.rejects(
      runBench({
        directoryUrl: `http://127.0.0.1:${await freePort()}/directory`,
        concurrency: 1,
        count: 1,
        warmupSeconds: 0,
        names: 1,
        challenge: 'http-01',
        pollIntervalMs: 5,
        honourRetryAfter: false,
        httpPort: await freePort(),
        flowTimeoutSeconds: 5,
        requestTimeoutMs: 5000,
      }),
      (e: unknown) => (e as { code?: string }).code === 'DIRECTORY',
    );
  });
});
