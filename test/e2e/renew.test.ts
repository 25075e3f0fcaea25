/**
 * `anvil renew` as cron and systemd run it, against the real `anvil server` (its ARI windows,
 * `replaces` and profiles) over HTTPS, with real http-01 validation to 127.0.0.1. Nothing waits
 * for certificate lifetimes: certificates are made due by the CA operator (`anvil ca renew-early`
 * with a window in the past) or by a change in the lineage config.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { certIdOf } from '../../src/client/renewal/ari.js';
import { ANVIL_BIN, exited, type StartedAnvil } from '../helpers/anvil-process.js';
import { startLoopbackCa, type LoopbackCa } from '../helpers/loopback-ca.js';
import { freePort } from '../helpers/ports.js';
import { runTool, type RunResult } from '../helpers/run.js';

const HOUR = 3_600_000;

describe('anvil renew against anvil server', { timeout: 300_000 }, () => {
  let ca: LoopbackCa;
  let anvil: StartedAnvil;
  let dir: string;
  let store: string;

  before(async () => {
    ca = await startLoopbackCa('anvil-renew-e2e-', {
      // Short-lived certificates: 2 days (the 1/2-of-lifetime rule applies).
      issuance: { lifetimeDays: 2 },
      acme: { authzReuseDays: 0 },
    });
    ({ anvil, dir, store } = ca);
  });
  after(async () => {
    await ca?.cleanup();
  });

  const cli = (args: string[], env: Record<string, string> = {}): Promise<RunResult> => ca.cli(args, env);

  async function issue(name: string): Promise<X509Certificate> {
    const r = await ca.issue(name);
    assert.equal(r.code, 0, r.out);
    return leaf(name);
  }

  async function leaf(name: string): Promise<X509Certificate> {
    return new X509Certificate(await readFile(path.join(store, 'live', name, 'cert.pem')));
  }

  /** The CA operator moves a certificate's ARI window into the past: renew now. */
  async function renewEarly(cert: X509Certificate): Promise<void> {
    const start = new Date(Date.now() - 3 * HOUR).toISOString();
    const r = await runTool(process.execPath, [ANVIL_BIN, 'ca', 'renew-early', '--config', anvil.configFile, '--serial', cert.serialNumber, '--start', start, '--within', '1']);
    assert.equal(r.code, 0, r.out);
  }

  const line = (out: string, name: string) => out.split('\n').find((l) => l.startsWith(`${name}: `)) ?? '';

  test('renews the lineage whose ARI window has come, sending "replaces", and leaves the others', async () => {
    const a = await issue('due');
    await issue('fresh');
    await renewEarly(a);

    const dry = await cli(['renew', '--dry-run', '--no-random-delay']);
    assert.equal(dry.code, 0, dry.out);
    assert.match(line(dry.stdout, 'due'), /^due: due \(ARI window .* is in the past: renewing now\); dry run, not renewed$/);
    assert.match(line(dry.stdout, 'fresh'), /^fresh: not due until \S+ \(ARI window /);
    assert.equal((await leaf('due')).serialNumber, a.serialNumber, 'a dry run changes nothing');

    const r = await cli(['renew', '--no-random-delay']);
    assert.equal(r.code, 0, r.out);
    assert.match(line(r.stdout, 'due'), /^due: renewed \(ARI window .*\) serial [0-9A-F]+ expires \S+$/);
    assert.match(line(r.stdout, 'fresh'), /^fresh: not due until /);
    const b = await leaf('due');
    assert.notEqual(b.serialNumber, a.serialNumber);

    // The CA recorded which certificate the new order replaced.
    const db = new Database(anvil.dbPath, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT replaces FROM orders WHERE replaces IS NOT NULL').all() as Array<{ replaces: string }>;
      assert.deepEqual(
        rows.map((x) => x.replaces),
        [await certIdOf(a)],
      );
    } finally {
      db.close();
    }

    const again = await cli(['renew', '--no-random-delay', '--json']);
    assert.equal(again.code, 0, again.out);
    const results = (JSON.parse(again.stdout) as { results: Array<{ name: string; status: string }> }).results;
    assert.deepEqual(results.map((x) => [x.name, x.status]).sort(), [
      ['due', 'not-due'],
      ['fresh', 'not-due'],
    ]);
  });

  test('a failed renewal is loud: FAILED line with what to do, exit code 4, the notify hook runs, the certificate stays', async () => {
    const before = await issue('broken');
    const cfgFile = path.join(store, 'renewal', 'broken.json');
    const cfg = JSON.parse(await readFile(cfgFile, 'utf8'));
    // Nobody answers http-01 where the CA looks: the built-in server listens elsewhere.
    const notified = path.join(dir, 'notified.txt');
    cfg.solver = { type: 'http', host: '127.0.0.1', port: await freePort() };
    cfg.notify = [[process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(notified)}, process.env.ANVIL_LINEAGE + ' ' + process.env.ANVIL_ERROR)`]];
    await writeFile(cfgFile, JSON.stringify(cfg, null, 2));

    await renewEarly(before);

    const r = await cli(['renew', '--cert', 'broken', '--no-random-delay']);
    assert.equal(r.code, 4, r.out);
    assert.match(line(r.stdout, 'broken'), /^broken: FAILED \(ARI window .*\): .*: check that 127\.0\.0\.1 points at this host .*; anvil tries again after \S+$/);
    assert.match(await readFile(notified, 'utf8'), /^broken broken: renewal failed: /);
    assert.equal((await leaf('broken')).serialNumber, before.serialNumber);

    // The next run waits out the backoff, and still exits with the failure's code.
    const next = await cli(['renew', '--cert', 'broken', '--no-random-delay']);
    assert.equal(next.code, 4, next.out);
    assert.match(line(next.stdout, 'broken'), /^broken: FAILED earlier \(1 in a row: .*\): an earlier attempt failed/);
  });

  test('a certificate revoked at the CA is renewed at the next run: OCSP says so', async () => {
    const before = await issue('revoked');
    const rv = await cli(['revoke', 'revoked', '--reason', 'keyCompromise']);
    assert.equal(rv.code, 0, rv.out);
    const r = await cli(['renew', '--cert', 'revoked', '--no-random-delay']);
    assert.equal(r.code, 0, r.out);
    assert.match(line(r.stdout, 'revoked'), /^revoked: renewed \(revoked at \S+ \(OCSP\)\) serial /);
    assert.notEqual((await leaf('revoked')).serialNumber, before.serialNumber);
  });

  test('usage errors exit with 2', async () => {
    const r = await cli(['renew', '--cert', 'no-such-lineage', '--no-random-delay']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, /no certificate named no-such-lineage/);
    assert.equal((await cli(['renew', '--concurrency', '0'])).code, 2);
  });

  test('the daemon renews what becomes due and stops cleanly on SIGTERM', async () => {
    await issue('daemon');
    const first = await leaf('daemon');
    const proc = spawn(process.execPath, [ANVIL_BIN, 'renew', '--daemon', '--interval', '1', '--store', store, '--cert', 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp, ms: number) => {
      const end = Date.now() + ms;
      while (!re.test(out)) {
        if (Date.now() > end || proc.exitCode !== null) throw new Error(`waited for ${re} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await waitFor(/checked 1 certificate\(s\): 0 renewed/, 30_000);
      // The lineage's config asks for another profile: due at once.
      const cfgFile = path.join(store, 'renewal', 'daemon.json');
      await writeFile(cfgFile, JSON.stringify({ ...JSON.parse(await readFile(cfgFile, 'utf8')), profile: 'shortlived' }, null, 2));
      await waitFor(/daemon: renewed \(profile changed \(default -> shortlived\)\) serial/, 60_000);
      const now = await leaf('daemon');
      assert.notEqual(now.serialNumber, first.serialNumber);
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited(proc);
      clearTimeout(t);
      assert.equal(proc.exitCode, 0, out);
      assert.equal(proc.signalCode, null);
      assert.match(out, /SIGTERM: finishing the work in progress/);
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited(proc);
      }
    }
  });
});
