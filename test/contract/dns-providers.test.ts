/**
 * Every DNS provider through the shared contract (dns-provider-contract.ts), each against a real
 * or faithful backend: rfc2136 against a real BIND 9 (hmac-sha256 and hmac-sha512 keys), exec
 * against a recording script, httpreq against a node:http double of lego's httpreq protocol.
 * Then each provider's own failure modes. Issue #3.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FakeClock } from '../../src/lib/clock.js';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../../src/dns/provider.js';
import { createRfc2136Provider, rfc2136Schema } from '../../src/dns/providers/rfc2136.js';
import { createDnsProvider, listDnsProviders } from '../../src/dns/registry.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { freePort } from '../helpers/ports.js';
import { missingTools } from '../helpers/run.js';
import { acmeTxtValue, runDnsProviderContract } from './dns-provider-contract.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RECORDER = path.join(here, '..', 'fixtures', 'dns-exec-recorder.mjs');
const noBind = missingTools('named', 'nsupdate', 'dig', 'tsig-keygen');

function isProviderError(name: string, code: string, pattern?: RegExp, secrets: string[] = []) {
  return (e: unknown) => {
    assert.ok(e instanceof DnsProviderError, String(e));
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.startsWith(`${name}: `), e.message);
    if (pattern) assert.match(e.message, pattern);
    for (const s of secrets) assert.ok(!e.message.includes(s), `secret in: ${e.message}`);
    return true;
  };
}

function rec(zone: string, value = acmeTxtValue()): TxtRecord {
  const domain = `t-${randomBytes(4).toString('hex')}.${zone}`;
  return { fqdn: `_acme-challenge.${domain}`, value, domain };
}

const wrongSecret = randomBytes(32).toString('base64');

// ---------------------------------------------------------------- rfc2136 against BIND 9

const SHA512_KEY = { name: 'anvil-sha512', algorithm: 'hmac-sha512' };

runDnsProviderContract(
  'rfc2136',
  async () => {
    const bind = await startBind();
    const k = bind.tsigKeys[0]!;
    // JSON config, zone found by SOA queries.
    const provider = await createDnsProvider('rfc2136', { nameserver: bind.addr, tsigKeyName: k.name, tsigSecret: k.secret }, {});
    return {
      provider,
      zone: bind.zone,
      lookup: (fqdn) => bind.dig(fqdn, 'TXT'),
      failing: () => createDnsProvider('rfc2136', { nameserver: bind.addr, tsigKeyName: k.name, tsigSecret: wrongSecret }, {}),
      secrets: [k.secret, wrongSecret],
      cleanup: () => bind.stop(),
    };
  },
  { label: 'BIND 9, hmac-sha256, JSON config', skip: noBind },
);

runDnsProviderContract(
  'rfc2136',
  async () => {
    const bind = await startBind({ tsigKeys: [SHA512_KEY] });
    const k = bind.tsigKeys[1]!;
    const secretFile = path.join(bind.dir, 'secret.txt');
    await writeFile(secretFile, `${k.secret}\n`, { mode: 0o600 });
    // lego's env var names, the secret from a _FILE.
    const env = { RFC2136_NAMESERVER: bind.addr, RFC2136_TSIG_KEY: k.name, RFC2136_TSIG_ALGORITHM: 'hmac-sha512.', RFC2136_TSIG_SECRET_FILE: secretFile, RFC2136_TTL: '30', RFC2136_DNS_TIMEOUT: '5' };
    const provider = await createDnsProvider('rfc2136', {}, env);
    return {
      provider,
      zone: bind.zone,
      lookup: (fqdn) => bind.dig(fqdn, 'TXT'),
      failing: () => createDnsProvider('rfc2136', { tsigSecret: wrongSecret, tsigKeyName: k.name }, { ...env, RFC2136_TSIG_SECRET_FILE: '' }),
      secrets: [k.secret, wrongSecret],
      cleanup: () => bind.stop(),
    };
  },
  { label: 'BIND 9, hmac-sha512, lego env vars', skip: noBind },
);

describe('rfc2136 against BIND 9: failures and details', { skip: noBind }, () => {
  let bind: Bind;
  let key: { name: string; secret: string };
  before(async () => {
    bind = await startBind({ tsigKeys: [SHA512_KEY] });
    key = bind.tsigKeys[0]!;
  });
  after(async () => {
    await bind?.stop();
  });
  const cfg = (extra: Record<string, unknown> = {}) => ({ nameserver: bind.addr, tsigKeyName: key.name, tsigSecret: key.secret, ...extra });

  it('reports a wrong secret as BADSIG, naming the key and never the secret', async () => {
    const p = await createDnsProvider('rfc2136', cfg({ tsigSecret: wrongSecret, zone: bind.zone }), {});
    await assert.rejects(p.createTxtRecord(rec(bind.zone)), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /BADSIG.*anvil-test|anvil-test.*BADSIG/, [wrongSecret, key.secret]));
  });

  it('reports the wrong algorithm for a key as BADKEY or BADSIG', async () => {
    const p = await createDnsProvider('rfc2136', cfg({ tsigAlgorithm: 'hmac-sha512', zone: bind.zone }), {});
    await assert.rejects(p.createTxtRecord(rec(bind.zone)), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /BADKEY|BADSIG/, [key.secret]));
  });

  it('reports an unknown key name as BADKEY', async () => {
    const p = await createDnsProvider('rfc2136', cfg({ tsigKeyName: 'no-such-key', zone: bind.zone }), {});
    await assert.rejects(p.createTxtRecord(rec(bind.zone)), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /BADKEY/, [key.secret]));
  });

  it('reports a clock too far from the server as BADTIME', async () => {
    const clock = new FakeClock(Date.now() + 3_600_000);
    const p = await createRfc2136Provider(rfc2136Schema.parse(cfg({ zone: bind.zone })), { clock });
    await assert.rejects(p.createTxtRecord(rec(bind.zone)), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /BADTIME/, [key.secret]));
  });

  it('reports REFUSED when the key may not update the zone', async () => {
    // bind.ts serves the parent zone "test" without allow-update.
    const p = await createDnsProvider('rfc2136', cfg({ zone: 'test' }), {});
    await assert.rejects(p.createTxtRecord(rec('test')), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /REFUSED/, [key.secret]));
  });

  it('says so when the nameserver serves no zone for the name', async () => {
    const p = await createDnsProvider('rfc2136', cfg(), {});
    await assert.rejects(p.createTxtRecord(rec('example.org')), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /cannot find the zone/));
  });

  it('refuses a name outside the configured zone without sending anything', async () => {
    const p = await createDnsProvider('rfc2136', cfg({ zone: bind.zone }), {});
    await assert.rejects(p.createTxtRecord(rec('example.org')), isProviderError('rfc2136', 'DNS_PROVIDER_FAILED', /not in the configured zone/));
  });

  it('uses the zone the solver found, and a BIND key file (lego RFC2136_TSIG_FILE)', async () => {
    const p = await createDnsProvider('rfc2136', {}, { RFC2136_NAMESERVER: bind.addr, RFC2136_TSIG_FILE: bind.keyFile });
    const r = { ...rec(bind.zone), zone: bind.zone };
    await p.createTxtRecord(r);
    assert.deepEqual(await bind.dig(r.fqdn, 'TXT'), [r.value]);
    await p.deleteTxtRecord(r);
    assert.deepEqual(await bind.dig(r.fqdn, 'TXT'), []);
  });

  it('publishes with the configured TTL', async () => {
    const p = await createDnsProvider('rfc2136', cfg({ ttl: 42 }), {});
    const r = rec(bind.zone);
    await p.createTxtRecord(r);
    const { runTool } = await import('../helpers/run.js');
    const out = await runTool('dig', ['@127.0.0.1', '-p', String(bind.port), '+noall', '+answer', r.fqdn, 'TXT'], {}, 10_000);
    assert.match(out.stdout, /\s42\s+IN\s+TXT/);
  });

  it('falls back to TCP when the UDP answer is truncated', async () => {
    // A front that answers every UDP query with an empty truncated reply and relays TCP to BIND.
    const port = await freePort({ udp: true });
    const udp = dgram.createSocket('udp4');
    let udpQueries = 0;
    udp.on('message', (m, rinfo) => {
      udpQueries++;
      const reply = Buffer.from(m.subarray(0, 12));
      reply.writeUInt16BE(0x8000 | (m.readUInt16BE(2) & 0x7800) | 0x0200, 2); // QR, same opcode, TC
      reply.fill(0, 4, 12);
      udp.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => udp.bind(port, '127.0.0.1', r));
    const tcp = net.createServer((c) => {
      const up = net.connect(bind.port, '127.0.0.1');
      c.pipe(up).pipe(c);
      const close = () => {
        c.destroy();
        up.destroy();
      };
      c.on('error', close);
      up.on('error', close);
    });
    await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', r));
    try {
      const p = await createDnsProvider('rfc2136', cfg({ nameserver: `127.0.0.1:${port}` }), {});
      const r = rec(bind.zone);
      await p.createTxtRecord(r);
      assert.deepEqual(await bind.dig(r.fqdn, 'TXT'), [r.value]);
      assert.ok(udpQueries >= 2, 'SOA query and update both tried UDP first');
    } finally {
      udp.close();
      await new Promise((r) => tcp.close(r));
    }
  });

  it('times out cleanly when nobody answers', async () => {
    const port = await freePort({ udp: true });
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(port, '127.0.0.1', r));
    try {
      const p = await createDnsProvider('rfc2136', cfg({ nameserver: `127.0.0.1:${port}`, zone: bind.zone, timeoutMs: 400 }), {});
      const t0 = Date.now();
      await assert.rejects(p.createTxtRecord(rec(bind.zone)), isProviderError('rfc2136', 'DNS_PROVIDER_TIMEOUT', /400 ms/));
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      silent.close();
    }
  });

  it('validates its configuration, naming fields and env vars', async () => {
    await assert.rejects(createDnsProvider('rfc2136', {}, {}), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /nameserver \(RFC2136_NAMESERVER\)/));
    await assert.rejects(createDnsProvider('rfc2136', cfg({ tsigAlgorithm: 'hmac-md5' }), {}), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /tsigAlgorithm.*hmac-sha256/));
    await assert.rejects(createDnsProvider('rfc2136', cfg({ tsigSecret: 'not base64!' }), {}), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /tsigSecret/, ['not base64!']));
    await assert.rejects(createDnsProvider('rfc2136', cfg({ tsigSecret: undefined }), {}), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /tsigSecret.*required/));
    await assert.rejects(createDnsProvider('rfc2136', cfg({ ttl: -1 }), {}), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /ttl/));
    await assert.rejects(createDnsProvider('rfc2136', {}, { RFC2136_NAMESERVER: bind.addr, RFC2136_TSIG_FILE: '/nonexistent/key' }), isProviderError('rfc2136', 'DNS_PROVIDER_CONFIG', /tsigFile.*ENOENT/));
  });
});

// ---------------------------------------------------------------- exec against a recording script

interface RecorderState {
  records: Record<string, string[]>;
  calls: { argv: string[]; env: Record<string, string> }[];
}

async function recorder(): Promise<{ dir: string; hook: string; state: () => Promise<RecorderState>; script(name: string, body: string): Promise<string>; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dns-exec-'));
  const stateFile = path.join(dir, 'state.json');
  const script = async (name: string, body: string) => {
    const p = path.join(dir, name);
    await writeFile(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return p;
  };
  const hook = await script('hook', `exec "${process.execPath}" "${RECORDER}" "${stateFile}" "$@"`);
  return {
    dir,
    hook,
    script,
    state: async () => (existsSync(stateFile) ? (JSON.parse(await readFile(stateFile, 'utf8')) as RecorderState) : { records: {}, calls: [] }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

runDnsProviderContract('exec', async () => {
  const r = await recorder();
  const failingScript = await r.script('fails', 'echo "starting" >&2\necho "boom: the DNS API said no" >&2\nexit 3');
  return {
    provider: await createDnsProvider('exec', {}, { EXEC_PATH: r.hook, EXEC_TIMEOUT: '20' }),
    lookup: async (fqdn) => (await r.state()).records[`${fqdn}.`] ?? [],
    failing: () => createDnsProvider('exec', { path: failingScript }, {}),
    cleanup: r.cleanup,
  };
});

describe('exec: arguments, environment, failures', () => {
  let r: Awaited<ReturnType<typeof recorder>>;
  before(async () => {
    r = await recorder();
  });
  after(async () => {
    await r?.cleanup();
  });

  it("passes lego's arguments and ANVIL_DNS_* variables", async () => {
    const p = await createDnsProvider('exec', { path: r.hook }, {});
    const t = rec('example.com');
    await p.createTxtRecord(t);
    await p.deleteTxtRecord(t);
    const calls = (await r.state()).calls.slice(-2);
    assert.deepEqual(calls[0]!.argv, ['present', `${t.fqdn}.`, t.value]);
    assert.deepEqual(calls[1]!.argv, ['cleanup', `${t.fqdn}.`, t.value]);
    assert.deepEqual(calls[0]!.env, { ANVIL_DNS_FQDN: `${t.fqdn}.`, ANVIL_DNS_VALUE: t.value, ANVIL_DNS_DOMAIN: t.domain });
  });

  it('passes shell metacharacters verbatim: no shell anywhere', async () => {
    const p = await createDnsProvider('exec', { path: r.hook }, {});
    const pwned = path.join(r.dir, 'pwned');
    const value = `$(touch ${pwned}); \`touch ${pwned}\` | touch ${pwned} & > ${pwned} * ? ~ 'a' "b" \\ ;`;
    const t = { ...rec('example.com'), value };
    await p.createTxtRecord(t);
    const last = (await r.state()).calls.at(-1)!;
    assert.deepEqual(last.argv, ['present', `${t.fqdn}.`, value]);
    assert.equal(last.env.ANVIL_DNS_VALUE, value);
    assert.equal(existsSync(pwned), false);
  });

  it('reports a non-zero exit with the last lines of stderr', async () => {
    const s = await r.script('fails', 'i=0; while [ $i -lt 20 ]; do echo "noise $i" >&2; i=$((i+1)); done\necho "zone example.com is locked" >&2\nexit 7');
    const p = await createDnsProvider('exec', { path: s }, {});
    await assert.rejects(p.createTxtRecord(rec('example.com')), (e: unknown) => {
      isProviderError('exec', 'DNS_PROVIDER_FAILED', /exited with code 7.*zone example\.com is locked/)(e);
      assert.doesNotMatch((e as Error).message, /noise 3\b/, 'only the last lines');
      return true;
    });
  });

  it('kills a program that exceeds the timeout, with what it started', async () => {
    const pidFile = path.join(r.dir, 'sleeper.pid');
    const s = await r.script('hangs', `sleep 30 &\necho $! > "${pidFile}"\nwait`);
    const p = await createDnsProvider('exec', { path: s, timeoutMs: 500 }, {});
    const t0 = Date.now();
    await assert.rejects(p.createTxtRecord(rec('example.com')), isProviderError('exec', 'DNS_PROVIDER_TIMEOUT', /500 ms/));
    assert.ok(Date.now() - t0 < 5000);
    const pid = Number(await readFile(pidFile, 'utf8'));
    const deadline = Date.now() + 3000;
    let alive = true;
    while (alive && Date.now() < deadline) {
      try {
        process.kill(pid, 0);
        await new Promise((res) => setTimeout(res, 50));
      } catch {
        alive = false;
      }
    }
    assert.equal(alive, false, 'the grandchild was killed with the group');
  });

  it('refuses RAW mode, a missing program and a non-executable file at start-up', async () => {
    await assert.rejects(createDnsProvider('exec', {}, { EXEC_PATH: r.hook, EXEC_MODE: 'RAW' }), isProviderError('exec', 'DNS_PROVIDER_CONFIG', /mode \(EXEC_MODE\): RAW mode is not supported/));
    await assert.rejects(createDnsProvider('exec', { path: path.join(r.dir, 'nope') }, {}), isProviderError('exec', 'DNS_PROVIDER_CONFIG', /ENOENT/));
    const plain = path.join(r.dir, 'plain.txt');
    await writeFile(plain, 'x', { mode: 0o644 });
    await assert.rejects(createDnsProvider('exec', { path: plain }, {}), isProviderError('exec', 'DNS_PROVIDER_CONFIG', /not an executable/));
    await assert.rejects(createDnsProvider('exec', {}, {}), isProviderError('exec', 'DNS_PROVIDER_CONFIG', /path \(EXEC_PATH\)/));
  });

  it('reports a program that cannot be started', async () => {
    const p = await createDnsProvider('exec', { path: 'anvil-no-such-program-xyz' }, {});
    await assert.rejects(p.createTxtRecord(rec('example.com')), isProviderError('exec', 'DNS_PROVIDER_FAILED', /ENOENT/));
  });
});

// ---------------------------------------------------------------- httpreq against a protocol double

/**
 * FakeHttpReqServer: lego's httpreq protocol (POST {endpoint}/present|cleanup, JSON {fqdn, value},
 * optional basic auth), keeping TXT values in memory. Extra paths misbehave on purpose.
 */
