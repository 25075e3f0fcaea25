/**
 * The inventory alerts thread (started by startAlertsThread in alerts.ts): opens the inventory,
 * builds the channels, runs the alerts, waits `intervalMs`, and again, until told to stop. Never
 * throws: a failed run is reported and tried again at the next interval.
 */
import { workerData } from 'node:worker_threads';
import { threadControl } from './thread.js';
import { createChannels, type AlertChannel } from './alert-channels.js';
import { AlertEngine, type AlertsThreadConfig, type AlertsThreadReport } from './alerts.js';
import { openInventory } from './inventory.js';

const config = workerData as AlertsThreadConfig;
const { stopping, sleep, report } = threadControl<AlertsThreadReport>();

let inv: Awaited<ReturnType<typeof openInventory>> | null = null;
let channels: AlertChannel[] | null = null;
try {
  while (!stopping()) {
    try {
      // Opened on first use, and again after a failure (a database not reachable yet, a secret
      // file not there yet).
      inv ??= await openInventory(config.inventory);
      channels ??= await createChannels(config.alerts);
      const r = await new AlertEngine({ store: inv, config: config.alerts, channels }).run();
      report({ type: 'run', report: r });
    } catch (e) {
      report({ type: 'error', message: (e as Error).message, code: (e as { code?: string }).code });
    }
    if (stopping()) break;
    await sleep(config.intervalMs);
  }
} finally {
  for (const c of channels ?? []) await c.close().catch(() => {});
  await inv?.close().catch(() => {});
  // The message listener would keep the thread alive; in a worker this ends only the thread.
  process.exit(0);
}
