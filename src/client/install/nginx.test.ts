/**
 * installNginx and verifyAfterRenewal against a stand-in nginx: a script for `-t` and `-s reload`
 * and a TLS listener in this process that serves whatever the last "reload" loaded. Every failure
 * path must leave the config file byte-identical and, after a renewal, live/NAME on the previous
 * version, except where going back would be worse (review finding D of issue #4: never back to an
 * expired or revoked certificate, never undo a renewal for a config test it did not break).
 * (The real nginx runs in test/e2e/install-nginx.test.ts.)
 */
import assert from 'node:assert/strict';
import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { toPem } from '../../lib/pem.js';
import * as x509 from '../../lib/x509.js';
import { AcmeClientError } from '../errors.js';
import { LineageStore, type InstallerConfig, type LineageConfig } from '../store.js';
import { InstallError, installNginx, nginxCommands, parseHostPort, verifyAfterRenewal, verifyInstallers } from './nginx.js';
import { rollbackLive, rollbackTarget } from './rollback.js';

async function selfSigned(cn: string, serial: string, validity = { notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000) }): Promise<{ cert: string; key: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=${cn}`,
    ...validity,
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: cn }])],
  });
  return { cert: cert.toString('pem'), key: toPem('PRIVATE KEY', new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))) };
}

/**
 * The stand-in: `-t` fails when state/fail-test exists (whatever the certificate), or when the
 * certificate's serial is the one in state/bad-serial; `-s reload` copies the PEMs the config's
 * ssl_certificate lines name into state/serving.json (as nginx reads them at reload), unless
 * state/stale-reload exists (a reload that does not take).
 */
const FAKE_NGINX = `
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const [state, conf, ...args] = process.argv.slice(2);
const text = readFileSync(conf, 'utf8');
const cert = /ssl_certificate\\s+"?([^";\\s]+)"?;/.exec(text)[1];
const key = /ssl_certificate_key\\s+"?([^";\\s]+)"?;/.exec(text)[1];
if (args[0] === '-t') {
  if (existsSync(state + '/fail-test')) { console.error('nginx: [emerg] unknown directive "fake": fake failure'); process.exit(1); }
  if (existsSync(state + '/bad-serial') && new X509Certificate(readFileSync(cert)).serialNumber === readFileSync(state + '/bad-serial', 'utf8')) {
    console.error('nginx: [emerg] cannot load certificate: fake failure'); process.exit(1);
  }
  console.error('nginx: configuration file ' + conf + ' test is successful');
  process.exit(0);
}
if (args[0] === '-s' && args[1] === 'reload') {
  if (existsSync(state + '/stale-reload')) process.exit(0);
  writeFileSync(state + '/serving.json', JSON.stringify({ cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') }));
  process.exit(0);
}
process.exit(64);
`;

describe('installNginx and verifyAfterRenewal (stand-in nginx)', { timeout: 120_000 }, () => {
  let dir: string;
  let store: LineageStore;
  let state: string;
  let conf: string;
  let fake: string;
  let server: tls.Server;
  let other: tls.Server;
  let port: number;
  let otherPort: number;
  let oldCert: { cert: string; key: string };
  const NAME = 'site.example';
  const CONF_TEXT = (certFile: string, keyFile: string) =>
    `# managed by hand\nhttp {\n    server {\n        listen 127.0.0.1:PORT ssl;   # tls\n        server_name site.example;\n        ssl_certificate ${certFile};\n        ssl_certificate_key ${keyFile};\n    }\n}\n`;

  const lineageConfig = (installers: InstallerConfig[]): LineageConfig => ({
    version: 1,
    name: NAME,
    server: 'https://ca.example/directory',
    account: 'default',
    identifiers: [{ type: 'dns', value: NAME }],
    keyType: 'ecdsa-p256',
    reuseKey: false,
    solver: { type: 'http' },
    installers,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  });

  const installer = (over: Partial<InstallerConfig> = {}): InstallerConfig => ({
    type: 'nginx',
    conf,
    test: [process.execPath, fake, state, conf, '-t'],
    reload: [process.execPath, fake, state, conf, '-s', 'reload'],
    ...over,
  });

  async function served(p = port): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: p, servername: NAME, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber);
        s.destroy();
      });
      s.once('error', reject);
    });
  }

  async function saveVersion(serial: string): Promise<string> {
    const c = await selfSigned(NAME, serial);
    await store.save(NAME, c.cert, c.key);
    return new X509Certificate(c.cert).serialNumber;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-install-'));
    store = new LineageStore(path.join(dir, 'store'));
    state = path.join(dir, 'state');
    await mkdir(state);
    fake = path.join(dir, 'fake-nginx.mjs');
    await writeFile(fake, FAKE_NGINX);
    oldCert = await selfSigned(NAME, '0a0a0a0a');
    await writeFile(path.join(dir, 'old.pem'), oldCert.cert);
    await writeFile(path.join(dir, 'old.key'), oldCert.key, { mode: 0o600 });
    await writeFile(path.join(state, 'serving.json'), JSON.stringify(oldCert));
    server = tls.createServer({
      SNICallback: (_name, cb) => {
        readFile(path.join(state, 'serving.json'), 'utf8').then(
          (t) => cb(null, tls.createSecureContext(JSON.parse(t) as { cert: string; key: string })),
          (e: Error) => cb(e),
        );
      },
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    const impostor = await selfSigned('impostor.example', '0b0b0b0b');
    other = tls.createServer(impostor);
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    otherPort = (other.address() as { port: number }).port;
    conf = path.join(dir, 'site.conf');
    await writeFile(conf, CONF_TEXT(path.join(dir, 'old.pem'), path.join(dir, 'old.key')).replace('PORT', String(port)));
  });
  after(async () => {
    server?.close();
    other?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the default commands carry -p, -c and -e over from the one given', () => {
    assert.deepEqual(nginxCommands({ type: 'nginx', conf: 'x' }), { test: ['nginx', '-t'], reload: ['nginx', '-s', 'reload'] });
    assert.deepEqual(nginxCommands({ type: 'nginx', conf: 'x', nginx: '/usr/sbin/nginx', test: ['/usr/sbin/nginx', '-p', '/srv/n', '-c', '/srv/n/nginx.conf', '-t', '-q'] }).reload, [
      '/usr/sbin/nginx',
      '-p',
      '/srv/n',
      '-c',
      '/srv/n/nginx.conf',
      '-s',
      'reload',
    ]);
    assert.deepEqual(nginxCommands({ type: 'nginx', conf: 'x', reload: ['nginx', '-c/etc/n.conf', '-s', 'reload'] }).test, ['nginx', '-c/etc/n.conf', '-t']);
  });

  test('parseHostPort reads host:port and [v6]:port and refuses the rest', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:443'), { host: '127.0.0.1', port: 443 });
    assert.deepEqual(parseHostPort('[::1]:8443'), { host: '::1', port: 8443 });
    assert.throws(() => parseHostPort('example.com'), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT');
    assert.throws(() => parseHostPort('a:70000'), /HOST:PORT/);
  });

  test('a lineage without a certificate cannot be installed', async () => {
    await assert.rejects(installNginx({ store, name: 'nothing.example', installer: installer() }), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT' && /anvil issue/.test(e.message));
  });

  test('a failing config test restores the file byte for byte and reloads nothing', async () => {
    await saveVersion('1001');
    const before = await readFile(conf);
    await writeFile(path.join(state, 'fail-test'), '');
    try {
      const err = await installNginx({ store, name: NAME, installer: installer() }).catch((e: unknown) => e);
      assert.ok(err instanceof InstallError, String(err));
      assert.equal(err.code, 'INSTALL');
      assert.equal(err.step, 'config test');
      assert.match(err.message, /config test failed: .*exited with code 1:\n\s+nginx: \[emerg\] unknown directive "fake": fake failure/);
      assert.match(err.message, /rolled back: .*site\.conf restored/);
      assert.deepEqual(await readFile(conf), before);
      assert.equal(await served(), '0A0A0A0A');
    } finally {
      await rm(path.join(state, 'fail-test'));
    }
  });

  test('a TLS check that cannot pass restores the file, reloads again and says what is served', async () => {
    const before = await readFile(conf);
    const err = await installNginx({ store, name: NAME, installer: installer({ verify: `127.0.0.1:${otherPort}` }), timeoutMs: 1500 }).catch((e: unknown) => e);
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.step, 'TLS check');
    assert.match(err.message, /served serial 0B0B0B0B \(DNS:impostor\.example\), not serial 1001/);
    assert.match(err.message, /restored; nginx reloaded/);
    assert.deepEqual(await readFile(conf), before);
    assert.equal(await served(), '0A0A0A0A', 'the reload after the restore serves the old certificate');
  });

  test('install points the block at live/, keeps every other byte and a backup, and checks the serial', async () => {
    const before = await readFile(conf, 'utf8');
    const steps: string[] = [];
    const r = await installNginx({ store, name: NAME, installer: installer(), onStep: (s) => steps.push(s) });
    const live = path.join(store.liveDir, NAME);
    assert.equal(await readFile(conf, 'utf8'), before.replace(path.join(dir, 'old.pem'), `${live}/fullchain.pem`).replace(path.join(dir, 'old.key'), `${live}/privkey.pem`));
    assert.equal(r.changed, true);
    assert.equal(await readFile(r.backup!, 'utf8'), before);
    assert.equal(r.serial, '1001');
    assert.equal(r.verify, `127.0.0.1:${port}`, 'the listen directive gave the address');
    assert.equal(r.installer.sni, NAME);
    assert.equal(await served(), '1001');
    assert.ok(steps.some((s) => /testing the configuration/.test(s)));
    // Again: nothing to edit, still checked.
    const again = await installNginx({ store, name: NAME, installer: installer() });
    assert.equal(again.changed, false);
    assert.equal(again.backup, null);
  });

  test('a config file reached through a link is edited where it lives; the link stays', async () => {
    const linked = path.join(dir, 'enabled.conf');
    await symlink(conf, linked);
    const r = await installNginx({ store, name: NAME, installer: installer({ conf: linked }) });
    assert.equal(r.conf, conf);
    assert.equal(await readlink(linked), conf);
  });

  test('after a renewal, verifyInstallers reloads and sees the new serial', async () => {
    await saveVersion('1002');
    assert.equal(await served(), '1001', 'nginx serves the old version until reloaded');
    const r = await verifyInstallers(store, lineageConfig([installer({ verify: `127.0.0.1:${port}`, sni: NAME })]), { expectSerial: '1002' });
    assert.deepEqual(r, [{ conf, verify: `127.0.0.1:${port}`, serial: '1002' }]);
    assert.equal(await served(), '1002');
  });

  test('a renewal whose certificate is not served rolls live/ back to the previous version and reloads', async () => {
    await saveVersion('1003');
    await writeFile(path.join(state, 'stale-reload'), '');
    let err: unknown;
    try {
      err = await verifyAfterRenewal({ store, name: NAME, installers: [installer()], identifiers: [{ type: 'dns', value: NAME }], timeoutMs: 1500 }).catch((e: unknown) => e);
    } finally {
      await rm(path.join(state, 'stale-reload'));
    }
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.step, 'TLS check');
    assert.match(err.message, /served serial 1002 .*not serial 1003/);
    assert.match(err.message, /live\/site\.example points at version 2 again \(version 3 stays in the archive\)/);
    assert.equal((await store.current(NAME))!.version, 2);
    assert.equal(await readlink(path.join(store.liveDir, NAME)), `.${NAME}.v2`);
    assert.ok((await readdir(path.join(store.archiveDir, NAME))).includes('cert3.pem'));
    assert.equal(await served(), '1002');
    // The next version gets a new number, never 3 again.
    await saveVersion('1004');
    assert.equal((await store.current(NAME))!.version, 4);
  });

  test('a config test that the new certificate fails rolls back too, past the version that failed before', async () => {
    // live: version 4 (serial 1004); version 3 was rolled back from above.
    await writeFile(path.join(state, 'bad-serial'), '1004');
    try {
      const err = await verifyInstallers(store, lineageConfig([installer()])).catch((e: unknown) => e);
      assert.ok(err instanceof InstallError && err.step === 'config test', String(err));
      assert.equal(err.rolledBack, true);
      assert.match(err.message, /rolled back: live\/site\.example points at version 2 again \(version 4 stays in the archive\)/);
      assert.equal((await store.current(NAME))!.version, 2);
    } finally {
      await rm(path.join(state, 'bad-serial'));
    }
  });

  // Review finding D: a renewal is not undone for a config test it did not break.
  test('a config test that fails with the previous version too leaves the new version live', async () => {
    await saveVersion('1005');
    await writeFile(path.join(state, 'fail-test'), '');
    const steps: string[] = [];
    let err: unknown;
    try {
      err = await verifyInstallers(store, lineageConfig([installer()]), { onStep: (x) => steps.push(x) }).catch((e: unknown) => e);
    } finally {
      await rm(path.join(state, 'fail-test'));
    }
    assert.ok(err instanceof InstallError, String(err));
    assert.equal(err.code, 'INSTALL');
    assert.equal(err.step, 'config test');
    assert.equal(err.rolledBack, false);
    assert.match(err.message, /config test failed after the renewal: .*exited with code 1:\n\s+nginx: \[emerg\] unknown directive "fake"/);
    assert.match(err.message, /not rolled back: the config test fails with version 2 too, so the new certificate is not the cause; version 5 stays live/);
    assert.ok(steps.some((x) => /testing the configuration with version 2/.test(x)));
    assert.equal((await store.current(NAME))!.version, 5);
    assert.equal(await readlink(path.join(store.liveDir, NAME)), `.${NAME}.v5`);
    assert.deepEqual((await readdir(store.liveDir)).filter((f) => f.startsWith(`.${NAME}`)), [`.${NAME}.v5`], 'no link directory left behind');
    assert.ok(!(await readdir(path.join(store.archiveDir, NAME))).includes('.rolled-back-5'), 'version 5 can still be a rollback target later');
  });

  // Review finding D: never back to a certificate that cannot serve.
  for (const [what, older] of [
    ['expired', { validity: { notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }, revoked: false }],
    ['revoked', { validity: undefined, revoked: true }],
  ] as const) {
    test(`with only ${what === 'expired' ? 'an expired' : 'a revoked'} older version, a failed check keeps the new version live, reloads nginx with it and reports`, async () => {
      const name = `${what}.example`;
      const s2 = new LineageStore(path.join(dir, `store-${what}`));
      const old = await selfSigned(name, '0e0e', older.validity);
      await s2.save(name, old.cert, old.key);
      const fresh = await selfSigned(name, '0f0f');
      await s2.save(name, fresh.cert, fresh.key);
      const live = path.join(s2.liveDir, name);
      const conf2 = path.join(dir, `${what}.conf`);
      await writeFile(conf2, CONF_TEXT(`${live}/fullchain.pem`, `${live}/privkey.pem`).replace('PORT', String(port)).replace('server_name site.example', `server_name ${NAME}`));
      // Checked where the impostor answers: the TLS check cannot pass.
      const inst: InstallerConfig = { type: 'nginx', conf: conf2, test: [process.execPath, fake, state, conf2, '-t'], reload: [process.execPath, fake, state, conf2, '-s', 'reload'], verify: `127.0.0.1:${otherPort}`, sni: NAME };
      const err = await verifyAfterRenewal({
        store: s2,
        name,
        installers: [inst],
        timeoutMs: 1000,
        ...(older.revoked ? { revokedSerials: [new X509Certificate(old.cert).serialNumber] } : {}),
      }).catch((e: unknown) => e);
      assert.ok(err instanceof InstallError, String(err));
      assert.equal(err.step, 'TLS check');
      assert.equal(err.rolledBack, false);
      const why = older.revoked ? /its certificate \(serial 0E0E\) is revoked/ : /its certificate expired on \d{4}-/;
      assert.match(err.message, /not rolled back: no version older than 2 can go live again \(version 1: /);
      assert.match(err.message, why);
      assert.match(err.message, /version 2 stays live; nginx \S+ reloaded/);
      assert.equal((await s2.current(name))!.version, 2);
      assert.ok(!(await readdir(path.join(s2.archiveDir, name))).includes('.rolled-back-2'));
      assert.equal(await served(), '0F0F', 'nginx was reloaded with the new version');
    });
  }

  test('a lineage without installers has nothing to verify', async () => {
    assert.deepEqual(await verifyInstallers(store, lineageConfig([])), []);
  });
});

