/**
 * lego (Debian) against a running `anvil server`: http-01, tls-alpn-01, dns-01 through lego's exec
 * provider updating a real BIND 9, CAA records served by BIND, and revocation.
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

describe('lego', { timeout: 240_000, skip: missingTools('lego', 'named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let dir: string;
  let httpPort: number;
  let tlsPort: number;

  before(async () => {
    bind = await startBind();
    httpPort = await freePort();
    tlsPort = await freePort();
    anvil = await startAnvil({
      acme: { caaIdentities: ['anvil.test'] },
      validation: { resolvers: [bind.addr], httpPort, tlsPort, addressPolicy: { allowLoopback: true }, caa: { enabled: true } },
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-lego-'));
  });
  after(async () => {
    await anvil?.cleanup();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function lego(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    const base = ['--server', anvil.directoryUrl, '--accept-tos', '--email', 'ops@anvil.test', '--path', dir];
    return runTool('lego', [...base, ...args], { ...anvil.trustEnv, ...env });
  }

  async function check(name: string, expected: string[]): Promise<void> {
    const chain = await readFile(path.join(dir, 'certificates', `${name}.crt`), 'utf8');
    assert.deepEqual(await verifyChain(chain, anvil.rootPem), expected.map((n) => `DNS:${n}`).sort());
  }

  test('gets a certificate with http-01', async () => {
    const r = await lego(['--domains', 'lego-http.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run']);
    assert.equal(r.code, 0, r.out);
    await check('lego-http.anvil.test', ['lego-http.anvil.test']);
  });

  test('gets a certificate with tls-alpn-01', async () => {
    const r = await lego(['--domains', 'lego-tls.anvil.test', '--tls', '--tls.port', `127.0.0.1:${tlsPort}`, 'run']);
    assert.equal(r.code, 0, r.out);
    await check('lego-tls.anvil.test', ['lego-tls.anvil.test']);
  });

  test('gets a certificate with dns-01 through the exec provider', async () => {
    const r = await lego(
      ['--domains', 'lego-dns.anvil.test', '--domains', '*.lego-dns.anvil.test', '--dns', 'exec', '--dns.resolvers', bind.addr, '--dns.disable-cp', 'run'],
      { EXEC_PATH: path.join(REPO, 'test/e2e/hooks/lego-exec.sh'), EXEC_POLLING_INTERVAL: '1', EXEC_PROPAGATION_TIMEOUT: '30', ...bind.env },
    );
    assert.equal(r.code, 0, r.out);
    await check('lego-dns.anvil.test', ['lego-dns.anvil.test', '*.lego-dns.anvil.test']);
  });

  test('CAA records in BIND are honoured: another CA named refuses, this CA named permits', async () => {
    // A node with a CAA record no longer matches the zone's wildcard: it gets its own A record.
    await bind.nsupdate([
      'update add caa-no.anvil.test. 5 CAA 0 issue "other-ca.example"',
      'update add caa-no.anvil.test. 5 A 127.0.0.1',
      'update add caa-yes.anvil.test. 5 CAA 0 issue "anvil.test"',
      'update add caa-yes.anvil.test. 5 A 127.0.0.1',
    ]);
    const no = await lego(['--domains', 'caa-no.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run']);
    assert.notEqual(no.code, 0);
    assert.match(no.out, /urn:ietf:params:acme:error:caa/);
    const yes = await lego(['--domains', 'caa-yes.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run']);
    assert.equal(yes.code, 0, yes.out);
    await check('caa-yes.anvil.test', ['caa-yes.anvil.test']);
  });

  test('renews (lego 4.9 predates ARI and profiles: the directory advertising both must not break it)', async () => {
    const file = path.join(dir, 'certificates', 'lego-http.anvil.test.crt');
    const before = new X509Certificate(await readFile(file)).serialNumber;
    const r = await lego(['--domains', 'lego-http.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'renew', '--days', '3650', '--no-random-sleep']);
    assert.equal(r.code, 0, r.out);
    assert.notEqual(new X509Certificate(await readFile(file)).serialNumber, before, 'a new certificate was written');
    await check('lego-http.anvil.test', ['lego-http.anvil.test']);
  });

  test('revokes a certificate', async () => {
    const r = await lego(['--domains', 'lego-http.anvil.test', 'revoke']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /revoked/i);
    const again = await lego(['--domains', 'lego-tls.anvil.test', 'revoke', '--keep']);
    assert.equal(again.code, 0, again.out);
  });
});
