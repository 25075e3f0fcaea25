/**
 * `anvil renew`: renews every lineage that is due and exits; `anvil renew --daemon` keeps checking
 * (docs/renewal.md). One summary line per lineage on stdout (or one JSON document with --json);
 * progress on stderr on a terminal only.
 */
import { randomInt } from 'node:crypto';
import { Command, InvalidArgumentError, Option } from 'commander';
import { cryptoRandom } from '../lib/random.js';
import { systemClock } from '../lib/clock.js';
import { runHooks } from '../client/hooks.js';
import { verifyInstallers } from '../client/install/nginx.js';
import { runDaemon } from '../client/renewal/daemon.js';
import { realSleep } from '../client/renewal/limits.js';
import { RenewalRunner, summaryLine, type CheckRevocation, type LineageResult, type RunOptions, type RunSummary } from '../client/renewal/runner.js';
import { AccountStore, checkName, LineageStore } from '../client/store.js';
import { clientErrorExit, EXIT, makeHttp, progress, solversFor, storeRoot, UsageError, type ClientOpts } from './client-commands.js';

interface RenewOpts {
  cert?: string[];
  force?: boolean;
  dryRun?: boolean;
  daemon?: boolean;
  interval: number;
  concurrency: number;
  rate: number;
  ariRate: number;
  /** Seconds; false with --no-random-delay; undefined: the default when not on a terminal. */
  randomDelay?: number | false;
  fallbackAfter: number;
  revocationCheck: boolean;
  revocationInterval: number;
  timeout?: number;
  store?: string;
  json?: boolean;
  quiet?: boolean;
  insecureLocalhost?: boolean;
}

/** Upper bound of the random delay before a non-interactive run (like certbot's 8 minutes). */
const DEFAULT_RANDOM_DELAY_S = 480;

function positiveInt(what: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`expected ${what} from 1 to ${max}`);
    return n;
  };
}

function nonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 86_400) throw new InvalidArgumentError('expected seconds from 0 to 86400');
  return n;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
}

/**
 * The exit code of a run: 0 when nothing failed; the code of the failures when they all agree
 * (3 refused, 4 validation, 5 network, 6 bad answer, 7 locked, 1 other); 1 when they differ.
 * Lineages still backing off after an earlier failure count with that failure's code.
 */
export function exitCodeOf(results: readonly LineageResult[]): number {
  const codes = new Set(results.filter((r) => r.status === 'failed' || r.status === 'backoff').map((r) => r.exitCode ?? EXIT.failure));
  if (codes.size === 0) return EXIT.ok;
  return codes.size === 1 ? [...codes][0]! : EXIT.failure;
}

/** How the CLI reaches a CA: the same HTTP set-up as `anvil issue`. */
async function connector(o: RenewOpts, ca: { server: string; caBundle?: string }) {
  const opts: ClientOpts = { server: ca.server, account: 'default', ...(o.insecureLocalhost ? { insecureLocalhost: true } : {}) };
  const http = await makeHttp(opts, ca.caBundle);
  return { http, close: () => http.close() };
}

