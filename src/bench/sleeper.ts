/** Waits that can all be cut short at once (when a run is stopped), without an AbortSignal per wait. */
export class Sleeper {
  readonly #pending = new Set<{ timer: NodeJS.Timeout; reject: (e: Error) => void }>();
  #cancelled: Error | undefined;

  sleep(ms: number): Promise<void> {
    if (this.#cancelled) return Promise.reject(this.#cancelled);
    return new Promise((resolve, reject) => {
      const entry = {
        timer: setTimeout(() => {
          this.#pending.delete(entry);
          resolve();
        }, ms),
        reject,
      };
      this.#pending.add(entry);
    });
  }

  /** Rejects every pending and later wait with `reason`. */
  cancelAll(reason: Error): void {
    this.#cancelled = reason;
    for (const e of this.#pending) {
      clearTimeout(e.timer);
      e.reject(reason);
    }
    this.#pending.clear();
  }
}
