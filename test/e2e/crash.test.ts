/**
 * Crash safety (issue #2): kill -9 the server while clients are finalizing, restart it, and show
 * that every certificate a client received is in the database, byte for byte, that no serial
 * repeats, and that work interrupted by the kill is finished after the restart.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { X509Certificate } from '../../src/lib/x509.js';
import { startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { makeCsr, waitFor } from '../helpers/flow.js';
import { RawAcme } from '../helpers/raw-acme.js';

let challengeServer: http.Server;
const keyAuths = new Map<string, string>();

before(async () => {
  // http-01 responder for every token the clients hold (the server validates 127.0.0.1 for real).
  challengeServer = http.createServer((req, res) => {
    const token = (req.url ?? '').split('/').pop() ?? '';
    const ka = keyAuths.get(token);
    res.writeHead(ka ? 200 : 404).end(ka ?? '');
  });
  await new Promise<void>((r) => challengeServer.listen(0, '127.0.0.1', r));
});

after(async () => {
  challengeServer.closeAllConnections();
  challengeServer.close();
});

test('kill -9 during finalizes loses no certificate and repeats no serial', { timeout: 120_000 }, async () => {
  const port = (challengeServer.address() as { port: number }).port;
  const anvil: StartedAnvil = await startAnvil({
    tls: { enabled: false },
    log: { level: 'warn' },
    validation: { httpPort: port, addressPolicy: { allowLoopback: true } },
  });
  let directoryUrl = anvil.directoryUrl;
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
  await anvil.kill9();
  await Promise.allSettled(running);
  assert.ok(received.length >= 6, `clients received ${received.length} certificates before the kill`);

  // Restart on the same data: recovery finishes interrupted finalizes.
  await anvil.restart();
  directoryUrl = anvil.directoryUrl;
  const health = await fetch(directoryUrl.replace('/directory', '/health'));
  assert.equal(health.status, 200);
  await anvil.stop();

  const db = new Database(anvil.dbPath, { readonly: true });
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
    await anvil.cleanup();
  }
});
