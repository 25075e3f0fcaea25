/** The client's store: lineage versions switched atomically, modes, crash leftovers, locks, accounts. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AcmeClientError } from './errors.js';
import { AccountStore, checkName, defaultLineageName, defaultStoreRoot, LineageStore, serverDirName } from './store.js';

const CERT = (n: string) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(`cert ${n}`).toString('base64')}\n-----END CERTIFICATE-----\n`;
const chain = (n: string) => `${CERT(`leaf-${n}`)}${CERT(`intermediate-${n}`)}`;
const KEY = (n: string) => `-----BEGIN PRIVATE KEY-----\n${Buffer.from(`key ${n}`).toString('base64')}\n-----END PRIVATE KEY-----\n`;

describe('LineageStore', () => {
  let root: string;
  let store: LineageStore;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-store-'));
    store = new LineageStore(root);
  });
  after(async () => rm(root, { recursive: true, force: true }));

  test('each save is a new version and live/NAME switches to it', async () => {
    const v1 = await store.save('a.example', chain('1'), KEY('1'));
    assert.equal(v1.version, 1);
    const v2 = await store.save('a.example', chain('2'), KEY('2'));
    assert.equal(v2.version, 2);
    assert.equal(await readFile(v2.cert, 'utf8'), CERT('leaf-2'));
    assert.equal(await readFile(v2.chain, 'utf8'), CERT('intermediate-2'));
    assert.equal(await readFile(v2.fullchain, 'utf8'), CERT('leaf-2') + CERT('intermediate-2'));
    assert.equal(await readFile(v2.privkey!, 'utf8'), KEY('2'));
    // The archive keeps every version.
    assert.equal(await readFile(path.join(root, 'archive/a.example/cert1.pem'), 'utf8'), CERT('leaf-1'));
    assert.equal(await readlink(path.join(root, 'live/a.example')), '.a.example.v2');
    assert.ok((await lstat(path.join(root, 'live/a.example'))).isSymbolicLink());
    assert.deepEqual(await store.versions('a.example'), [2, 1]);
  });

  test('private keys are 0600 and the archive and live directories 0700', async () => {
    const v = await store.save('modes.example', chain('1'), KEY('1'));
    assert.equal((await stat(v.privkey!)).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(root, 'archive/modes.example/privkey1.pem'))).mode & 0o777, 0o600);
    for (const d of ['archive', 'archive/modes.example', 'live']) assert.equal((await stat(path.join(root, d))).mode & 0o777, 0o700, d);
  });

  test('files left by a crash before the switch are never live, and the next save skips their number', async () => {
    await store.save('crash.example', chain('1'), KEY('1'));
    // A run that died after writing part of version 2 (no switch happened).
    await writeFile(path.join(root, 'archive/crash.example/cert2.pem'), 'half');
    const cur = await store.current('crash.example');
    assert.equal(cur!.version, 1);
    assert.equal(await readFile(cur!.cert, 'utf8'), CERT('leaf-1'));
    const v = await store.save('crash.example', chain('3'), KEY('3'));
    assert.equal(v.version, 3);
    assert.equal(await readFile(v.cert, 'utf8'), CERT('leaf-3'));
  });

  test('a save that fails leaves the live version as it was', async () => {
    await store.save('fail.example', chain('1'), KEY('1'));
    await assert.rejects(store.save('fail.example', 'no certificate here', KEY('x')));
    assert.equal((await store.current('fail.example'))!.version, 1);
  });

  test('a lineage from a CSR has no private key file', async () => {
    const v = await store.save('csr.example', chain('1'), null);
    assert.equal(v.privkey, null);
    assert.equal(await store.currentKeyPem('csr.example'), null);
  });

  test('a lineage is locked against a second holder; a lock of a dead process is taken over', async () => {
    const release = await store.lock('lock.example');
    await assert.rejects(store.lock('lock.example'), (e: unknown) => e instanceof AcmeClientError && e.code === 'LOCKED');
    await release();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    await writeFile(path.join(root, 'locks/lock.example.lock'), dead);
    const again = await store.lock('lock.example');
    await again();
  });

  // Regression (review of the renewal engine, finding 2): in a container anvil is PID 1 again
  // after a SIGKILL, and a lock file holding "1" made every later run skip the lineage forever.
  test('a lock file holding our own pid that this process does not hold is stale, and taken over', async () => {
    const file = path.join(root, 'locks', 'own-pid.example.lock');
    await writeFile(file, String(process.pid));
    const release = await store.lock('own-pid.example');
    assert.equal(await readFile(file, 'utf8'), String(process.pid));
    assert.equal(store.lockFile('own-pid.example'), file);
    // While this process holds it, it is held, also for another LineageStore of the same root.
    await assert.rejects(new LineageStore(root).lock('own-pid.example'), (e: unknown) => e instanceof AcmeClientError && e.code === 'LOCKED' && /own-pid\.example\.lock/.test(e.message));
    await release();
    await assert.rejects(stat(file), 'released');
    const again = await new LineageStore(root).lock('own-pid.example');
    await again();
  });

  test('config round-trips and names() lists lineages', async () => {
    const now = new Date().toISOString();
    await store.writeConfig({
      version: 1,
      name: 'a.example',
      server: 'https://ca.example/directory',
      account: 'default',
      identifiers: [{ type: 'dns', value: 'a.example' }],
      keyType: 'ecdsa-p256',
      reuseKey: false,
      solver: { type: 'http', port: 80 },
      createdAt: now,
      updatedAt: now,
    });
    assert.deepEqual(await store.names(), ['a.example']);
    assert.equal((await store.readConfig('a.example'))!.server, 'https://ca.example/directory');
    assert.equal(await store.readConfig('missing'), null);
  });
});

describe('store names', () => {
  test('lineage names are single safe path segments', () => {
    for (const bad of ['../etc', '.hidden', 'a/b', '', 'a b', 'x'.repeat(200), 'a..b']) {
      assert.throws(() => checkName(bad), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT', bad);
    }
    assert.equal(checkName('www.example.com'), 'www.example.com');
  });

  test('default names: the first identifier, wildcards and IPv6 made safe', () => {
    assert.equal(defaultLineageName([{ type: 'dns', value: '*.example.com' }]), '_.example.com');
    assert.equal(defaultLineageName([{ type: 'ip', value: '2001:db8::1' }]), '2001_db8__1');
  });

  test('server directories come from the directory URL', () => {
    assert.equal(serverDirName('https://acme-v02.api.letsencrypt.org/directory'), 'acme-v02.api.letsencrypt.org_directory');
    assert.equal(serverDirName('https://127.0.0.1:14000/directory'), '127.0.0.1_14000_directory');
  });

  test('the default root: ANVIL_HOME, else /etc/anvil as root, else XDG data', () => {
    assert.equal(defaultStoreRoot({ ANVIL_HOME: '/srv/anvil' }), '/srv/anvil');
    if (process.getuid?.() === 0) assert.equal(defaultStoreRoot({}), '/etc/anvil');
    else assert.equal(defaultStoreRoot({ XDG_DATA_HOME: '/x' }), '/x/anvil');
  });
});

describe('AccountStore', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-accounts-'));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  test('keys are written 0600 in a 0700 directory, and a staged rollover key is promoted or dropped', async () => {
    const s = new AccountStore(root);
    const url = 'https://ca.example/directory';
    await s.save({ name: 'default', directoryUrl: url, url: 'https://ca.example/acct/1', alg: 'ES256', contact: [], termsOfServiceAgreed: true, createdAt: 'now' }, KEY('old'));
    const dir = s.dir(url, 'default');
    assert.equal((await stat(path.join(dir, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    await s.stageNextKey(url, 'default', KEY('new'));
    assert.equal((await stat(path.join(dir, 'key.next.pem'))).mode & 0o777, 0o600);
    await s.promoteNextKey(url, 'default');
    const loaded = await s.load(url, 'default');
    assert.equal(loaded.keyPem, KEY('new'));
    assert.equal(loaded.nextKeyPem, null);
    assert.equal((await s.list()).length, 1);
  });
});
