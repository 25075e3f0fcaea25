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
 * `{type: 'error'}` report). A worker that ends by itself (an uncaught error, out of memory) is
 * reported and started again after a pause that doubles from `restartMs` up to 5 minutes (back to
 * `restartMs` once one has run for 10 minutes). `stop()` asks it to finish the run in progress and
 * waits, for 10 s at most, then ends it.
 */
export function startInventoryThread<R>(
  name: string,
  data: unknown,
  onReport: (r: R | { type: 'error'; message: string }) => void,
  restartMs = 5_000,
): { stop(): Promise<void> } {
  let stopping = false;
  let pause = restartMs;
  let timer: NodeJS.Timeout | null = null;
  let current: { worker: Worker; exit: Promise<void>; exited: boolean } | null = null;
  const again = () => {
    timer = setTimeout(start, pause);
    timer.unref();
    pause = Math.min(pause * 2, 300_000);
  };
  const start = () => {
    timer = null;
    let worker: Worker;
    try {
      worker = spawnInventoryWorker(name, data);
    } catch (e) {
      // A thread that cannot start (its module gone after an upgrade in place): said, and tried again.
      onReport({ type: 'error', message: `the ${name} thread could not start: ${(e as Error).message}; it is tried again in ${Math.round(pause / 1000)} s` });
      again();
      return;
    }
    const began = Date.now();
    const me = { worker, exited: false, exit: Promise.resolve() };
    me.exit = new Promise<void>((resolve) =>
      worker.once('exit', (code) => {
        me.exited = true;
        resolve();
        if (stopping) return;
        if (Date.now() - began > 600_000) pause = restartMs;
        onReport({ type: 'error', message: `the ${name} thread stopped (exit code ${code}); it is started again in ${Math.round(pause / 1000)} s` });
        again();
      }),
    );
    worker.on('message', (m: R) => onReport(m));
    worker.on('error', (e) => onReport({ type: 'error', message: e.message }));
    worker.unref();
    current = me;
  };
  start();
  return {
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      const c = current;
      if (!c || c.exited) return;
      c.worker.postMessage('stop');
      const t = setTimeout(() => void c.worker.terminate(), 10_000);
      await c.exit;
      clearTimeout(t);
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
