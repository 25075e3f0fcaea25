/**
 * SECURITY.md, client row "crash or kill at any point": `anvil issue --force` is killed with SIGKILL
 * in the middle of an issuance (the CA is busy validating, the lineage lock is held), and the
 * previous certificate stays installed and usable; the next run takes over the dead lock and makes
 * a new version.
 *
 * The kill lands deterministically: the CA's http-01 validator is pointed at a TCP server of this
 * test that accepts connections and never answers, so the client sits polling while the CA hangs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, exited, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { freePort } from '../helpers/ports.js';
import { runTool, type RunResult } from '../helpers/run.js';

const NAME = '127.0.0.1';

interface Live {
  cert: string;
  fullchain: string;
  privkey: string;
}

async function readLive(store: string): Promise<Live> {
  const dir = path.join(store, 'live', NAME);
  return {
    cert: await readFile(path.join(dir, 'cert.pem'), 'utf8'),
    fullchain: await readFile(path.join(dir, 'fullchain.pem'), 'utf8'),
    privkey: await readFile(path.join(dir, 'privkey.pem'), 'utf8'),
  };
}

/** The key is the certificate's key, and the full chain starts with the certificate. */
function assertUsable(l: Live): void {
  const cert = new X509Certificate(l.cert);
  const certSpki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const keySpki = createPublicKey(l.privkey).export({ type: 'spki', format: 'der' });
  assert.ok(certSpki.equals(keySpki), 'privkey.pem is the key of cert.pem');
  assert.ok(new X509Certificate(l.fullchain).raw.equals(cert.raw), 'fullchain.pem starts with cert.pem');
  assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  assert.ok(Date.now() < new Date(cert.validTo).getTime());
}

describe('crash or kill at any point: the previous certificate stays installed and usable; the next run resumes or restarts cleanly', { timeout: 180_000 }, () => {
  let anvil: StartedAnvil | undefined;
  let hang: net.Server;
  const hangSockets = new Set<net.Socket>();
  const children = new Set<ChildProcess>();
  let dir: string;
  let store: string;
  let tlsPort: number;

  before(async () => {
    hang = net.createServer((s) => {
      hangSockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => hangSockets.delete(s));
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    tlsPort = await freePort();
    anvil = await startAnvil({
      acme: { authzReuseDays: 0 },
      validation: { httpPort: (hang.address() as net.AddressInfo).port, tlsPort, totalTimeoutMs: 20_000, addressPolicy: { allowLoopback: true } },
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-client-crash-'));
    store = path.join(dir, 'store');
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all([...children].map((c) => exited(c)));
    for (const s of hangSockets) s.destroy();
    await new Promise((r) => hang.close(r));
    await anvil?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const common = () => ['--server', anvil!.directoryUrl, '--ca-bundle', anvil!.rootPem, '--store', store];
  const tlsArgs = () => ['--tls-alpn', '--tls-port', String(tlsPort), '--tls-address', '127.0.0.1'];
  const cli = (args: string[]): Promise<RunResult> => runTool(process.execPath, [ANVIL_BIN, ...args, ...common()], {}, 90_000);

  test('SIGKILL during `anvil issue --force` (CA validating): live files stay the previous version; the next run takes the dead lock and makes a new version', async () => {
    // Version 1, validated over tls-alpn-01.
    const first = await cli(['issue', '-d', NAME, ...tlsArgs(), '--agree-tos', '--json']);
    assert.equal(first.code, 0, first.out);
    assert.equal(JSON.parse(first.stdout).version, 1);
    const v1 = await readLive(store);
    assertUsable(v1);

    // The forced re-issue over http-01: the CA connects to the silent server and waits.
    const httpPort = await freePort();
    const connected = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the CA did not connect to the silent http-01 target within 60 s')), 60_000);
      hang.once('connection', () => {
        clearTimeout(t);
        resolve();
      });
    });
    let out = '';
    const child = spawn(process.execPath, [ANVIL_BIN, 'issue', '-d', NAME, '--force', '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1', ...common()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const early = exited(child).then(() => {
      throw new Error(`anvil issue exited (${child.exitCode}) before the CA connected:\n${out}`);
    });
    await Promise.race([connected, early]);
    early.catch(() => undefined);

    // The run is mid-flow: its lock is held, and it holds this pid.
    const lockFile = path.join(store, 'locks', `${NAME}.lock`);
    assert.equal(Number(await readFile(lockFile, 'utf8')), child.pid, 'the killed run held the lineage lock');
    child.kill('SIGKILL');
    await exited(child);
    assert.equal(child.signalCode, 'SIGKILL');

    // (a) The previous version is still live, byte for byte, and usable.
    assert.equal(await readlink(path.join(store, 'live', NAME)), `.${NAME}.v1`);
    const afterKill = await readLive(store);
    assert.deepEqual(afterKill, v1);
    assertUsable(afterKill);
    // The dead process's lock file is still there for the next run to deal with.
    await stat(lockFile);

    // (b) The next forced run succeeds despite the lock and makes a new version (tls-alpn-01:
    // http-01 validation still goes to the silent server).
    const next = await cli(['issue', '-d', NAME, '--force', ...tlsArgs(), '--json']);
    assert.equal(next.code, 0, next.out);
    assert.equal(JSON.parse(next.stdout).version, 2);
    assert.equal(await readlink(path.join(store, 'live', NAME)), `.${NAME}.v2`);
    const v2 = await readLive(store);
    assertUsable(v2);
    assert.notEqual(v2.cert, v1.cert);
    assert.notEqual(v2.privkey, v1.privkey, 'a new key (no --reuse-key)');
    await assert.rejects(stat(lockFile), 'the lock was released');
    // The archive keeps version 1 intact.
    assert.equal(await readFile(path.join(store, 'archive', NAME, 'cert1.pem'), 'utf8'), v1.cert);
  });
});
