/**
 * A real nginx (Debian's) for end-to-end tests: its own prefix, config, pid and logs in a temp
 * directory, listening on a loopback port, stopped (quit, then killed with its workers) by stop().
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
export const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/** Polls `fn` every 200 ms until it returns a value (not undefined), or fails after `ms`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** The serial of the leaf served at 127.0.0.1:port for SNI `sni`, or an error after 5 s. */
export function servedSerial(port: number, sni: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: sni, rejectUnauthorized: false });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no TLS handshake on ${port} within 5 s`));
    }, 5000);
    s.once('secureConnect', () => {
      clearTimeout(t);
      resolve(s.getPeerX509Certificate()!.serialNumber);
      s.destroy();
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

export interface Nginx {
  /** The TLS port of the site. */
  port: number;
  /** The prefix directory (logs/, tmp/, nginx.pid). */
  prefix: string;
  mainConf: string;
  /** The file holding the site's server block (what `anvil install nginx --conf` edits). */
  siteConf: string;
  /** -p, -c and -e flags that address this instance. */
  flags: string[];
  /** "nginx <flags> <extra>" as one quoted string, for --test-cmd/--reload-cmd. */
  command(extra: string[]): string;
  pid(): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * Starts nginx under `prefix` serving one TLS site (`serverName` on 127.0.0.1:<free port>) with a
 * throw-away self-signed certificate; `siteLines` may add directives to the server block.
 */
export async function startNginx(prefix: string, serverName: string, siteLines: string[] = []): Promise<Nginx> {
  await mkdir(path.join(prefix, 'logs'), { recursive: true });
  await mkdir(path.join(prefix, 'tmp'), { recursive: true });
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=before.anvil.test', '-keyout', path.join(prefix, 'before.key'), '-out', path.join(prefix, 'before.pem')]);
  const port = await freePort();
  const mainConf = path.join(prefix, 'nginx.conf');
  const siteConf = path.join(prefix, 'site.conf');
  const tmp = (n: string) => `${n}_temp_path ${path.join(prefix, 'tmp', n)};`;
  await writeFile(
    mainConf,
    [
      // As root the workers would switch to nobody; the keys are 0600 root's (nginx reads them as
      // the master, but keep workers able to read everything here too).
      process.getuid?.() === 0 ? 'user root;' : '',
      'daemon on;',
      'worker_processes 1;',
      `pid ${path.join(prefix, 'nginx.pid')};`,
      `error_log ${path.join(prefix, 'logs', 'error.log')} info;`,
      'events { worker_connections 64; }',
      'http {',
      `  access_log ${path.join(prefix, 'logs', 'access.log')};`,
      `  ${tmp('client_body')} ${tmp('proxy')} ${tmp('fastcgi')} ${tmp('uwsgi')} ${tmp('scgi')}`,
      `  include ${siteConf};`,
      '}',
      '',
    ].join('\n'),
  );
  await writeFile(
    siteConf,
    [
      '# The site anvil installs into: comments and layout must survive.',
      'server {',
      `    listen 127.0.0.1:${port} ssl;`,
      `    server_name ${serverName};`,
      '',
      `    ssl_certificate     ${path.join(prefix, 'before.pem')};   # replaced by anvil`,
      `    ssl_certificate_key ${path.join(prefix, 'before.key')};`,
      ...siteLines.map((l) => `    ${l}`),
      '    location / { return 200 "hello\\n"; }',
      '}',
      '',
    ].join('\n'),
  );
  const flags = ['-p', prefix, '-c', mainConf, '-e', path.join(prefix, 'logs', 'error.log')];
  await run(NGINX, flags, { timeout: 30_000 });
  await waitFor('nginx to answer TLS', () => servedSerial(port, serverName));
  const pid = async () => Number((await readFile(path.join(prefix, 'nginx.pid'), 'utf8').catch(() => '')).trim()) || null;
  return {
    port,
    prefix,
    mainConf,
    siteConf,
    flags,
    command: (extra) => [NGINX, ...flags, ...extra].map((s) => `'${s}'`).join(' '),
    pid,
    async stop() {
      const p = await pid();
      if (!p) return;
      await run(NGINX, [...flags, '-s', 'quit'], { timeout: 10_000 }).catch(() => undefined);
      const gone = await waitFor(
        'nginx to quit',
        async () => {
          try {
            process.kill(p, 0);
            return undefined;
          } catch {
            return true;
          }
        },
        5000,
      ).catch(() => false);
      if (!gone) {
        // daemon mode made nginx a session (and group) leader: its workers go with it.
        try {
          process.kill(-p, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    },
  };
}
