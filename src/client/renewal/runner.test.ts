/**
 * The renewal runner against anvil server in this process (its real ARI, replaces, profiles and
 * alreadyReplaced), with one fake clock for both: certificates go through ARI windows, expiry,
 * revocation, backoff and fallback CAs without waiting. Challenges are answered by the server's
 * FakeValidator (the solvers have their own tests); hooks are recorded instead of run.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../../../test/helpers/in-process.js';
import { FakeClock } from '../../lib/clock.js';
import type { Random } from '../../lib/random.js';
import type { Identifier } from '../../protocol/types.js';
import { AcmeApi } from '../api.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import { openAccount } from '../flows/account.js';
import { issueToLineage, type IssueToLineageOptions } from '../flows/lineage.js';
import type { HookContext } from '../hooks.js';
import { AcmeHttp } from '../http.js';
import { createCsr, generateCertKey, readCsr, type CsrInfo } from '../keys.js';
import type { Solver } from '../solvers/types.js';
import { AccountStore, LineageStore, type LineageConfig } from '../store.js';
import { certIdOf } from './ari.js';
import { RenewalRunner, summaryLine, type CheckRevocation, type LineageResult, type RunnerDeps, type RunOptions } from './runner.js';
import { RenewalStateStore } from './state.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Challenges are answered by the server's FakeValidator. */
const fakeSolver = (): Solver => ({ type: 'http-01', present: async () => undefined, cleanup: async () => undefined });
/** Always 0x80...: unitRandom gives 0.502, the middle of any window. */
const midRandom: Random = { bytes: (n) => Buffer.alloc(n, 0x80) };

function exitCodeOf(e: unknown): number {
  if (e instanceof AcmeProblemError) return e.identifier ? 4 : 3;
  if (e instanceof AcmeClientError) return e.code === 'NETWORK' ? 5 : 1;
  return 1;
}

interface Env {
  root: string;
  store: LineageStore;
  accounts: AccountStore;
  states: RenewalStateStore;
  /** renewalInfo requests made, by URL. */
  ariRequests: string[];
  hooks: Array<{ event: string; ctx: HookContext }>;
  runner(extra?: Partial<RunnerDeps>): RenewalRunner;
  run(o?: RunOptions, extra?: Partial<RunnerDeps>): Promise<LineageResult[]>;
  /** Issues the first version of a lineage like `anvil issue` does. */
  issue(name: string, names: string[], cfg?: Partial<LineageConfig>, server?: TestServer, csr?: CsrInfo): Promise<X509Certificate>;
  config(name: string): Promise<LineageConfig>;
  leaf(name: string): Promise<X509Certificate>;
}

