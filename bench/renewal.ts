/**
 * `npm run bench:renew`: a renewal run over a large store against the real `anvil server` binary.
 *
 * Set-up (timed separately): one certificate is issued for real (`anvil issue`, http-01 to
 * 127.0.0.1, so the account holds a valid authorization), then N lineages are created by this
 * script: certificates signed with the server's own CA key and recorded in its database (so ARI and
 * OCSP know them), lineage files and configs written to the client store. `--due` of them are 85
 * days into a 90-day life (past their ARI window); the rest are younger.
 *
 * Measured, each as a separate `anvil renew` process:
 *   1. cold: the first run ever (no state files): plan (parse every certificate, fetch renewalInfo
 *      and OCSP for every lineage) and renew the due ones, concurrently;
 *   2. warm: the next run (state files, ARI and OCSP answers fresh): plans and finds nothing due;
 *   3. warm, --dry-run --no-revocation-check: planning alone.
 * Bounded: at most 20,000 lineages and 2,000 due; every child has a deadline.
 *
 *   npm run bench:renew -- [--lineages 10000] [--due 200] [--concurrency 16] [--cpu-prof-dir DIR]
 */
import { execFile, spawn } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { loadCa } from '../src/server/issuance/ca.js';
import { openSqliteStore } from '../src/storage/sqlite.js';
import { ANVIL_BIN, startAnvil } from '../test/helpers/anvil-process.js';
import { freePort } from '../test/helpers/ports.js';
import { intOption } from './common.js';

const run = promisify(execFile);
const DAY = 86_400_000;
const { values } = parseArgs({
  options: {
    lineages: { type: 'string', default: '10000' },
    due: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '16' },
    /** Write V8 CPU profiles of each `anvil renew` run here (open them in Chrome DevTools). */
    'cpu-prof-dir': { type: 'string' },
  },
});
const N = intOption('lineages', values.lineages, 10, 20_000);
const DUE = intOption('due', values.due, 0, Math.min(2000, N));
const CONCURRENCY = intOption('concurrency', values.concurrency, 1, 64);

const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-renew-'));
const store = path.join(dir, 'store');
const port = await freePort();
const httpPort = await freePort();
const anvil = await startAnvil({
  listen: { host: '127.0.0.1', port },
  log: { level: 'warn' },
  acme: { maxPendingOrdersPerAccount: 100_000 },
  validation: { httpPort, addressPolicy: { allowLoopback: true } },
});

/** `anvil renew ...` as a child; wall time and its JSON summary. */
async function renew(args: string[], deadlineMs: number): Promise<{ ms: number; summary: { results: Array<{ status: string }> } }> {
  const t0 = performance.now();
  const prof = values['cpu-prof-dir'] ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(values['cpu-prof-dir'])] : [];
  const child = spawn(process.execPath, [...prof, ANVIL_BIN, 'renew', '--store', store, '--no-random-delay', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`anvil renew ${args.join(' ')} exited ${code}:\n${err}\n${out.slice(-2000)}`);
  return { ms, summary: JSON.parse(out) as { results: Array<{ status: string }> } };
}

const count = (s: { results: Array<{ status: string }> }) =>
  s.results.reduce<Record<string, number>>((acc, r) => ((acc[r.status] = (acc[r.status] ?? 0) + 1), acc), {});

