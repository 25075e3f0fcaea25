/**
 * Inventory alerts (src/inventory/alerts.ts): opened once, reminded once per expiry stage, repeated
 * for critical problems, resolved once after the renewal; the severity threshold; deliveries that
 * fail are kept and sent at the next run; several evaluators at once send each notification once.
 * On SQLite and PostgreSQL (skipped loudly when PostgreSQL is not reachable, failing under CI=true),
 * with a controlled clock and in-memory channels.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { FakeClock } from '../lib/clock.js';
import { pgSkip } from '../../test/helpers/postgres.js';
import { parseAlertsConfig, type AlertsConfig } from './alert-config.js';
import { AlertDeliveryError, createChannels, type AlertChannel, type AlertMessage, type AlertNotification, type SendOptions, type SendOutcome } from './alert-channels.js';
import { AlertEngine, decide, expiryStage, logAlertReport, MAX_PENDING_MS, stageValue, STATE_CHANNEL, type AlertRunReport, type Problem } from './alerts.js';
import { describeCertificate } from './certificate.js';
import { openInventory, type InventoryLocation } from './inventory.js';
import type { InventoryStore } from './store.js';
import { testCa, testLeaf, type TestCa } from './test-certs.js';
import { inventoryLocations } from '../../test/helpers/inventory-locations.js';
import { startBlackHole, startHttpReceiver, type HttpReceiver } from '../../test/helpers/alert-receivers.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** A channel that keeps what it receives; it can fail the next `failures` sends, or wait for a gate. */
class MemoryChannel implements AlertChannel {
  readonly type = 'webhook' as const;
  readonly target = 'memory';
  readonly received: AlertMessage[] = [];
  attempts = 0;
  failures = 0;
  permanent = false;
  gate: Promise<void> | null = null;
  constructor(
    readonly name: string,
    readonly maxPerMessage = 100,
    /** Several channels (evaluators) writing to one list: what arrived where, in order. */
    readonly log: Array<{ channel: string; n: AlertNotification }> = [],
  ) {}
  async send(m: AlertMessage): Promise<SendOutcome> {
    this.attempts++;
    if (this.gate) await this.gate;
    if (this.failures > 0) {
      this.failures--;
      throw new AlertDeliveryError(this.permanent ? 'ALERT_REJECTED' : 'ALERT_FAILED', `${this.name}: answered ${this.permanent ? 404 : 503}`, this.permanent);
    }
    this.received.push(m);
    for (const n of m.notifications) this.log.push({ channel: this.name, n });
    return {};
  }
  async close(): Promise<void> {}
  /** Every notification received, in order. */
  all(): AlertNotification[] {
    return this.received.flatMap((m) => m.notifications);
  }
  /** The notifications received since the last call. */
  #seen = 0;
  fresh(): AlertNotification[] {
    const all = this.all();
    const out = all.slice(this.#seen);
    this.#seen = all.length;
    return out;
  }
}

/** A real channel that takes one notification a message (so that a few notifications make several messages). */
function oneAMessage(c: AlertChannel): AlertChannel {
  return { name: c.name, type: c.type, target: c.target, maxPerMessage: 1, send: (m: AlertMessage, o?: SendOptions) => c.send(m, o), close: () => c.close() };
}

const { sqlite, postgres } = inventoryLocations('anvil-alerts-');

function config(o: Partial<AlertsConfig> = {}): AlertsConfig {
  return { ...parseAlertsConfig({ source: 'unit-test' }), ...o };
}

function engine(store: InventoryStore, clock: FakeClock, channels: AlertChannel[], o: Partial<AlertsConfig> = {}, leaseMs?: number): AlertEngine {
  return new AlertEngine({ store, config: config(o), channels, clock, retryDelaysMs: [0, 0], sleep: async () => {}, ...(leaseMs ? { leaseMs } : {}) });
}

describe('expiry stages', () => {
  const t0 = new Date('2026-03-01T00:00:00Z');
  const at = (days: number) => new Date(t0.getTime() + days * DAY);
  const stages = [30, 14, 7, 3, 1];
  const cases: Array<[string, number, number, string]> = [
    ['a 90-day certificate with 31 days left is before the first stage', 90, 31, 'open'],
    ['a 90-day certificate with 30 days left is at the 30-day stage', 90, 30, '30d'],
    ['a 90-day certificate with 13.9 days left is at the 14-day stage', 90, 13.9, '14d'],
    ['a 90-day certificate with 6 days left is at the 7-day stage', 90, 6, '7d'],
    ['a 90-day certificate with 12 hours left is at the 1-day stage', 90, 0.5, '1d'],
    ['a certificate past its notAfter is expired', 90, -0.001, 'expired'],
    ['a 398-day certificate uses the stages as they are', 398, 29, '30d'],
    ['a 6-day certificate is before its first stage with 2.5 days left (30 days scaled: 2 days)', 6, 2.5, 'open'],
    ['a 6-day certificate with 1.9 days left is at the 30-day stage', 6, 1.9, '30d'],
    ['a 6-day certificate with 12 hours left is at the 14-day stage (22.4 hours), not yet the 7-day one (11.2 hours)', 6, 0.5, '14d'],
    ['a 6-day certificate with 2 hours left is at the 3-day stage (4.8 hours), not yet the 1-day one (1.6 hours)', 6, 2 / 24, '3d'],
  ];
  for (const [name, lifetime, left, stage] of cases) {
    test(name, () => {
      const notAfter = at(left);
      assert.equal(expiryStage(new Date(notAfter.getTime() - lifetime * DAY), notAfter, t0, stages), stage);
    });
  }
  test('stages order from open over the days to expired', () => {
    assert.ok(stageValue('open') > stageValue('30d'));
    assert.ok(stageValue('30d') > stageValue('7d'));
    assert.ok(stageValue('0.5d') > stageValue('expired'));
    assert.equal(stageValue('garbage'), Number.POSITIVE_INFINITY);
  });
});

describe('decide', () => {
  const now = new Date('2026-03-01T00:00:00Z');
  const problem = (o: Partial<Problem>): Problem => ({
    key: 'weak-signature:ab',
    check: 'weak-signature',
    severity: 'warning',
    message: 'm',
    stage: 'warning',
    final: true,
    fingerprint: 'ab',
    certificate: { fingerprint: 'ab', names: [], subject: '', issuer: '', serial: '', notBefore: '', notAfter: '' },
    installation: null,
    deployedAt: [],
    ...o,
  });
  const row = (o: Partial<{ key: string; severity: 'warning' | 'critical' | 'notice'; stage: string; openedAt: number; lastNotifiedAt: number | null; resolvedAt: number | null }>) => ({
    key: 'weak-signature:ab',
    severity: 'warning' as const,
    stage: 'warning',
    openedAt: now.getTime() - DAY,
    lastNotifiedAt: now.getTime() - DAY,
    resolvedAt: null,
    ...o,
  });
  const opts = { repeatHours: 24 };
  const cases: Array<[string, ReturnType<typeof row> | null, Problem | null, ReturnType<typeof decide>]> = [
    ['a new problem opens', null, problem({}), { kind: 'opened' }],
    ['a problem that comes back after it resolved opens again', row({ resolvedAt: now.getTime() - HOUR }), problem({}), { kind: 'opened' }],
    ['an open alert without its problem resolves', row({}), null, { kind: 'resolved' }],
    ['a resolved alert without a problem stays quiet', row({ resolvedAt: 1 }), null, null],
    ['an open alert whose problem is unchanged stays quiet', row({}), problem({}), null],
    ['a warning that becomes critical escalates', row({}), problem({ severity: 'critical', stage: 'critical' }), { kind: 'reminder', reason: 'escalated' }],
    ['a critical that becomes a warning changes the severity quietly', row({ severity: 'critical', stage: 'critical' }), problem({}), { kind: 'severity' }],
    ['a critical problem open for the repeat interval is repeated', row({ severity: 'critical', stage: 'critical', lastNotifiedAt: now.getTime() - 24 * HOUR }), problem({ severity: 'critical', stage: 'critical' }), { kind: 'reminder', reason: 'repeat' }],
    ['a critical problem notified 23 hours ago is not', row({ severity: 'critical', stage: 'critical', lastNotifiedAt: now.getTime() - 23 * HOUR }), problem({ severity: 'critical', stage: 'critical' }), null],
    ['an expiry reaching its next stage is reminded', row({ key: 'expiry:ab', stage: '30d' }), problem({ key: 'expiry:ab', check: 'expiring', stage: '14d', final: false }), { kind: 'reminder', reason: 'stage' }],
    ['an expiry still in its stage is not', row({ key: 'expiry:ab', stage: '14d' }), problem({ key: 'expiry:ab', check: 'expiring', stage: '14d', final: false }), null],
    ['a critical expiry before its last stage is not repeated', row({ key: 'expiry:ab', stage: '3d', severity: 'critical', lastNotifiedAt: 0 }), problem({ key: 'expiry:ab', check: 'expiring', stage: '3d', severity: 'critical', final: false }), null],
  ];
  for (const [name, r, p, want] of cases) test(name, () => assert.deepEqual(decide(r, p, now, opts), want));
  test('repeatHours 0 never repeats', () => {
    assert.equal(decide(row({ severity: 'critical', stage: 'critical', lastNotifiedAt: 0 }), problem({ severity: 'critical', stage: 'critical' }), now, { repeatHours: 0 }), null);
  });
});

describe('logAlertReport says what really happens next', () => {
  const run = (o: Partial<AlertRunReport>): AlertRunReport => ({ at: '2026-03-01T00:00:00.000Z', dryRun: false, problems: 1, open: 1, created: [], deliveries: [], pending: 0, otherChannels: [], dropped: [], conflicts: 0, ...o });
  const logged = (r: AlertRunReport) => {
    const lines: Array<[string, string, object]> = [];
    const at = (level: string) => (o: object, m: string) => void lines.push([level, m, o]);
    logAlertReport({ error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }, { type: 'run', report: r });
    return lines.filter(([level]) => level !== 'info' && level !== 'debug');
  };
  const failed = { channel: 'hook', target: 'https://hooks.example', messages: 0, notifications: 0, ok: false, attempts: 3, undelivered: 2, code: 'ALERT_FAILED', error: 'hook: answered 503', permanent: false };
  const cases: Array<[string, Partial<AlertRunReport>, Array<[string, RegExp]>]> = [
    ['a failed delivery stays pending for later runs, until it is dropped', { deliveries: [failed] }, [['error', /a delivery failed; its notifications stay pending, the next runs try again, and they are dropped 7 days after they were made/]]],
    ['a refused one says to fix it', { deliveries: [{ ...failed, permanent: true, code: 'ALERT_REJECTED' }] }, [['error', /refused \(fix the channel or the receiver\)/]]],
    [
      'what arrived but could not be recorded is sent again when its lease runs out, not "kept for the next run"',
      { deliveries: [{ channel: STATE_CHANNEL, target: 'expiry:ab', messages: 0, notifications: 0, ok: false, attempts: 0, code: 'ALERT_FAILED', error: 'could not record' }] },
      [['error', /^inventory alerts: notifications were sent but their delivery could not be recorded; they are sent again once their lease runs out$/]],
    ],
    ['notifications owed to a channel the server does not have are a warning', { otherChannels: [{ channel: 'old-hook', pending: 2 }] }, [['warn', /a channel this server does not have; an evaluator that has it sends them, else they are dropped 7 days/]]],
    ['a dropped notification is not sent again', { dropped: [{ id: 'x', key: 'expiry:ab', channels: ['hook'], why: 'undelivered for 7 days' }] }, [['error', /dropped undelivered; it is not sent again/]]],
  ];
  for (const [name, r, want] of cases) {
    test(name, () => {
      const got = logged(run(r));
      assert.equal(got.length, want.length, JSON.stringify(got));
      for (const [i, [level, m]] of want.entries()) {
        assert.equal(got[i]![0], level);
        assert.match(got[i]![1], m);
      }
    });
  }
  test('a failed delivery logs how many notifications its channel still lacks', () => {
    assert.equal((logged(run({ deliveries: [failed] }))[0]![2] as { undelivered?: number }).undelivered, 2);
  });
});

function suite(name: string, where: () => Promise<InventoryLocation>, skip: string | false = false): void {
  describe(`alerts on ${name}`, { skip, timeout: 120_000 }, () => {
    let ca: TestCa;
    const stores: InventoryStore[] = [];
    async function open(loc?: InventoryLocation): Promise<{ store: InventoryStore; loc: InventoryLocation }> {
      const l = loc ?? (await where());
      const store = await openInventory(l);
      stores.push(store);
      return { store, loc: l };
    }
    after(async () => {
      for (const s of stores.splice(0)) await s.close();
    });

    test('opened once, no duplicate, one reminder per stage, repeated when expired, resolved once after the renewal', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const notAfter = new Date('2026-04-01T00:00:00Z');
      const a = await testLeaf({ ca, names: ['www.alerts.test', 'alerts.test'], notBefore: new Date(notAfter.getTime() - 90 * DAY), notAfter });
      const fpA = describeCertificate(a.der).fingerprint;
      const place = { kind: 'file' as const, location: '/etc/ssl/alerts.pem' };
      const clock = new FakeClock(notAfter.getTime() - 40 * DAY);
      await store.recordSighting(place, { found: true, der: a.der }, 'file', clock.now());
      const ch = new MemoryChannel('memory');
      const e = engine(store, clock, [ch]);
      const leftDays = (d: number) => clock.set(notAfter.getTime() - d * DAY);

      // 40 days left: no problem yet.
      let r = await e.run();
      assert.equal(r.problems, 0);
      assert.equal(ch.received.length, 0);

      leftDays(29.5);
      r = await e.run();
      const [opened, ...rest] = ch.fresh();
      assert.equal(rest.length, 0);
      assert.equal(opened?.type, 'opened');
      assert.equal(opened?.alert.key, `expiry:${fpA}`);
      assert.equal(opened?.alert.check, 'expiring');
      assert.equal(opened?.alert.severity, 'warning');
      assert.equal(opened?.alert.stage, '30d');
      assert.match(opened?.alert.message ?? '', /^expires in 29 days \(2026-04-01T00:00:00\.000Z\)$/);
      assert.deepEqual(opened?.certificate?.names, ['www.alerts.test', 'alerts.test']);
      assert.equal(opened?.certificate?.fingerprint, fpA);
      assert.deepEqual(opened?.deployedAt, ['/etc/ssl/alerts.pem']);
      assert.equal(ch.received[0]?.source, 'unit-test');
      assert.deepEqual(r.deliveries, [{ channel: 'memory', target: 'memory', messages: 1, notifications: 1, ok: true, attempts: 1 }]);
      assert.equal(r.open, 1);
      assert.equal(r.pending, 0);

      // The next runs in the same stage: nothing.
      clock.advance(5 * 60_000);
      r = await e.run();
      assert.deepEqual(r.created, []);
      assert.deepEqual(r.deliveries, []);
      leftDays(15);
      await e.run();
      assert.deepEqual(ch.fresh(), []);

      // Each stage once.
      const expect = async (left: number, stage: string, severity: string, check = 'expiring') => {
        leftDays(left);
        await e.run();
        const got = ch.fresh();
        assert.deepEqual(
          got.map((n) => [n.type, n.reason, n.alert.stage, n.alert.severity, n.alert.check]),
          [['reminder', 'stage', stage, severity, check]],
          `at ${left} days left`,
        );
        assert.equal(got[0]?.alert.openedAt, opened?.alert.openedAt);
        await e.run();
        assert.deepEqual(ch.fresh(), [], `again at ${left} days left`);
      };
      await expect(13.9, '14d', 'warning');
      // From 13 days to 2.5 days in one step: the 3-day stage only, not the 7-day one too.
      await expect(2.5, '3d', 'critical');
      await expect(0.9, '1d', 'critical');
      await expect(-0.01, 'expired', 'critical', 'expired');

      // Expired and still deployed: critical with no stage ahead, repeated after repeatHours.
      clock.advance(23 * HOUR);
      await e.run();
      assert.deepEqual(ch.fresh(), []);
      clock.advance(1 * HOUR);
      await e.run();
      assert.deepEqual(ch.fresh().map((n) => [n.type, n.reason, n.alert.stage]), [['reminder', 'repeat', 'expired']]);
      await e.run();
      assert.deepEqual(ch.fresh(), []);

      // Renewed and put in its place: resolved, once.
      const b = await testLeaf({ ca, names: ['www.alerts.test', 'alerts.test'], notBefore: new Date(clock.now().getTime() - HOUR) });
      const fpB = describeCertificate(b.der).fingerprint;
      await store.recordSighting(place, { found: true, der: b.der }, 'file', clock.now());
      clock.advance(60_000);
      r = await e.run();
      const resolved = ch.fresh();
      assert.deepEqual(resolved.map((n) => [n.type, n.alert.key]), [['resolved', `expiry:${fpA}`]]);
      assert.match(resolved[0]!.alert.message, new RegExp(`^renewed by ${fpB.slice(0, 16)} \\(valid until `));
      assert.ok(resolved[0]!.alert.resolvedAt);
      assert.equal(r.open, 0);
      for (const d of [0.01, 1, 30]) {
        clock.advance(d * DAY);
        await e.run();
        assert.deepEqual(ch.fresh(), [], `${d} days after the renewal`);
      }
      // Every notification had its own id.
      const ids = ch.all().map((n) => n.id);
      assert.equal(new Set(ids).size, ids.length);
      assert.equal(ids.length, 7);
    });

    test('the severity threshold: notices and warnings are left out as configured', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 5, 1);
      const clock = new FakeClock(t);
      const sha1 = await testLeaf({ ca, names: ['sha1.alerts.test'], hash: 'SHA-1', notBefore: new Date(t - DAY) });
      const selfSigned = await testLeaf({ names: ['self.alerts.test'], notBefore: new Date(t - DAY) });
      await store.recordCertificate(sha1.der, 'import', clock.now());
      await store.recordCertificate(selfSigned.der, 'import', clock.now());
      const checksOf = (ns: AlertNotification[]) => ns.map((n) => `${n.type} ${n.alert.check} ${n.alert.severity}`).sort();

      const critical = new MemoryChannel('critical');
      assert.equal((await engine(store, clock, [critical], { minSeverity: 'critical' }).run()).problems, 0);
      assert.deepEqual(critical.all(), []);

      const warning = new MemoryChannel('warning');
      await engine(store, clock, [warning], { minSeverity: 'warning' }).run();
      assert.deepEqual(checksOf(warning.all()), ['opened weak-signature warning']);
      assert.match(warning.all()[0]!.alert.message, /sha1WithRSAEncryption|ecdsa-with-SHA1|SHA-1|SHA1/i);

      // The same state seen with a lower threshold: the notice opens too.
      const notice = new MemoryChannel('warning');
      await engine(store, clock, [notice], { minSeverity: 'notice' }).run();
      assert.deepEqual(checksOf(notice.all()), ['opened self-signed notice']);

      // And with the higher one again: the notice is below it now, so it resolves.
      const back = new MemoryChannel('warning');
      clock.advance(60_000);
      await engine(store, clock, [back], { minSeverity: 'warning' }).run();
      assert.deepEqual(checksOf(back.all()), ['resolved self-signed notice']);
      assert.match(back.all()[0]!.alert.message, /^now a notice, below the alert threshold: a self-signed leaf/);
    });

