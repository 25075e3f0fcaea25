/**
 * Prometheus metrics with the real `anvil` binary (docs/metrics.md): `anvil scan` against a
 * loopback TLS server records a scan run, and the server's /metrics shows the run (its time,
 * duration, what it found, its failures by class) and that certificate's notAfter. With
 * `--workers 2` and `metrics.listen`, the counters of both workers add up, on the primary's
 * listener and on the ACME listener's /metrics whichever worker answers.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { testLeaf } from '../../src/inventory/test-certs.js';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { parseExposition } from '../helpers/exposition.js';
import { issue } from '../helpers/flow.js';
import { startHttp01Responder, type Http01Responder } from '../helpers/http01-responder.js';
import { freePort } from '../helpers/ports.js';
import { RawAcme } from '../helpers/raw-acme.js';
import { runTool } from '../helpers/run.js';

const DAY = 86_400_000;

async function scrape(url: string) {
  const r = await fetch(url, { headers: { connection: 'close' } });
  assert.equal(r.status, 200);
  return parseExposition(await r.text());
}

describe('anvil scan, then the server /metrics', { timeout: 120_000 }, () => {
  let anvil: StartedAnvil;
  let server: tls.Server;
  let port: number;
  let closedPort: number;
  let listenPort: number;
  const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 40 * DAY);

  before(async () => {
    listenPort = await freePort();
    anvil = await startAnvil({ tls: { enabled: false }, inventory: { syncSeconds: 0 }, metrics: { inventoryCacheSeconds: 0, listen: { host: '127.0.0.1', port: listenPort } } });
    const leaf = await testLeaf({ names: ['scan.metrics.test'], notBefore: new Date(notAfter.getTime() - 90 * DAY), notAfter });
    server = tls.createServer({ cert: leaf.pem, key: leaf.keyPem }, (s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    closedPort = await freePort();
  });
  after(async () => {
    await anvil?.cleanup();
    await new Promise((r) => server?.close(r));
  });

  test('the scan run and the certificate it found are in the metrics', async () => {
    const t0 = Date.now();
    const r = await runTool(process.execPath, [ANVIL_BIN, 'scan', `127.0.0.1:${port}`, `127.0.0.1:${closedPort}`, '--sni', 'scan.metrics.test', '--no-progress', '--data-dir', anvil.dataDir]);
    assert.equal(r.code, 0, r.out);
    const t1 = Date.now();
    // Without a bearer token, the ACME listener (which clients reach) shows no inventory...
    await (await fetch(anvil.directoryUrl, { headers: { connection: 'close' } })).text();
    const open = await scrape(`${new URL(anvil.directoryUrl).origin}/metrics`);
    assert.equal(open.find('anvil_certificate_not_after_timestamp_seconds', {}).length, 0);
    assert.equal(open.find('anvil_scan_runs_total', {}).length, 0);
    assert.ok(open.find('anvil_http_requests_total', {}).length > 0, 'the ACME metrics are there');
    // ...metrics.listen does.
    const e = await scrape(`http://127.0.0.1:${listenPort}/metrics`);
    const k = { kind: 'network' };
    assert.equal(e.value('anvil_scan_runs_total', k), 1);
    const started = e.value('anvil_scan_last_run_timestamp_seconds', k);
    assert.ok(started >= Math.floor(t0 / 1000) - 1 && started <= t1 / 1000, `${started} within the run`);
    const duration = e.value('anvil_scan_last_duration_seconds', k);
    assert.ok(duration > 0 && duration <= (t1 - t0) / 1000, `duration ${duration}`);
    assert.equal(e.value('anvil_scan_last_targets', k), 2);
    assert.equal(e.value('anvil_scan_last_found', k), 1);
    assert.equal(e.value('anvil_scan_last_failed', k), 1);
    assert.equal(e.value('anvil_scan_last_failures', { ...k, class: 'refused' }), 1);
    // The certificate's notAfter, exactly, and where it was seen.
    const [s] = e.find('anvil_certificate_not_after_timestamp_seconds', { cn: 'scan.metrics.test' });
    assert.equal(s!.value, notAfter.getTime() / 1000);
    assert.equal(s!.labels.source, 'network');
    assert.equal(e.value('anvil_installation_info', { kind: 'endpoint', location: `127.0.0.1:${port}`, sni: 'scan.metrics.test', status: 'present', fingerprint: s!.labels.fingerprint! }), 1);
  });
});

describe('anvil server --workers 2 with metrics.listen', { timeout: 180_000 }, () => {
  let anvil: StartedAnvil;
  let responder: Http01Responder;
  let metricsUrl: string;

  before(async () => {
    const httpPort = await freePort();
    responder = await startHttp01Responder(httpPort);
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    anvil = await startAnvil({
      workers: 2,
      tls: { enabled: false },
      acme: { authzReuseDays: 0 },
      validation: { httpPort },
      inventory: { syncSeconds: 0 },
      metrics: { listen: { host: '127.0.0.1', port: metricsPort } },
    });
  });
  after(async () => {
    await anvil?.cleanup();
    await responder?.close();
  });

  test('the counters of both workers add up, on the primary listener and on the ACME listener', async () => {
    const N = 6;
    // Separate clients (separate connections): the primary hands connections to the workers in turn.
    await Promise.all(
      Array.from({ length: N }, async () => {
        const acme = await new RawAcme(anvil.directoryUrl).init();
        assert.equal((await acme.register()).status, 201);
        await issue(acme, ['127.0.0.1'], {}, (token, ka) => responder.set(token, ka));
      }),
    );
    const e = await scrape(metricsUrl);
    assert.equal(e.value('anvil_certificates_issued_total', { profile: 'classic' }), N);
    assert.equal(e.value('anvil_orders_created_total', { profile: 'classic' }), N);
    assert.equal(e.value('anvil_http_requests_total', { route: '/acme/new-order', method: 'POST', status: '201' }), N);
    assert.equal(e.value('anvil_http_requests_total', { route: '/acme/new-account', method: 'POST', status: '201' }), N);
    assert.equal(e.value('anvil_validations_total', { type: 'http-01', result: 'valid' }), N);
    assert.equal(e.value('anvil_inventory_metrics_up'), 1);
    // Each scrape of the ACME listener (a new connection: either worker) shows the same sums.
    for (let k = 0; k < 4; k++) {
      const a = await scrape(`${new URL(anvil.directoryUrl).origin}/metrics`);
      assert.equal(a.value('anvil_certificates_issued_total', { profile: 'classic' }), N, `scrape ${k}`);
      assert.equal(a.value('anvil_validations_total', { type: 'http-01', result: 'valid' }), N);
    }
  });
});
