/**
 * Automatic sources of the inventory.
 *
 * The CA's database: every certificate the CA issued, with its profile, and its revocation. Both
 * are read in the order of their time (issuance, revocation), from cursors kept in the inventory
 * (inv_sources). Each read starts a little before the cursor, because replicas stamp issuances
 * with their own clocks; a certificate read again is only hashed and found known.
 */
import type { CertificateChangeCursor, Store } from '../storage/store.js';
import type { InventoryStore } from './store.js';

export const CA_SOURCE = 'ca';
/** How far before the cursor each sync reads again (clock differences between replicas). */
export const CA_REREAD_MS = 30_000;

export interface SyncResult {
  /** Certificates read from the source (some again: the re-read window). */
  read: number;
  /** New in the inventory. */
  added: number;
  /** Certificates that could not be parsed (left out; a CA bug, reported). */
  failed: number;
  /** True when the limit stopped it before the end. */
  more: boolean;
}

type ChangeSource = Pick<Store, 'listCertificateChanges'>;
type Saved = { at: number; id: string };

/**
 * Reads what the CA issued, then what it revoked, since the last sync: two cursors, each following
 * an index of the CA's table. At most `maxCertificates` rows per call (then `more` is true).
 */
export async function syncFromCa(inv: InventoryStore, ca: ChangeSource, now: Date, opts: { batch?: number; maxCertificates?: number } = {}): Promise<SyncResult> {
  const batch = opts.batch ?? 500;
  const max = opts.maxCertificates ?? 100_000;
  const saved = ((await inv.getCursor(CA_SOURCE)) ?? {}) as { issued?: Saved; revoked?: Saved };
  const r: SyncResult = { read: 0, added: 0, failed: 0, more: false };
  const next: { issued?: Saved; revoked?: Saved } = { ...saved };
  // Rows at or before a saved cursor (the re-read window) do not count toward `max`: a window
  // holding more than `max` rows must not stop every call at the same place.
  let progress = 0;
  for (const kind of ['issued', 'revoked'] as const) {
    const from = saved[kind];
    const isNews = (c: { at: Date; id: string }) => !from || c.at.getTime() > from.at || (c.at.getTime() === from.at && c.id > from.id);
    let cursor: CertificateChangeCursor | null = from ? { at: new Date(from.at - CA_REREAD_MS), id: '' } : null;
    for (;;) {
      if (progress >= max) {
        r.more = true;
        break;
      }
      const rows = await ca.listCertificateChanges(kind, cursor, batch);
      if (rows.length === 0) break;
      const res = await inv.recordCertificates(
        rows.map((c) => ({ der: c.der, profile: c.profile, revoked: c.revokedAt ? { at: c.revokedAt, reason: c.revocationReason } : null })),
        'ca',
        now,
      );
      r.read += rows.length;
      r.added += res.isNew;
      r.failed += res.failed;
      progress += rows.filter(isNews).length;
      const end = rows[rows.length - 1]!;
      cursor = { at: end.at, id: end.id };
      const prev = next[kind];
      if (!prev || end.at.getTime() > prev.at || (end.at.getTime() === prev.at && end.id > prev.id)) next[kind] = { at: end.at.getTime(), id: end.id };
      if (rows.length < batch) break;
    }
    if (r.more) break;
  }
  await inv.setCursor(CA_SOURCE, next, now);
  return r;
}

/** What the inventory sync thread needs: where the CA's store and the inventory are, and how often. */
export interface SyncThreadConfig {
  store: import('../storage/index.js').StoreConfig;
  inventory: import('./inventory.js').InventoryLocation;
  intervalMs: number;
}

export interface SyncThreadReport {
  type: 'synced' | 'error';
  result?: SyncResult;
  message?: string;
}

/**
 * Runs the CA-to-inventory sync in a worker thread of its own (sync-worker.ts), with its own
 * database connections, so that parsing thousands of certificates never holds the server's event
 * loop. The thread syncs at once, then every `intervalMs`; `stop()` ends it after the sync in
 * progress. Reports go to `onReport` (for the log).
 */
export async function startSyncThread(config: SyncThreadConfig, onReport: (r: SyncThreadReport) => void): Promise<{ stop(): Promise<void> }> {
  const { startInventoryThread } = await import('./thread.js');
  return startInventoryThread<SyncThreadReport>('sync-worker', config, onReport);
}
