/**
 * The inventory metrics thread (started by startMetricsThread in metrics.ts): opens the inventory,
 * builds the exposition when asked, and hands the bytes back (transferred). Never throws: a failed
 * build is answered as such.
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
  builder.build(new Date(m.now)).then(
    (bytes) => {
      // The writer's buffer is its own ArrayBuffer (never Node's pool), starting at offset 0.
      const answer: MetricsThreadAnswer = { id: m.id, ok: true, bytes: bytes.buffer as ArrayBuffer, length: bytes.length };
      port.postMessage(answer, [bytes.buffer as ArrayBuffer]);
    },
    (e: unknown) => port.postMessage({ id: m.id, ok: false, message: (e as Error).message } satisfies MetricsThreadAnswer),
  );
});
