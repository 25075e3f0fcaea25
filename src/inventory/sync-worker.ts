/**
 * The inventory sync thread (started by startSyncThread in sources.ts): opens the CA's store and
 * the inventory, syncs, waits `intervalMs`, and again, until told to stop. Never throws: a failed
 * sync is reported and tried again at the next interval.
 */
import { workerData } from 'node:worker_threads';
import { threadControl } from './thread.js';
import { openStore } from '../storage/index.js';
import { openInventory } from './inventory.js';
import { syncFromCa, type SyncThreadConfig, type SyncThreadReport } from './sources.js';

const config = workerData as SyncThreadConfig;
const { stopping, sleep, report } = threadControl<SyncThreadReport>();

let ca: Awaited<ReturnType<typeof openStore>> | null = null;
let inv: Awaited<ReturnType<typeof openInventory>> | null = null;
try {
  while (!stopping()) {
    try {
      // Opened on first use, and again after a failure to open (a database not reachable yet).
      ca ??= await openStore(config.store);
      inv ??= await openInventory(config.inventory);
      let r;
      do {
        r = await syncFromCa(inv, ca, new Date(), { maxCertificates: 20_000 });
        if (r.read) report({ type: 'synced', result: r });
      } while (r.more && !stopping());
    } catch (e) {
      report({ type: 'error', message: (e as Error).message });
    }
    if (stopping()) break;
    await sleep(config.intervalMs);
  }
} finally {
  await inv?.close().catch(() => {});
  await ca?.close().catch(() => {});
  // The message listener would keep the thread alive; in a worker this ends only the thread.
  process.exit(0);
}
