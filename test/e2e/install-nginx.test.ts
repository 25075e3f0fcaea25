/**
 * Issue 4 (installation): deploy hooks and `anvil install nginx` against a real nginx from Debian,
 * started by this test on a loopback port with its own prefix, config, pid and logs. The lineage
 * comes from `anvil issue --http` against `anvil server` (names resolve to 127.0.0.1 through a test
 * BIND). Checked over TLS: the served leaf's serial after install, after a renewal re-verified,
 * and after every kind of rollback; and that a renewal is not undone for a config test that fails
 * whatever the certificate (review finding D of issue #4).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { InstallError, verifyInstallers } from '../../src/client/install/nginx.js';
import { LineageStore, type LineageConfig } from '../../src/client/store.js';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { freePort } from '../helpers/ports.js';
import { NGINX, settledServedSerial, startNginx, type Nginx } from '../helpers/nginx.js';
import { missingTools, runTool, type RunResult } from '../helpers/run.js';

const NAME = 'nginx.anvil.test';
const OTHER = 'other.anvil.test';
// What nginx serves after any reload has settled (old workers may answer for a moment).
const servedSerial = (port: number, sni = NAME) => settledServedSerial(port, sni);

const q = (s: string) => `'${s}'`;

describe('anvil install nginx and hooks (real nginx)', { timeout: 300_000, skip: missingTools('nginx', 'named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let dir: string;
  let store: string;
  let httpPort: number;
  let ngx: string;
  let siteConf: string;
  let nginxPort: number;
  let decoy: tls.Server | undefined;
  let decoyPort: number;
  let hookLog: string;
  let hookScript: string;
  let nginxFlags: string[];

  let nginx: Nginx | undefined;

  before(async () => {
    bind = await startBind();
    httpPort = await freePort();
    anvil = await startAnvil({ validation: { resolvers: [bind.addr], httpPort, addressPolicy: { allowLoopback: true } } });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-install-nginx-'));
    store = path.join(dir, 'store');
    nginx = await startNginx(path.join(dir, 'nginx'), NAME);
    ngx = nginx.prefix;
    siteConf = nginx.siteConf;
    nginxPort = nginx.port;
    nginxFlags = nginx.flags;

    // A TLS listener serving some other certificate: a check against it cannot pass.
    const decoyCert = { cert: await readFile(path.join(ngx, 'before.pem')), key: await readFile(path.join(ngx, 'before.key')) };
    decoy = tls.createServer(decoyCert);
    decoyPort = await freePort();
    await new Promise<void>((r) => decoy!.listen(decoyPort, '127.0.0.1', r));

    // A deploy/post hook that records what it was told.
    hookLog = path.join(dir, 'hooks.jsonl');
    hookScript = path.join(dir, 'hook.mjs');
    await writeFile(
      hookScript,
      `import { appendFileSync } from 'node:fs';
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('ANVIL_') || k.startsWith('RENEWED_')));
appendFileSync(${JSON.stringify(hookLog)}, JSON.stringify({ argv: process.argv.slice(2), env }) + '\\n');
`,
    );
  });

  after(async () => {
    decoy?.close();
    await nginx?.stop();
    await anvil?.cleanup();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function cli(args: string[]): Promise<RunResult> {
    return runTool(process.execPath, [ANVIL_BIN, ...args, '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', store], {}, 120_000);
  }
  const issueArgs = (name: string) => ['issue', '-d', name, '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1'];
  const install = (args: string[]) => runTool(process.execPath, [ANVIL_BIN, 'install', 'nginx', '--store', store, ...args], {}, 120_000);
  const nginxCmd = (extra: string[]) => [NGINX, ...nginxFlags, ...extra].map(q).join(' ');
  const installArgs = (cert: string) => [
    '--cert',
    cert,
    '--conf',
    siteConf,
    '--nginx',
    NGINX,
    '--test-cmd',
    nginxCmd(['-t']),
    '--reload-cmd',
    nginxCmd(['-s', 'reload']),
  ];
  const lineages = () => new LineageStore(store);
  const liveSerial = async (name = NAME) => new X509Certificate(await readFile(path.join(store, 'live', name, 'cert.pem'))).serialNumber;
  const config = async (name = NAME) => (await lineages().readConfig(name)) as LineageConfig;
  const hookRuns = async () => (await readFile(hookLog, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { argv: string[]; env: Record<string, string> });

  test('anvil issue runs the deploy and post hooks with the lineage in their environment, and saves them', async () => {
    const r = await cli([...issueArgs(NAME), '--deploy-hook', `${q(process.execPath)} ${q(hookScript)} deployed`, '--post-hook', `${q(process.execPath)} ${q(hookScript)} after`]);
    assert.equal(r.code, 0, r.out);
    const runs = await hookRuns();
    assert.deepEqual(runs.map((x) => x.argv), [['deployed'], ['after']], 'deploy first, then post');
    const live = path.join(store, 'live', NAME);
    const serial = await liveSerial();
    const deploy = runs[0]!.env;
    assert.equal(deploy.ANVIL_EVENT, 'deploy');
    assert.equal(deploy.ANVIL_LINEAGE, NAME);
    assert.equal(deploy.ANVIL_DOMAINS, NAME);
    assert.equal(deploy.ANVIL_SERVER, anvil.directoryUrl);
    assert.equal(deploy.ANVIL_LIVE_DIR, live);
    assert.equal(deploy.ANVIL_CERT, path.join(live, 'cert.pem'));
    assert.equal(deploy.ANVIL_CHAIN, path.join(live, 'chain.pem'));
    assert.equal(deploy.ANVIL_FULLCHAIN, path.join(live, 'fullchain.pem'));
    assert.equal(deploy.ANVIL_KEY, path.join(live, 'privkey.pem'));
    assert.equal(deploy.ANVIL_SERIAL, serial);
    assert.match(deploy.ANVIL_NOT_AFTER!, /^\d{4}-\d\d-\d\dT/);
    assert.equal(deploy.RENEWED_LINEAGE, live);
    assert.equal(deploy.RENEWED_DOMAINS, NAME);
    assert.equal(runs[1]!.env.ANVIL_EVENT, 'post');
    assert.equal(runs[1]!.env.RENEWED_LINEAGE, undefined);
    assert.deepEqual((await config()).hooks, { deploy: [[process.execPath, hookScript, 'deployed']], post: [[process.execPath, hookScript, 'after']] });
  });

  test('anvil install nginx edits only the certificate lines, reloads, and nginx serves the lineage', async () => {
    const before = await readFile(siteConf, 'utf8');
    assert.notEqual(await servedSerial(nginxPort), await liveSerial());
    const r = await install([...installArgs(NAME), '--verify', `127.0.0.1:${nginxPort}`, '--json']);
    assert.equal(r.code, 0, r.out);
    const j = JSON.parse(r.stdout);
    assert.equal(j.status, 'installed');
    assert.equal(j.serial, await liveSerial());
    const live = path.join(store, 'live', NAME);
    assert.equal(
      await readFile(siteConf, 'utf8'),
      before.replace(path.join(ngx, 'before.pem'), path.join(live, 'fullchain.pem')).replace(path.join(ngx, 'before.key'), path.join(live, 'privkey.pem')),
    );
    assert.equal(await servedSerial(nginxPort), await liveSerial());
    const inst = (await config()).installers;
    assert.equal(inst?.length, 1);
    assert.equal(inst![0]!.conf, siteConf);
    assert.equal(inst![0]!.verify, `127.0.0.1:${nginxPort}`);
    assert.deepEqual(inst![0]!.reload, [NGINX, ...nginxFlags, '-s', 'reload']);
    assert.equal(await readFile(j.backup, 'utf8'), before);
    // Installing again changes nothing and records the installer once.
    const again = await install([...installArgs(NAME), '--verify', `127.0.0.1:${nginxPort}`]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.stdout, /already pointed at it/);
    assert.equal((await config()).installers?.length, 1);
  });

  test('after a new version, the re-verify path reloads nginx and the new serial is served', async () => {
    const v1 = await liveSerial();
    const r = await cli([...issueArgs(NAME), '--force']);
    assert.equal(r.code, 0, r.out);
    const v2 = await liveSerial();
    assert.notEqual(v2, v1);
    assert.equal(await servedSerial(nginxPort), v1, 'nginx keeps the old certificate until reloaded');
    const cfg = await config();
    assert.equal(cfg.installers?.length, 1, 'anvil issue --force kept the installer');
    const steps: string[] = [];
    const verified = await verifyInstallers(lineages(), cfg, { expectSerial: v2, onStep: (s) => steps.push(s) });
    assert.deepEqual(verified, [{ conf: siteConf, verify: `127.0.0.1:${nginxPort}`, serial: v2 }]);
    assert.equal(await servedSerial(nginxPort), v2);
    assert.ok(steps.some((s) => /reloading/.test(s)));
  });

  test('an install whose TLS check cannot pass restores the file byte for byte and nginx keeps the old certificate', async () => {
    const r0 = await cli(issueArgs(OTHER));
    assert.equal(r0.code, 0, r0.out);
    const before = await readFile(siteConf);
    const serving = await servedSerial(nginxPort);
    const r = await install([...installArgs(OTHER), '--server-name', NAME, '--verify', `127.0.0.1:${decoyPort}`, '--timeout', '2']);
    assert.equal(r.code, 1, r.out);
    assert.match(r.stderr, /TLS check failed: 127\.0\.0\.1:\d+ \(SNI nginx\.anvil\.test\) served serial \w+ \(.*before\.anvil\.test.*\), not serial/);
    assert.match(r.stderr, /rolled back: .*site\.conf restored; nginx reloaded; it serves serial \w+ again/);
    assert.deepEqual(await readFile(siteConf), before);
    assert.equal(await servedSerial(nginxPort), serving);
    assert.equal((await config(OTHER)).installers, undefined, 'a failed install is not recorded');
  });

  test('an install whose config test fails restores the file and never reloads', async () => {
    const before = await readFile(siteConf);
    const serving = await servedSerial(nginxPort);
    // -g adds a directive that nginx refuses: the test fails whatever the edit.
    const r = await install([...installArgs(OTHER).slice(0, -4), '--test-cmd', nginxCmd(['-t', '-g', 'worker_processes 1;']), '--reload-cmd', nginxCmd(['-s', 'reload']), '--verify', `127.0.0.1:${nginxPort}`]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.stderr, /config test failed: .* exited with code 1:[\s\S]*"worker_processes" directive is duplicate/);
    assert.match(r.stderr, /rolled back: .*site\.conf restored$/m);
    assert.deepEqual(await readFile(siteConf), before);
    assert.equal(await servedSerial(nginxPort), serving);
  });

  test('a renewal that nginx does not serve rolls live/ back to the previous version, reloaded', async () => {
    const good = await liveSerial();
    const r = await cli([...issueArgs(NAME), '--force']);
    assert.equal(r.code, 0, r.out);
    const bad = await liveSerial();
    const cfg = await config();
    // The same nginx, but checked where another certificate is served: the check cannot pass.
    const broken: LineageConfig = { ...cfg, installers: cfg.installers!.map((i) => ({ ...i, verify: `127.0.0.1:${decoyPort}` })) };
    const err = await verifyInstallers(lineages(), broken, { expectSerial: bad, timeoutMs: 2000 }).catch((e: unknown) => e);
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.code, 'INSTALL');
    assert.equal(err.step, 'TLS check');
    assert.match(err.message, /points at version 2 again \(version 3 stays in the archive\)/);
    assert.equal(await liveSerial(), good);
    assert.equal(await servedSerial(nginxPort), good, 'nginx was reloaded onto the previous version');
    assert.ok((await readdir(path.join(store, 'archive', NAME))).includes('cert3.pem'));
  });

  test('a config test that fails with the previous version too leaves the renewal live (not rolled back)', async () => {
    const good = await liveSerial();
    const r = await cli([...issueArgs(NAME), '--force']);
    assert.equal(r.code, 0, r.out);
    const fresh = await liveSerial();
    const cfg = await config();
    // -g adds a directive that nginx refuses: the test fails whatever the certificate.
    const failing: LineageConfig = { ...cfg, installers: cfg.installers!.map((i) => ({ ...i, test: [NGINX, ...nginxFlags, '-t', '-g', 'worker_processes 1;'] })) };
    const err = await verifyInstallers(lineages(), failing, { expectSerial: fresh, timeoutMs: 2000 }).catch((e: unknown) => e);
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.step, 'config test');
    assert.equal(err.rolledBack, false);
    assert.match(err.message, /"worker_processes" directive is duplicate/);
    assert.match(err.message, /not rolled back: the config test fails with version 2 too, so the new certificate is not the cause; version 4 stays live/);
    assert.equal(await liveSerial(), fresh);
    assert.equal(await servedSerial(nginxPort), good, 'nginx was not reloaded');
    // With the config fixed, the same version goes out.
    assert.deepEqual(await verifyInstallers(lineages(), cfg, { expectSerial: fresh }), [{ conf: siteConf, verify: `127.0.0.1:${nginxPort}`, serial: fresh }]);
    assert.equal(await servedSerial(nginxPort), fresh);
  });

  test('a new version that nginx refuses (key does not match) is rolled back after the comparison', async () => {
    const serving = await liveSerial();
    const live = path.join(store, 'live', NAME);
    // The same certificate with another key: nginx -t says "key values mismatch".
    await lineages().save(NAME, await readFile(path.join(live, 'fullchain.pem'), 'utf8'), await readFile(path.join(ngx, 'before.key'), 'utf8'));
    const err = await verifyInstallers(lineages(), await config(), { expectSerial: serving, timeoutMs: 2000 }).catch((e: unknown) => e);
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.step, 'config test');
    assert.equal(err.rolledBack, true);
    assert.match(err.message, /key values mismatch/);
    assert.match(err.message, /rolled back: live\/nginx\.anvil\.test points at version 4 again \(version 5 stays in the archive\)/);
    assert.equal((await lineages().current(NAME))!.version, 4);
    assert.equal(await servedSerial(nginxPort), serving);
  });

  test('a failing pre hook stops the issue (post hooks still run); a failing deploy hook is a non-zero exit naming the hook', async () => {
    const versions = async () => (await readdir(path.join(store, 'archive', NAME))).filter((f) => f.startsWith('cert')).length;
    const n = await versions();
    const runs0 = (await hookRuns()).length;
    const pre = await cli([...issueArgs(NAME), '--force', '--pre-hook', `${q(process.execPath)} -e 'process.exit(4)'`]);
    assert.equal(pre.code, 1, pre.out);
    assert.match(pre.stderr, /pre hook ".*node.* -e 'process\.exit\(4\)'" exited with code 4/);
    assert.equal(await versions(), n, 'nothing was ordered');
    assert.deepEqual((await hookRuns()).slice(runs0).map((x) => x.argv), [['after']], 'the saved post hook ran after the failed pre hook');

    const runsBefore = (await hookRuns()).length;
    const deploy = await cli([...issueArgs(NAME), '--force', '--deploy-hook', `${q(process.execPath)} -e 'console.error("reload refused"); process.exit(3)'`]);
    assert.equal(deploy.code, 1, deploy.out);
    assert.match(deploy.stderr, /anvil: nginx\.anvil\.test: deploy hook ".*" exited with code 3:\n\s+reload refused/);
    assert.equal(await versions(), n + 1, 'the certificate itself was obtained');
    const after = (await hookRuns()).slice(runsBefore);
    assert.deepEqual(after.map((x) => x.argv), [['after']], 'the saved post hook still ran');
  });
});
