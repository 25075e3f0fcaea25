/**
 * `anvil install nginx`: points an nginx server block at a lineage's live files, checks and reloads
 * nginx, verifies over TLS, rolls back on failure (docs/install.md). On success the installer is
 * recorded in renewal/NAME.json, so every renewal tests, reloads and checks it again.
 */
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AcmeClientError } from '../client/errors.js';
import { parseHookCommand } from '../client/hooks.js';
import { installNginx, parseHostPort } from '../client/install/nginx.js';
import { checkName, defaultStoreRoot, LineageStore, type InstallerConfig } from '../client/store.js';

interface InstallNginxOpts {
  cert: string;
  conf: string;
  serverName?: string;
  verify?: string;
  sni?: string;
  nginx?: string;
  testCmd?: string;
  reloadCmd?: string;
  store?: string;
  timeout?: number;
  json?: boolean;
  quiet?: boolean;
}

function hostPort(v: string): string {
  try {
    parseHostPort(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 600) throw new InvalidArgumentError('expected a number of seconds (at most 600)');
  return n;
}

function command(flag: string, v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  try {
    return parseHookCommand(v);
  } catch (e) {
    throw new AcmeClientError('BAD_INPUT', `${flag}: ${(e as Error).message}`);
  }
}

async function installNginxCommand(o: InstallNginxOpts): Promise<void> {
  const name = checkName(o.cert);
  const root = o.store ? path.resolve(o.store) : defaultStoreRoot();
  const store = new LineageStore(root);
  const step = o.quiet || o.json || !process.stderr.isTTY ? () => undefined : (msg: string) => process.stderr.write(`  ${msg}\n`);
  const installer: InstallerConfig = {
    type: 'nginx',
    conf: path.resolve(o.conf),
    ...(o.serverName ? { serverName: o.serverName } : {}),
    ...(o.verify ? { verify: o.verify } : {}),
    ...(o.sni ? { sni: o.sni } : {}),
    ...(o.nginx ? { nginx: o.nginx } : {}),
  };
  const test = command('--test-cmd', o.testCmd);
  const reload = command('--reload-cmd', o.reloadCmd);
  if (test) installer.test = test;
  if (reload) installer.reload = reload;
  if (!(await store.readConfig(name))) {
    throw new AcmeClientError('BAD_INPUT', `there is no certificate named ${name} in ${root}; "anvil certs list --store ${root}" shows them, "anvil issue" gets one`);
  }
  const release = await store.lock(name);
  try {
    const r = await installNginx({ store, name, installer, onStep: step, ...(o.timeout ? { timeoutMs: o.timeout * 1000 } : {}) });
    // Recorded only once it works; replaces an earlier record of the same file and block.
    const cfg = (await store.readConfig(name))!;
    const same = (i: InstallerConfig) => i.type === 'nginx' && path.resolve(i.conf) === r.installer.conf && (i.serverName ?? '') === (r.installer.serverName ?? '');
    const installers = [...(cfg.installers ?? []).filter((i) => !same(i)), r.installer];
    await store.writeConfig({ ...cfg, installers, updatedAt: new Date().toISOString() });
    const files = (await store.current(name))!;
    const result = { name, status: 'installed', ...r, files };
    process.stdout.write(
      o.json
        ? `${JSON.stringify(result, null, 2)}\n`
        : `Installed ${name} in nginx: ${r.conf} (server block at line ${r.serverBlockLine})${r.changed ? '' : ', which already pointed at it'}\n` +
            `  ssl_certificate      ${files.fullchain}\n` +
            `  ssl_certificate_key  ${files.privkey}\n` +
            `  checked:             ${r.verify}${r.sni ? ` (SNI ${r.sni})` : ''} serves serial ${r.serial}\n` +
            (r.backup ? `  previous file:       ${r.backup}\n` : '') +
            `Each renewal of ${name} tests and reloads this nginx and checks the new certificate is served; if not, it goes back to the previous one.\n`,
    );
  } finally {
    await release();
  }
}

export function registerInstallCommand(program: Command): void {
  const install = program
    .command('install')
    .description('Install a certificate into a server, check it is served, and keep it installed across renewals.');
  install
    .command('nginx')
    .description(
      "Point an nginx server block at a certificate's live files, test the config, reload nginx and check over TLS that the certificate is served; on any failure the config file is restored and nginx reloaded.",
    )
    .requiredOption('--cert <name>', 'the certificate (lineage) name, as "anvil certs list" shows it')
    .requiredOption('--conf <file>', 'the nginx config file that holds the server block (a link is followed; the file it points at is edited)')
    .option('--server-name <name>', 'pick the server block by server_name (needed when the file has several TLS blocks)')
    .option('--verify <host:port>', "where to connect to check the certificate (default: the block's listen address)", hostPort)
    .option('--sni <name>', 'server name sent when checking (default: --server-name, else the block\'s first server_name)')
    .option('--nginx <bin>', 'the nginx program for the default test and reload commands')
    .option('--test-cmd <command>', 'config test command, run without a shell (default: "nginx -t", with -p/-c/-e from --reload-cmd)')
    .option('--reload-cmd <command>', 'reload command, run without a shell (default: "nginx -s reload", with -p/-c/-e from --test-cmd)')
    .addOption(new Option('--store <dir>', `where certificates live (default ${defaultStoreRoot()})`).env('ANVIL_HOME'))
    .option('--timeout <seconds>', 'how long to keep checking over TLS after the reload (default 15)', seconds)
    .option('--json', 'print the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output')
    .addHelpText(
      'after',
      `
What it changes: only the ssl_certificate and ssl_certificate_key lines of one server block (added
after its listen lines when missing); comments and every other line stay as they are. A copy of
the previous file is kept in <store>/backups/nginx.

Examples:
  anvil install nginx --cert example.com --conf /etc/nginx/sites-available/example.com
  anvil install nginx --cert example.com --conf /etc/nginx/nginx.conf --server-name www.example.com --verify 127.0.0.1:443
  anvil install nginx --cert app.internal --conf /srv/nginx/app.conf \\
      --test-cmd "/usr/sbin/nginx -p /srv/nginx -c /srv/nginx/nginx.conf -t" \\
      --reload-cmd "systemctl reload nginx"

Exit codes:
  0  installed, and nginx serves the certificate
  1  the config test, the reload or the TLS check failed; the file was restored and nginx reloaded
     (the message names the step and what nginx said)
  2  a flag is wrong, the certificate or config file cannot be used (the message says what to fix)
  7  another anvil process holds the certificate's lock`,
    )
    .action(installNginxCommand);
}