async function startHttpReqServer(auth?: { username: string; password: string }) {
  const records = new Map<string, Set<string>>();
  const requests: { path: string; contentType: string | undefined; body: unknown }[] = [];
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '';
      if (url.startsWith('/redirect/')) {
        res.writeHead(302, { location: '/api/present' }).end();
        return;
      }
      if (url.startsWith('/huge/')) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        const block = Buffer.alloc(64 * 1024, 'x');
        let sent = 0;
        const pump = () => {
          while (sent < 10 * 1024 * 1024) {
            sent += block.length;
            if (!res.write(block)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('error', () => {});
        pump();
        return;
      }
      if (url.startsWith('/slow/')) {
        open.add(res);
        return;
      }
      if (auth) {
        const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
        if (req.headers.authorization !== expected) {
          // A careless server that echoes what it got: the provider must still not leak it.
          res.writeHead(401, { 'content-type': 'text/plain' }).end(`bad credentials: ${Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString()}`);
          return;
        }
      }
      const m = /^\/api\/(present|cleanup)$/.exec(url);
      if (req.method !== 'POST' || !m) {
        res.writeHead(404).end();
        return;
      }
      let body: { fqdn?: unknown; value?: unknown };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end('bad json');
        return;
      }
      requests.push({ path: url, contentType: req.headers['content-type'], body });
      if (req.headers['content-type'] !== 'application/json' || typeof body.fqdn !== 'string' || !body.fqdn.endsWith('.') || typeof body.value !== 'string') {
        res.writeHead(400).end('expected {"fqdn": "name.", "value": "..."}');
        return;
      }
      const set = records.get(body.fqdn) ?? new Set<string>();
      if (m[1] === 'present') set.add(body.value);
      else set.delete(body.value);
      records.set(body.fqdn, set);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    base,
    records,
    requests,
    async close() {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

runDnsProviderContract('httpreq', async () => {
  const auth = { username: 'acme', password: randomBytes(12).toString('hex') };
  const srv = await startHttpReqServer(auth);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dns-httpreq-'));
  await writeFile(path.join(dir, 'password'), `${auth.password}\n`, { mode: 0o600 });
  const wrong = 'wrong-password-123';
  return {
    provider: await createDnsProvider('httpreq', {}, { HTTPREQ_ENDPOINT: `${srv.base}/api`, HTTPREQ_USERNAME: auth.username, HTTPREQ_PASSWORD_FILE: path.join(dir, 'password') }),
    lookup: async (fqdn) => [...(srv.records.get(`${fqdn}.`) ?? [])],
    failing: () => createDnsProvider('httpreq', { endpoint: `${srv.base}/api/`, username: auth.username, password: wrong }, {}),
    secrets: [auth.password, wrong],
    cleanup: async () => {
      await srv.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('httpreq: protocol details and failures', () => {
  let srv: Awaited<ReturnType<typeof startHttpReqServer>>;
  const providers: DnsProvider[] = [];
  const make = async (config: Record<string, unknown>) => {
    const p = await createDnsProvider('httpreq', config, {});
    providers.push(p);
    return p;
  };
  before(async () => {
    srv = await startHttpReqServer();
  });
  after(async () => {
    for (const p of providers) await p.close?.();
    await srv?.close();
  });

  it("sends lego's JSON body with the trailing dot, as application/json", async () => {
    const p = await make({ endpoint: `${srv.base}/api` });
    const t = rec('example.com');
    await p.createTxtRecord(t);
    assert.deepEqual(srv.requests.at(-1), { path: '/api/present', contentType: 'application/json', body: { fqdn: `${t.fqdn}.`, value: t.value } });
  });

  it('does not follow redirects', async () => {
    const p = await make({ endpoint: `${srv.base}/redirect` });
    await assert.rejects(p.createTxtRecord(rec('example.com')), isProviderError('httpreq', 'DNS_PROVIDER_FAILED', /302.*redirects are not followed/));
  });

  it('reads only a bounded part of a huge error body', async () => {
    const p = await make({ endpoint: `${srv.base}/huge`, timeoutMs: 10_000 });
    await assert.rejects(p.createTxtRecord(rec('example.com')), (e: unknown) => {
      isProviderError('httpreq', 'DNS_PROVIDER_FAILED', /500/)(e);
      assert.ok((e as Error).message.length < 600);
      return true;
    });
  });

  it('times out on a server that never answers', async () => {
    const p = await make({ endpoint: `${srv.base}/slow`, timeoutMs: 400 });
    const t0 = Date.now();
    await assert.rejects(p.createTxtRecord(rec('example.com')), isProviderError('httpreq', 'DNS_PROVIDER_TIMEOUT', /400 ms/));
    assert.ok(Date.now() - t0 < 3000);
  });

  it('refuses plain http except to loopback, credentials in the URL, half of basic auth, and RAW mode', async () => {
    const config = (c: Record<string, unknown>) => createDnsProvider('httpreq', c, {});
    await assert.rejects(config({ endpoint: 'http://dns-api.example.com/acme' }), isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /endpoint.*https/));
    await assert.rejects(config({ endpoint: 'https://u:sekrit@dns-api.example.com/' }), isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /not in the URL/, ['sekrit']));
    await assert.rejects(config({ endpoint: 'https://dns-api.example.com/', username: 'u' }), isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /password.*both/));
    await assert.rejects(
      createDnsProvider('httpreq', {}, { HTTPREQ_ENDPOINT: 'https://dns-api.example.com/', HTTPREQ_MODE: 'RAW' }),
      isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /HTTPREQ_MODE.*RAW mode is not supported/),
    );
    for (const ok of ['https://dns-api.example.com/acme', 'http://localhost:9090', 'http://127.0.0.1:9090/x', 'http://[::1]:9090/']) {
      await (await config({ endpoint: ok })).close?.();
    }
  });
});

// ---------------------------------------------------------------- registry

describe('DNS provider registry', () => {
  it('lists rfc2136, exec and httpreq with their lego env vars', () => {
    const names = listDnsProviders().map((f) => f.name);
    for (const n of ['rfc2136', 'exec', 'httpreq']) assert.ok(names.includes(n), n);
    assert.equal(listDnsProviders().find((f) => f.name === 'exec')!.env.EXEC_PATH, 'path');
  });

  it('names the known providers when asked for an unknown one', async () => {
    await assert.rejects(createDnsProvider('cloudflare', {}, {}), isProviderError('cloudflare', 'DNS_PROVIDER_CONFIG', /unknown DNS provider; known providers: .*rfc2136.*exec.*httpreq/));
  });

  it('refuses NAME and NAME_FILE together, and reports an unreadable NAME_FILE', async () => {
    await assert.rejects(
      createDnsProvider('httpreq', {}, { HTTPREQ_ENDPOINT: 'https://x.example/', HTTPREQ_USERNAME: 'u', HTTPREQ_PASSWORD: 'p1', HTTPREQ_PASSWORD_FILE: '/tmp/p' }),
      isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /HTTPREQ_PASSWORD or HTTPREQ_PASSWORD_FILE/, ['p1']),
    );
    await assert.rejects(
      createDnsProvider('httpreq', {}, { HTTPREQ_ENDPOINT: 'https://x.example/', HTTPREQ_PASSWORD_FILE: '/nonexistent/anvil-secret' }),
      isProviderError('httpreq', 'DNS_PROVIDER_CONFIG', /HTTPREQ_PASSWORD_FILE: cannot read \/nonexistent\/anvil-secret \(ENOENT\)/),
    );
  });

  it('lets the JSON config override env values, and converts lego seconds to milliseconds', async () => {
    const p = await createDnsProvider('exec', { path: '/bin/true' }, { EXEC_PATH: '/nonexistent', EXEC_TIMEOUT: '1.5' });
    assert.equal(p.name, 'exec');
    await assert.rejects(createDnsProvider('exec', {}, { EXEC_PATH: '/bin/true', EXEC_TIMEOUT: 'soon' }), isProviderError('exec', 'DNS_PROVIDER_CONFIG', /timeoutMs \(EXEC_TIMEOUT\)/));
  });
});