async function renew(o: RenewOpts): Promise<void> {
  const root = storeRoot({ ...(o.store ? { store: o.store } : {}) } as ClientOpts);
  const store = new LineageStore(root);
  const names = o.cert?.map((n) => checkName(n));
  for (const n of names ?? []) {
    if (!(await store.readConfig(n))) throw new UsageError(`no certificate named ${n} in ${root} ("anvil certs list" shows them)`);
  }
  const clientOpts = { server: '', account: '', ...(o.json ? { json: true } : {}), ...(o.quiet ? { quiet: true } : {}) } as ClientOpts;
  const step = progress(clientOpts);

  // SIGTERM/SIGINT: no new work; work in progress finishes (or, in the daemon, gets a grace period).
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(sig === 'SIGINT' ? 130 : 143);
    if (!o.quiet) process.stderr.write(`anvil renew: ${sig}: finishing the work in progress, starting nothing new\n`);
    ac.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  // One connection pool per run (per trusted roots) for OCSP and CRL requests, closed at the end.
  const rev = o.revocationCheck ? await import('../client/revocation.js') : undefined;
  const revocation = rev?.createRevocationChecker();
  // OCSP/CRL URLs come from certificates: private addresses are fetched only for certificates of a
  // CA whose own directory is at such an address (a private CA on a LAN, a lab CA on loopback).
  const privateCa = new Map<string, Promise<boolean>>();
  const checkRevocation: CheckRevocation | undefined =
    rev && revocation
      ? async (leafPem, issuerPem, opts = {}) => {
          const { server, ...rest } = opts;
          let allow = server ? privateCa.get(server) : undefined;
          if (server && !allow) privateCa.set(server, (allow = rev.isPrivateUrl(server)));
          return revocation.check(leafPem, issuerPem, { ...rest, allowPrivateAddresses: allow ? await allow : false });
        }
      : undefined;
  const runner = new RenewalRunner({
    store,
    accounts: new AccountStore(root),
    clock: systemClock,
    random: cryptoRandom,
    connect: (ca) => connector(o, ca),
    solvers: (cfg, onStep) => solversFor(cfg, onStep),
    runHooks,
    verifyInstallers: (s, cfg, v) => verifyInstallers(s, cfg, v).then(() => undefined),
    ...(checkRevocation ? { checkRevocation } : {}),
    exitCodeOf: (e) => clientErrorExit(e)?.code ?? EXIT.failure,
    onStep: step,
  });
  const runOpts: RunOptions = {
    ...(names ? { names } : {}),
    ...(o.force ? { force: true } : {}),
    ...(o.dryRun ? { dryRun: true } : {}),
    concurrency: o.concurrency,
    ratePerMinute: o.rate,
    ariRatePerMinute: o.ariRate,
    fallbackAfter: o.fallbackAfter,
    revocationCheck: o.revocationCheck,
    revocationIntervalMs: o.revocationInterval * 1000,
    ...(o.timeout ? { timeoutMs: o.timeout * 1000 } : {}),
    signal: ac.signal,
  };

  if (o.daemon) {
    if (o.force) throw new UsageError('--force renews every time; it has no place in --daemon');
    const line = (r: LineageResult) => {
      // The daemon reports what happened; lineages that are not due or wait out a backoff stay quiet.
      if (r.status === 'not-due' || r.status === 'backoff') return;
      process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `${summaryLine(r)}\n`);
    };
    const interval = o.interval * 1000;
    if (!o.quiet && !o.json) process.stdout.write(`anvil renew --daemon: checking ${names ? names.join(', ') : `every certificate in ${root}`} every ${o.interval} s\n`);
    const r = await runDaemon({
      clock: systemClock,
      signal: ac.signal,
      intervalMs: interval,
      runOnce: (signal) => runner.run({ ...runOpts, signal, lookaheadMs: interval, onResult: line }),
      onRun: (s: RunSummary) => {
        if (o.quiet || o.json) return;
        const n = (st: LineageResult['status']) => s.results.filter((x) => x.status === st).length;
        const failing = n('failed') + n('backoff');
        process.stdout.write(
          `checked ${s.results.length} certificate(s): ${n('renewed')} renewed, ${failing} failing, ${n('not-due')} not due${s.nextCheck ? `; next due check ${s.nextCheck.replace(/\.\d{3}Z$/, 'Z')}` : ''}\n`,
        );
      },
      onError: (e) => process.stderr.write(`anvil renew --daemon: ${(e as Error).message ?? String(e)}\n`),
    });
    if (r.abandoned) process.stderr.write('anvil renew --daemon: work still in progress after the grace period was abandoned; the next start resumes it\n');
    await revocation?.close();
    process.exit(EXIT.ok);
  }

  // A random delay spreads the load of many machines whose timers fire at the same minute.
  const maxDelay = o.randomDelay === false ? 0 : (o.randomDelay ?? (process.stdout.isTTY ? 0 : DEFAULT_RANDOM_DELAY_S));
  if (maxDelay > 0) {
    const delay = randomInt(0, Math.floor(maxDelay * 1000) + 1);
    step(`waiting ${Math.round(delay / 1000)} s first (random delay; --no-random-delay to skip)`);
    await realSleep(delay, ac.signal);
  }
  const summary = await runner.run({
    ...runOpts,
    ...(o.json ? {} : { onResult: (r: LineageResult) => process.stdout.write(`${summaryLine(r)}\n`) }),
  });
  await revocation?.close();
  if (o.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else if (summary.results.length === 0) process.stdout.write(`No certificates in ${root}\n`);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  process.exitCode = exitCodeOf(summary.results);
}