describe('RenewalRunner against anvil server, with a fake clock', () => {
  const clock = new FakeClock(Date.now());
  let ca: TestServer;
  let ca2: TestServer;
  const dirs: string[] = [];

  before(async () => {
    const config = { acme: { authzReuseDays: 0, nonceLifetimeSeconds: 86400, renewalInfo: { retryAfterSeconds: 21600 } } };
    ca = await startTestServer(config, { clock });
    ca2 = await startTestServer(config, { clock });
  });
  after(async () => {
    await ca.stop();
    await ca2.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const http = (url: string) => new AcmeHttp(url, { allowInsecure: true, sleep: async () => undefined });

  async function env(): Promise<Env> {
    const root = await mkdtemp(path.join(os.tmpdir(), 'anvil-renew-'));
    dirs.push(root);
    const store = new LineageStore(root);
    const accounts = new AccountStore(root);
    const ariRequests: string[] = [];
    const hooks: Env['hooks'] = [];
    const apis = new Map<string, AcmeApi>();
    const apiFor = async (server: TestServer) => {
      let api = apis.get(server.directoryUrl);
      if (!api) {
        api = (await openAccount({ store: accounts, http: http(server.directoryUrl), create: { agreeTos: true } })).api;
        apis.set(server.directoryUrl, api);
      }
      return api;
    };
    // Accounts at both CAs, as `anvil account register` would leave them.
    await apiFor(ca);
    await apiFor(ca2);
    const e: Env = {
      root,
      store,
      accounts,
      states: new RenewalStateStore(root),
      ariRequests,
      hooks,
      runner: (extra = {}) =>
        new RenewalRunner({
          store,
          accounts,
          clock,
          random: midRandom,
          // Waits move the fake clock instead of waiting.
          sleep: async (ms) => clock.advance(ms),
          connect: async ({ server }) => {
            const h = http(server);
            return {
              http: h,
              get: (url) => {
                ariRequests.push(url);
                return h.get(url);
              },
              close: () => h.close(),
            };
          },
          solvers: async () => ({ solvers: [fakeSolver()], close: async () => undefined }),
          runHooks: async (cmds, ctx) => {
            if (cmds?.length) hooks.push({ event: ctx.event, ctx });
          },
          exitCodeOf,
          ...extra,
        }),
      run: async (o = {}, extra = {}) => (await e.runner(extra).run(o)).results,
      issue: async (name, names, cfg = {}, server = ca, csr) => {
        const identifiers: Identifier[] = names.map((value) => ({ type: 'dns', value }));
        const r = await issueToLineage({
          api: await apiFor(server),
          store,
          config: { name, server: server.directoryUrl, account: 'default', identifiers, keyType: 'ecdsa-p256', reuseKey: false, solver: { type: 'dns', provider: 'exec' }, ...cfg },
          solvers: [fakeSolver()],
          now: () => clock.now(),
          ...(csr ? { csr } : {}),
        });
        return r.leaf;
      },
      config: async (name) => (await store.readConfig(name))!,
      leaf: async (name) => new X509Certificate(await readFile((await store.current(name))!.cert)),
    };
    return e;
  }

  const one = (rs: LineageResult[], name: string) => rs.find((r) => r.name === name)!;

  test('not due at first; renewed at the random time in the ARI window, with "replaces" the CA records', async () => {
    const e = await env();
    const first = await e.issue('ari', ['ari.example.com']);
    const firstId = await certIdOf(first);

    let r = one(await e.run(), 'ari');
    assert.equal(r.status, 'not-due', summaryLine(r));
    assert.equal(r.rule, 'ari');
    assert.match(summaryLine(r), /^ari: not due until .* \(ARI window .*\)$/);
    const st = (await e.states.read('ari')).state;
    assert.equal(st.ari?.certId, firstId);
    const chosen = st.ari!.chosen!;
    const { start, end } = st.ari!.window!;
    assert.ok(Date.parse(start) <= Date.parse(chosen) && Date.parse(chosen) <= Date.parse(end));
    assert.equal(e.ariRequests.length, 1);

    // Past 2/3 of the lifetime, but before the chosen time: ARI decides, and the same window keeps its time.
    clock.set(Date.parse(chosen) - HOUR);
    r = one(await e.run(), 'ari');
    assert.equal(r.status, 'not-due');
    assert.equal(e.ariRequests.length, 2, 'asked again: Retry-After had passed');
    assert.equal((await e.states.read('ari')).state.ari?.chosen, chosen, 'the random time is kept while the window is unchanged');

    clock.set(Date.parse(chosen) + MIN);
    r = one(await e.run(), 'ari');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'ari');
    assert.equal(r.replaces, 'accepted');
    assert.match(summaryLine(r), /^ari: renewed \(ARI window .*\) serial [0-9A-F]+ expires \S+Z$/);
    const now = await e.leaf('ari');
    assert.equal(now.serialNumber, r.serial);
    assert.notEqual(now.serialNumber, first.serialNumber);
    assert.equal((await e.store.current('ari'))!.version, 2);

    const after = (await e.states.read('ari')).state;
    assert.equal(after.issued?.serial, now.serialNumber);
    assert.equal(after.issued?.replaced, firstId);
    assert.equal(after.ari, undefined, 'no more renewalInfo for the replaced certificate');
    // The CA recorded the replacement: naming the old certificate again is alreadyReplaced.
    const api = (await openAccount({ store: e.accounts, http: http(ca.directoryUrl) })).api;
    await assert.rejects(api.newOrder([{ type: 'dns', value: 'ari.example.com' }], { replaces: firstId }), (x: unknown) => x instanceof AcmeProblemError && x.type === 'alreadyReplaced');
  });

  test('renewalInfo is asked for again only after Retry-After; an operator window is picked up then, with a new random time', async () => {
    const e = await env();
    const leaf = await e.issue('retry', ['retry.example.com']);
    await e.run();
    await e.run();
    assert.equal(e.ariRequests.length, 1, 'the second run is within Retry-After (6 h)');
    const before = (await e.states.read('retry')).state.ari!;

    const start = new Date(clock.now().getTime() + 8 * HOUR);
    const end = new Date(start.getTime() + 2 * HOUR);
    assert.equal(await ca.srv.authority.setRenewalWindow({ serials: [leaf.serialNumber.toLowerCase().replace(/^0+/, '')] }, { start, end }), 1);
    clock.advance(HOUR);
    assert.equal(one(await e.run(), 'retry').status, 'not-due');
    assert.equal(e.ariRequests.length, 1, 'the new window is not seen before Retry-After has passed');
    clock.advance(5 * HOUR + MIN);
    let r = one(await e.run(), 'retry');
    assert.equal(e.ariRequests.length, 2);
    assert.equal(r.status, 'not-due');
    const now = (await e.states.read('retry')).state.ari!;
    assert.deepEqual(now.window, { start: start.toISOString(), end: end.toISOString() });
    assert.notEqual(now.chosen, before.chosen, 'a new window, a new random time');
    assert.equal(r.dueAt, now.chosen!.replace(/\.\d{3}Z$/, 'Z'));
    clock.set(Date.parse(now.chosen!));
    r = one(await e.run(), 'retry');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'ari');
  });

  test('a certificate the CA revoked gets a window in the past: renewed at the next fetch, once', async () => {
    const e = await env();
    const leaf = await e.issue('revoked', ['revoked.example.com']);
    await e.run();
    const api = (await openAccount({ store: e.accounts, http: http(ca.directoryUrl) })).api;
    await api.revoke(Buffer.from(leaf.raw), { reason: 1 });
    clock.advance(6 * HOUR + MIN);
    const r = one(await e.run(), 'revoked');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'ari-past');
    const next = one(await e.run(), 'revoked');
    assert.equal(next.status, 'not-due', 'the new certificate is not renewed again');
    assert.equal(next.rule, 'ari');
  });

  test('a CA that answers every certificate with a window in the past gets one renewal a day, not a loop', async () => {
    const e = await env();
    await e.issue('loop', ['loop.example.com']);
    const pastWindow = async () => {
      const serial = (await e.leaf('loop')).serialNumber.toLowerCase().replace(/^0+/, '');
      const end = new Date(clock.now().getTime() - HOUR);
      await ca.srv.authority.setRenewalWindow({ serials: [serial] }, { start: new Date(end.getTime() - HOUR), end });
    };
    await pastWindow();
    assert.equal(one(await e.run(), 'loop').status, 'renewed');
    await pastWindow();
    const again = one(await e.run(), 'loop');
    assert.equal(again.status, 'not-due', summaryLine(again));
    assert.equal(again.rule, 'guard');
    clock.advance(DAY);
    assert.equal(one(await e.run(), 'loop').status, 'renewed', 'one day later');
  });

  test('revoked according to OCSP/CRL: renewed at once', async () => {
    const e = await env();
    await e.issue('ocsp', ['ocsp.example.com']);
    const checked: string[] = [];
    const checkRevocation: CheckRevocation = async (leafPem) => {
      checked.push(new X509Certificate(leafPem).serialNumber);
      return { status: 'revoked', source: 'ocsp', revokedAt: clock.now(), reason: 1 };
    };
    const r = one(await e.run({}, { checkRevocation }), 'ocsp');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'revoked');
    assert.match(r.reason, /^revoked at .* \(OCSP\)$/);
    assert.equal(checked.length, 1);
  });

  test('expired: renewed, without asking for renewalInfo of the expired certificate (RFC 9773 §4.3)', async () => {
    const e = await env();
    await e.issue('expired', ['expired.example.com']);
    clock.advance(91 * DAY);
    const r = one(await e.run(), 'expired');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'expired');
    assert.equal(e.ariRequests.length, 0);
  });

  test('less than 1/20 of the lifetime left: renewed although the ARI window is later', async () => {
    const e = await env();
    const leaf = await e.issue('twentieth', ['twentieth.example.com']);
    const notAfter = Date.parse(leaf.validTo);
    const start = new Date(notAfter - DAY);
    await ca.srv.authority.setRenewalWindow({ serials: [leaf.serialNumber.toLowerCase().replace(/^0+/, '')] }, { start, end: new Date(notAfter - HOUR) });
    clock.set(notAfter - 5 * DAY);
    let r = one(await e.run(), 'twentieth');
    assert.equal(r.status, 'not-due');
    clock.set(notAfter - 4 * DAY);
    r = one(await e.run(), 'twentieth');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'last-twentieth');
  });

  test('failures back off exponentially; the lineage is skipped until then, and retried after', async () => {
    const e = await env();
    await e.issue('backoff', ['backoff.example.com']);
    ca.validator.failing.add('backoff.example.com');
    try {
      clock.advance(70 * DAY);
      let r = one(await e.run(), 'backoff');
      assert.equal(r.status, 'failed', summaryLine(r));
      assert.equal(r.exitCode, 4);
      assert.match(summaryLine(r), /^backoff: FAILED \(.*\): .*incorrectResponse.*: check that backoff\.example\.com points at this host/);
      let st = (await e.states.read('backoff')).state;
      assert.equal(st.failures, 1);
      const wait1 = Date.parse(st.nextAttempt!) - clock.now().getTime();
      assert.ok(wait1 >= 0.75 * MIN && wait1 <= 1.25 * MIN, `first backoff ${wait1} ms`);

      r = one(await e.run(), 'backoff');
      assert.equal(r.status, 'backoff');
      assert.equal(r.exitCode, 4, 'a lineage backing off keeps the exit code of its failure');
      assert.match(summaryLine(r), /FAILED earlier \(1 in a row/);

      clock.set(Date.parse(st.nextAttempt!));
      r = one(await e.run(), 'backoff');
      assert.equal(r.status, 'failed');
      st = (await e.states.read('backoff')).state;
      assert.equal(st.failures, 2);
      const wait2 = Date.parse(st.nextAttempt!) - clock.now().getTime();
      assert.ok(wait2 >= 1.5 * MIN && wait2 <= 2.5 * MIN, `second backoff ${wait2} ms`);

      // --force ignores the backoff.
      ca.validator.failing.delete('backoff.example.com');
      r = one(await e.run({ force: true }), 'backoff');
      assert.equal(r.status, 'renewed', summaryLine(r));
      st = (await e.states.read('backoff')).state;
      assert.equal(st.failures, 0);
      assert.equal(st.nextAttempt, undefined);
    } finally {
      ca.validator.failing.delete('backoff.example.com');
    }
  });

  test('backoff is capped at the maximum', async () => {
    const e = await env();
    await e.issue('capped', ['capped.example.com']);
    await e.states.write('capped', { ...(await e.states.read('capped')).state, failures: 30 });
    ca.validator.failing.add('capped.example.com');
    try {
      const r = one(await e.run({ force: true, backoffMaxMs: HOUR }), 'capped');
      assert.equal(r.status, 'failed');
      const st = (await e.states.read('capped')).state;
      assert.ok(Date.parse(st.nextAttempt!) - clock.now().getTime() <= HOUR);
    } finally {
      ca.validator.failing.delete('capped.example.com');
    }
  });

  test('fallback CA: used after 3 failures in a row at the first CA, not before; the next renewal starts at the first CA again', async () => {
    const e = await env();
    const fallback = [{ server: ca2.directoryUrl, account: 'default' }];
    await e.issue('fb', ['fb.example.com'], { fallback });
    ca.validator.failing.add('fb.example.com');
    try {
      clock.advance(70 * DAY);
      for (let i = 1; i <= 3; i++) {
        const r = one(await e.run(), 'fb');
        assert.equal(r.status, 'failed', summaryLine(r));
        assert.equal(r.server, ca.directoryUrl, `attempt ${i} goes to the first CA`);
        if (i < 3) assert.doesNotMatch(r.hint ?? '', /fallback/);
        else assert.match(r.hint ?? '', /after 3 failures in a row at .*, the next attempt goes to fallback CA/);
        clock.set(Date.parse((await e.states.read('fb')).state.nextAttempt!));
      }
      const r = one(await e.run(), 'fb');
      assert.equal(r.status, 'renewed', summaryLine(r));
      assert.equal(r.server, ca2.directoryUrl);
      assert.equal(r.caIndex, 1);
      assert.equal(r.replaces, 'not-sent', 'the old certificate is not the fallback CA\'s to replace');
      assert.match(summaryLine(r), /via fallback CA/);
      const st = (await e.states.read('fb')).state;
      assert.equal(st.caIndex, 0);
      assert.equal(st.issued?.caIndex, 1);
      assert.equal(st.issued?.server, ca2.directoryUrl);

      // ARI for the new certificate comes from the CA that issued it.
      e.ariRequests.length = 0;
      await e.run();
      assert.ok(e.ariRequests.every((u) => u.startsWith(new URL(ca2.directoryUrl).origin)), e.ariRequests.join());
    } finally {
      ca.validator.failing.delete('fb.example.com');
    }
    // Forced now: the first CA works again and is used.
    const r = one(await e.run({ force: true }), 'fb');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.server, ca.directoryUrl);
  });

  test('fallback CA: two failures and then a success stay with the first CA', async () => {
    const e = await env();
    await e.issue('fb-ok', ['fb-ok.example.com'], { fallback: [{ server: ca2.directoryUrl, account: 'default' }] });
    clock.advance(70 * DAY);
    ca.validator.failing.add('fb-ok.example.com');
    try {
      for (let i = 0; i < 2; i++) {
        assert.equal(one(await e.run(), 'fb-ok').status, 'failed');
        clock.set(Date.parse((await e.states.read('fb-ok')).state.nextAttempt!));
      }
    } finally {
      ca.validator.failing.delete('fb-ok.example.com');
    }
    const r = one(await e.run(), 'fb-ok');
    assert.equal(r.status, 'renewed');
    assert.equal(r.server, ca.directoryUrl);
    assert.equal((await e.states.read('fb-ok')).state.failuresAtCa, 0);
  });

  test('alreadyReplaced: the order is made again without "replaces"', async () => {
    const e = await env();
    await e.issue('dup', ['dup.example.com']);
    const v1 = (await e.store.current('dup'))!;
    const chainA = await readFile(v1.fullchain, 'utf8');
    const keyA = await readFile(v1.privkey!, 'utf8');
    const forced = one(await e.run({ force: true }), 'dup');
    assert.equal(forced.replaces, 'accepted');
    // Certificate A comes back as the live one (e.g. restored from a backup).
    await e.store.save('dup', chainA, keyA);
    const r = one(await e.run({ force: true }), 'dup');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.replaces, 'dropped');
    assert.match(r.warnings?.join() ?? '', /refused "replaces" \(alreadyReplaced/);
  });

  test('names changed in the config: renewed at once; the CA rejects "replaces" for it, and the order goes through without', async () => {
    const e = await env();
    await e.issue('names', ['names-old.example.com']);
    const cfg = await e.config('names');
    await e.store.writeConfig({ ...cfg, identifiers: [{ type: 'dns', value: 'names-new.example.com' }] });
    const r = one(await e.run(), 'names');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'names');
    assert.equal(r.replaces, 'dropped');
    assert.match((await e.leaf('names')).subjectAltName ?? '', /names-new\.example\.com/);
  });

  test('profiles: asked for in newOrder; a profile change in the config renews; an unknown profile fails with a hint', async () => {
    const e = await env();
    const leaf = await e.issue('prof', ['prof.example.com'], { profile: 'shortlived' });
    assert.ok(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom) < 7 * DAY);
    assert.equal((await e.states.read('prof')).state.issued?.profile, 'shortlived');
    assert.equal(one(await e.run(), 'prof').status, 'not-due');

    const cfg = await e.config('prof');
    await e.store.writeConfig({ ...cfg, profile: 'classic' });
    const r = one(await e.run(), 'prof');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'profile');
    const now = await e.leaf('prof');
    assert.ok(Date.parse(now.validTo) - Date.parse(now.validFrom) > 80 * DAY);

    await e.store.writeConfig({ ...cfg, profile: 'no-such-profile' });
    const bad = one(await e.run(), 'prof');
    assert.equal(bad.status, 'failed');
    assert.equal(bad.error?.type, 'invalidProfile');
    assert.match(bad.hint ?? '', /fix "profile" in renewal\/prof\.json/);
  });

  test('short lifetimes: a 160-hour certificate is renewed around half of its life', async () => {
    const e = await env();
    const leaf = await e.issue('short', ['short.example.com'], { profile: 'shortlived' });
    const mid = (Date.parse(leaf.validFrom) + Date.parse(leaf.validTo)) / 2;
    clock.set(mid - 12 * HOUR);
    assert.equal(one(await e.run(), 'short').status, 'not-due');
    clock.set(mid + 12 * HOUR);
    const r = one(await e.run(), 'short');
    assert.equal(r.status, 'renewed', summaryLine(r));
  });

  test('hooks: pre, deploy (with the new serial) and post around a renewal; notify on a failure', async () => {
    const e = await env();
    await e.issue('hooks', ['hooks.example.com'], { hooks: { pre: [['pre']], post: [['post']], deploy: [['deploy']] }, notify: [['notify']] });
    const r = one(await e.run({ force: true }), 'hooks');
    assert.equal(r.status, 'renewed');
    assert.deepEqual(
      e.hooks.map((h) => h.event),
      ['pre', 'deploy', 'post'],
    );
    const deploy = e.hooks.find((h) => h.event === 'deploy')!.ctx;
    assert.equal(deploy.serial, r.serial);
    assert.equal(deploy.files?.version, 2);

    e.hooks.length = 0;
    ca.validator.failing.add('hooks.example.com');
    try {
      const f = one(await e.run({ force: true }), 'hooks');
      assert.equal(f.status, 'failed');
      assert.deepEqual(
        e.hooks.map((h) => h.event),
        ['pre', 'post', 'failure'],
      );
      assert.match(e.hooks.at(-1)!.ctx.error ?? '', /renewal failed: .*incorrectResponse/);
    } finally {
      ca.validator.failing.delete('hooks.example.com');
    }
  });

  test('a failing deploy hook is loud, but the new certificate stays and is not renewed again', async () => {
    const e = await env();
    await e.issue('deployfail', ['deployfail.example.com'], { hooks: { deploy: [['reload']] }, notify: [['notify']] });
    const runHooks: RunnerDeps['runHooks'] = async (cmds, ctx) => {
      if (!cmds?.length) return;
      e.hooks.push({ event: ctx.event, ctx });
      if (ctx.event === 'deploy') throw new AcmeClientError('HOOK', 'reload exited with code 1');
    };
    const r = one(await e.run({ force: true }, { runHooks }), 'deployfail');
    assert.equal(r.status, 'failed');
    assert.equal(r.renewed, true);
    assert.match(summaryLine(r), /^deployfail: FAILED after renewing \(serial [0-9A-F]+\): reload exited with code 1: the new certificate is live, but fix the hook/);
    assert.equal((await e.leaf('deployfail')).serialNumber, r.serial);
    assert.equal(e.hooks.at(-1)?.event, 'failure');
    assert.equal(one(await e.run({}, { runHooks }), 'deployfail').status, 'not-due');
  });

  test('an installer check that fails and rolls back counts as a failure with backoff', async () => {
    const e = await env();
    await e.issue('inst', ['inst.example.com'], { installers: [{ type: 'nginx', conf: '/nonexistent/nginx.conf' }] });
    clock.advance(70 * DAY);
    const before = (await e.leaf('inst')).serialNumber;
    const verifyInstallers: RunnerDeps['verifyInstallers'] = async (store, cfg) => {
      // What the installer does on failure: live/NAME back to the previous version.
      const cur = (await store.current(cfg.name))!;
      const prev = path.join(store.liveDir, `.${cfg.name}.v${cur.version - 1}`);
      await mkdir(prev, { recursive: true });
      for (const k of ['cert', 'chain', 'fullchain', 'privkey']) await symlink(path.join('..', '..', 'archive', cfg.name, `${k}${cur.version - 1}.pem`), path.join(prev, `${k}.pem`));
      await rm(path.join(store.liveDir, cfg.name));
      await symlink(`.${cfg.name}.v${cur.version - 1}`, path.join(store.liveDir, cfg.name));
      throw new AcmeClientError('INSTALL', 'nginx: TLS check failed; rolled back');
    };
    const r = one(await e.run({}, { verifyInstallers }), 'inst');
    assert.equal(r.status, 'failed', summaryLine(r));
    assert.equal(r.renewed, false);
    assert.equal((await e.leaf('inst')).serialNumber, before);
    const st = (await e.states.read('inst')).state;
    assert.equal(st.failures, 1);
    assert.ok(st.nextAttempt);
    assert.equal(one(await e.run({}, { verifyInstallers }), 'inst').status, 'backoff', 'the previous certificate is still due, but waits');
  });

  test('another process renewed the lineage meanwhile: skipped, nothing ordered', async () => {
    const e = await env();
    await e.issue('race', ['race.example.com'], { hooks: { pre: [['pre']] } });
    const issuing: string[] = [];
    const runHooks: RunnerDeps['runHooks'] = async (_cmds, ctx) => {
      // The other process: a new version goes live between planning and renewing.
      if (ctx.event === 'pre') await e.issue('race', ['race.example.com'], { hooks: { pre: [['pre']] } });
    };
    const issue = async (o: IssueToLineageOptions) => {
      issuing.push(o.config.name);
      return issueToLineage(o);
    };
    const r = one(await e.run({ force: true }, { runHooks, issue }), 'race');
    assert.equal(r.status, 'skipped', summaryLine(r));
    assert.match(r.hint ?? '', /live certificate changed/);
    assert.equal((await e.store.current('race'))!.version, 2, 'only the other process\'s version');
  });

  test('a lineage locked by another process is skipped, without backoff', async () => {
    const e = await env();
    await e.issue('locked', ['locked.example.com']);
    const release = await e.store.lock('locked');
    // This process holds the lock (another holder in the same process counts as taken).
    try {
      const r = one(await e.run({ force: true }), 'locked');
      assert.equal(r.status, 'skipped', summaryLine(r));
      assert.equal((await e.states.read('locked')).state.failures, 0);
    } finally {
      await release();
    }
  });

  // Regression (review of the renewal engine, finding 2): a lock that never went away (a stale lock
  // file whose pid was alive again) made every run skip the lineage, exit 0 and notify nobody.
  test('a lineage found locked at every attempt for over an hour fails, naming the lock file; the next success clears it', async () => {
    const e = await env();
    await e.issue('stale', ['stale.example.com'], { notify: [['notify']] });
    clock.advance(70 * DAY);
    const release = await e.store.lock('stale');
    try {
      let r = one(await e.run(), 'stale');
      assert.equal(r.status, 'skipped', summaryLine(r));
      const since = (await e.states.read('stale')).state.lockedSince;
      assert.equal(since, clock.now().toISOString());
      clock.advance(59 * MIN);
      r = one(await e.run(), 'stale');
      assert.equal(r.status, 'skipped', summaryLine(r));
      assert.match(r.hint ?? '', /locked at every attempt since/);
      assert.equal(e.hooks.length, 0, 'nobody is notified yet');
      clock.advance(2 * MIN);
      r = one(await e.run(), 'stale');
      assert.equal(r.status, 'failed', summaryLine(r));
      assert.equal(r.error?.code, 'LOCKED');
      assert.match(r.error?.message ?? '', /stale has been locked at every attempt since .* \(61 min\)/);
      assert.ok(r.hint?.includes(`remove ${e.store.lockFile('stale')}`), r.hint);
      assert.equal(r.exitCode, 1);
      assert.deepEqual(e.hooks.map((h) => h.event), ['failure']);
      const st = (await e.states.read('stale')).state;
      assert.equal(st.failures, 1);
      assert.equal(st.lockedSince, since, 'still counting from the first time');
      assert.equal(one(await e.run(), 'stale').status, 'backoff', 'and it keeps failing loudly');
    } finally {
      await release();
    }
    clock.set(Date.parse((await e.states.read('stale')).state.nextAttempt!));
    const r = one(await e.run(), 'stale');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal((await e.states.read('stale')).state.lockedSince, undefined);
  });

  // Regression (review of the renewal engine, finding 1): with reuseKey the old key was reused
  // whatever keyType said, so the key type rule renewed the lineage again at every run.
  test('keyType changed with reuseKey: one renewal with a new key of the new type, which later renewals reuse', async () => {
    const e = await env();
    await e.issue('rekey', ['rekey.example.com'], { reuseKey: true });
    await e.store.writeConfig({ ...(await e.config('rekey')), keyType: 'ecdsa-p384' });
    const steps: string[] = [];
    const r = one(await e.run({}, { onStep: (l) => steps.push(l) }), 'rekey');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'key-type');
    assert.equal((await e.leaf('rekey')).publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    assert.match(steps.join('\n'), /rekey: the key of rekey is ecdsa-p256, not ecdsa-p384 as renewal\/rekey\.json asks: generating a new ecdsa-p384 key/);
    const again = one(await e.run(), 'rekey');
    assert.equal(again.status, 'not-due', summaryLine(again));
    const key = await readFile((await e.store.current('rekey'))!.privkey!, 'utf8');
    assert.equal(one(await e.run({ force: true }), 'rekey').status, 'renewed');
    assert.equal(await readFile((await e.store.current('rekey'))!.privkey!, 'utf8'), key, 'the new key is reused from then on');
  });

  test('a config-change renewal whose certificate still differs from the config is not repeated at every run', async () => {
    const e = await env();
    await e.issue('noloop', ['noloop.example.com']);
    await e.store.writeConfig({ ...(await e.config('noloop')), keyType: 'ecdsa-p384' });
    // Whatever the reason (here: an issuer that ignores the key type), the renewal for the key
    // type produces a certificate with the old one.
    const issue = (o: IssueToLineageOptions) => issueToLineage({ ...o, config: { ...o.config, keyType: 'ecdsa-p256' } });
    const r = one(await e.run({}, { issue }), 'noloop');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'key-type');
    const again = one(await e.run({}, { issue }), 'noloop');
    assert.equal(again.status, 'not-due', summaryLine(again));
    assert.match(again.warnings?.join() ?? '', /key type changed \(ecdsa-p256 -> ecdsa-p384\), but certificate [0-9A-F]+ was obtained for that very change/);
    // A further change of the config is acted on.
    await e.store.writeConfig({ ...(await e.config('noloop')), keyType: 'rsa-2048' });
    assert.equal(one(await e.run(), 'noloop').rule, 'key-type');
  });

  // Regression (review of the renewal engine, findings 1 and 8): a keyType in the config of a --csr
  // lineage renewed it at every run (the CSR's key never changes); and identifiers from the CSR.
  test('a lineage from a CSR: keyType in its config renews nothing; a renewal takes the CSR\'s names and keeps the rest of the config', async () => {
    const e = await env();
    const csrFile = path.join(e.root, 'csr.der');
    const key = await generateCertKey('ecdsa-p256');
    await writeFile(csrFile, await createCsr(key, [{ type: 'dns', value: 'csr.example.com' }]));
    await e.issue('csr', ['csr.example.com'], { keyType: null, csrFile }, ca, await readCsr(await readFile(csrFile)));
    await e.store.writeConfig({ ...(await e.config('csr')), keyType: 'rsa-2048', notify: [['notify']] });
    let r = one(await e.run(), 'csr');
    assert.equal(r.status, 'not-due', summaryLine(r));
    assert.equal(r.rule, 'ari');

    await writeFile(csrFile, await createCsr(key, [{ type: 'dns', value: 'csr.example.com' }, { type: 'dns', value: 'www.csr.example.com' }]));
    r = one(await e.run({ force: true }), 'csr');
    assert.equal(r.status, 'renewed', summaryLine(r));
    const cfg = await e.config('csr');
    assert.deepEqual(cfg.identifiers.map((i) => i.value), ['csr.example.com', 'www.csr.example.com']);
    assert.equal(cfg.keyType, 'rsa-2048');
    assert.deepEqual(cfg.notify, [['notify']]);
    assert.equal(one(await e.run(), 'csr').status, 'not-due');
  });

  // Regression (review of the renewal engine, finding 8): the renewal wrote the config as this run
  // had read it before renewing, erasing what `anvil install` recorded meanwhile.
  test('a config change made while a renewal ran is kept; only updatedAt changes', async () => {
    const e = await env();
    await e.issue('keep', ['keep.example.com'], { hooks: { pre: [['pre']] } });
    const before = await e.config('keep');
    const installers: LineageConfig['installers'] = [{ type: 'nginx', conf: '/etc/nginx/sites-enabled/keep' }];
    const runHooks: RunnerDeps['runHooks'] = async (_cmds, ctx) => {
      // anvil install, between this run's planning and its renewal.
      if (ctx.event === 'pre') await e.store.writeConfig({ ...(await e.config('keep')), installers, notify: [['notify']], reuseKey: true });
    };
    clock.advance(MIN);
    const r = one(await e.run({ force: true }, { runHooks }), 'keep');
    assert.equal(r.status, 'renewed', summaryLine(r));
    const after = await e.config('keep');
    assert.deepEqual(after, { ...before, installers, notify: [['notify']], reuseKey: true, updatedAt: clock.now().toISOString() });
  });

  // Regression (review of the renewal engine, finding 3): one malformed renewal/NAME.json threw
  // out of planning and rejected the whole run (the daemon retried forever, nothing renewed).
  test('malformed configs fail their own lineage, naming the field; the other lineages are planned and renewed', async () => {
    const e = await env();
    for (const n of ['fine', 'badid', 'badfb']) await e.issue(n, [`${n}.example.com`]);
    const raw = async (n: string, patch: Record<string, unknown>) => writeFile(e.store.configFile(n), JSON.stringify({ ...(await e.config(n)), ...patch }));
    await raw('badid', { identifiers: [{ value: 5 }] });
    await raw('badfb', { fallback: {} });
    for (const force of [false, true]) {
      const rs = await e.run({ force });
      assert.equal(one(rs, 'fine').status, force ? 'renewed' : 'not-due', summaryLine(one(rs, 'fine')));
      const id = one(rs, 'badid');
      assert.equal(id.status, 'failed');
      assert.equal(id.error?.code, 'BAD_INPUT');
      assert.match(id.error?.message ?? '', /^renewal\/badid\.json: identifiers\[0\]\.type: .*; renewal\/badid\.json: identifiers\[0\]\.value: .*expected string/);
      assert.match(summaryLine(id), /^badid: FAILED \(cannot be read\): renewal\/badid\.json: .*: fix renewal\/badid\.json/);
      const fb = one(rs, 'badfb');
      assert.equal(fb.status, 'failed');
      assert.match(fb.error?.message ?? '', /^renewal\/badfb\.json: fallback: .*expected array/);
    }
  });

  // Regression (review of the renewal engine, finding 5): Anvil answers a "replaces" naming another
  // account's certificate with 403 unauthorized, and one it does not know with 404; the renewal
  // failed at every attempt, until the certificate expired.
  test('"replaces" refused with 403 (the lineage\'s account changed): ordered again without it', async () => {
    const e = await env();
    await e.issue('acct', ['acct.example.com']);
    const other = await mkdtemp(path.join(os.tmpdir(), 'anvil-renew-other-'));
    dirs.push(other);
    const api = (await openAccount({ store: new AccountStore(other), http: http(ca.directoryUrl), create: { agreeTos: true } })).api;
    const r = one(await e.run({ force: true }, { openAccount: async () => api }), 'acct');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.replaces, 'dropped');
    assert.match(r.warnings?.join() ?? '', /refused "replaces" \(unauthorized: /);
  });

  test('"replaces" refused with 404 (a CA that does not know the certificate): ordered again without it', async () => {
    const e = await env();
    await e.issue('moved', ['moved.example.com']);
    // The lineage now names another CA (or its CA was set up again from scratch).
    await e.store.writeConfig({ ...(await e.config('moved')), server: ca2.directoryUrl });
    const r = one(await e.run({ force: true }), 'moved');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.server, ca2.directoryUrl);
    assert.equal(r.replaces, 'dropped');
    assert.match(r.warnings?.join() ?? '', /refused "replaces" \(malformed: this CA did not issue/);
  });

  test('an expired certificate is renewed without "replaces"', async () => {
    const e = await env();
    await e.issue('exp-rep', ['exp-rep.example.com']);
    clock.advance(91 * DAY);
    const r = one(await e.run(), 'exp-rep');
    assert.equal(r.status, 'renewed', summaryLine(r));
    assert.equal(r.rule, 'expired');
    assert.equal(r.replaces, 'not-sent');
  });

  // Regression (review of the renewal engine, finding 7): a state written while the clock was a
  // year ahead kept the lineage backing off (or ARI and revocation unasked) for that year.
  test('a backoff far in the future (a clock that was wrong) is capped at the longest backoff', async () => {
    const e = await env();
    await e.issue('jump', ['jump.example.com']);
    clock.advance(91 * DAY);
    const far = new Date(clock.now().getTime() + 365 * DAY).toISOString();
    await e.states.write('jump', { ...(await e.states.read('jump')).state, failures: 3, nextAttempt: far, lastError: 'the CA refused' });
    let r = one(await e.run(), 'jump');
    assert.equal(r.status, 'backoff', summaryLine(r));
    assert.match(r.warnings?.join() ?? '', /the end of the backoff .* was further ahead than anvil ever waits/);
    assert.ok(Date.parse(r.nextAttempt!) <= clock.now().getTime() + DAY, r.nextAttempt);
    clock.advance(DAY);
    r = one(await e.run(), 'jump');
    assert.equal(r.status, 'renewed', summaryLine(r));
  });

  test('renewalInfo and revocation times far in the future are capped at 24 h and the revocation interval', async () => {
    const e = await env();
    await e.issue('jump2', ['jump2.example.com']);
    let checks = 0;
    const checkRevocation: CheckRevocation = async () => {
      checks++;
      return { status: 'good', source: 'ocsp' };
    };
    await e.run({}, { checkRevocation });
    assert.equal(e.ariRequests.length, 1);
    assert.equal(checks, 1);
    const st = (await e.states.read('jump2')).state;
    const far = new Date(clock.now().getTime() + 365 * DAY).toISOString();
    await e.states.write('jump2', { ...st, ari: { ...st.ari!, nextFetch: far }, revocation: { ...st.revocation!, nextCheck: far } });
    const r = one(await e.run({ revocationIntervalMs: 12 * HOUR }, { checkRevocation }), 'jump2');
    assert.match(r.warnings?.join() ?? '', /the next renewalInfo request .* further ahead.*; the next revocation check/);
    clock.advance(DAY);
    await e.run({ revocationIntervalMs: 12 * HOUR }, { checkRevocation });
    assert.equal(e.ariRequests.length, 2, 'asked again after 24 h');
    assert.equal(checks, 2, 'checked again after 13.2 h');
  });

  test('a corrupt state file: a warning and a fresh start, no crash', async () => {
    const e = await env();
    await e.issue('corrupt', ['corrupt.example.com']);
    await writeFile(e.states.file('corrupt'), '{"version":1,"ari":{');
    const r = one(await e.run(), 'corrupt');
    assert.equal(r.status, 'not-due');
    assert.match(r.warnings?.join() ?? '', /not valid JSON; starting with a fresh renewal state/);
    assert.equal((await e.states.read('corrupt')).warning, undefined, 'rewritten');
  });

  test('an unreadable lineage config is a failure of that lineage only', async () => {
    const e = await env();
    await e.issue('good', ['good.example.com']);
    await e.issue('bad', ['bad.example.com']);
    await writeFile(e.store.configFile('bad'), '{');
    const rs = await e.run();
    assert.equal(one(rs, 'good').status, 'not-due');
    assert.equal(one(rs, 'bad').status, 'failed');
    assert.equal(one(rs, 'bad').error?.code, 'STORE');
  });

  test('a CA that cannot be reached costs one directory request per run, and its lineages wait with backoff', async () => {
    const e = await env();
    for (const n of ['down1', 'down2', 'down3']) await e.issue(n, [`${n}.example.com`]);
    let asked = 0;
    const connect: RunnerDeps['connect'] = async ({ server }) => {
      const h = http(server);
      Object.assign(h, {
        directory: async () => {
          asked++;
          throw new AcmeClientError('NETWORK', `GET ${server} failed: connect ECONNREFUSED`);
        },
      });
      return { http: h, close: () => h.close() };
    };
    const summary = await e.runner({ connect }).run();
    assert.equal(asked, 1);
    assert.deepEqual(summary.results.map((r) => r.status), ['not-due', 'not-due', 'not-due']);
    assert.match(summary.results[0]!.warnings?.join() ?? '', /renewalInfo: .*ECONNREFUSED \(asking again after 60 s\)/);
    const st = (await e.states.read('down1')).state.ari!;
    assert.equal(st.errors, 1);
    assert.equal(Date.parse(st.nextFetch) - clock.now().getTime(), MIN);
    assert.ok(Date.parse(summary.nextCheck!) > clock.now().getTime(), 'nothing to look at again before then');
  });

  test('dry run: reports what is due, orders nothing, writes no state', async () => {
    const e = await env();
    await e.issue('dry', ['dry.example.com']);
    clock.advance(91 * DAY);
    const r = one(await e.run({ dryRun: true }), 'dry');
    assert.equal(r.status, 'would-renew');
    assert.match(summaryLine(r), /^dry: due \(expired at .*\); dry run, not renewed$/);
    assert.equal((await e.store.current('dry'))!.version, 1);
  });

  test('renewals run concurrently, never more than the bound', async () => {
    const e = await env();
    const names = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
    for (const n of names) await e.issue(n, [`${n}.example.com`]);
    let running = 0;
    let most = 0;
    const issue = async (o: IssueToLineageOptions) => {
      running++;
      most = Math.max(most, running);
      try {
        await new Promise((r) => setTimeout(r, 20));
        return await issueToLineage(o);
      } finally {
        running--;
      }
    };
    const rs = await e.run({ force: true, concurrency: 2 }, { issue });
    assert.deepEqual(rs.map((r) => r.status), names.map(() => 'renewed'));
    assert.equal(most, 2);
  });

  test('new orders at one CA are rate limited (fake time moves, nothing waits)', async () => {
    const e = await env();
    const names = ['r1', 'r2', 'r3', 'r4', 'r5'];
    for (const n of names) await e.issue(n, [`${n}.example.com`]);
    const starts: number[] = [];
    const issue = async (o: IssueToLineageOptions) => {
      starts.push(clock.now().getTime());
      return issueToLineage(o);
    };
    const t0 = clock.now().getTime();
    const rs = await e.run({ force: true, concurrency: 5, ratePerMinute: 2 }, { issue });
    assert.deepEqual(rs.map((r) => r.status), names.map(() => 'renewed'));
    starts.sort((a, b) => a - b);
    // At most the burst (2) plus 2 a minute: the k-th order (from 0) starts at t0 + (k - 1) * 30 s or later.
    starts.forEach((t, k) => assert.ok(k + 1 <= 2 + (t - t0) / 30_000, `order ${k} at +${t - t0} ms`));
  });

  test('planning many lineages reads only local files when nothing needs the network', async (t) => {
    const e = await env();
    const n = Number(process.env.ANVIL_RENEW_SCALE ?? 1000);
    const leaf = await e.issue('template', ['template.example.com']);
    const v = (await e.store.current('template'))!;
    const cfg = await e.config('template');
    // Lineages sharing one certificate, written straight to disk (the store's save() fsyncs each).
    const tpl = { cert: await readFile(v.cert, 'utf8'), chain: await readFile(v.chain, 'utf8'), fullchain: await readFile(v.fullchain, 'utf8') };
    await mkdir(path.join(e.root, 'renewal'), { recursive: true });
    const all: string[] = [];
    for (let i = 0; i < n; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, n - i) }, async (_, j) => {
          const name = `bulk-${i + j}`;
          all.push(name);
          const arch = path.join(e.root, 'archive', name);
          await mkdir(arch, { recursive: true });
          for (const k of ['cert', 'chain', 'fullchain'] as const) await writeFile(path.join(arch, `${k}1.pem`), tpl[k]);
          const vdir = path.join(e.root, 'live', `.${name}.v1`);
          await mkdir(vdir, { recursive: true });
          for (const k of ['cert', 'chain', 'fullchain']) await symlink(path.join('..', '..', 'archive', name, `${k}1.pem`), path.join(vdir, `${k}.pem`));
          await symlink(`.${name}.v1`, path.join(e.root, 'live', name));
          await writeFile(e.store.configFile(name), JSON.stringify({ ...cfg, name, identifiers: cfg.identifiers }));
        }),
      );
    }
    // A CA without renewalInfo: no request is needed to plan.
    const connect: RunnerDeps['connect'] = async ({ server }) => {
      const h = http(server);
      const dir = await h.directory();
      delete (dir as { renewalInfo?: string }).renewalInfo;
      return { http: h, close: () => h.close() };
    };
    for (const label of ['first run (parses every certificate, writes every state file)', 'next run (facts from the state)']) {
      const started = process.hrtime.bigint();
      const summary = await e.runner({ connect }).run();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      t.diagnostic(`${label}: ${summary.results.length} lineages in ${Math.round(ms)} ms`);
      assert.equal(summary.results.length, n + 1);
      assert.ok(summary.results.every((r) => r.status === 'not-due' && r.serial === leaf.serialNumber));
    }
  });
});
