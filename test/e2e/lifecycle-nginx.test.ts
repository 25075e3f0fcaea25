/**
 * Issue 4 end to end: a lineage issued from `anvil server` under the `shortlived` profile, installed
 * into a real nginx, then left to `anvil renew --daemon`. The CA operator pulls the renewal window
 * forward (`anvil ca renew-early`, as before a mass revocation): the daemon renews through ARI,
 * nginx is reloaded and serves the new certificate. The new certificate is then revoked: the daemon
 * learns it from OCSP, replaces it, and nginx serves the replacement. SIGTERM stops the daemon
 * cleanly. Nothing waits for a certificate lifetime.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ANVIL_BIN, exited, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { servedSerial, startNginx, waitFor, type Nginx } from '../helpers/nginx.js';
import { freePort } from '../helpers/ports.js';
import { missingTools, runTool, type RunResult } from '../helpers/run.js';

const NAME = 'shortlived.anvil.test';
const HOUR = 3_600_000;

describe('lifecycle: a shortlived certificate in nginx, kept fresh by anvil renew --daemon', { timeout: 300_000, skip: missingTools('nginx', 'named', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let nginx: Nginx | undefined;
  let daemon: ChildProcess | undefined;
  let daemonOut = '';
  let dir: string;
  let store: string;
  let httpPort: number;

  before(async () => {
    bind = await startBind();
    httpPort = await freePort();
    anvil = await startAnvil({ validation: { resolvers: [bind.addr], httpPort, addressPolicy: { allowLoopback: true } } });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-lifecycle-'));
    store = path.join(dir, 'store');
    nginx = await startNginx(path.join(dir, 'nginx'), NAME);
  });
  after(async () => {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    await nginx?.stop();
    await anvil?.cleanup();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const client = (args: string[]): Promise<RunResult> =>
    runTool(process.execPath, [ANVIL_BIN, ...args, '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', store], {}, 120_000);
  const live = async () => new X509Certificate(await readFile(path.join(store, 'live', NAME, 'cert.pem')));
  const lifetimeHours = (c: X509Certificate) => (Date.parse(c.validTo) - Date.parse(c.validFrom)) / HOUR;
  const issueArgs = () => ['issue', '-d', NAME, '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1'];

  test('a profile the CA does not offer is a usage error that lists the offered ones', async () => {
    const r = await client([...issueArgs(), '--profile', 'weekly']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, /--profile weekly: .* offers classic, tlsserver, shortlived, mtls/);
  });

  test('issued under shortlived (160 hours) and installed into nginx', async () => {
    const r = await client([...issueArgs(), '--profile', 'shortlived']);
    assert.equal(r.code, 0, r.out);
    const cert = await live();
    assert.ok(Math.abs(lifetimeHours(cert) - 160) < 0.02, `lifetime ${lifetimeHours(cert)} h`);
    assert.equal(JSON.parse(await readFile(path.join(store, 'renewal', `${NAME}.json`), 'utf8')).profile, 'shortlived');
    const inst = await runTool(
      process.execPath,
      [ANVIL_BIN, 'install', 'nginx', '--store', store, '--cert', NAME, '--conf', nginx!.siteConf, '--verify', `127.0.0.1:${nginx!.port}`, '--test-cmd', nginx!.command(['-t']), '--reload-cmd', nginx!.command(['-s', 'reload'])],
      {},
      60_000,
    );
    assert.equal(inst.code, 0, inst.out);
    assert.equal(await servedSerial(nginx!.port, NAME), cert.serialNumber);
  });

  test('the daemon renews when the CA pulls the window forward; nginx serves the new certificate', async () => {
    const first = await live();
    // The operator's incident response: every window of this certificate is now in the past.
    const early = await runTool(process.execPath, [
      ANVIL_BIN, 'ca', 'renew-early', '--config', anvil.configFile, '--serial', first.serialNumber,
      '--start', new Date(Date.now() - 2 * HOUR).toISOString(), '--within', '1',
    ]);
    assert.equal(early.code, 0, early.out);
    assert.match(early.stdout, /of 1 certificate/);

    daemon = spawn(
      process.execPath,
      [ANVIL_BIN, 'renew', '--daemon', '--interval', '2', '--revocation-interval', '2', '--no-random-delay', '--store', store],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    daemon.stdout!.on('data', (d: Buffer) => (daemonOut += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (daemonOut += d.toString()));

    const second = await waitFor(
      'the daemon to renew and nginx to serve the new certificate',
      async () => {
        const s = await servedSerial(nginx!.port, NAME);
        return s !== first.serialNumber ? s : undefined;
      },
      90_000,
    ).catch((e: Error) => assert.fail(`${e.message}\n${daemonOut}`));
    const cert = await live();
    assert.equal(second, cert.serialNumber, 'nginx serves the live certificate');
    assert.ok(Math.abs(lifetimeHours(cert) - 160) < 0.02, 'still the shortlived profile');
    // Its summary line follows the installer's check.
    const renewedLine = new RegExp(`${NAME.replace(/\./g, '\\.')}: renewed \\(ARI window`);
    await waitFor('the summary line', async () => (renewedLine.test(daemonOut) ? true : undefined), 10_000).catch(() => assert.fail(daemonOut));
    // The renewal told the CA which certificate it replaces (RFC 9773 §5).
    const db = new Database(anvil.dbPath, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare('SELECT profile FROM certificates WHERE replaces_id = (SELECT id FROM certificates WHERE serial = ?)').get(
        first.serialNumber.toLowerCase().replace(/^0+/, ''),
      ) as { profile: string } | undefined;
      assert.equal(row?.profile, 'shortlived');
    } finally {
      db.close();
    }
  });

  test('a revoked certificate is replaced by the daemon, and nginx serves the replacement', async () => {
    const revoked = await live();
    const r = await client(['revoke', NAME, '--reason', 'keyCompromise']);
    assert.equal(r.code, 0, r.out);
    const third = await waitFor(
      'the daemon to replace the revoked certificate',
      async () => {
        const s = await servedSerial(nginx!.port, NAME);
        return s !== revoked.serialNumber ? s : undefined;
      },
      90_000,
    ).catch((e: Error) => assert.fail(`${e.message}\n${daemonOut}`));
    assert.equal(third, (await live()).serialNumber);
    const revokedLine = new RegExp(`${NAME.replace(/\./g, '\\.')}: renewed \\(.*revoked`, 'i');
    await waitFor('the summary line', async () => (revokedLine.test(daemonOut) ? true : undefined), 10_000).catch(() => assert.fail(daemonOut));
  });

  test('SIGTERM stops the daemon cleanly (exit 0)', async () => {
    daemon!.kill('SIGTERM');
    const code = await Promise.race([
      exited(daemon!).then(() => daemon!.exitCode),
      new Promise<string>((r) => setTimeout(() => r('still running after 70 s'), 70_000).unref()),
    ]);
    assert.equal(code, 0, daemonOut);
  });
});
