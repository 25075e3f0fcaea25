/**
 * `npm run bench`: the standard scenario (docs/benchmarks.md). Starts the real `anvil server`
 * (bin/anvil.js, built by `npm run build`) on loopback with SQLite, TLS, authorization reuse off
 * (acme.authzReuseDays 0, so every flow validates http-01 for real over loopback) and log level
 * warn; measures the crypto floor on this machine; then runs `anvil bench` as a child process at
 * concurrency 1, 16 and 64 (5 s warm-up and 20 s measured each) with the server's pid, and prints
 * one table, the floor's parts, the machine, and one JSON line.
 *
 *   npm run bench -- [--levels 1,16,64] [--duration 20] [--warmup 5] [--poll-interval 50]
 *                    [--log-level warn] [--workers 1|N|auto] [--postgres URL] [--cpu-prof-dir DIR]
 *
 * --postgres runs the server on that (existing) PostgreSQL database instead of SQLite.
 *
 * --cpu-prof-dir starts the server under `node --cpu-prof` and leaves its profile there.
 *
 * Last, unless --no-ceiling: the generator's own ceiling on this machine, `anvil bench` at the
 * highest level against FakeAcmeServer (src/bench/testing.ts: in memory, no signature checks, a
 * tiny certificate) in a child process: how many flows per second the generator can drive here
 * before it becomes the bottleneck, and what a flow costs it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { cryptoFloor, measureCryptoFloorUnits } from '../src/bench/floor.js';
import { formatStandardTable, machineDescription, type BenchReport, type StandardRow } from '../src/bench/report.js';
import { ANVIL_BIN, exited, startAnvil } from '../test/helpers/anvil-process.js';
import { freePort } from '../test/helpers/ports.js';

const { values } = parseArgs({
  options: {
    levels: { type: 'string', default: '1,16,64' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    'poll-interval': { type: 'string', default: '50' },
    'log-level': { type: 'string', default: 'warn' },
    workers: { type: 'string', default: '1' },
    postgres: { type: 'string' },
    'cpu-prof-dir': { type: 'string' },
    'no-ceiling': { type: 'boolean', default: false },
    // Internal: run FakeAcmeServer in this process (the ceiling's server), validating on this port.
    'fake-child': { type: 'string' },
  },
});

if (values['fake-child']) {
  const { FakeAcmeServer } = await import('../src/bench/testing.js');
  const fake = await FakeAcmeServer.start(Number(values['fake-child']));
  process.stdout.write(`FAKE ${fake.directoryUrl}\n`);
  process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
  await new Promise(() => undefined);
}
const levels = values.levels.split(',').map(Number);
if (levels.some((c) => !Number.isInteger(c) || c < 1 || c > 256)) throw new Error('--levels: a comma-separated list of concurrencies from 1 to 256');
const duration = Math.min(Number(values.duration), 120);
const warmup = Math.min(Number(values.warmup), 60);
const run = promisify(execFile);

process.stderr.write('measuring the crypto floor (node:crypto, this machine)\n');
const units = measureCryptoFloorUnits();

const httpPort = await freePort();
const workers = values.workers === 'auto' ? 'auto' : Number(values.workers);
if (workers !== 'auto' && (!Number.isInteger(workers) || workers < 1 || workers > 64)) throw new Error('--workers: a number from 1 to 64, or auto');
const serverConfig = {
  workers,
  ...(values.postgres ? { storage: { type: 'postgres', url: values.postgres } } : {}),
  acme: { authzReuseDays: 0 },
  log: { level: values['log-level'] },
  validation: { httpPort, addressPolicy: { allowLoopback: true } },
};

interface Server {
  directoryUrl: string;
  rootPem: string;
  pid: number;
  stop(): Promise<void>;
}

/** The server as the e2e tests start it, or, for a CPU profile, under `node --cpu-prof`. */
async function startServer(): Promise<Server> {
  const a = await startAnvil(serverConfig);
  const profDir = values['cpu-prof-dir'];
  if (!profDir) return { directoryUrl: a.directoryUrl, rootPem: a.rootPem, pid: a.proc.pid!, stop: () => a.cleanup() };
  // Same config and data, restarted under the profiler (the first start created the CA).
  await a.stop();
  const proc: ChildProcess = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', path.resolve(profDir), ANVIL_BIN, 'server', '--config', a.configFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const directoryUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ACME directory: (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`anvil server exited with ${code}`)));
  });
  return {
    directoryUrl,
    rootPem: a.rootPem,
    pid: proc.pid!,
    async stop() {
      proc.kill('SIGINT');
      await exited(proc);
      await rm(path.dirname(a.dataDir), { recursive: true, force: true });
    },
  };
}

