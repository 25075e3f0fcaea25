/**
 * The inventory's background threads (the CA sync, revocation checks, alerts, metrics): each a
 * worker module in this directory with database connections of its own, so that their CPU never
 * holds the server's event loop. `startInventoryThread` starts one from the server side;
 * `threadControl` is the worker side's stop signal and interruptible sleep.
 */
import { parentPort, Worker } from 'node:worker_threads';

/**
 * A worker of this directory (`name`: 'sync-worker', 'alerts-worker', ...) with `data` as its
 * workerData. Under tsx (tests, development) Node 20 does not give workers tsx's loader, so the
 * worker registers it itself before it imports its module.
 */
export function spawnInventoryWorker(name: string, data: unknown): Worker {
  if (import.meta.url.endsWith('.ts')) {
    const target = new URL(`./${name}.ts`, import.meta.url).href;
    const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(target)}); })`;
    return new Worker(boot, { eval: true, workerData: data });
  }
  return new Worker(new URL(`./${name}.js`, import.meta.url), { workerData: data });
}

/**
 * Starts a periodic worker whose messages are reports for `onReport` (a worker error becomes an
 * `{type: 'error'}` report). `stop()` asks it to finish the run in progress and waits, for 10 s at
 * most, then ends it.
 */
export function startInventoryThread<R>(name: string, data: unknown, onReport: (r: R | { type: 'error'; message: string }) => void): { stop(): Promise<void> } {
  const worker = spawnInventoryWorker(name, data);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  worker.on('message', (m: R) => onReport(m));
  worker.on('error', (e) => onReport({ type: 'error', message: e.message }));
  worker.unref();
  return {
    async stop() {
      if (exited) return;
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** In a worker started by startInventoryThread: whether it was told to stop, a sleep that stop() cuts short, and reports. */
export function threadControl<R>(): { stopping(): boolean; signal: AbortSignal; sleep(ms: number): Promise<void>; report(r: R): void } {
  let stopping = false;
  let wake: (() => void) | null = null;
  const abort = new AbortController();
  parentPort!.on('message', (m) => {
    if (m === 'stop') {
      stopping = true;
      abort.abort();
      wake?.();
    }
  });
  return {
    stopping: () => stopping,
    signal: abort.signal,
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        if (stopping) return resolve();
        wake = resolve;
        setTimeout(resolve, ms);
      }),
    report: (r) => parentPort!.postMessage(r),
  };
}
