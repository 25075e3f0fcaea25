/**
 * `npm run bench:soak`: does memory stay flat under load? Starts the real `anvil server` as the
 * standard scenario does (bench/standard.ts: loopback, TLS, SQLite, authorization reuse off), runs
 * `anvil bench` against it for --minutes at --concurrency, and prints the server's resident memory
 * (process tree, sampled by the generator) once a minute, the same for the generator's heap, and
 * the throughput, errors and latency of the whole run.
 *
 *   npm run bench:soak -- [--minutes 10] [--concurrency 64] [--workers 1]
 */
import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { machineDescription, type BenchReport } from '../src/bench/report.js';
import { ANVIL_BIN, startAnvil } from '../test/helpers/anvil-process.js';
import { freePort } from '../test/helpers/ports.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '64' },
    workers: { type: 'string', default: '1' },
  },
});
const minutes = Number(values.minutes);
const concurrency = Number(values.concurrency);
if (!(minutes > 0 && minutes <= 60)) throw new Error('--minutes: more than 0, at most 60');
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new Error('--concurrency: 1 to 256');
const workers = values.workers === 'auto' ? 'auto' : Number(values.workers);

const httpPort = await freePort();
const a = await startAnvil({
  workers,
  acme: { authzReuseDays: 0 },
  log: { level: 'warn' },
  validation: { httpPort, addressPolicy: { allowLoopback: true } },
});
let report: BenchReport;
try {
  process.stderr.write(`soak: ${minutes} min at concurrency ${concurrency} (30 s warm-up)\n`);
  const args = [
    ANVIL_BIN, 'bench',
    '--server', a.directoryUrl, '--ca-bundle', a.rootPem,
    '--http-port', String(httpPort),
    '-c', String(concurrency), '--warmup', '30', '--duration', String(minutes * 60),
    '--server-pid', String(a.proc.pid), '--json',
  ];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 64 * 1024 * 1024, timeout: (minutes * 60 + 300) * 1000 });
  report = JSON.parse(stdout) as BenchReport;
} finally {
  await a.cleanup();
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(1));
const lines = [
  `anvil bench soak: ${minutes} min, concurrency ${concurrency}, workers ${String(workers)}; ${machineDescription()}`,
  `flows ${report.flows.completed} completed, ${report.flows.failed} failed; ${report.flowsPerSecond} flows/s; ` +
    `latency p50 ${report.latencyMs.p50} ms, p99 ${report.latencyMs.p99} ms, max ${report.latencyMs.max} ms`,
  '',
  'minute  server RSS MB  generator RSS MB  generator heap MB',
  '------  -------------  ----------------  -----------------',
];
// One line per minute: the sample nearest to each whole minute.
const samples = report.memory.samples;
for (let m = 0; m <= minutes; m++) {
  const s = samples.reduce((best, x) => (Math.abs(x.t - m * 60) < Math.abs(best.t - m * 60) ? x : best), samples[0]!);
  if (!s) break;
  lines.push(`${String(m).padStart(6)}  ${fmt(s.serverRssMb).padStart(13)}  ${fmt(s.generatorRssMb).padStart(16)}  ${fmt(s.generatorHeapMb).padStart(17)}`);
}
const srv = report.memory.serverRssMb;
if (srv) lines.push('', `server RSS over the run: start ${fmt(srv.start)} MB, end ${fmt(srv.end)} MB, max ${fmt(srv.max)} MB`);
process.stdout.write(`${lines.join('\n')}\n${JSON.stringify({ bench: 'soak', minutes, concurrency, flowsPerSecond: report.flowsPerSecond, flows: report.flows, latencyMs: report.latencyMs, memory: report.memory })}\n`);
