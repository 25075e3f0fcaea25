/**
 * `anvil server --workers 2`: one primary, two worker processes on one port and one SQLite file.
 * Issuances in parallel all succeed and both workers do the work; a worker killed with SIGKILL is
 * replaced and service goes on; the primary's inventory sync records every issuance; SIGTERM to
 * the primary stops everything with exit code 0.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, exited, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { issue } from '../helpers/flow.js';
import { startHttp01Responder, type Http01Responder } from '../helpers/http01-responder.js';
import { freePort } from '../helpers/ports.js';
import { RawAcme } from '../helpers/raw-acme.js';
import { runTool } from '../helpers/run.js';

/** CPU ticks (user + system) of a process, from /proc. */
async function cpuTicks(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function workerPids(primary: number): Promise<number[]> {
  const r = await runTool('pgrep', ['-P', String(primary)]);
  return r.stdout.split('\n').filter(Boolean).map(Number).sort();
}

describe('anvil server --workers 2', { timeout: 120_000 }, () => {
  let anvil: StartedAnvil;
  let responder: Http01Responder;

  before(async () => {
    const httpPort = await freePort();
    responder = await startHttp01Responder(httpPort);
    anvil = await startAnvil({ workers: 2, tls: { enabled: false }, acme: { authzReuseDays: 0 }, validation: { httpPort }, inventory: { syncSeconds: 1 } });
  });
  after(async () => {
    await anvil?.cleanup();
    await responder?.close();
  });

  const present = (token: string, ka: string) => responder.set(token, ka);
  async function issueOne(): Promise<string> {
    const acme = await new RawAcme(anvil.directoryUrl).init();
    assert.equal((await acme.register()).status, 201);
    return (await issue(acme, ['127.0.0.1'], {}, present)).chain;
  }

  test('parallel issuances all succeed, and both workers do the work', async () => {
    const pids = await workerPids(anvil.proc.pid!);
    assert.equal(pids.length, 2, `two workers: ${pids}`);
    const before = await Promise.all(pids.map(cpuTicks));
    const chains = await Promise.all(Array.from({ length: 8 }, () => issueOne()));
    assert.ok(chains.every((c) => c.includes('BEGIN CERTIFICATE')));
    const after = await Promise.all(pids.map(cpuTicks));
    assert.ok(after.every((t, i) => t > before[i]!), `both workers used CPU: ${before} -> ${after}`);
  });

  test('a worker killed with SIGKILL is replaced, and issuance goes on', async () => {
    const [victim] = await workerPids(anvil.proc.pid!);
    process.kill(victim!, 'SIGKILL');
    let pids: number[] = [];
    for (let k = 0; k < 50; k++) {
      await new Promise((r) => setTimeout(r, 200));
      pids = await workerPids(anvil.proc.pid!);
      if (pids.length === 2 && !pids.includes(victim!)) break;
    }
    assert.equal(pids.length, 2);
    assert.ok(!pids.includes(victim!));
    // Issuances still complete (whichever worker takes them).
    for (let k = 0; k < 3; k++) assert.match(await issueOne(), /BEGIN CERTIFICATE/);
  });

  test('the primary records every issuance in the inventory, also after a worker was replaced', async () => {
    const count = async () => {
      const r = await runTool(process.execPath, [ANVIL_BIN, 'inventory', 'list', '--json', '--data-dir', anvil.dataDir]);
      assert.equal(r.code, 0, r.out);
      return (JSON.parse(r.stdout) as { certificates: Array<{ source: string }> }).certificates.filter((c) => c.source === 'ca').length;
    };
    // 8 + 3 issued above; 2 more now.
    for (let k = 0; k < 2; k++) await issueOne();
    let n = 0;
    for (let k = 0; k < 60 && n < 13; k++) {
      await new Promise((r) => setTimeout(r, 250));
      n = await count();
    }
    assert.equal(n, 13);
  });

  test('SIGTERM to the primary stops every worker, exit code 0', async () => {
    const pids = await workerPids(anvil.proc.pid!);
    anvil.proc.kill('SIGTERM');
    await exited(anvil.proc);
    assert.equal(anvil.proc.exitCode, 0);
    for (const p of pids) assert.throws(() => process.kill(p, 0), 'the worker is gone');
  });
});
