/**
 * The real `anvil dns` process (bin/anvil.js, built by `npm run build`): it starts from a config
 * file, prints where it listens, `anvil dns register` writes to its database while it runs,
 * updates through the API reach `dig`, and records survive a SIGTERM and a restart.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dig, txtValue } from '../../src/dns/server/testing.js';
import { ANVIL_BIN, exited } from '../helpers/anvil-process.js';
import { freePort } from '../helpers/ports.js';
import { missingTools, runTool } from '../helpers/run.js';

const ZONE = 'auth.example.test';

interface Running {
  proc: ChildProcess;
  stdout: string;
  stderr: () => string;
}

async function launch(configFile: string): Promise<Running> {
  const proc = spawn(process.execPath, [ANVIL_BIN, 'dns', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`anvil dns did not start within 30 s:\n${err}`));
    }, 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/acme-dns API: \S+/.test(out)) {
        clearTimeout(t);
        resolve(out);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`anvil dns exited with ${code}:\n${err}`));
    });
  });
  return { proc, stdout, stderr: () => err };
}

async function stop(r: Running): Promise<number | null> {
  r.proc.kill('SIGTERM');
  const t = setTimeout(() => r.proc.kill('SIGKILL'), 5000);
  await exited(r.proc);
  clearTimeout(t);
  return r.proc.exitCode;
}

describe('anvil dns (process)', { skip: missingTools('dig') }, () => {
  let dir: string;
  let configFile: string;
  let dnsPort: number;
  let apiPort: number;
  let running: Running | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dns-e2e-'));
    dnsPort = await freePort({ udp: true });
    apiPort = await freePort();
    configFile = path.join(dir, 'anvil-dns.json');
    await writeFile(
      configFile,
      JSON.stringify({
        dataDir: 'data',
        zone: ZONE,
        nsNames: [`ns1.${ZONE}`],
        nsAddresses: { [`ns1.${ZONE}`]: ['127.0.0.1'] },
        dnsListen: { host: '127.0.0.1', port: dnsPort },
        apiListen: { host: '127.0.0.1', port: apiPort },
        registration: { mode: 'closed' },
        log: { level: 'warn' },
      }),
    );
  });
  after(async () => {
    if (running) await stop(running);
    await rm(dir, { recursive: true, force: true });
  });

  test('serves, registers through the CLI, updates through the API, keeps records across a restart', async () => {
    running = await launch(configFile);
    assert.match(running.stdout, new RegExp(`DNS server: 127\\.0\\.0\\.1:${dnsPort} \\(UDP and TCP\\)`));
    assert.match(running.stdout, new RegExp(`acme-dns API: http://127\\.0\\.0\\.1:${apiPort}`));
    const api = `http://127.0.0.1:${apiPort}`;

    // Registration is closed over the API...
    const closed = await fetch(`${api}/register`, { method: 'POST', body: '{}' });
    assert.equal(closed.status, 403);
    // ...and open to the operator, while the server runs.
    const reg = await runTool(process.execPath, [ANVIL_BIN, 'dns', 'register', '--config', configFile, '--domain', '*.www.example.com', '--allow-from', '127.0.0.0/8'], {}, 30_000);
    assert.equal(reg.code, 0, reg.out);
    const creds = JSON.parse(reg.stdout) as { username: string; password: string; fulldomain: string; subdomain: string; allowfrom: string[] };
    assert.equal(creds.fulldomain, `${creds.subdomain}.${ZONE}`);
    assert.deepEqual(creds.allowfrom, ['127.0.0.0/8']);
    assert.ok(reg.stderr.includes(`_acme-challenge.www.example.com. CNAME ${creds.fulldomain}.`), reg.stderr);

    for (const v of ['a', 'b', 'c']) {
      const r = await fetch(`${api}/update`, {
        method: 'POST',
        headers: { 'X-Api-User': creds.username, 'X-Api-Key': creds.password, 'content-type': 'application/json' },
        body: JSON.stringify({ subdomain: creds.subdomain, txt: txtValue(v) }),
      });
      assert.equal(r.status, 200);
    }
    const values = async () => (await dig(dnsPort, creds.fulldomain, 'TXT')).answer.map((l) => /"([^"]+)"$/.exec(l)?.[1]).sort();
    assert.deepEqual(await values(), [txtValue('b'), txtValue('c')]);

    assert.equal(await stop(running), 0, running.stderr());
    assert.match(running.stderr(), /SIGTERM, shutting down/);
    running = await launch(configFile);
    assert.deepEqual(await values(), [txtValue('b'), txtValue('c')]);
    const tcp = await dig(dnsPort, creds.fulldomain, 'TXT', ['+tcp']);
    assert.equal(tcp.answer.length, 2);
    assert.equal((await dig(dnsPort, ZONE, 'SOA')).status, 'NOERROR');
  });

  test('a config error names the field and exits with 2', async () => {
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ zone: ZONE, nsNames: [], dnsListen: { port: 'x' } }));
    const r = await runTool(process.execPath, [ANVIL_BIN, 'dns', '--config', bad], {}, 30_000);
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, /nsNames/);
    assert.match(r.stderr, /dnsListen\.port/);
  });

  test('`anvil dns --help` shows an example', async () => {
    const r = await runTool(process.execPath, [ANVIL_BIN, 'dns', '--help'], {}, 30_000);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /anvil dns --config anvil-dns\.json/);
    assert.match(r.stdout, /register/);
  });
});