const HELP = `
Rules (docs/renewal.md), in order: no live certificate, revoked (OCSP/CRL), names, key type or
profile changed in renewal/NAME.json, expired, less than 1/20 of the lifetime left: now. Then the
CA's renewal window (RFC 9773 ARI: a random time in it, kept while the window stays), else 2/3 of
the lifetime (1/2 under 10 days). Failures back off (1 min doubling to 1 day); after 3 in a row
at a CA, the lineage's next "fallback" CA is tried.

Examples:
  anvil renew                          renew what is due (cron, systemd timer), then exit
  anvil renew --dry-run                show what is due and why, change nothing
  anvil renew --cert example.com --force
  anvil renew --daemon --interval 300  keep checking; SIGTERM stops it cleanly
  anvil renew --json | jq '.results[] | select(.status == "failed")'

Output: one line per certificate:
  NAME: renewed (REASON) serial S expires T
  NAME: not due until T (REASON)
  NAME: FAILED (REASON): MESSAGE: WHAT TO DO

Exit codes:
  0  nothing failed (renewed, or not due)
  1  renewals failed in different ways, or in another way than below
  2  a flag is wrong, or --cert names no certificate of the store
  3  the CA refused (every failure)
  4  a challenge failed (every failure)
  5  the CA could not be reached (every failure)
  6  the CA's answer was unusable (every failure)
  A certificate still waiting after an earlier failure counts with that failure's code.`;

export function registerRenewCommand(program: Command): void {
  program
    .command('renew')
    .description('Renew every certificate of the store that is due (ARI, lifetime, revocation, config changes), or keep doing so with --daemon.')
    .option('--cert <name>', 'only this lineage (repeatable, or comma-separated)', collect)
    .option('--force', 'renew even when not due (and ignore the backoff after failures)')
    .option('--dry-run', 'decide and report, but renew nothing and change no state')
    .option('--daemon', 'keep running and check every --interval seconds')
    .addOption(new Option('--interval <seconds>', 'seconds between checks of the daemon').argParser(positiveInt('seconds', 86_400)).default(300))
    .addOption(new Option('--concurrency <n>', 'renewals at the same time').argParser(positiveInt('a number', 64)).default(4))
    .addOption(new Option('--rate <per-minute>', 'new orders per CA per minute').argParser(positiveInt('a number', 10_000)).default(20))
    .addOption(
      new Option('--ari-rate <per-minute>', 'renewal information (ARI) requests per CA per minute; raise it for your own CA').argParser(positiveInt('a number', 1_000_000)).default(6000),
    )
    .addOption(new Option('--random-delay <seconds>', `wait up to this long first (default ${DEFAULT_RANDOM_DELAY_S} when stdout is not a terminal, 0 on one)`).argParser(nonNegative))
    .option('--no-random-delay', 'start at once')
    .addOption(new Option('--fallback-after <n>', 'failures in a row at a CA before the next CA of the lineage is tried').argParser(positiveInt('a number', 100)).default(3))
    .option('--no-revocation-check', 'do not ask OCSP/CRL whether certificates were revoked')
    .addOption(
      new Option('--revocation-interval <seconds>', 'ask OCSP/CRL about a certificate at most this often').argParser(positiveInt('seconds', 30 * 86_400)).default(43_200),
    )
    .addOption(new Option('--timeout <seconds>', 'give up on the validation and finalization of one renewal after this long').argParser(positiveInt('seconds', 86_400)))
    .addOption(new Option('--store <dir>', 'where accounts and certificates live').env('ANVIL_HOME'))
    .option('--json', 'print the results as JSON on stdout')
    .option('-q, --quiet', 'no progress output')
    .addOption(new Option('--insecure-localhost', 'allow http:// directories on localhost (tests and labs only)').hideHelp())
    .addHelpText('after', HELP)
    .action(renew);
}