describe('rollbackLive', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-rollback-'));
  });
  after(async () => rm(root, { recursive: true, force: true }));
  const DAY = 86_400_000;
  const expired = { notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) };
  /** Saves a version of `name` with a real certificate (serial `serial`), optionally expired. */
  const save = async (store: LineageStore, name: string, serial: string, validity?: typeof expired) => {
    const c = await selfSigned(name, serial, validity);
    await store.save(name, c.cert + c.cert, c.key);
    return c;
  };

  test('the only version cannot be rolled back', async () => {
    const store = new LineageStore(root);
    await save(store, 'one.example', '01');
    await assert.rejects(rollbackLive(store, 'one.example'), (e: unknown) => e instanceof AcmeClientError && e.code === 'INSTALL' && /no version older than 1 can go live again/.test(e.message));
    assert.equal((await store.current('one.example'))!.version, 1);
  });

  test('an incomplete older version (a crash mid-save) is skipped', async () => {
    const store = new LineageStore(root);
    const one = await save(store, 'two.example', '01');
    await save(store, 'two.example', '02');
    await rm(path.join(store.archiveDir, 'two.example', 'fullchain2.pem'));
    await save(store, 'two.example', '03');
    assert.deepEqual(await rollbackLive(store, 'two.example'), { from: 3, to: 1 });
    const cur = (await store.current('two.example'))!;
    assert.equal(cur.version, 1);
    assert.equal(await readFile(cur.cert, 'utf8'), `${one.cert.trim()}\n`);
    assert.equal(await readFile(cur.privkey!, 'utf8'), one.key);
    assert.deepEqual((await readdir(store.liveDir)).filter((f) => f.startsWith('.two')), ['.two.example.v1']);
  });

  test('an expired or revoked older version is passed over for an older one that can serve', async () => {
    const store = new LineageStore(root);
    await save(store, 'three.example', '01');
    await save(store, 'three.example', '02', expired);
    const revoked = await save(store, 'three.example', '03');
    await save(store, 'three.example', '04');
    const t = await rollbackTarget(store, 'three.example', { revokedSerials: [`00${new X509Certificate(revoked.cert).serialNumber.toLowerCase()}`] });
    assert.deepEqual(t.to, { version: 1, withKey: true });
    assert.equal(t.skipped.length, 2);
    assert.match(t.skipped[0]!, /^version 3: its certificate \(serial 03\) is revoked$/);
    assert.match(t.skipped[1]!, /^version 2: its certificate expired on /);
    assert.deepEqual(await rollbackLive(store, 'three.example', { revokedSerials: ['3'] }), { from: 4, to: 1 });
  });

  test('with only expired older versions, nothing is switched and the error says why', async () => {
    const store = new LineageStore(root);
    await save(store, 'four.example', '01', expired);
    await save(store, 'four.example', '02');
    await assert.rejects(rollbackLive(store, 'four.example'), (e: unknown) => e instanceof AcmeClientError && e.code === 'INSTALL' && /version 1: its certificate expired on/.test(e.message));
    assert.equal((await store.current('four.example'))!.version, 2);
    assert.ok(!(await readdir(path.join(store.archiveDir, 'four.example'))).includes('.rolled-back-2'));
  });

  test('validity is judged at the time given', async () => {
    const store = new LineageStore(root);
    await save(store, 'five.example', '01');
    await save(store, 'five.example', '02');
    assert.equal((await rollbackTarget(store, 'five.example')).to?.version, 1);
    const later = await rollbackTarget(store, 'five.example', { now: new Date(Date.now() + 2 * DAY) });
    assert.equal(later.to, null);
    assert.match(later.skipped[0]!, /^version 1: its certificate expired on /);
  });
});
