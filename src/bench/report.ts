/**
 * The report of one `anvil bench` run (its JSON is the machine interface, `--json`), its text
 * form, and the table of the standard scenario (`npm run bench`). No I/O.
 */
import os from 'node:os';
import type { CryptoFloor, CryptoFloorUnits } from './floor.js';
import type { MemorySample, MemorySummary } from './memory.js';
import type { LatencySummary } from './stats.js';

export type StoppedBy = 'duration' | 'count' | 'cap' | 'interrupted';

export interface BenchReport {
  tool: 'anvil bench';
  /** Version of this report's shape; bumped when a field changes meaning or disappears. */
  reportVersion: 1;
  /** The ACME directory URL the run was pointed at. */
  directoryUrl: string;
  startedAt: string;
  options: {
    concurrency: number;
    durationSeconds: number | null;
    count: number | null;
    warmupSeconds: number;
    names: number;
    identifiers: string[];
    challenge: 'http-01';
    pollIntervalMs: number;
    honourRetryAfter: boolean;
    httpPort: number;
    httpAddresses: string[];
    flowTimeoutSeconds: number;
  };
  stoppedBy: StoppedBy;
  interrupted: boolean;
  warmup: { seconds: number; completed: number; failed: number };
  /** The measured phase: from its first flow's start until its last flow ended. */
  seconds: number;
  flows: {
    started: number;
    completed: number;
    failed: number;
    /** Flows cut short by an interruption (counted neither as completed nor as failed). */
    abandoned: number;
  };
  flowsPerSecond: number;
  /** Of completed flows, from newOrder to the checked certificate. */
  latencyMs: LatencySummary;
  errors: { total: number; byKind: Record<string, number>; samples: Record<string, string> };
  requests: {
    total: number;
    /** Per completed flow (failed flows' requests included in the numerator). */
    perFlow: number;
    signedPosts: number;
    signedPostsPerFlow: number;
    newNonce: number;
    polls: number;
    pollsPerFlow: number;
    retries: number;
  };
  authorizations: {
    /** Validated by the server during the measured phase (each one an http-01 fetch). */
    validated: number;
    /** Already valid when the order was created: the server reused an earlier authorization. */
    reused: number;
    /** "validated", "reused" or "mixed": whether the server reuses authorizations. */
    mode: 'validated' | 'reused' | 'mixed' | 'none';
  };
  validationRequests: number;
  /** TCP (TLS) connections opened to the ACME server during the measured phase, and in all. */
  connections: { measured: number; total: number };
  /** Memory over the measured phase: start, end and peak, and the samples (at most 240, spread over the run). */
  memory: MemorySummary & { intervalSeconds: number; samples: MemorySample[] };
  generator: {
    cpuSeconds: number;
    cpuMsPerFlow: number | null;
  };
  /**
   * Present when the generator could read the server process (--server-pid, Linux /proc): that
   * process and its descendants (`anvil server --workers N`: the primary and its workers).
   */
  server: {
    pid: number;
    processes: number;
    cpuSeconds: number;
    cpuMsPerIssuance: number | null;
  } | null;
  machine: { cpus: number; model: string; node: string; platform: string };
}

const f1 = (v: number) => v.toFixed(1);
const f2 = (v: number) => v.toFixed(2);

export function authorizationMode(validated: number, reused: number): BenchReport['authorizations']['mode'] {
  if (validated === 0 && reused === 0) return 'none';
  if (reused === 0) return 'validated';
  if (validated === 0) return 'reused';
  return 'mixed';
}

