/** Order and authorization expiry (RFC 8555 §7.1.6), driven by a fake clock. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FakeClock } from '../../src/lib/clock.js';
import { finalize, makeCsr, readyOrder } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { assertProblem } from '../helpers/problems.js';
import { RawAcme } from '../helpers/raw-acme.js';

const HOUR = 3_600_000;

describe('expiry', () => {
  let ts: TestServer;
  let acme: RawAcme;
  const clock = new FakeClock(Date.now());

  before(async () => {
    ts = await startTestServer(
      { acme: { orderLifetimeHours: 2, pendingAuthzLifetimeHours: 1, validAuthzLifetimeDays: 1, authzReuseDays: 1, nonceLifetimeSeconds: 86400 } },
      { clock },
    );
    acme = await new RawAcme(ts.directoryUrl).init();
    await acme.register();
  });
  after(async () => ts.stop());

  test('a pending authorization expires, and its order becomes invalid', async () => {
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'exp1.example.com' }] } });
    assert.equal(r.status, 201);
    assert.ok(Date.parse(r.body.expires) - clock.now().getTime() <= 2 * HOUR);
    clock.advance(HOUR + 1000);
    const a = await acme.post(r.body.authorizations[0], { payload: null });
    assert.equal(a.body.status, 'expired');
    const o = await acme.post(r.headers.get('location')!, { payload: null });
    assert.equal(o.body.status, 'invalid');
  });

  test('a ready order that expires cannot be finalized', async () => {
    const { url, order } = await readyOrder(acme, [{ type: 'dns', value: 'exp2.example.com' }]);
    assert.equal(order.status, 'ready');
    clock.advance(2 * HOUR + 1000);
    const csr = await makeCsr(['exp2.example.com']);
    assertProblem(await finalize(acme, order, csr.der), 403, 'orderNotReady');
    const o = await acme.post(url, { payload: null });
    assert.equal(o.body.status, 'invalid');
  });

  test('a valid authorization is reused only while it is young enough and unexpired', async () => {
    const first = await readyOrder(acme, [{ type: 'dns', value: 'exp3.example.com' }]);
    const again = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'exp3.example.com' }] } });
    assert.deepEqual(again.body.authorizations, first.order.authorizations);
    clock.advance(25 * HOUR);
    const later = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'exp3.example.com' }] } });
    assert.notDeepEqual(later.body.authorizations, first.order.authorizations);
    assert.equal(later.body.status, 'pending');
    const old = await acme.post(first.order.authorizations[0], { payload: null });
    assert.equal(old.body.status, 'expired');
  });
});
