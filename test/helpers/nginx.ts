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

/**
 * The serial nginx serves once a reload has settled. A graceful reload lets old worker processes
 * finish, and until they are gone a new connection may still reach one and get the previous
 * certificate; so this asks until three handshakes in a row agree (within `timeoutMs`).
 */
export async function settledServedSerial(port: number, sni: string, timeoutMs = 10_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  let last = await servedSerial(port, sni);
  for (let same = 1; same < 3 && Date.now() < end; ) {
    await new Promise((r) => setTimeout(r, 50));
    const s = await servedSerial(port, sni);
    same = s === last ? same + 1 : 1;
    last = s;
  }
  return last;
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

/** The main nginx.conf of a test instance: everything under `prefix`, `include siteConf` in http. */
async function writeMainConf(prefix: string, siteConf: string): Promise<string> {
  await mkdir(path.join(prefix, 'logs'), { recursive: true });
  await mkdir(path.join(prefix, 'tmp'), { recursive: true });
  const mainConf = path.join(prefix, 'nginx.conf');
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
      'events { worker_connections 256; }',
      'http {',
      `  access_log ${path.join(prefix, 'logs', 'access.log')};`,
      `  ${tmp('client_body')} ${tmp('proxy')} ${tmp('fastcgi')} ${tmp('uwsgi')} ${tmp('scgi')}`,
      `  include ${siteConf};`,
      '}',
      '',
    ].join('\n'),
  );
  return mainConf;
}

/**
 * Starts nginx under `prefix` serving one TLS site (`serverName` on 127.0.0.1:<free port>) with a
 * throw-away self-signed certificate; `siteLines` may add directives to the server block.
 */
export async function startNginx(prefix: string, serverName: string, siteLines: string[] = []): Promise<Nginx> {
  await mkdir(prefix, { recursive: true });
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=before.anvil.test', '-keyout', path.join(prefix, 'before.key'), '-out', path.join(prefix, 'before.pem')]);
  const port = await freePort();
  const siteConf = path.join(prefix, 'site.conf');
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
  return launchNginx(prefix, port, siteConf, () => servedSerial(port, serverName));
}

/**
 * Starts nginx under `prefix` as a TLS load balancer on 127.0.0.1:<listenPort or a free port>: round-robin over
 * `upstreams` (host:port, plain HTTP), with a self-signed certificate for 127.0.0.1 and localhost
 * whose PEM is returned as `certPem` (clients must trust it).
 */
export async function startNginxBalancer(prefix: string, upstreams: string[], listenPort?: number): Promise<Nginx & { certPem: string }> {
  await mkdir(prefix, { recursive: true });
  const cert = path.join(prefix, 'front.pem');
  const key = path.join(prefix, 'front.key');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=anvil test balancer',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'basicConstraints=critical,CA:TRUE', '-keyout', key, '-out', cert,
  ]);
  const port = listenPort ?? (await freePort());
  const siteConf = path.join(prefix, 'site.conf');
  await writeFile(
    siteConf,
    [
      'upstream anvil_replicas {',
      ...upstreams.map((u) => `    server ${u} max_fails=0;`),
      '    keepalive 16;',
      '}',
      'server {',
      `    listen 127.0.0.1:${port} ssl;`,
      `    ssl_certificate     ${cert};`,
      `    ssl_certificate_key ${key};`,
      '    location / {',
      '        proxy_pass http://anvil_replicas;',
      '        proxy_http_version 1.1;',
      '        proxy_set_header Connection "";',
      '        proxy_set_header Host $http_host;',
      '        proxy_set_header X-Forwarded-For $remote_addr;',
      '        proxy_next_upstream off;',
      '    }',
      '}',
      '',
    ].join('\n'),
  );
  const n = await launchNginx(prefix, port, siteConf, async () => {
    const r = await run('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${port}/directory`]);
    return r.stdout === '200' ? true : undefined;
  });
  return Object.assign(n, { certPem: await readFile(cert, 'utf8') });
}

async function launchNginx(prefix: string, port: number, siteConf: string, ready: () => Promise<unknown>): Promise<Nginx> {
  const mainConf = await writeMainConf(prefix, siteConf);
  const flags = ['-p', prefix, '-c', mainConf, '-e', path.join(prefix, 'logs', 'error.log')];
  await run(NGINX, flags, { timeout: 30_000 });
  await waitFor('nginx to answer', ready);
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