/** The report as text, for people. */
export function formatReport(r: BenchReport): string {
  const o = r.options;
  const lines: string[] = [];
  lines.push(`anvil bench against ${r.directoryUrl}`);
  lines.push(
    `  ${o.concurrency} virtual client(s), ${o.names} name(s) per order (${o.identifiers.join(', ')}), ${o.challenge}, ` +
      (o.honourRetryAfter ? `polls honour Retry-After (else every ${o.pollIntervalMs} ms)` : `polls every ${o.pollIntervalMs} ms (Retry-After ignored)`),
  );
  lines.push(
    `  warm-up ${f1(r.warmup.seconds)} s (${r.warmup.completed} flows, ${r.warmup.failed} failed); measured ${f1(r.seconds)} s, stopped by ${r.stoppedBy}` +
      (r.interrupted ? ' (INTERRUPTED: partial report)' : ''),
  );
  lines.push('');
  const fl = r.flows;
  lines.push(
    `flows        ${fl.completed} completed, ${fl.failed} failed${fl.abandoned ? `, ${fl.abandoned} abandoned` : ''}: ${f1(r.flowsPerSecond)} flows/s`,
  );
  const l = r.latencyMs;
  lines.push(`latency      p50 ${f1(l.p50)} ms, p90 ${f1(l.p90)} ms, p99 ${f1(l.p99)} ms, max ${f1(l.max)} ms (mean ${f1(l.mean)} ms)`);
  const q = r.requests;
  lines.push(
    `requests     ${f2(q.perFlow)} per flow (${f2(q.signedPostsPerFlow)} signed POSTs, ${f2(q.pollsPerFlow)} polls); ` +
      `${q.newNonce} newNonce, ${q.retries} retries; ${r.connections.measured} new connection(s) while measuring`,
  );
  const a = r.authorizations;
  lines.push(`authz        ${a.validated} validated (${r.validationRequests} http-01 requests answered), ${a.reused} reused: mode ${a.mode}`);
  if (r.errors.total === 0) lines.push('errors       none');
  else {
    lines.push(`errors       ${r.errors.total}`);
    for (const [kind, n] of Object.entries(r.errors.byKind)) lines.push(`  ${String(n).padStart(8)}  ${kind}: ${r.errors.samples[kind] ?? ''}`);
  }
  const g = r.generator;
  lines.push(
    `generator    CPU ${f2(g.cpuSeconds)} s${g.cpuMsPerFlow !== null ? ` (${f2(g.cpuMsPerFlow)} ms per flow)` : ''}`,
  );
  if (r.server) {
    const s = r.server;
    lines.push(
      `server       pid ${s.pid}${s.processes > 1 ? ` and ${s.processes - 1} child process(es)` : ''}: CPU ${f2(s.cpuSeconds)} s${s.cpuMsPerIssuance !== null ? ` (${f2(s.cpuMsPerIssuance)} ms per issuance)` : ''}`,
    );
  } else lines.push('server       CPU not measured (give --server-pid of a server on this Linux machine)');
  const m = r.memory;
  const series = (name: string, v: { start: number; end: number; max: number } | null) => (v ? `${name} ${f1(v.start)} -> ${f1(v.end)} MB (peak ${f1(v.max)})` : null);
  const mem = [series('generator RSS', m.generatorRssMb), series('heap', m.generatorHeapMb), series('server RSS', m.serverRssMb)].filter(Boolean);
  lines.push(`memory       ${mem.join(', ')}; ${m.samples.length} samples`);
  lines.push(`machine      ${r.machine.cpus} x ${r.machine.model}, node ${r.machine.node}, ${r.machine.platform}`);
  return `${lines.join('\n')}\n`;
}

// ------------------------------------------------------------------ the standard scenario's table

export interface StandardRow {
  report: BenchReport;
  floor: CryptoFloor;
}

function pad(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

/** One table, a row per concurrency level; then the floor's parts. */
export function formatStandardTable(rows: readonly StandardRow[], units: CryptoFloorUnits): string {
  const head = ['clients', 'flows/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors', 'req/flow', 'gen CPU s', 'srv ms/iss', 'floor ms', 'x floor'];
  const body = rows.map(({ report: r, floor }) => {
    const srv = r.server?.cpuMsPerIssuance ?? null;
    return [
      String(r.options.concurrency),
      f1(r.flowsPerSecond),
      f1(r.latencyMs.p50),
      f1(r.latencyMs.p90),
      f1(r.latencyMs.p99),
      f1(r.latencyMs.max),
      String(r.errors.total),
      f2(r.requests.perFlow),
      f2(r.generator.cpuSeconds),
      srv === null ? '-' : f2(srv),
      f2(floor.totalMs),
      srv === null || floor.totalMs === 0 ? '-' : f2(srv / floor.totalMs),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const lines = [pad(head, widths), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map((b) => pad(b, widths))];
  lines.push('');
  lines.push(
    `crypto floor per issuance (node:crypto, this machine, this run): ES256 JWS check ${f1(units.jwsVerifyUs)} us x signed POSTs per flow ` +
      `+ CSR check ${f1(units.csrVerifyUs)} us + certificate signature ${f1(units.certSignUs)} us (P-256, ${units.tbsBytes}-byte TBS)`,
  );
  for (const { report: r, floor } of rows) {
    lines.push(
      `  ${String(r.options.concurrency).padStart(3)} clients: ${f2(floor.signedPostsPerFlow)} x ${f1(units.jwsVerifyUs)} us = ${f2(floor.jwsVerifyMs)} ms ` +
        `+ ${f2(floor.csrVerifyMs)} ms + ${f2(floor.certSignMs)} ms = ${f2(floor.totalMs)} ms`,
    );
  }
  const errs = rows.flatMap(({ report: r }) => Object.entries(r.errors.byKind).map(([k, n]) => `  ${r.options.concurrency} clients: ${n} x ${k}: ${r.errors.samples[k] ?? ''}`));
  if (errs.length) lines.push('errors:', ...errs);
  return `${lines.join('\n')}\n`;
}

/** The machine a figure was measured on, for reports: CPUs, memory, Node, kernel. */
export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.release()}`;
}
