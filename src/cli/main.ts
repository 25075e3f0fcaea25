/**
 * `anvil`: the command-line program. Each subcommand validates its input and prints errors that say
 * what to fix; exit code 2 for usage/config errors, 1 for failures.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { ServerConfig } from '../server/config.js';
import { clientErrorExit, registerClientCommands } from './client-commands.js';
import { registerBenchCommand } from './bench-command.js';
import { registerDnsCommand } from './dns-command.js';
import { registerInstallCommand } from './install-command.js';
import { inventoryErrorExit, registerInventoryCommands } from './inventory-command.js';
import { manageErrorExit, registerManageCommands } from './manage-command.js';
import { registerRenewCommand } from './renew-command.js';

// Heavy modules (the server, its database driver, X.509) load only for the commands that use
// them: every command starts faster, the client's most of all.
const server = () => import('../server/main.js');
const caModule = () => import('../server/issuance/ca.js');
async function openStoreOf(config: ServerConfig) {
  const [{ openStore }, { storeConfigOf }] = await Promise.all([import('../storage/index.js'), server()]);
  return openStore(storeConfigOf(config));
}

const program = new Command();
program
  .name('anvil')
  .description('Anvil: a private ACME certificate authority, an ACME client, and a certificate inventory.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  // Usage errors (unknown option, missing argument, bad value) exit with 2, as documented; help
  // and --version with 0. Inherited by every subcommand defined below.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:14000 or [::1]:14000');
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

interface CommonOpts {
  config?: string;
  dataDir?: string;
}

/** Config from --config, with --data-dir (and other flags) overriding the file. */
async function configFrom(opts: CommonOpts, overrides: Record<string, unknown> = {}): Promise<ServerConfig> {
  const o: Record<string, unknown> = { ...overrides };
  if (opts.dataDir) o.dataDir = path.resolve(opts.dataDir);
  return (await import('../server/config.js')).loadServerConfig(opts.config, o);
}

