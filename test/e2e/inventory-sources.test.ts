/**
 * Issue 6 (inventory): the automatic sources. A real `anvil server` (SQLite) records what it issues
 * and revokes in its inventory from a thread of its own (inventory.syncSeconds), and `anvil
 * inventory sync --lineages` records the Anvil client's lineages: the live certificate as deployed,
 * and a renewal that failed (the CA stopped) as an event, once.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, type StartedAnvil } from '../helpers/anvil-process.js';
import { startLoopbackCa, type LoopbackCa } from '../helpers/loopback-ca.js';
import { missingTools, runTool } from '../helpers/run.js';

interface Listed {
  fingerprint: string;
  names: string[];
  source: string;
  profile: string | null;
  revoked: { reason: number | null } | null;
  health: { findings: Array<{ check: string; severity: string }> };
  installations: Array<{ kind: string; location: string; status: string }>;
}

describe('inventory sources: the CA database and client lineages', { timeout: 180_000, skip: missingTools('openssl') }, () => {
  let ca: LoopbackCa;
  let anvil: StartedAnvil;
  let store: string;

  before(async () => {
    ca = await startLoopbackCa('anvil-inventory-sources-', { inventory: { syncSeconds: 1 } });
    ({ anvil, store } = ca);
  });
  after(async () => {
    await ca?.cleanup();
  });

  const inventory = (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, 'inventory', ...args, '--data-dir', anvil.dataDir]);
  const client = (...args: string[]) => ca.cli([...args, '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem]);

  async function listed(): Promise<Listed[]> {
    const r = await inventory('list', '--json');
    assert.equal(r.code, 0, r.out);
    return (JSON.parse(r.stdout) as { certificates: Listed[] }).certificates;
  }
  async function eventually<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
    const end = Date.now() + 30_000;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  test('what the server issues and revokes reaches its inventory by itself; lineages by sync', async () => {
    const issued = await ca.issue('loop');
    assert.equal(issued.code, 0, issued.out);
    const fromCa = await eventually('the issued certificate in the inventory', async () => (await listed()).find((c) => c.names.includes('127.0.0.1') && !c.revoked));
    assert.equal(fromCa.source, 'ca');
    assert.equal(fromCa.installations.length, 0, 'the CA does not know where it is deployed');

    const revoke = await client('revoke', 'loop', '--reason', 'superseded');
    assert.equal(revoke.code, 0, revoke.out);
    const revoked = await eventually('the revocation in the inventory', async () => (await listed()).find((c) => c.fingerprint === fromCa.fingerprint && c.revoked));
    assert.equal(revoked.revoked?.reason, 4);
    assert.deepEqual(revoked.health.findings.map((f) => `${f.check}:${f.severity}`), ['revoked:notice']);

    const sync = await inventory('sync', '--lineages', store, '--json');
    assert.equal(sync.code, 0, sync.out);
    const result = JSON.parse(sync.stdout) as { ca: { read: number }; lineages: Array<{ lineages: number; certificates: number; added: number }> };
    assert.equal(result.lineages[0]?.lineages, 1);
    assert.equal(result.lineages[0]?.certificates, 1);
    assert.equal(result.lineages[0]?.added, 0, 'the lineage holds the certificate the CA already reported');
    const deployed = (await listed()).find((c) => c.fingerprint === fromCa.fingerprint)!;
    assert.deepEqual(deployed.installations.map((i) => `${i.kind}:${i.location}:${i.status}`), [`lineage:${path.join(store, 'live', 'loop')}:present`]);
    assert.deepEqual(deployed.health.findings.map((f) => `${f.check}:${f.severity}`), ['revoked:critical'], 'revoked and still deployed');

    // A renewal that fails (the CA is gone) is recorded once, however often the store is synced.
    await anvil.stop();
    const renew = await ca.cli(['renew', '--cert', 'loop', '--force', '--no-random-delay']);
    assert.equal(renew.code, 5, renew.out);
    assert.match(renew.stdout, /loop: FAILED/);
    for (let i = 0; i < 2; i++) {
      const again = await inventory('sync', '--no-ca', '--lineages', store, '--json');
      assert.equal(again.code, 0, again.out);
    }
    const show = await inventory('show', fromCa.fingerprint, '--json');
    const events = (JSON.parse(show.stdout) as { events: Array<{ type: string; detail: Record<string, unknown> }> }).events;
    const failures = events.filter((e) => e.type === 'renewal-failed');
    assert.equal(failures.length, 1, JSON.stringify(events));
    assert.equal(failures[0]?.detail.lineage, 'loop');
    assert.ok(typeof failures[0]?.detail.error === 'string' && failures[0].detail.error.length > 0);
    assert.deepEqual(events.map((e) => e.type).slice(0, 3), ['issued', 'revoked', 'deployed']);
  });
});