try {
  // 1. One real issuance: the account, and a valid authorization for 127.0.0.1 that renewals reuse.
  const t0 = performance.now();
  await run(process.execPath, [
    ANVIL_BIN, 'issue', '-d', '127.0.0.1', '--cert-name', 'template', '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1',
    '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', store, '--quiet',
  ], { timeout: 60_000 });
  const template = JSON.parse(await readFile(path.join(store, 'renewal', 'template.json'), 'utf8')) as Record<string, unknown>;
  const accountJson = JSON.parse(
    await readFile(await findAccountFile(path.join(store, 'accounts')), 'utf8'),
  ) as { url: string };
  const accountId = accountJson.url.split('/').pop()!;

  // 2. N lineages, recorded in the CA's database while the server is stopped.
  await anvil.stop();
  const base = new URL(anvil.directoryUrl).origin;
  const ca = await loadCa(path.join(anvil.dataDir, 'ca'), { issuerUrl: `${base}/ca/intermediate.der`, crlUrl: `${base}/ca/crl`, ocspUrl: `${base}/ocsp` });
  const db = await openSqliteStore(anvil.dbPath);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const now = Date.now();
  const identifiers = [{ type: 'ip' as const, value: '127.0.0.1' }];
  await mkdir(path.join(store, 'live'), { recursive: true });
  for (let i = 0; i < N; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, N - i) }, async (_, j) => {
        const k = i + j;
        const name = `l${String(k).padStart(5, '0')}`;
        // Due ones are 85 days into 90 (past the window [60, 75] days); the others 0 to 50 days old.
        const age = k < DUE ? 85 * DAY : Math.floor(((k * 7919) % 50) * DAY + (k % 1000) * 1000);
        const notBefore = new Date(Math.floor((now - age) / 1000) * 1000);
        const plan = { serial: ca.newSerial(), notBefore, notAfter: new Date(notBefore.getTime() + 90 * DAY), identifiers, spki, clientAuth: false };
        const issued = await ca.sign(plan);
        const orderId = `bench-order-${k}`;
        const certId = `bench-cert-${k}`;
        await db.createOrder({
          id: orderId, accountId, status: 'valid', expires: new Date(now + DAY), identifiers, notBefore: null, notAfter: null, error: null,
          authzIds: [], certificateId: certId, createdAt: notBefore, profile: 'classic', replaces: null,
        });
        await db.createCertificate({
          id: certId, serial: plan.serial, accountId, orderId, status: 'issued', identifiers, notBefore, notAfter: plan.notAfter,
          plan: { bench: true }, der: issued.der, chainPem: issued.chainPem, issuedAt: notBefore, revokedAt: null, revocationReason: null,
          createdAt: notBefore, profile: 'classic', replacesId: null, renewalWindow: null,
        });
        // The store's layout (src/client/store.ts), written directly: archive files, a version
        // directory of links, live/NAME -> .NAME.v1, and the renewal config.
        const [leaf, chain] = splitChain(issued.chainPem);
        const arch = path.join(store, 'archive', name);
        await mkdir(arch, { recursive: true, mode: 0o700 });
        await writeFile(path.join(arch, 'cert1.pem'), leaf);
        await writeFile(path.join(arch, 'chain1.pem'), chain);
        await writeFile(path.join(arch, 'fullchain1.pem'), issued.chainPem);
        await writeFile(path.join(arch, 'privkey1.pem'), keyPem, { mode: 0o600 });
        const vdir = path.join(store, 'live', `.${name}.v1`);
        await mkdir(vdir, { mode: 0o700 });
        for (const f of ['cert', 'chain', 'fullchain', 'privkey']) await symlink(path.join('..', '..', 'archive', name, `${f}1.pem`), path.join(vdir, `${f}.pem`));
        await symlink(`.${name}.v1`, path.join(store, 'live', name));
        await writeFile(path.join(store, 'renewal', `${name}.json`), JSON.stringify({ ...template, name, createdAt: notBefore.toISOString(), updatedAt: notBefore.toISOString() }, null, 2));
      }),
    );
  }
  await db.close();
  await anvil.restart();
  const setupS = (performance.now() - t0) / 1000;

  // 3. The runs.
  const runArgs = ['--concurrency', String(CONCURRENCY), '--rate', '10000', '--ari-rate', '1000000'];
  const cold = await renew(runArgs, 900_000);
  const warm = await renew(runArgs, 300_000);
  const plan = await renew([...runArgs, '--dry-run', '--no-revocation-check'], 300_000);
  const c = count(cold.summary);
  const renewed = c.renewed ?? 0;
  if (renewed !== DUE) throw new Error(`expected ${DUE} renewals in the cold run, got ${JSON.stringify(c)}`);
  if ((count(warm.summary)['not-due'] ?? 0) !== N + 1) throw new Error(`the warm run should find nothing due: ${JSON.stringify(count(warm.summary))}`);

  const machine = `${os.cpus().length}x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  const row = (what: string, ms: number, note: string) => `  ${what.padEnd(34)} ${(ms / 1000).toFixed(1).padStart(7)} s   ${note}`;
  process.stdout.write(
    [
      `anvil renew over ${N + 1} lineages against anvil server (${machine}; client and server on this machine)`,
      `  set-up: ${N} lineages created by this script in ${setupS.toFixed(1)} s (not part of the figures below)`,
      row('cold run (first ever)', cold.ms, `plan + ARI and OCSP for every lineage + ${renewed} renewals at concurrency ${CONCURRENCY}`),
      row('warm run (nothing due)', warm.ms, 'state files; ARI and OCSP answers still fresh: no network'),
      row('warm plan only (--dry-run)', plan.ms, 'planning alone, process start included'),
      '',
    ].join('\n'),
  );
  process.stdout.write(
    `${JSON.stringify({
      bench: 'renewal',
      machine,
      lineages: N + 1,
      due: DUE,
      concurrency: CONCURRENCY,
      setupSeconds: Number(setupS.toFixed(1)),
      coldRunSeconds: Number((cold.ms / 1000).toFixed(2)),
      renewed,
      warmRunSeconds: Number((warm.ms / 1000).toFixed(2)),
      warmPlanSeconds: Number((plan.ms / 1000).toFixed(2)),
    })}\n`,
  );
} finally {
  await anvil.cleanup();
  await rm(dir, { recursive: true, force: true });
}

function splitChain(pem: string): [string, string] {
  const i = pem.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----'.length;
  return [`${pem.slice(0, i).trim()}\n`, `${pem.slice(i).trim()}\n`];
}

async function findAccountFile(root: string): Promise<string> {
  const { readdir } = await import('node:fs/promises');
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name === 'account.json') return path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
  }
  throw new Error(`no account.json under ${root}`);
}

