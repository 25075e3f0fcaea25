/**
 * Crash safety (issue #2): kill -9 the server while clients are finalizing, restart it, and show
 * that every certificate a client received is in the database, byte for byte, that no serial
 * repeats, and that work interrupted by the kill is finished after the restart.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { X509Certificate } from '../../src/lib/x509.js';
import { makeCsr, waitFor } from '../helpers/flow.js';
import { RawAcme } from '../helpers/raw-acme.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let dataDir: string;
let challengeServer: http.Server;
const keyAuths = new Map<string, string>();

async function startAnvil(configFile: string): Promise<{ proc: ChildProcess; directoryUrl: string }> {
  const proc = spawn(process.execPath, [path.join(repo, 'bin/anvil.js'), 'server', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 20_000) err = err.slice(-10_000);
  });
  const directoryUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`anvil did not start within 30 s:\n${err}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ACME directory: (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`anvil exited with ${code}:\n${err}`));
    });
  });
  return { proc, directoryUrl };
}

async function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise((r) => p.once('exit', r));
}

before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-crash-'));
  // http-01 responder for every token the clients hold (the server validates 127.0.0.1 for real).
  challengeServer = http.createServer((req, res) => {
    const token = (req.url ?? '').split('/').pop() ?? '';
    const ka = keyAuths.get(token);
    res.writeHead(ka ? 200 : 404).end(ka ?? '');
  });
  await new Promise<void>((r) => challengeServer.listen(0, '127.0.0.1', r));
});

after(async () => {
  challengeServer.close();
  await rm(dataDir, { recursive: true, force: true });
});

test('kill -9 during finalizes loses no certificate and repeats no serial', { timeout: 120_000 }, async () => {
  const port = (challengeServer.address() as { port: number }).port;
  const configFile = path.join(dataDir, 'anvil.json');
  await writeFile(
    configFile,
    JSON.stringify({
      dataDir: path.join(dataDir, 'data'),
      listen: { host: '127.0.0.1', port: 0 },
      tls: { enabled: false },
      log: { level: 'warn' },
      validation: { httpPort: port, addressPolicy: { allowLoopback: true } },
    }),
  );

  let { proc, directoryUrl } = await startAnvil(configFile);
  const received: string[] = [];
  let killed = false;
  const clients = 4;
  const deadline = Date.now() + 60_000;

  async function client(): Promise<void> {
    const acme = await new RawAcme(directoryUrl).init();
    await acme.register();
    while (!killed && Date.now() < deadline) {
      try {
        const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'ip', value: '127.0.0.1' }] } });
        if (r.status !== 201) throw new Error(`newOrder ${r.status} ${r.text}`);
        for (const az of r.body.authorizations as string[]) {
          const a = await acme.post(az, { payload: null });
          if (a.body.status === 'valid') continue;
          const ch = a.body.challenges.find((c: any) => c.type === 'http-01');
          keyAuths.set(ch.token, `${ch.token}.${acme.thumbprint()}`);
          await acme.post(ch.url, { payload: {} });
          await waitFor(acme, az, (b) => b.status !== 'pending');
        }
        const orderUrl = r.headers.get('location')!;
        const order = await waitFor(acme, orderUrl, (b) => b.status !== 'pending');
        const csr = await makeCsr(['127.0.0.1']);
        await acme.post(order.finalize, { payload: { csr: csr.der.toString('base64url') } });
        const done = await waitFor(acme, orderUrl, (b) => b.status === 'valid' || b.status === 'invalid');
        const c = await acme.post(done.certificate, { payload: null });
        if (c.status === 200) received.push(c.text);
      } catch (e) {
        if (killed) return; // connection refused after the kill: expected
        throw e;
      }
    }
  }

  const running = Array.from({ length: clients }, () => client());
  // Kill once a few certificates went out, while the clients are in the middle of more.
  while (received.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  killed = true;
  proc.kill('SIGKILL');
  await Promise.allSettled(running);
  await exited(proc);
  assert.ok(received.length >= 6, `clients received ${received.length} certificates before the kill`);

  // Restart on the same data: recovery finishes interrupted finalizes.
  ({ proc, directoryUrl } = await startAnvil(configFile));
  const health = await fetch(directoryUrl.replace('/directory', '/health'));
  assert.equal(health.status, 200);
  proc.kill('SIGTERM');
  await exited(proc);

  const db = new Database(path.join(dataDir, 'data', 'anvil.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT serial, status, der FROM certificates').all() as Array<{ serial: string; status: string; der: Buffer | null }>;
    const serials = rows.map((r) => r.serial);
    assert.equal(new Set(serials).size, serials.length, 'no serial repeats');
    assert.equal(rows.filter((r) => r.status !== 'issued').length, 0, 'no certificate left half-done after restart');
    const bySerial = new Map(rows.map((r) => [r.serial, r]));
    for (const pem of received) {
      const leaf = new X509Certificate(pem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----');
      const serial = leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
      const row = bySerial.get(serial);
      assert.ok(row, `certificate ${serial} that a client received is in the database`);
      assert.ok(row.der && Buffer.from(leaf.rawData).equals(row.der), `stored bytes of ${serial} are the ones the client got`);
    }
    const stuck = db.prepare("SELECT COUNT(*) AS n FROM orders WHERE status = 'processing'").get() as { n: number };
    assert.equal(stuck.n, 0, 'no order stuck in processing after restart');
  } finally {
    db.close();
  }
});
