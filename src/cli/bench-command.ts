/**
 * `anvil bench`: a load generator for any ACME server (docs/benchmarks.md). Prints a report (text,
 * or one JSON document with --json) on stdout and progress on stderr. Exit codes: 0 a report was
 * printed (whatever the flows' errors; they are in it), 1 the run could not start (directory,
 * responder, accounts), 2 usage, 130 interrupted (a partial report was printed).
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';

interface BenchCliOpts {
  server?: string;
  caBundle?: string;
  insecureLocalhost?: boolean;
  concurrency: number;
  duration?: number;
  count?: number;
  warmup: number;
  names: number;
  pollInterval: number;
  challenge: string;
  honourRetryAfter?: boolean;
  httpPort: number;
  httpAddress?: string;
  serverPid?: number;
  flowTimeout: number;
  json?: boolean;
}

function intIn(what: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected ${what} from ${min} to ${max}`);
    return n;
  };
}

function secondsIn(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected seconds from ${min} to ${max}`);
    return n;
  };
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function usage(message: string): never {
  process.stderr.write(`anvil bench: ${message}\n(run with --help for usage)\n`);
  process.exit(2);
}

export function registerBenchCommand(program: Command): void {
  // Limits and defaults are repeated here as literals so that `anvil --help` does not load the
  // generator; src/bench/run.ts holds the same values (LIMITS, DEFAULTS) and the run checks them.
  program
    .command('bench')
    .description(
      'Load generator for any ACME server: N virtual clients each register an account once, then run complete issuances ' +
        '(newOrder, authorization, http-01 answered by its own responder, polls, finalize with a fresh key and CSR, download, ' +
        'certificate check) for a duration or a count, after a warm-up. Reports flows/s, latency percentiles, errors by problem type, ' +
        'requests per flow, its own CPU and, with --server-pid, the server CPU per issuance.',
    )
    .requiredOption('--server <url>', 'ACME directory URL (https; http only to localhost with --insecure-localhost)')
    .option('--ca-bundle <file>', 'trusted root certificates (PEM) of a private CA; they replace the system roots')
    .option('--insecure-localhost', 'allow an http:// directory on localhost')
    .option('-c, --concurrency <n>', 'virtual clients (1 to 1024)', intIn('a number of clients', 1, 1024), 1)
    .option('--duration <s>', 'length of the measured phase in seconds (default 10; at most 3600)', secondsIn(0.1, 3600))
    .option('--count <n>', 'flows to run in the measured phase (at most 1000000); with --duration, whichever ends first', intIn('a number of flows', 1, 1_000_000))
    .option('--warmup <s>', 'warm-up before measuring, in seconds (not counted)', secondsIn(0, 600), 2)
    .option('--names <n>', 'IP identifiers per order: 127.0.0.1 .. 127.0.0.N (1 to 100)', intIn('a number of names', 1, 100), 1)
    .option('--poll-interval <ms>', 'wait between polls of pending authorizations and orders', intIn('milliseconds', 1, 60_000), 50)
    .addOption(new Option('--challenge <type>', 'challenge type').choices(['http-01']).default('http-01'))
    .option('--honour-retry-after', "wait as long as the server's Retry-After says (at most 10 s) when polling, and retry 429/503 after it")
    .option('--http-port <port>', "port of the http-01 responder: the server's validation port (Anvil: validation.httpPort)", intIn('a port', 1, 65535), 80)
    .option('--http-address <addr>', "one address for the responder, e.g. 0.0.0.0 (default: each identifier's address)")
    .option('--server-pid <pid>', 'pid of the server on this machine (its child processes, e.g. --workers, included): its CPU per issuance is reported (Linux)', intIn('a pid', 1, 2 ** 22))
    .option('--flow-timeout <s>', 'a flow still polling after this long fails with kind "timeout"', secondsIn(1, 600), 60)
    .option('--json', 'print the report as one JSON document')
    .addHelpText(
      'after',
      `
Every run is bounded: at most 3600 s of measuring and 1000000 flows. Ctrl-C stops it: flows in
progress get 3 s to finish and a partial report is printed (exit code 130).

The server must validate http-01 on loopback: for Anvil, validation.addressPolicy.allowLoopback
true and validation.httpPort equal to --http-port; acme.authzReuseDays 0 makes every flow validate.

Examples:
  anvil bench --server https://127.0.0.1:14000/directory --ca-bundle data/ca/root.pem --http-port 5002 -c 16 --duration 20
  anvil bench --server https://127.0.0.1:14000/directory --ca-bundle data/ca/root.pem --http-port 5002 \\
      -c 64 --warmup 5 --duration 20 --server-pid $(pgrep -f 'anvil.js server') --json
  anvil bench --server http://localhost:14000/directory --insecure-localhost --http-port 5002 --count 100 --names 3
  anvil bench --server https://localhost:14000/dir --ca-bundle pebble.minica.pem --http-port 5002 --honour-retry-after`,
    )
    .action(async (opts: BenchCliOpts) => {
      let url: URL;
      try {
        url = new URL(opts.server!);
      } catch {
        usage(`--server ${opts.server} is not a URL`);
      }
      if (url.protocol === 'http:') {
        if (!opts.insecureLocalhost || !LOCAL_HOSTS.has(url.hostname)) usage('--server must be https; plain http is allowed only to localhost, with --insecure-localhost');
      } else if (url.protocol !== 'https:') usage(`--server must be an https URL, not ${url.protocol}`);
      if (opts.httpAddress !== undefined && !isIP(opts.httpAddress)) usage(`--http-address ${opts.httpAddress} is not an IP address`);
      let caPem: string | undefined;
      if (opts.caBundle) {
        try {
          caPem = await readFile(opts.caBundle, 'utf8');
        } catch (e) {
          usage(`cannot read --ca-bundle ${opts.caBundle}: ${(e as Error).message}`);
        }
        if (!caPem.includes('-----BEGIN CERTIFICATE-----')) usage(`--ca-bundle ${opts.caBundle} holds no PEM certificate`);
      }

      const { runBench, DEFAULTS } = await import('../bench/run.js');
      const { formatReport } = await import('../bench/report.js');
      const { BenchSetupError } = await import('../bench/errors.js');
      const stop = new AbortController();
      const onSigint = () => {
        if (stop.signal.aborted) {
          process.stderr.write('anvil bench: interrupted twice, exiting without a report\n');
          process.exit(130);
        }
        stop.abort();
      };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      try {
        const report = await runBench(
          {
            directoryUrl: url.href,
            ...(caPem ? { caPem } : {}),
            concurrency: opts.concurrency,
            ...(opts.duration !== undefined ? { durationSeconds: opts.duration } : {}),
            ...(opts.count !== undefined ? { count: opts.count } : {}),
            warmupSeconds: opts.warmup,
            names: opts.names,
            challenge: 'http-01',
            pollIntervalMs: opts.pollInterval,
            honourRetryAfter: opts.honourRetryAfter ?? false,
            httpPort: opts.httpPort,
            ...(opts.httpAddress ? { httpAddress: opts.httpAddress } : {}),
            ...(opts.serverPid !== undefined ? { serverPid: opts.serverPid } : {}),
            flowTimeoutSeconds: opts.flowTimeout,
            requestTimeoutMs: DEFAULTS.requestTimeoutMs,
          },
          { stop: stop.signal, progress: (line) => process.stderr.write(`anvil bench: ${line}\n`) },
        );
        process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : formatReport(report));
        if (report.interrupted) process.exitCode = 130;
      } catch (e) {
        if (stop.signal.aborted) {
          process.stderr.write('anvil bench: interrupted while setting up, before any flow: no report\n');
          process.exit(130);
        }
        if (e instanceof BenchSetupError) {
          process.stderr.write(`anvil bench: ${e.message}\n`);
          process.exit(1);
        }
        throw e;
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
    });
}
