/**
 * The inventory metrics thread (started by startMetricsThread in metrics.ts): opens the inventory,
 * keeps it in memory (InventoryMetricsModel), and when asked brings it up to date and hands back
 * the parts of the exposition that changed (transferred, not copied). Never throws: a failed build
 * is answered as such.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openInventory } from './inventory.js';
import { directBuilder, type MetricsThreadAnswer, type MetricsThreadConfig, type MetricsThreadRequest } from './metrics.js';

const config = workerData as MetricsThreadConfig;
const builder = directBuilder(() => openInventory(config.inventory), config.options);
const port = parentPort!;

port.on('message', (m: MetricsThreadRequest | 'stop') => {
  if (m === 'stop') {
    // The message listener would keep the thread alive; in a worker this ends only the thread.
    void builder.close().finally(() => process.exit(0));
    return;
  }
  builder.build(new Date(m.now), m.full).then(
    (built) => {
      // The server keeps what it is given until the next build: a part whose buffer has much room
      // left over goes as a copy of its exact size.
      const parts = built.map((p) => {
        if (p === null || p.buffer.byteLength <= p.length * 1.1) return p;
        // Never from Node's shared pool: it is transferred.
        const exact = Buffer.allocUnsafeSlow(p.length);
        p.copy(exact);
        return exact;
      });
      // Each part is a writer's buffer: its own ArrayBuffer (never Node's pool), starting at offset 0.
      const answer: MetricsThreadAnswer = { id: m.id, ok: true, parts: parts.map((p) => (p === null ? null : { bytes: p.buffer as ArrayBuffer, length: p.length })) };
      port.postMessage(answer, [...new Set(parts.flatMap((p) => (p === null ? [] : [p.buffer as ArrayBuffer])))]);
    },
    (e: unknown) => port.postMessage({ id: m.id, ok: false, message: (e as Error).message } satisfies MetricsThreadAnswer),
  );
});