/** One `anvil bench` run as a child process, its JSON report parsed. */
async function bench(target: { directoryUrl: string; rootPem?: string; pid: number }, port: number, c: number): Promise<BenchReport> {
  const args = [
    ANVIL_BIN,
    'bench',
    '--server', target.directoryUrl,
    ...(target.rootPem ? ['--ca-bundle', target.rootPem] : ['--insecure-localhost']),
    '--http-port', String(port),
    '-c', String(c),
    '--warmup', String(warmup),
    '--duration', String(duration),
    '--poll-interval', values['poll-interval'],
    '--server-pid', String(target.pid),
    '--json',
  ];
  const { stdout } = await run(process.execPath, args, { maxBuffer: 16 * 1024 * 1024, timeout: (duration + warmup + 120) * 1000 });
  return JSON.parse(stdout) as BenchReport;
}

const server = await startServer();
const rows: StandardRow[] = [];
try {
  for (const c of levels) {
    process.stderr.write(`concurrency ${c}: ${warmup} s warm-up, ${duration} s measured\n`);
    const report = await bench(server, httpPort, c);
    rows.push({ report, floor: cryptoFloor(units, report.requests.signedPostsPerFlow) });
  }
} finally {
  await server.stop();
}

let ceiling: BenchReport | undefined;
if (!values['no-ceiling']) {
  const c = Math.max(...levels);
  process.stderr.write(`generator ceiling: concurrency ${c} against FakeAcmeServer\n`);
  const fakePort = await freePort();
  const fake = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--fake-child', String(fakePort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      fake.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /FAKE (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      fake.once('exit', (code) => reject(new Error(`the fake ACME server exited with ${code}`)));
    });
    ceiling = await bench({ directoryUrl: url, pid: fake.pid! }, fakePort, c);
  } finally {
    fake.kill('SIGTERM');
    await exited(fake);
  }
}

const machine = machineDescription();
const first = rows[0]!.report;
process.stdout.write(
  `\nanvil bench, standard scenario: anvil server (bin/anvil.js) on loopback, TLS, ${values.postgres ? 'PostgreSQL' : 'SQLite'}, workers ${workers}, acme.authzReuseDays 0, log ${values['log-level']}; ` +
    `http-01 over loopback (${first.options.identifiers.join(', ')}:${httpPort}); poll every ${first.options.pollIntervalMs} ms, Retry-After ignored; ` +
    `${warmup} s warm-up + ${duration} s per level; authorizations: ${rows.map((r) => r.report.authorizations.mode).join('/')}\n` +
    `machine: ${machine} (shared; figures are noisy)\n\n`,
);
process.stdout.write(formatStandardTable(rows, units));
if (ceiling) {
  process.stdout.write(
    `\ngenerator ceiling (anvil bench -c ${ceiling.options.concurrency} against FakeAcmeServer, an in-memory fake CA in another process): ` +
      `${ceiling.flowsPerSecond.toFixed(1)} flows/s, p99 ${ceiling.latencyMs.p99.toFixed(1)} ms, ${ceiling.errors.total} errors; ` +
      `generator ${ceiling.generator.cpuMsPerFlow?.toFixed(2) ?? '-'} ms CPU per flow, fake server ${ceiling.server?.cpuMsPerIssuance?.toFixed(2) ?? '-'} ms\n`,
  );
}
const json = {
  bench: 'standard',
  machine,
  floorUnits: units,
  levels: rows.map(({ report: r, floor }) => ({
    concurrency: r.options.concurrency,
    flowsPerSecond: r.flowsPerSecond,
    latencyMs: r.latencyMs,
    completed: r.flows.completed,
    errors: r.errors.byKind,
    requestsPerFlow: r.requests.perFlow,
    signedPostsPerFlow: r.requests.signedPostsPerFlow,
    authorizations: r.authorizations.mode,
    generatorCpuSeconds: r.generator.cpuSeconds,
    generatorCpuMsPerFlow: r.generator.cpuMsPerFlow,
    serverCpuMsPerIssuance: r.server?.cpuMsPerIssuance ?? null,
    serverRssMb: r.memory.serverRssMb,
    floorMs: floor.totalMs,
    timesFloor: r.server?.cpuMsPerIssuance != null ? Math.round((r.server.cpuMsPerIssuance / floor.totalMs) * 100) / 100 : null,
  })),
  generatorCeiling: ceiling
    ? {
        concurrency: ceiling.options.concurrency,
        flowsPerSecond: ceiling.flowsPerSecond,
        latencyMs: ceiling.latencyMs,
        errors: ceiling.errors.total,
        generatorCpuMsPerFlow: ceiling.generator.cpuMsPerFlow,
        fakeServerCpuMsPerFlow: ceiling.server?.cpuMsPerIssuance ?? null,
      }
    : null,
};
process.stdout.write(`\n${JSON.stringify(json)}\n`);