    test('a failed delivery is kept and sent at the next run, only to the channel that missed it', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 6, 1);
      const clock = new FakeClock(t);
      const leaf = await testLeaf({ ca, names: ['retry.alerts.test'], notBefore: new Date(t - 80 * DAY), notAfter: new Date(t + 5 * DAY) });
      await store.recordSighting({ kind: 'endpoint', location: '192.0.2.1:443', sni: 'retry.alerts.test' }, { found: true, der: leaf.der }, 'network', clock.now());
      const good = new MemoryChannel('good');
      const down = new MemoryChannel('down');
      down.failures = 3; // every attempt of this run: the first and two retries
      const e = engine(store, clock, [good, down]);

      let r = await e.run();
      assert.equal(good.all().length, 1);
      assert.equal(down.all().length, 0);
      assert.equal(down.attempts, 3);
      const failed = r.deliveries.find((d) => d.channel === 'down');
      assert.deepEqual({ ok: failed?.ok, attempts: failed?.attempts, code: failed?.code, permanent: failed?.permanent }, { ok: false, attempts: 3, code: 'ALERT_FAILED', permanent: false });
      assert.match(failed?.error ?? '', /answered 503/);
      assert.equal(r.pending, 1);

      // A permanent refusal is not retried within the run, and kept all the same.
      clock.advance(5 * 60_000);
      down.failures = 1;
      down.permanent = true;
      r = await e.run();
      assert.equal(down.attempts, 4);
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.permanent]), [['down', false, true]]);
      assert.equal(r.pending, 1);

      clock.advance(5 * 60_000);
      r = await e.run();
      assert.deepEqual(r.created, []);
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['down', true, 1]]);
      assert.equal(r.pending, 0);
      assert.equal(down.all()[0]?.id, good.all()[0]?.id, 'the same notification, with its id');
      assert.equal(good.all().length, 1, 'the channel that had it gets no second copy');

      clock.advance(5 * 60_000);
      r = await e.run();
      assert.deepEqual(r.deliveries, []);
    });

    test('a channel that never answers costs only itself: the others get everything in the same run, and it gets its share once it answers', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 6, 10);
      const clock = new FakeClock(t);
      for (let i = 0; i < 3; i++) {
        const leaf = await testLeaf({ ca, names: [`hole${i}.alerts.test`], hash: 'SHA-1', notBefore: new Date(t - DAY), notAfter: new Date(t + 200 * DAY) });
        await store.recordCertificate(leaf.der, 'import', clock.now());
      }
      const hole = await startBlackHole();
      const rx = await startHttpReceiver();
      const built = await createChannels(parseAlertsConfig({ timeoutMs: 200, channels: [{ type: 'webhook', name: 'hole', url: `http://127.0.0.1:${hole.port}/hole` }, { type: 'webhook', name: 'good', url: `${rx.base}/good` }] }));
      try {
        // One notification a message, so that each channel has three to send.
        const [toHole, toGood] = built.map((c) => oneAMessage(c));
        // The time to send is half the lease (1.5 s): sent one after the other, the black hole's three
        // messages (3 attempts of 200 ms each) would use it up before the good channel's turn.
        const e = engine(store, clock, [toHole!, toGood!], {}, 3000);
        let r = await e.run();
        const ids = (x: HttpReceiver) => x.requests.flatMap((q) => (JSON.parse(q.body) as { notifications: AlertNotification[] }).notifications.map((n) => n.id));
        assert.equal(ids(rx).length, 3, 'the good channel got every notification in the same run');
        const good = r.deliveries.find((d) => d.channel === 'good');
        assert.deepEqual([good?.ok, good?.messages, good?.notifications], [true, 3, 3]);
        const lost = r.deliveries.find((d) => d.channel === 'hole');
        assert.deepEqual([lost?.ok, lost?.messages, lost?.notifications, lost?.undelivered, lost?.code], [false, 0, 0, 3, 'ALERT_TIMEOUT']);
        // Three attempts a message: more would mean a second message was tried after the first failed.
        assert.ok(lost!.attempts >= 1 && lost!.attempts <= 3, `only the first message was tried (${lost!.attempts} attempts)`);
        assert.equal(r.pending, 3);

        // The receiver answers again: the next run sends it what it missed, and nothing to the good one.
        hole.forwardTo = Number(new URL(rx.base).port);
        clock.advance(5 * 60_000);
        r = await e.run();
        assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['hole', true, 3]]);
        assert.equal(r.pending, 0);
        const byPath = (p: string) => rx.requests.filter((q) => q.path === p).flatMap((q) => (JSON.parse(q.body) as { notifications: AlertNotification[] }).notifications.map((n) => n.id));
        assert.deepEqual(byPath('/hole').sort(), byPath('/good').sort(), 'the same notifications, with their ids');
        assert.equal(byPath('/good').length, 3);
      } finally {
        for (const c of built) await c.close();
        await hole.close();
        await rx.close();
      }
    });

    test('no send outlives the run\'s lease: a receiver that hangs, and a channel that ignores the abort, are left at half the lease', { timeout: 30_000 }, async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 6, 20);
      const clock = new FakeClock(t);
      const leaf = await testLeaf({ ca, names: ['slow.alerts.test'], hash: 'SHA-1', notBefore: new Date(t - DAY), notAfter: new Date(t + 200 * DAY) });
      await store.recordCertificate(leaf.der, 'import', clock.now());
      const rx = await startHttpReceiver();
      rx.respond = () => 'hang';
      // Each attempt may take 10 s: three of them would run far past a lease of 2 s.
      const [slow] = await createChannels(parseAlertsConfig({ timeoutMs: 10_000, channels: [{ type: 'webhook', name: 'slow', url: `${rx.base}/slow` }] }));
      const stuck = new MemoryChannel('stuck');
      let release!: () => void;
      stuck.gate = new Promise<void>((r) => (release = r));
      try {
        const leaseMs = 2000;
        const started = Date.now();
        let r = await engine(store, clock, [slow!, stuck], {}, leaseMs).run();
        const took = Date.now() - started;
        assert.ok(took < leaseMs, `the run ended within its lease (it took ${took} ms)`);
        for (const name of ['slow', 'stuck']) {
          const d = r.deliveries.find((x) => x.channel === name);
          assert.deepEqual([d?.ok, d?.code, d?.undelivered], [false, 'ALERT_TIMEOUT', 1], name);
          assert.match(d?.error ?? '', /time to send ran out/, name);
        }
        assert.equal(r.pending, 1);
        // Left unleased: the next run (here, before the lease would have run out) sends it at once.
        rx.respond = () => ({ status: 200 });
        stuck.gate = null;
        clock.advance(1000);
        r = await engine(store, clock, [slow!, stuck], {}, leaseMs).run();
        assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['slow', true, 1], ['stuck', true, 1]]);
        assert.equal(r.pending, 0);
      } finally {
        release();
        await slow?.close();
        await rx.close();
      }
    });

    test('evaluators with different channels: one without a channel leaves what is owed to it, the one with it sends it later', async () => {
      ca ??= await testCa('Alerts Root');
      const { store, loc } = await open();
      const t = Date.UTC(2026, 6, 25);
      const clock = new FakeClock(t);
      const cert = async (name: string) => {
        const leaf = await testLeaf({ ca, names: [name], hash: 'SHA-1', notBefore: new Date(t - DAY), notAfter: new Date(t + 200 * DAY) });
        await store.recordCertificate(leaf.der, 'import', clock.now());
      };
      await cert('sets1.alerts.test');
      // The server: channels a and b, both down for this run.
      const a = new MemoryChannel('a');
      const b = new MemoryChannel('b');
      a.failures = 3;
      b.failures = 3;
      const server = engine(store, clock, [a, b]);
      let r = await server.run();
      assert.equal(r.pending, 1);

      // A CLI run (another store connection) whose config has only a: it sends to a, and leaves b's alone.
      const other = (await open(loc)).store;
      const cliA = new MemoryChannel('a');
      clock.advance(60_000);
      r = await engine(other, clock, [cliA]).run();
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['a', true, 1]]);
      assert.deepEqual(r.dropped, []);
      assert.deepEqual(r.otherChannels, [{ channel: 'b', pending: 1 }]);
      assert.equal(r.pending, 0, 'nothing is owed to a channel of this config');

      // The server's next run: b gets it, a no second copy.
      clock.advance(60_000);
      r = await server.run();
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['b', true, 1]]);
      assert.deepEqual([a.all().length, cliA.all().length, b.all().length], [0, 1, 1]);
      assert.equal(b.all()[0]?.id, cliA.all()[0]?.id);
      assert.deepEqual([r.pending, r.otherChannels], [0, []]);

      // What b never gets is dropped after MAX_PENDING_MS, even by an evaluator without b, and reported.
      await cert('sets2.alerts.test');
      b.failures = 3;
      clock.advance(60_000);
      r = await server.run();
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok]), [['a', true], ['b', false]]);
      clock.advance(MAX_PENDING_MS - 60_000);
      r = await engine(other, clock, [cliA]).run();
      assert.deepEqual(r.dropped, [], 'not before MAX_PENDING_MS');
      const leases = (await store.db.selectFrom('inv_alerts').select('detail').execute()).flatMap((x) => (JSON.parse(x.detail) as { pending: Array<{ lease?: unknown }> }).pending.map((p) => p.lease ?? null));
      assert.deepEqual(leases, [null], 'nor leased by an evaluator without its channel');
      clock.advance(2 * 60_000);
      r = await engine(other, clock, [cliA]).run();
      assert.deepEqual(r.dropped.map((x) => x.channels), [['b']]);
      assert.match(r.dropped[0]!.why, /^undelivered for 7 days \(b: not a channel of this evaluator\); last error: b: answered 503/);
      assert.deepEqual([r.pending, r.otherChannels], [0, []]);
    });

    test("a problem first found by an evaluator with only some of the channels is owed to the others' channels too", async () => {
      ca ??= await testCa('Alerts Root');
      const { store, loc } = await open();
      const t = Date.UTC(2026, 6, 28);
      const clock = new FakeClock(t);
      const cert = async (name: string) => {
        const leaf = await testLeaf({ ca, names: [name], hash: 'SHA-1', notBefore: new Date(t - DAY), notAfter: new Date(t + 200 * DAY) });
        await store.recordCertificate(leaf.der, 'import', clock.now());
      };
      // The server (channels a and b) runs once: nothing to say yet, but its channels are known.
      const a = new MemoryChannel('a');
      const b = new MemoryChannel('b');
      const server = engine(store, clock, [a, b]);
      await server.run();
      // A problem appears; a cron job whose config has only a finds it first.
      await cert('first.cron.alerts.test');
      const other = (await open(loc)).store;
      const cronA = new MemoryChannel('a');
      clock.advance(60_000);
      let r = await engine(other, clock, [cronA]).run();
      assert.equal(r.created.length, 1);
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['a', true, 1]]);
      assert.deepEqual(r.otherChannels, [{ channel: 'b', pending: 1 }]);
      // The server's next run: b gets it (a does not get it twice).
      clock.advance(60_000);
      r = await server.run();
      assert.deepEqual(r.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['b', true, 1]]);
      assert.equal(b.all()[0]?.id, cronA.all()[0]?.id);
      assert.equal(a.all().length, 0);
      // A channel no evaluator had for MAX_PENDING_MS is no longer owed anything new.
      clock.advance(MAX_PENDING_MS + 60_000);
      await cert('second.cron.alerts.test');
      r = await engine(other, clock, [cronA]).run();
      assert.equal(r.created.length, 1);
      assert.deepEqual(r.otherChannels, []);
      assert.equal(r.pending, 0);
    });

    test('a run that dies after claiming: the lease keeps others off, then runs out and the next run sends it', async () => {
      ca ??= await testCa('Alerts Root');
      const { store, loc } = await open();
      const t = Date.UTC(2026, 7, 1);
      const clock = new FakeClock(t);
      const leaf = await testLeaf({ ca, names: ['lease.alerts.test'], notBefore: new Date(t - 80 * DAY), notAfter: new Date(t + 5 * DAY) });
      await store.recordCertificate(leaf.der, 'import', clock.now());
      const log: Array<{ channel: string; n: AlertNotification }> = [];
      const stuck = new MemoryChannel('hook', 100, log);
      let release!: () => void;
      stuck.gate = new Promise<void>((r) => (release = r));
      const first = engine(store, clock, [stuck], {}, 10 * 60_000).run();
      // Wait until the first run is sending (it has claimed).
      for (let i = 0; i < 200 && stuck.attempts === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(stuck.attempts, 1);

      const other = (await open(loc)).store;
      const second = new MemoryChannel('hook', 100, log);
      clock.advance(60_000);
      let r = await engine(other, clock, [second], {}, 10 * 60_000).run();
      assert.deepEqual(r.created, []);
      assert.deepEqual(r.deliveries, [], 'leased by the first run');

      clock.advance(10 * 60_000);
      r = await engine(other, clock, [second], {}, 10 * 60_000).run();
      assert.deepEqual(r.deliveries.map((d) => [d.ok, d.notifications]), [[true, 1]]);
      release();
      await first;
      // At least once: the receiver sees the same id twice and can tell.
      assert.deepEqual(
        log.map((x) => x.n.type),
        ['opened', 'opened'],
      );
      assert.equal(log[0]!.n.id, log[1]!.n.id);
      r = await engine(other, clock, [second], {}, 10 * 60_000).run();
      assert.equal(r.pending, 0);
    });

    test('several evaluators at once send each notification once', async () => {
      ca ??= await testCa('Alerts Root');
      const { loc } = await open();
      const evaluators = await Promise.all([0, 1, 2].map(async () => (await open(loc)).store));
      const t = Date.UTC(2026, 8, 1);
      const clock = new FakeClock(t);
      for (let i = 0; i < 4; i++) {
        const leaf = await testLeaf({ ca, names: [`race${i}.alerts.test`], notBefore: new Date(t - 70 * DAY), notAfter: new Date(t + 20 * DAY) });
        await evaluators[0]!.recordCertificate(leaf.der, 'import', clock.now());
      }
      const log: Array<{ channel: string; n: AlertNotification }> = [];
      const round = (o: { barrier?: boolean } = {}) => {
        // With the barrier, every evaluator has read the state before any writes: a sure race.
        let waiting = 0;
        let open!: () => void;
        const all = new Promise<void>((r) => (open = r));
        const beforeWrite = async () => {
          if (++waiting === evaluators.length) open();
          await all;
        };
        return Promise.all(
          evaluators.map((s) =>
            new AlertEngine({ store: s, config: config(), channels: [new MemoryChannel('hook', 100, log)], clock, retryDelaysMs: [0, 0], sleep: async () => {}, ...(o.barrier ? { beforeWrite } : {}) }).run(),
          ),
        );
      };
      let reports = await round({ barrier: true });
      assert.equal(log.length, 4, 'four alerts opened, each sent once');
      assert.deepEqual(log.map((x) => x.n.type), ['opened', 'opened', 'opened', 'opened']);
      assert.equal(new Set(log.map((x) => x.n.alert.key)).size, 4);
      assert.equal(reports.reduce((n, r) => n + r.created.length, 0), 4, 'created by exactly one evaluator each');
      assert.equal(reports.reduce((n, r) => n + r.conflicts, 0), 8, 'each alert was written by one, and two found it done');

      clock.set(t + 7 * DAY); // 13 days left: the 14-day stage; this time the race is left to chance
      reports = await round();
      assert.equal(log.length, 8);
      assert.deepEqual(log.slice(4).map((x) => [x.n.type, x.n.alert.stage]), Array(4).fill(['reminder', '14d']));
      assert.equal(new Set(log.map((x) => x.n.id)).size, 8);
      clock.advance(60_000);
      await round();
      assert.equal(log.length, 8);
    });

    test('a certificate removed from the inventory resolves its alerts, saying so', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 11, 1);
      const clock = new FakeClock(t);
      const leaf = await testLeaf({ ca, names: ['removed.alerts.test'], hash: 'SHA-1', notBefore: new Date(t - DAY) });
      const fp = (await store.recordCertificate(leaf.der, 'import', clock.now())).fingerprint;
      const ch = new MemoryChannel('hook');
      const e = engine(store, clock, [ch]);
      await e.run();
      assert.deepEqual(ch.fresh().map((n) => [n.type, n.alert.key]), [['opened', `weak-signature:${fp}`]]);
      await store.db.deleteFrom('inv_certificates').where('fingerprint', '=', fp).execute();
      clock.advance(60_000);
      await e.run();
      const [n, ...more] = ch.fresh();
      assert.equal(more.length, 0);
      assert.deepEqual([n?.type, n?.alert.key, n?.alert.message], ['resolved', `weak-signature:${fp}`, 'the certificate is no longer in the inventory']);
      assert.deepEqual(n?.certificate?.names, ['removed.alerts.test'], 'what it was about, from the alert state');
    });

    test('a digest: several notifications of a run in one message, split at the channel\'s limit', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 9, 1);
      const clock = new FakeClock(t);
      for (let i = 0; i < 5; i++) {
        const leaf = await testLeaf({ ca, names: [`digest${i}.alerts.test`], notBefore: new Date(t - 70 * DAY), notAfter: new Date(t + 20 * DAY) });
        await store.recordCertificate(leaf.der, 'import', clock.now());
      }
      const small = new MemoryChannel('small', 2);
      const r = await engine(store, clock, [small]).run();
      assert.deepEqual(small.received.map((m) => m.notifications.length), [2, 2, 1]);
      assert.equal(new Set(small.received.map((m) => m.id)).size, 3);
      assert.deepEqual(r.deliveries, [{ channel: 'small', target: 'memory', messages: 3, notifications: 5, ok: true, attempts: 3 }]);
    });

    test('a dry run says what would be sent and changes nothing', async () => {
      ca ??= await testCa('Alerts Root');
      const { store } = await open();
      const t = Date.UTC(2026, 10, 1);
      const clock = new FakeClock(t);
      const leaf = await testLeaf({ ca, names: ['dry.alerts.test'], notBefore: new Date(t - 70 * DAY), notAfter: new Date(t + 20 * DAY) });
      await store.recordCertificate(leaf.der, 'import', clock.now());
      const ch = new MemoryChannel('hook');
      const e = engine(store, clock, [ch]);
      const dry = await e.run({ dryRun: true });
      assert.equal(dry.dryRun, true);
      assert.deepEqual(dry.created.map((c) => [c.type, c.stage]), [['opened', '30d']]);
      assert.deepEqual(dry.plan?.map((p) => [p.channel, p.notifications.map((n) => n.type)]), [['hook', ['opened']]]);
      assert.equal(ch.attempts, 0);
      assert.equal((await store.db.selectFrom('inv_alerts').selectAll().execute()).length, 0);
      // The real run then does just that.
      await e.run();
      assert.deepEqual(ch.all().map((n) => n.type), ['opened']);
    });
  });
}

suite('SQLite', sqlite);
suite('PostgreSQL', postgres, pgSkip);
