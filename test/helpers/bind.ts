/**
 * A real BIND 9 on a loopback port, authoritative for `anvil.test`: every name in the zone has an
 * A record for 127.0.0.1 (so http-01 and tls-alpn-01 reach the test's listeners), and the zone
 * accepts RFC 2136 updates signed with a TSIG key (so dns-01 hooks can publish TXT records).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);

export interface Bind {
  port: number;
  addr: string;
  zone: string;
  keyFile: string;
  dir: string;
  /** Environment for hook scripts. */
  env: Record<string, string>;
  nsupdate(lines: string[]): Promise<void>;
  dig(name: string, type: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** `zone`: the zone to serve instead of `anvil.test` (e.g. a second instance for a delegated zone). */
export async function startBind(opts: { zone?: string } = {}): Promise<Bind> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bind-'));
  const port = await freePort({ udp: true });
  const zone = opts.zone ?? 'anvil.test';
  const keyFile = path.join(dir, 'tsig.key');
  const { stdout: key } = await run('tsig-keygen', ['-a', 'hmac-sha256', 'anvil-test']);
  await writeFile(keyFile, key, { mode: 0o600 });
  await writeFile(
    path.join(dir, 'named.conf'),
    `include "${keyFile}";
options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
zone "${zone}" { type primary; file "${dir}/${zone}.zone"; allow-update { key "anvil-test"; }; };
// The parent zone, so that CAA lookups climbing the tree get answers instead of REFUSED.
zone "test" { type primary; file "${dir}/test.zone"; };
`,
  );
  await writeFile(
    path.join(dir, `${zone}.zone`),
    `$TTL 5
@ IN SOA ns.${zone}. admin.${zone}. 1 60 60 600 5
@ IN NS ns.${zone}.
@ IN A 127.0.0.1
* IN A 127.0.0.1
`,
  );
  await writeFile(path.join(dir, 'test.zone'), '$TTL 5\n@ IN SOA ns.test. admin.test. 1 60 60 600 5\n@ IN NS ns.test.\nns IN A 127.0.0.1\n');
  const args = ['-g', '-c', path.join(dir, 'named.conf')];
  if (process.getuid?.() === 0) args.push('-u', 'root');
  const proc: ChildProcess = spawn('named', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-8000);
  });
  const bind: Bind = {
    port,
    addr: `127.0.0.1:${port}`,
    zone,
    keyFile,
    dir,
    env: { ANVIL_TEST_DNS_PORT: String(port), ANVIL_TEST_TSIG_KEYFILE: keyFile },
    async nsupdate(lines) {
      await new Promise<void>((resolve, reject) => {
        const p = execFile('nsupdate', ['-k', keyFile], { timeout: 10_000 }, (err, _o, stderr) =>
          err ? reject(new Error(`nsupdate: ${stderr || err.message}`)) : resolve(),
        );
        p.stdin!.end(`server 127.0.0.1 ${port}\nzone ${zone}\n${lines.join('\n')}\nsend\n`);
      });
    },
    async dig(name, type) {
      const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=2', '+tries=1', name, type]);
      return stdout.split('\n').filter(Boolean).map((l) => l.replace(/^"|"$/g, ''));
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        try {
          process.kill(-proc.pid!, 'SIGTERM');
        } catch {
          /* already gone */
        }
        const t = setTimeout(() => {
          try {
            process.kill(-proc.pid!, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, 5000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await bind.dig(`probe.${zone}`, 'A')).includes('127.0.0.1')) return bind;
    } catch {
      /* not up yet */
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      await bind.stop();
      throw new Error(`named did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
