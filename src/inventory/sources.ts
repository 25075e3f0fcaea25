/**
 * Automatic sources of the inventory.
 *
 * The CA's database: every certificate the CA issued, with its profile, and its revocation. It is
 * read in the order of each certificate's last change, from a cursor kept in the inventory
 * (inv_sources). Each read starts a little before the cursor, because replicas stamp issuances
 * with their own clocks; recording is idempotent, so reading something twice costs only time.
 */
import type { CertificateChangeCursor, CertificateRecord, Store } from '../storage/store.js';
import type { InventoryStore } from './store.js';

export const CA_SOURCE = 'ca';
/** How far before the cursor each sync reads again (clock differences between replicas). */
export const CA_REREAD_MS = 30_000;

export interface SyncResult {
  /** Certificates read from the source (again, possibly). */
  read: number;
  /** New in the inventory. */
  added: number;
  /** Certificates that could not be parsed (left out; a CA bug, reported). */
  failed: number;
  /** True when the limit stopped it before the end. */
  more: boolean;
}

type ChangeSource = Pick<Store, 'listCertificateChanges'>;

/** Reads what the CA issued or revoked since the last sync; at most `maxCertificates` per call. */
export async function syncFromCa(inv: InventoryStore, ca: ChangeSource, now: Date, opts: { batch?: number; maxCertificates?: number } = {}): Promise<SyncResult> {
  const batch = opts.batch ?? 500;
  const max = opts.maxCertificates ?? 100_000;
  const saved = (await inv.getCursor(CA_SOURCE)) as { at: number; id: string } | null;
  let cursor: CertificateChangeCursor | null = saved ? { at: new Date(saved.at - CA_REREAD_MS), id: '' } : null;
  const r: SyncResult = { read: 0, added: 0, failed: 0, more: false };
  let last: CertificateChangeCursor | null = saved ? { at: new Date(saved.at), id: saved.id } : null;
  for (;;) {
    const rows = await ca.listCertificateChanges(cursor, batch);
    if (rows.length === 0) break;
    const items = rows.filter((c): c is CertificateRecord & { changedAt: Date; der: Buffer } => c.der !== null);
    const res = await inv.recordCertificates(
      items.map((c) => ({ der: c.der, profile: c.profile, revoked: c.revokedAt ? { at: c.revokedAt, reason: c.revocationReason } : null })),
      'ca',
      now,
    );
    r.read += rows.length;
    r.added += res.isNew;
    r.failed += res.failed + (rows.length - items.length);
    const end = rows[rows.length - 1]!;
    cursor = { at: end.changedAt, id: end.id };
    if (!last || end.changedAt.getTime() > last.at.getTime() || (end.changedAt.getTime() === last.at.getTime() && end.id > last.id)) last = cursor;
    if (rows.length < batch) break;
    if (r.read >= max) {
      r.more = true;
      break;
    }
  }
  if (last) await inv.setCursor(CA_SOURCE, { at: last.at.getTime(), id: last.id }, now);
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
  const { Worker } = await import('node:worker_threads');
  // Under tsx (tests) this module is a .ts file and so is its worker; from dist, both are .js.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const worker = new Worker(new URL(`./sync-worker${ext}`, import.meta.url), { workerData: config, execArgv: process.execArgv });
  worker.on('message', (m: SyncThreadReport) => onReport(m));
  worker.on('error', (e) => onReport({ type: 'error', message: e.message }));
  worker.unref();
  return {
    async stop() {
      worker.postMessage('stop');
      const done = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await done;
      clearTimeout(timer);
    },
  };
}