program
  .command('server')
  .description('Run the ACME CA server (creates the CA and the database on first start).')
  .option('-c, --config <file>', 'JSON config file (see docs/configuration.md)')
  .option('-d, --data-dir <dir>', 'data directory: CA files and SQLite database (default ./data)')
  .option('-l, --listen <host:port>', 'address to listen on (default 127.0.0.1:14000)', parseListen)
  .option('--http', 'serve plain HTTP, for running behind a TLS-terminating proxy (set --base-url)')
  .option('--base-url <url>', 'external base URL clients use, e.g. https://acme.example.com')
  .option('-w, --workers <n|auto>', 'server processes sharing the port: a number, or auto (one per CPU); default 1', parseWorkers)
  .action(async (opts: CommonOpts & { listen?: { host: string; port: number }; http?: boolean; baseUrl?: string; workers?: number | 'auto' }) => {
    const cluster = await import('../server/cluster.js');
    let config: ServerConfig;
    if (cluster.isWorker()) {
      // A worker of `--workers`: the primary sends the config it prepared (port fixed).
      config = (await import('../server/config.js')).parseServerConfig(await cluster.configFromPrimary(), 'the primary process');
    } else {
      const overrides: Record<string, unknown> = {};
      if (opts.listen) overrides.listen = opts.listen;
      if (opts.http) overrides.tls = { enabled: false };
      if (opts.baseUrl) overrides.baseUrl = opts.baseUrl;
      if (opts.workers !== undefined) overrides.workers = opts.workers;
      config = await configFrom(opts, overrides);
      const n = cluster.workerCount(config.workers);
      if (n > 1) {
        const code = await cluster.runPrimary(config, n, {
          prepare: async (c) => {
            const { caExists, initCa } = await caModule();
            const dir = (await server()).caDirOf(c);
            if (!(await caExists(dir))) await initCa(dir, c.ca);
            await (await openStoreOf(c)).close();
          },
          onReady: ({ directoryUrl, caDir, workers }) => printBanner(directoryUrl, caDir, `${workers} worker processes`),
          background: async (c) => {
            const { createLogger } = await import('../lib/logger.js');
            const log = createLogger({ level: c.log.level });
            const { startPrimaryMetrics } = await import('../server/metrics-setup.js');
            const jobs = [await (await server()).startInventoryBackground(c, log), await startPrimaryMetrics(c, log, { now: () => new Date() })].filter((j) => j !== null);
            return jobs.length ? { stop: async () => void (await Promise.all(jobs.map((j) => j.stop()))) } : null;
          },
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.exit(code);
      }
    }
    const srv = await (await server()).startServer(config);
    if (cluster.isWorker()) cluster.reportReady({ directoryUrl: srv.directoryUrl, caDir: srv.caDir });
    else printBanner(srv.directoryUrl, srv.caDir);
    const stop = (signal: string) => {
      if (!cluster.isWorker()) process.stderr.write(`anvil server: ${signal}, shutting down\n`);
      srv.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });

function parseWorkers(v: string): number | 'auto' {
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError('expected a number of processes (1-256) or auto');
  return n;
}

function printBanner(directoryUrl: string, caDir: string, mode?: string): void {
  const root = path.join(caDir, 'root.pem');
  process.stdout.write(
    [
      `ACME directory: ${directoryUrl}${mode ? ` (${mode})` : ''}`,
      `CA root certificate: ${root}`,
      '',
      'Point a client at it, trusting the root:',
      `  certbot:  REQUESTS_CA_BUNDLE=${root} certbot certonly --server ${directoryUrl} --standalone -d NAME`,
      `  lego:     LEGO_CA_CERTIFICATES=${root} lego --server ${directoryUrl} --email you@example.com --domains NAME --http run`,
      `  curl:     curl --cacert ${root} ${directoryUrl}`,
      '',
    ].join('\n'),
  );
}

const ca = program.command('ca').description('Manage the CA: its root and intermediate certificates and keys.');
ca.command('init')
  .description('Create a root and an intermediate CA (refuses to overwrite an existing CA).')
  .option('-c, --config <file>', 'JSON config file; its "ca" section gives the defaults')
  .option('-d, --data-dir <dir>', 'data directory (CA files go to <dir>/ca)')
  .option('--key-algorithm <alg>', 'ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096')
  .option('--root-name <cn>', 'root common name')
  .option('--intermediate-name <cn>', 'intermediate common name')
  .option('--organization <o>', 'organization name in both subjects')
  .option('--root-days <n>', 'root lifetime in days', positiveInt)
  .option('--intermediate-days <n>', 'intermediate lifetime in days', positiveInt)
  .action(
    async (
      opts: CommonOpts & {
        keyAlgorithm?: string;
        rootName?: string;
        intermediateName?: string;
        organization?: string;
        rootDays?: number;
        intermediateDays?: number;
      },
    ) => {
      const caOverrides: Record<string, unknown> = {};
      if (opts.keyAlgorithm) caOverrides.keyAlgorithm = opts.keyAlgorithm;
      if (opts.rootName) caOverrides.rootCommonName = opts.rootName;
      if (opts.intermediateName) caOverrides.intermediateCommonName = opts.intermediateName;
      if (opts.organization) caOverrides.organization = opts.organization;
      if (opts.rootDays) caOverrides.rootLifetimeDays = opts.rootDays;
      if (opts.intermediateDays) caOverrides.intermediateLifetimeDays = opts.intermediateDays;
      const config = await configFrom(opts, { ca: caOverrides });
      const dir = (await server()).caDirOf(config);
      const d = await (await caModule()).initCa(dir, config.ca);
      process.stdout.write(`Created a CA in ${dir}\n${formatCa(d)}`);
    },
  );

ca.command('show')
  .description('Print the CA certificates: subjects, key algorithm, validity, fingerprints.')
  .option('-c, --config <file>', 'JSON config file')
  .option('-d, --data-dir <dir>', 'data directory')
  .option('--json', 'print JSON')
  .action(async (opts: CommonOpts & { json?: boolean }) => {
    const config = await configFrom(opts);
    const dir = (await server()).caDirOf(config);
    const d = await (await caModule()).describeCa(dir);
    if (!d) {
      process.stderr.write(`anvil: no CA in ${dir}; create one with "anvil ca init" or start "anvil server"\n`);
      process.exitCode = 1;
      return;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(d, null, 2)}\n` : formatCa(d));
  });

function collectSerial(v: string, prev: string[] = []): string[] {
  const hex = v.toLowerCase().replace(/:/g, '');
  if (!/^[0-9a-f]{1,40}$/.test(hex)) throw new InvalidArgumentError('expected a serial number in hex, e.g. 4f1a...: (colons allowed)');
  return [...prev, hex.replace(/^0+(?=.)/, '')];
}

function isoTime(v: string): Date {
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError('expected a date and time, e.g. 2026-11-25T12:00:00Z');
  return new Date(t);
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

ca.command('renew-early')
  .description(
    'Pull the renewal window (RFC 9773 ARI) of issued certificates forward, e.g. before a mass revocation: ' +
      'ARI clients renew within the new window the next time they ask (at most acme.renewalInfo.retryAfterSeconds later).',
  )
  .option('-c, --config <file>', 'JSON config file')
  .option('-d, --data-dir <dir>', 'data directory')
  .option('--serial <hex>', 'a certificate serial (repeatable)', collectSerial)
  .option('--issued-before <time>', 'every certificate issued before this time (ISO 8601)', isoTime)
  .option('--all', 'every unexpired, unrevoked certificate')
  .option('--start <time>', 'window start (default: now)', isoTime)
  .option('--within <hours>', 'window length in hours (default 24)', positiveNumber, 24)
  .option('--json', 'print JSON')
  .addHelpText(
    'after',
    `
Examples:
  anvil ca renew-early --serial 4f1a9c... --within 2
  anvil ca renew-early --issued-before 2026-11-20T00:00:00Z
  anvil ca renew-early --all --within 48`,
  )
  .action(
    async (opts: CommonOpts & { serial?: string[]; issuedBefore?: Date; all?: boolean; start?: Date; within: number; json?: boolean }) => {
      const chosen = [opts.serial ? 1 : 0, opts.issuedBefore ? 1 : 0, opts.all ? 1 : 0].reduce((a, b) => a + b, 0);
      if (chosen !== 1) {
        process.stderr.write('anvil: choose exactly one of --serial, --issued-before or --all\n');
        process.exit(2);
      }
      const config = await configFrom(opts);
      const store = await openStoreOf(config);
      try {
        const start = opts.start ?? new Date();
        const end = new Date(start.getTime() + opts.within * 3_600_000);
        const selector = opts.serial ? { serials: opts.serial } : opts.issuedBefore ? { issuedBefore: opts.issuedBefore } : { all: true as const };
        const n = await store.setRenewalWindow(selector, { start, end }, new Date());
        if (opts.json) process.stdout.write(`${JSON.stringify({ certificates: n, start: start.toISOString(), end: end.toISOString() })}\n`);
        else {
          process.stdout.write(`Renewal window of ${n} certificate(s) set to ${start.toISOString()} .. ${end.toISOString()}\n`);
          if (n === 0) process.stdout.write('(no issued, unexpired, unrevoked certificate matched)\n');
        }
        if (n === 0 && opts.serial) process.exitCode = 1;
      } finally {
        await store.close();
      }
    },
  );

function formatCa(d: unknown): string {
  const lines: string[] = [];
  const walk = (o: unknown, indent: string) => {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) {
        lines.push(`${indent}${k}:`);
        walk(v, `${indent}  `);
      } else lines.push(`${indent}${k}: ${v instanceof Date ? v.toISOString() : Array.isArray(v) ? v.join(', ') : String(v)}`);
    }
  };
  walk(d, '');
  return `${lines.join('\n')}\n`;
}

const eab = program.command('eab').description('External Account Binding keys (RFC 8555 §7.3.4).');
eab
  .command('create')
  .description('Create an EAB key id and HMAC key for one ACME account registration.')
  .option('-c, --config <file>', 'JSON config file')
  .option('-d, --data-dir <dir>', 'data directory')
  .option('--uses <n>', 'how many accounts may bind this key (default 1)', positiveInt, 1)
  .option('--expires-days <n>', 'key expires after this many days (default: never)', positiveInt)
  .option('--comment <text>', 'a note for operators (who the key is for)')
  .option('--json', 'print JSON')
  .action(async (opts: CommonOpts & { uses: number; expiresDays?: number; comment?: string; json?: boolean }) => {
    const config = await configFrom(opts);
    const store = await openStoreOf(config);
    try {
      const kid = `kid-${randomBytes(12).toString('base64url')}`;
      const hmacKey = randomBytes(32).toString('base64url');
      const now = new Date();
      await store.createEabKey({
        kid,
        hmacKey,
        maxUses: opts.uses,
        uses: 0,
        accountIds: [],
        createdAt: now,
        expiresAt: opts.expiresDays ? new Date(now.getTime() + opts.expiresDays * 86_400_000) : null,
        comment: opts.comment ?? null,
      });
      if (opts.json) process.stdout.write(`${JSON.stringify({ kid, hmacKey, maxUses: opts.uses })}\n`);
      else {
        process.stdout.write(
          `EAB key id:   ${kid}\nEAB HMAC key: ${hmacKey}\n\n` +
            `certbot: --eab-kid ${kid} --eab-hmac-key ${hmacKey}\n` +
            `lego:    --eab --kid ${kid} --hmac ${hmacKey}\n`,
        );
      }
    } finally {
      await store.close();
    }
  });

eab
  .command('list')
  .description('List EAB keys and the accounts bound to them (HMAC keys are not shown).')
  .option('-c, --config <file>', 'JSON config file')
  .option('-d, --data-dir <dir>', 'data directory')
  .action(async (opts: CommonOpts) => {
    const config = await configFrom(opts);
    const store = await openStoreOf(config);
    try {
      for (const k of await store.listEabKeys()) {
        process.stdout.write(
          `${k.kid}  uses ${k.uses}/${k.maxUses}  created ${k.createdAt.toISOString()}` +
            `${k.expiresAt ? `  expires ${k.expiresAt.toISOString()}` : ''}${k.comment ? `  "${k.comment}"` : ''}` +
            `${k.accountIds.length ? `  accounts ${k.accountIds.join(',')}` : ''}\n`,
        );
      }
    } finally {
      await store.close();
    }
  });

program
  .command('config-check')
  .description('Validate a server config file and print the effective configuration.')
  .argument('<file>', 'JSON config file')
  .action(async (file: string) => {
    const config = await (await import('../server/config.js')).loadServerConfig(file);
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  });

registerClientCommands(program);
registerRenewCommand(program);
registerInstallCommand(program);
registerBenchCommand(program);
registerDnsCommand(program);
registerInventoryCommands(program);
registerManageCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  const client = clientErrorExit(e) ?? inventoryErrorExit(e) ?? manageErrorExit(e);
  if (client) {
    process.stderr.write(`anvil: ${client.message}\n`);
    process.exit(client.code);
  }
  const err = e as Error & { code?: string };
  if (err.code === 'CONFIG_INVALID') {
    process.stderr.write(`anvil: ${err.message}\n`);
    process.exit(2);
  }
  if (err.code === 'CA_EXISTS') {
    process.stderr.write(`anvil: ${err.message}\n`);
    process.exit(1);
  }
  if (err.code === 'EADDRINUSE') {
    process.stderr.write(`anvil: the listen address is already in use (${err.message}); choose another with --listen\n`);
    process.exit(1);
  }
  process.stderr.write(`anvil: ${err.message ?? String(err)}\n`);
  process.exit(1);
});
