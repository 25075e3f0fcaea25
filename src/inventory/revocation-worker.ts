/**
 * The revocation thread (started by startRevocationThread in revocation.ts): waits
 * `firstDelayMs`, then checks the inventory's due certificates, waits `wakeMs`, and again, until
 * told to stop. Never throws: a failed run is reported and tried again at the next wake.
 */
import { workerData } from 'node:worker_threads';
import { threadControl } from './thread.js';
import { openInventory } from './inventory.js';
import { checkInventoryRevocation, type RevocationThreadConfig, type RevocationThreadReport } from './revocation.js';

const config = workerData as RevocationThreadConfig;
const { signal, sleep, report } = threadControl<RevocationThreadReport>();

let inv: Awaited<ReturnType<typeof openInventory>> | null = null;
try {
  await sleep(config.firstDelayMs);
  while (!signal.aborted) {
    try {
      inv ??= await openInventory(config.inventory);
      const { results: _none, ...summary } = await checkInventoryRevocation(inv, { ...config.options, maxAgeHours: config.maxAgeHours, signal, keepResults: false });
      if (summary.checked) report({ type: 'checked', summary });
    } catch (e) {
      report({ type: 'error', message: (e as Error).message });
    }
    if (signal.aborted) break;
    await sleep(config.wakeMs);
  }
} finally {
  await inv?.close().catch(() => {});
  // The message listener would keep the thread alive; in a worker this ends only the thread.
  process.exit(0);
}
