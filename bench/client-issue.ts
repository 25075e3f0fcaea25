/**
 * `npm run bench:client`: wall time of one `anvil issue` (the real binary: process start, account
 * load, order, http-01 on loopback validated by a running `anvil server`, finalize, download,
 * chain check, atomic store write) against a local CA. The server's authorization reuse is off, so
 * every run validates. Prints the runs, the median and the machine as one JSON line.
 *
 *   npm run build && npm run bench:client -- [--runs N]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { ANVIL_BIN, startAnvil } from '../test/helpers/anvil-process.js';
import { freePort } from '../test/helpers/ports.js';
import { median } from './common.js';

const run = promisify(execFile);
const { values } = parseArgs({ options: { runs: { type: 'string', default: '9' } } });
const runs = Math.max(1, Math.min(Number(values.runs), 50));

const httpPort = await freePort();
const anvil = await startAnvil({ acme: { authzReuseDays: 0 }, log: { level: 'warn' }, validation: { httpPort, addressPolicy: { allowLoopback: true } } });
const store = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-client-'));
const args = ['issue', '-d', '127.0.0.1', '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1', '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', store, '--force', '--json'];
try {
  // The first run registers the account; it is measured separately.
  const t0 = performance.now();
  await run(process.execPath, [ANVIL_BIN, ...args]);
  const first = performance.now() - t0;
  const times: number[] = [];
  const startup: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await run(process.execPath, [ANVIL_BIN, '--version']);
    startup.push(performance.now() - s);
    const t = performance.now();
    await run(process.execPath, [ANVIL_BIN, ...args]);
    times.push(performance.now() - t);
  }
  process.stdout.write(
    `${JSON.stringify({
      bench: 'anvil issue (process, http-01 on loopback, local anvil server)',
      runs,
      firstRunWithRegistrationMs: Math.round(first),
      medianMs: Math.round(median(times)),
      minMs: Math.round(Math.min(...times)),
      maxMs: Math.round(Math.max(...times)),
      medianProcessStartMs: Math.round(median(startup)),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
    })}\n`,
  );
} finally {
  await anvil.cleanup();
  await rm(store, { recursive: true, force: true });
}
