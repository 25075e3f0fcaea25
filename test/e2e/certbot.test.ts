/**
 * certbot (Debian) against a running `anvil server`: http-01 standalone, dns-01 through manual
 * hooks that update a real BIND 9 with nsupdate, a wildcard, and revocation.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAnvil, REPO, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { runTool, type RunResult, missingTools } from '../helpers/run.js';

const HOOKS = path.join(REPO, 'test/e2e/hooks');

describe('certbot', { timeout: 240_000, skip: missingTools('certbot', 'named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let dir: string;
  let httpPort: number;

  before(async () => {
    bind = await startBind();
    httpPort = await freePort();
    anvil = await startAnvil({ validation: { resolvers: [bind.addr], httpPort, addressPolicy: { allowLoopback: true } } });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-certbot-'));
  });
  after(async () => {
    await anvil?.cleanup();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function certbot(args: string[]): Promise<RunResult> {
    const base = ['--config-dir', `${dir}/config`, '--work-dir', `${dir}/work`, '--logs-dir', `${dir}/logs`, '--non-interactive', '--server', anvil.directoryUrl];
    return runTool('certbot', [...args, ...base], { ...anvil.trustEnv, ...bind.env });
  }

  async function check(name: string, expected: string[]): Promise<void> {
    const chain = await readFile(`${dir}/config/live/${name}/fullchain.pem`, 'utf8');
    assert.deepEqual(await verifyChain(chain, anvil.rootPem), expected.map((n) => `DNS:${n}`).sort());
  }

  test('registers and gets a certificate with http-01 (standalone)', async () => {
    const r = await certbot(['register', '--agree-tos', '-m', 'ops@anvil.test']);
    assert.equal(r.code, 0, r.out);
    const c = await certbot(['certonly', '--standalone', '--http-01-port', String(httpPort), '--http-01-address', '127.0.0.1', '-d', 'certbot-http.anvil.test', '-d', 'www.certbot-http.anvil.test']);
    assert.equal(c.code, 0, c.out);
    await check('certbot-http.anvil.test', ['certbot-http.anvil.test', 'www.certbot-http.anvil.test']);
  });

  test('gets a certificate with dns-01 through manual hooks and RFC 2136', async () => {
    const c = await certbot(['certonly', '--manual', '--preferred-challenges', 'dns', '--manual-auth-hook', `${HOOKS}/certbot-auth.sh`, '--manual-cleanup-hook', `${HOOKS}/certbot-cleanup.sh`, '-d', 'certbot-dns.anvil.test']);
    assert.equal(c.code, 0, c.out);
    await check('certbot-dns.anvil.test', ['certbot-dns.anvil.test']);
    assert.deepEqual(await bind.dig('_acme-challenge.certbot-dns.anvil.test', 'TXT'), [], 'the cleanup hook removed the record');
  });

  test('gets a wildcard certificate with dns-01', async () => {
    const c = await certbot(['certonly', '--manual', '--preferred-challenges', 'dns', '--manual-auth-hook', `${HOOKS}/certbot-auth.sh`, '--manual-cleanup-hook', `${HOOKS}/certbot-cleanup.sh`, '-d', '*.wild.anvil.test', '-d', 'wild.anvil.test', '--cert-name', 'wild']);
    assert.equal(c.code, 0, c.out);
    await check('wild', ['*.wild.anvil.test', 'wild.anvil.test']);
  });

  test('renews (certbot 2.1 predates ARI and profiles: the directory advertising both must not break it)', async () => {
    const d = await runTool('curl', ['-sf', '--cacert', anvil.rootPem, anvil.directoryUrl]);
    assert.equal(d.code, 0, d.out);
    const dirJson = JSON.parse(d.stdout) as { renewalInfo?: string; meta?: { profiles?: Record<string, string> } };
    assert.ok(dirJson.renewalInfo, 'the directory advertises renewalInfo');
    assert.ok(dirJson.meta?.profiles?.shortlived, 'the directory advertises profiles');
    const live = `${dir}/config/live/certbot-http.anvil.test/cert.pem`;
    const before = new X509Certificate(await readFile(live)).serialNumber;
    // certbot sleeps up to 8 minutes before a non-interactive renewal unless told not to.
    const r = await certbot(['renew', '--cert-name', 'certbot-http.anvil.test', '--force-renewal', '--no-random-sleep-on-renew']);
    assert.equal(r.code, 0, r.out);
    const after = new X509Certificate(await readFile(live)).serialNumber;
    assert.notEqual(after, before, 'a new certificate is live');
    await check('certbot-http.anvil.test', ['certbot-http.anvil.test', 'www.certbot-http.anvil.test']);
  });

  test('revokes a certificate, and a second revocation is refused as already revoked', async () => {
    const cert = `${dir}/config/live/certbot-http.anvil.test/cert.pem`;
    const r = await certbot(['revoke', '--cert-path', cert, '--reason', 'superseded', '--no-delete-after-revoke']);
    assert.equal(r.code, 0, r.out);
    const again = await certbot(['revoke', '--cert-path', cert, '--no-delete-after-revoke']);
    assert.notEqual(again.code, 0);
    // certbot 2.1 (Debian 12) fails to print this problem (an AttributeError in its error path), but
    // its debug log holds the server's answer.
    const log = await readFile(`${dir}/logs/letsencrypt.log`, 'utf8');
    assert.match(`${again.out}\n${log}`, /urn:ietf:params:acme:error:alreadyRevoked/);
  });
});
