/**
 * The Anvil client's lineages as a source of the inventory: every archived version of each lineage
 * (`archive/NAME/certN.pem`) is recorded, the live one as deployed at `<store>/live/NAME`
 * (installation kind `lineage`), and a failed renewal, as the renewal state records it, as a
 * `renewal-failed` event (once per attempt). Reads the store's files only; never writes them.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineageStore } from '../client/store.js';
import { normalizeState } from '../client/renewal/state.js';
import { parsePem } from '../lib/pem.js';
import type { InventoryStore } from './store.js';

export interface LineageSyncResult {
  lineages: number;
  certificates: number;
  added: number;
  renewalFailures: number;
  /** Lineages or files that could not be read: name and why. */
  problems: Array<{ lineage: string; message: string }>;
}

function firstCertificate(pem: string): Buffer | null {
  return parsePem(pem).find((b) => b.label === 'CERTIFICATE')?.der ?? null;
}

export async function syncLineages(inv: InventoryStore, root: string, now: Date): Promise<LineageSyncResult> {
  const store = new LineageStore(path.resolve(root));
  const r: LineageSyncResult = { lineages: 0, certificates: 0, added: 0, renewalFailures: 0, problems: [] };
  for (const name of await store.names()) {
    r.lineages++;
    try {
      for (const v of (await store.versions(name)).reverse()) {
        const pem = await readFile(path.join(store.archiveDir, name, `cert${v}.pem`), 'utf8').catch(() => null);
        const der = pem ? firstCertificate(pem) : null;
        if (!der) continue;
        r.certificates++;
        if ((await inv.recordCertificate(der, 'lineage', now)).isNew) r.added++;
      }
      const live = await store.current(name);
      const place = { kind: 'lineage' as const, location: path.join(store.liveDir, name), sni: null };
      const livePem = live ? await readFile(live.cert, 'utf8').catch(() => null) : null;
      const liveDer = livePem ? firstCertificate(livePem) : null;
      const id = await inv.recordSighting(place, liveDer ? { found: true, der: liveDer } : { found: false, error: 'no live certificate' }, 'lineage', now);
      const stateText = await readFile(path.join(store.root, 'renewal', '.state', `${name}.json`), 'utf8').catch(() => null);
      const state = normalizeState(stateText ? (JSON.parse(stateText) as unknown) : null);
      if (state.lastResult === 'failed' && state.lastAttempt) {
        const seen = await inv.listEvents({ installationId: id, type: 'renewal-failed', limit: 100_000 });
        if (!seen.some((e) => e.detail.attempt === state.lastAttempt)) {
          await inv.addEvent(now, 'renewal-failed', liveDer ? (await inv.recordCertificate(liveDer, 'lineage', now)).fingerprint : null, id, {
            lineage: name,
            attempt: state.lastAttempt,
            error: state.lastError ?? null,
            failures: state.failures,
          });
          r.renewalFailures++;
        }
      }
    } catch (e) {
      r.problems.push({ lineage: name, message: (e as Error).message });
    }
  }
  return r;
}
