/**
 * Issue #3: real clients against an `anvil server` that misbehaves on purpose (config `testing`):
 * a share of valid nonces refused with badNonce and authorizations reused by chance, so orders are
 * sometimes ready at once. Names resolve through a small fake DNS server on loopback.
 *
 * certbot meets authorization reuse only: its acme library retries badNonce once and 503 never,
 * so at 15 % nonce refusal about one run in four would fail, by design of the client, not of Anvil.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { FakeDns } from '../helpers/fake-dns.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { runTool, missingTools } from '../helpers/run.js';

describe('lego against a misbehaving server', { timeout: 180_000, skip: missingTools('lego', 'openssl') }, () => {
  let dns: FakeDns;
  let anvil: StartedAnvil;
  let dir: string;
  let httpPort: number;

  before(async () => {
    dns = await new FakeDns().start();
    dns.a.set('chaos-lego.anvil.test', ['127.0.0.1']);
    httpPort = await freePort();
    anvil = await startAnvil({
      validation: { resolvers: [dns.addr], httpPort, addressPolicy: { allowLoopback: true } },
      testing: { nonceRejectPercent: 15, authzReusePercent: 50 },
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-lego-chaos-'));
  });
  after(async () => {
    await anvil?.cleanup();
    await dns?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the server says loudly that faults are on', () => {
    assert.match(anvil.stderr(), /TEST-ONLY FAULTS ARE ON/);
  });

  test('gets a certificate with http-01, twice for one name (the second order may reuse the authorization)', async () => {
    const base = ['--server', anvil.directoryUrl, '--accept-tos', '--email', 'ops@anvil.test', '--path', dir, '--domains', 'chaos-lego.anvil.test'];
    for (let i = 0; i < 2; i++) {
      const r = await runTool('lego', [...base, '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run'], anvil.trustEnv);
      assert.equal(r.code, 0, r.out);
      const chain = await readFile(path.join(dir, 'certificates', 'chaos-lego.anvil.test.crt'), 'utf8');
      assert.deepEqual(await verifyChain(chain, anvil.rootPem), ['DNS:chaos-lego.anvil.test']);
    }
    // For the record (not asserted: at 15 % a run without a refusal is possible).
    const refused = anvil.stderr().match(/"method":"POST"[^\n]*"status":400/g)?.length ?? 0;
    console.log(`lego: ${refused} nonces refused on purpose`); // eslint-disable-line no-console
  });
});

describe('certbot against a server that reuses authorizations by chance', { timeout: 180_000, skip: missingTools('certbot', 'openssl') }, () => {
  let dns: FakeDns;
  let anvil: StartedAnvil;
  let dir: string;
  let httpPort: number;

  before(async () => {
    dns = await new FakeDns().start();
    for (const n of ['chaos-certbot.anvil.test', 'www.chaos-certbot.anvil.test']) dns.a.set(n, ['127.0.0.1']);
    httpPort = await freePort();
    anvil = await startAnvil({
      validation: { resolvers: [dns.addr], httpPort, addressPolicy: { allowLoopback: true } },
      testing: { authzReusePercent: 50 },
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-certbot-chaos-'));
  });
  after(async () => {
    await anvil?.cleanup();
    await dns?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('gets a certificate with http-01 (standalone), then again for the same names', async () => {
    const base = ['--config-dir', `${dir}/config`, '--work-dir', `${dir}/work`, '--logs-dir', `${dir}/logs`, '--non-interactive', '--server', anvil.directoryUrl];
    const names = ['chaos-certbot.anvil.test', 'www.chaos-certbot.anvil.test'];
    const args = ['certonly', '--standalone', '--http-01-port', String(httpPort), '--http-01-address', '127.0.0.1', '--agree-tos', '-m', 'ops@anvil.test', ...names.flatMap((n) => ['-d', n])];
    for (const extra of [[], ['--force-renewal']]) {
      const r = await runTool('certbot', [...args, ...extra, ...base], anvil.trustEnv);
      assert.equal(r.code, 0, r.out);
      const chain = await readFile(`${dir}/config/live/${names[0]}/fullchain.pem`, 'utf8');
      assert.deepEqual(await verifyChain(chain, anvil.rootPem), names.map((n) => `DNS:${n}`).sort());
    }
  });
});
