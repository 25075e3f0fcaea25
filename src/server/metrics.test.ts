import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { parseExposition } from '../../test/helpers/exposition.js';
import { AcmeMetrics, REQUEST_BUCKETS } from './metrics.js';

describe('ACME server metrics', () => {
  test("the lean request counter and histogram render exactly as prom-client's own would", async () => {
    const m = new AcmeMetrics({ processMetrics: false });
    const reg = new Registry();
    const c = new Counter({ name: 'anvil_http_requests_total', help: 'ACME server requests by route pattern, method and status code.', labelNames: ['route', 'method', 'status'], registers: [reg] });
    const h = new Histogram({
      name: 'anvil_http_request_duration_seconds',
      help: 'ACME server request latency in seconds, by route pattern, method and status class.',
      labelNames: ['route', 'method', 'status_class'],
      buckets: [...REQUEST_BUCKETS],
      registers: [reg],
    });
    const observations: Array<[string | undefined, string, number, number]> = [
      ['/acme/new-order', 'POST', 201, 0.004],
      ['/acme/new-order', 'POST', 201, 0.0025],
      ['/acme/new-order', 'POST', 429, 0.001],
      ['/acme/order/:id', 'POST', 200, 0.3],
      ['/directory', 'GET', 200, 12],
      [undefined, 'GET', 404, 0.0001],
      ['/acme/new-nonce', 'HEAD', 200, 0.01],
      ['/acme/new-nonce', 'BREW', 405, 0.01],
    ];
    for (const [route, method, status, s] of observations) {
      m.requests.observe(route, method, status, s);
      const labels = { route: route ?? 'unmatched', method: method === 'BREW' ? 'other' : method };
      c.inc({ ...labels, status: String(status) });
      h.observe({ ...labels, status_class: `${Math.floor(status / 100)}xx` }, s);
    }
    const ours = parseExposition(await m.text());
    const theirs = parseExposition(await reg.metrics());
    for (const name of ['anvil_http_requests_total', 'anvil_http_request_duration_seconds']) {
      const key = (x: { name: string; labels: Record<string, string>; value: number }) => `${x.name}${JSON.stringify(Object.entries(x.labels).sort())}=${x.value}`;
      assert.deepEqual(ours.families.get(name)!.samples.map(key).sort(), theirs.families.get(name)!.samples.map(key).sort(), name);
      assert.equal(ours.families.get(name)!.type, theirs.families.get(name)!.type);
    }
    assert.equal(ours.value('anvil_http_requests_total', { route: '/acme/new-order', status: '201' }), 2);
    assert.equal(ours.value('anvil_http_request_duration_seconds_bucket', { route: '/acme/new-order', status_class: '2xx', le: '0.0025' }), 1);
    assert.equal(ours.value('anvil_http_request_duration_seconds_count', { route: '/directory' }), 1);
  });

  test('validations by type and result, issuances by profile, revocations by reason, orders by profile', async () => {
    const m = new AcmeMetrics({ processMetrics: false });
    m.validationFinished('http-01', null, 0.2);
    m.validationFinished('http-01', null, 0.3);
    m.validationFinished('dns-01', 'dns', 4);
    m.validationFinished('tls-alpn-01', 'caa', 0.01);
    m.orderCreated('classic');
    m.certificateIssued('shortlived');
    m.certificateRevoked(1);
    const e = parseExposition(await m.text());
    assert.equal(e.value('anvil_validations_total', { type: 'http-01', result: 'valid', problem: '' }), 2);
    assert.equal(e.value('anvil_validations_total', { type: 'dns-01', result: 'invalid', problem: 'dns' }), 1);
    assert.equal(e.value('anvil_validations_total', { type: 'tls-alpn-01', result: 'invalid', problem: 'caa' }), 1);
    assert.equal(e.value('anvil_validation_duration_seconds_count', { type: 'http-01', result: 'valid' }), 2);
    assert.equal(e.value('anvil_validation_duration_seconds_sum', { type: 'http-01', result: 'valid' }), 0.5);
    assert.equal(e.value('anvil_validation_duration_seconds_bucket', { type: 'dns-01', result: 'invalid', le: '2.5' }), 0);
    assert.equal(e.value('anvil_validation_duration_seconds_bucket', { type: 'dns-01', result: 'invalid', le: '5' }), 1);
    assert.equal(e.value('anvil_orders_created_total', { profile: 'classic' }), 1);
    assert.equal(e.value('anvil_certificates_issued_total', { profile: 'shortlived' }), 1);
    assert.equal(e.value('anvil_certificates_revoked_total', { reason: '1' }), 1);
  });

  test("prom-client's process metrics are included by default", async () => {
    const e = parseExposition(await new AcmeMetrics().text());
    assert.ok(e.families.has('process_cpu_user_seconds_total'));
    assert.ok(e.families.has('nodejs_eventloop_lag_seconds'));
  });
});
