/**
 * GET /metrics of an in-process server (docs/metrics.md): an issuance through the ACME flow shows
 * in the request counter (by route pattern), the validation counter (http-01 valid; a refused name
 * as invalid with its problem type), the issuance counter (by profile) and, once the inventory has
 * synced the CA, as the certificate's notAfter exactly; a revocation is counted. With
 * metrics.bearerTokenFile, scrapes without the token are refused (401). metrics.enabled false: no
 * route.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { issue, readyOrder } from '../helpers/flow.js';
import { parseExposition, type Exposition } from '../helpers/exposition.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { RawAcme } from '../helpers/raw-acme.js';

/** The first suite's scrapes carry its bearer token: the inventory part is shown on the ACME listener only to them. */
const TOKEN = 'metrics-test-token-0123456789abcdef';
async function scrape(ts: TestServer, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }): Promise<{ status: number; type: string | null; text: string }> {
  const r = await fetch(`${new URL(ts.directoryUrl).origin}/metrics`, { headers });
  return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
}

describe('GET /metrics', { timeout: 120_000 }, () => {
  let ts: TestServer;
  let acme: RawAcme;
  let before0: Exposition;
  let tokenDir: string;

  before(async () => {
    tokenDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-metrics-token-'));
    await writeFile(path.join(tokenDir, 'token'), `${TOKEN}\n`);
    ts = await startTestServer({ inventory: { syncSeconds: 1 }, metrics: { inventoryCacheSeconds: 0, bearerTokenFile: path.join(tokenDir, 'token') } });
    acme = await new RawAcme(ts.directoryUrl).init();
    await acme.register();
    before0 = parseExposition((await scrape(ts)).text);
  });
  after(async () => {
    await ts?.stop();
    await rm(tokenDir, { recursive: true, force: true });
  });

  test('an issuance shows in the request, validation and issuance counters, and its notAfter in the inventory part', async () => {
    const { chain } = await issue(acme, ['metrics.example.com']);
    const cert = new X509Certificate(chain);
    const fp = cert.fingerprint256.replaceAll(':', '').toLowerCase().slice(0, 16);

    const s = await scrape(ts);
    assert.equal(s.status, 200);
    assert.equal(s.type, 'text/plain; version=0.0.4; charset=utf-8');
    const e = parseExposition(s.text);
    const newOrder = { route: '/acme/new-order', method: 'POST', status: '201' };
    assert.equal(e.value('anvil_http_requests_total', newOrder) - before0.sum('anvil_http_requests_total', newOrder), 1);
    // Route patterns, never URLs: one series for every order, whatever its id.
    assert.ok(e.find('anvil_http_requests_total', { route: '/acme/order/:id' }).length >= 1);
    assert.equal(e.find('anvil_http_requests_total').filter((x) => /[0-9A-Za-z]{16,}/.test(x.labels.route!)).length, 0, 'no ids in routes');
    assert.ok(e.value('anvil_http_request_duration_seconds_count', { route: '/acme/new-order', method: 'POST', status_class: '2xx' }) >= 1);
    assert.equal(e.value('anvil_validations_total', { type: 'http-01', result: 'valid' }), 1);
    assert.equal(e.value('anvil_validation_duration_seconds_count', { type: 'http-01', result: 'valid' }), 1);
    assert.equal(e.value('anvil_certificates_issued_total', { profile: 'classic' }), 1);
    assert.equal(e.value('anvil_orders_created_total', { profile: 'classic' }), 1);
    assert.ok(e.families.has('process_resident_memory_bytes'));

    // The inventory syncs the CA every second: then the certificate's notAfter is there, exactly.
    let inv: Exposition | null = null;
    for (let k = 0; k < 100 && !inv?.find('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp }).length; k++) {
      await new Promise((r) => setTimeout(r, 200));
      inv = parseExposition((await scrape(ts)).text);
    }
    assert.equal(inv!.value('anvil_certificate_not_after_timestamp_seconds', { fingerprint: fp, source: 'ca' }), Date.parse(cert.validTo) / 1000);
    assert.equal(inv!.value('anvil_certificate_not_before_timestamp_seconds', { fingerprint: fp }), Date.parse(cert.validFrom) / 1000);
    const life = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    assert.equal(inv!.value('anvil_certificate_renewal_due_timestamp_seconds', { fingerprint: fp }), (Date.parse(cert.validFrom) + (life * 2) / 3) / 1000);
    assert.equal(inv!.value('anvil_certificate_info', { fingerprint: fp, profile: 'classic' }), 1);
    assert.equal(inv!.value('anvil_inventory_metrics_up'), 1);

    // A revocation is counted.
    const r = await acme.post(acme.directory.revokeCert!, { payload: { certificate: Buffer.from(cert.raw).toString('base64url'), reason: 4 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(parseExposition((await scrape(ts)).text).value('anvil_certificates_revoked_total', { reason: '4' }), 1);
  });

  test('a validation that fails is counted as invalid, with its problem type', async () => {
    ts.validator.failing.add('refused.example.com');
    await readyOrder(acme, [{ type: 'dns', value: 'refused.example.com' }]);
    await ts.srv.authority.validationsIdle();
    const e = parseExposition((await scrape(ts)).text);
    assert.equal(e.value('anvil_validations_total', { type: 'http-01', result: 'invalid', problem: 'incorrectResponse' }), 1);
  });

  test('a request no route takes is counted as route="unmatched"', async () => {
    await fetch(`${new URL(ts.directoryUrl).origin}/no/such/thing/12345`);
    const e = parseExposition((await scrape(ts)).text);
    assert.ok(e.value('anvil_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }) >= 1);
  });
});

describe('GET /metrics with metrics.bearerTokenFile', { timeout: 60_000 }, () => {
  let ts: TestServer;
  let dir: string;
  const token = 'k1Vt0ken-for-metrics-9f3c2';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-metrics-token-'));
    await writeFile(path.join(dir, 'token'), `${token}\n`, { mode: 0o600 });
    ts = await startTestServer({ metrics: { bearerTokenFile: path.join(dir, 'token'), inventory: false } });
  });
  after(async () => {
    await ts?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, Record<string, string>, number]> = [
    ['no Authorization header is refused', {}, 401],
    ['a wrong token is refused', { authorization: 'Bearer not-the-token-at-all-123' }, 401],
    ['another scheme is refused', { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` }, 401],
    ['the token is accepted', { authorization: `Bearer ${token}` }, 200],
  ];
  for (const [name, headers, status] of cases) {
    test(name, async () => {
      const r = await scrape(ts, headers);
      assert.equal(r.status, status);
      if (status === 401) assert.doesNotMatch(r.text, /anvil_/);
      else assert.ok(parseExposition(r.text).families.has('anvil_http_requests_total'));
    });
  }
});

describe('metrics.enabled false', { timeout: 60_000 }, () => {
  test('there is no /metrics route', async () => {
    const ts = await startTestServer({ metrics: { enabled: false } });
    try {
      assert.equal((await scrape(ts)).status, 404);
    } finally {
      await ts.stop();
    }
  });
});
