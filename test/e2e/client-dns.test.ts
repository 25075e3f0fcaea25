/**
 * `anvil issue --dns ...` end to end against a running `anvil server`: RFC 2136 with TSIG into a
 * real BIND 9 (a wildcard and its base name at once), lego's exec and httpreq contracts, and CNAME delegation of
 * `_acme-challenge` from BIND to a running `anvil dns` through the acme-dns provider.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, exited, REPO, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { missingTools, runTool, type RunResult } from '../helpers/run.js';

const DELEGATED_ZONE = 'acme-dns.example';

/** A running `anvil dns` for DELEGATED_ZONE on loopback ports. */
async function startAnvilDns(dir: string): Promise<{ proc: ChildProcess; dnsPort: number; apiUrl: string; stop(): Promise<void> }> {
  const dnsPort = await freePort({ udp: true });
  const config = path.join(dir, 'anvil-dns.json');
  await writeFile(
    config,
    JSON.stringify({
      zone: DELEGATED_ZONE,
      nsNames: [`ns1.${DELEGATED_ZONE}`],
      nsAddresses: { [`ns1.${DELEGATED_ZONE}`]: ['127.0.0.1'] },
      dnsListen: { host: '127.0.0.1', port: dnsPort },
      apiListen: { host: '127.0.0.1', port: 0 },
      dataDir: path.join(dir, 'dns-data'),
      log: { level: 'warn' },
    }),
  );
  const proc = spawn(process.execPath, [ANVIL_BIN, 'dns', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const apiUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`anvil dns did not start:\n${err}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /acme-dns API: (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (c) => reject(new Error(`anvil dns exited with ${c}:\n${err}`)));
  });
  return {
    proc,
    dnsPort,
    apiUrl,
    async stop() {
      proc.kill('SIGTERM');
      await exited(proc);
    },
  };
}

describe('anvil issue with dns-01', { timeout: 300_000, skip: missingTools('named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let adns: Awaited<ReturnType<typeof startAnvilDns>>;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-client-dns-'));
    adns = await startAnvilDns(dir);
    bind = await startBind({ tsigKeys: [{ name: 'anvil-sha512', algorithm: 'hmac-sha512' }], forwardZones: { [DELEGATED_ZONE]: [`127.0.0.1 port ${adns.dnsPort}`] } });
    anvil = await startAnvil({ validation: { resolvers: [bind.addr], addressPolicy: { allowLoopback: true } } });
  });
  after(async () => {
    await anvil?.cleanup();
    await bind?.stop();
    await adns?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function issue(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    return runTool(
      process.execPath,
      [ANVIL_BIN, 'issue', ...args, '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', path.join(dir, 'store'), '--dns-resolver', bind.addr, '--dns-timeout', '30'],
      env,
      120_000,
    );
  }

  async function check(name: string, expected: string[]): Promise<void> {
    const chain = await readFile(path.join(dir, 'store/live', name, 'fullchain.pem'), 'utf8');
    assert.deepEqual(await verifyChain(chain, anvil.rootPem), expected.map((n) => `DNS:${n}`).sort());
  }

  test('rfc2136 with an HMAC-SHA512 TSIG key: a wildcard and its base name, records removed afterwards', async () => {
    const key = bind.tsigKeys[1]!;
    const secretFile = path.join(dir, 'tsig.secret');
    await writeFile(secretFile, key.secret, { mode: 0o600 });
    const env = { RFC2136_NAMESERVER: bind.addr, RFC2136_TSIG_KEY: key.name, RFC2136_TSIG_ALGORITHM: key.algorithm, RFC2136_TSIG_SECRET_FILE: secretFile };
    const r = await issue(['-d', 'rfc.anvil.test', '-d', '*.rfc.anvil.test', '--dns', 'rfc2136', '--dns-ns-port', String(bind.port)], env);
    assert.equal(r.code, 0, r.out);
    await check('rfc.anvil.test', ['rfc.anvil.test', '*.rfc.anvil.test']);
    assert.deepEqual(await bind.dig('_acme-challenge.rfc.anvil.test', 'TXT'), []);
    // Secrets stay out of the lineage's renewal config.
    const cfg = await readFile(path.join(dir, 'store/renewal/rfc.anvil.test.json'), 'utf8');
    assert.ok(!cfg.includes(key.secret));
    assert.equal(JSON.parse(cfg).solver.provider, 'rfc2136');
  });

  test('rfc2136 with a wrong TSIG secret: a clear error without the secret, exit 1', async () => {
    const wrong = Buffer.alloc(64, 7).toString('base64');
    const r = await issue(['-d', 'rfc-bad.anvil.test', '--dns', 'rfc2136', '--dns-ns-port', String(bind.port)], {
      RFC2136_NAMESERVER: bind.addr,
      RFC2136_TSIG_KEY: 'anvil-test',
      RFC2136_TSIG_SECRET: wrong,
    });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.stderr, /^anvil: rfc2136: .*(BADSIG|signature)/m);
    assert.ok(!r.out.includes(wrong));
  });

  test("exec, with lego's exec contract (the same script lego uses in these tests)", async () => {
    const r = await issue(['-d', 'exec.anvil.test', '--dns', 'exec', '--dns-ns-port', String(bind.port)], {
      EXEC_PATH: path.join(REPO, 'test/e2e/hooks/lego-exec.sh'),
      ...bind.env,
    });
    assert.equal(r.code, 0, r.out);
    await check('exec.anvil.test', ['exec.anvil.test']);
  });

  test("httpreq, with lego's JSON contract and basic auth, served by an endpoint that updates BIND", async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.headers.authorization !== `Basic ${Buffer.from('acme:s3cret').toString('base64')}`) return void res.writeHead(401).end();
        const { fqdn, value } = JSON.parse(body) as { fqdn: string; value: string };
        seen.push(`${req.url} ${fqdn}`);
        const op = req.url === '/dns/present' ? 'add' : 'delete';
        bind.nsupdate([`update ${op} ${fqdn} 5 TXT "${value}"`]).then(
          () => res.writeHead(200).end(),
          () => res.writeHead(500).end(),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await issue(['-d', 'httpreq.anvil.test', '--dns', 'httpreq', '--dns-ns-port', String(bind.port)], {
        HTTPREQ_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dns`,
        HTTPREQ_USERNAME: 'acme',
        HTTPREQ_PASSWORD: 's3cret',
      });
      assert.equal(r.code, 0, r.out);
      await check('httpreq.anvil.test', ['httpreq.anvil.test']);
      assert.deepEqual(seen, ['/dns/present _acme-challenge.httpreq.anvil.test.', '/dns/cleanup _acme-challenge.httpreq.anvil.test.']);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('acme-dns through anvil dns: the first run names the CNAME to create, the second follows it and succeeds', async () => {
    const storage = path.join(dir, 'acme-dns.json');
    const env = { ACME_DNS_API_BASE: adns.apiUrl, ACME_DNS_STORAGE_PATH: storage };
    const args = ['-d', 'deleg.anvil.test', '-d', '*.deleg.anvil.test', '--dns', 'acme-dns', '--dns-authoritative', `${DELEGATED_ZONE}=127.0.0.1:${adns.dnsPort}`];
    const first = await issue(args, env);
    assert.equal(first.code, 2, first.out);
    const m = /_acme-challenge\.deleg\.anvil\.test\.? CNAME ([0-9a-f-]+\.acme-dns\.example)/.exec(first.stderr);
    assert.ok(m, first.stderr);
    assert.equal((await stat(storage)).mode & 0o777, 0o600);
    await bind.nsupdate([`update add _acme-challenge.deleg.anvil.test. 5 CNAME ${m[1]}.`]);
    const second = await issue(args, env);
    assert.equal(second.code, 0, second.out);
    await check('deleg.anvil.test', ['deleg.anvil.test', '*.deleg.anvil.test']);
  });
});
