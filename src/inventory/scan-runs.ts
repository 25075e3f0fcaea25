/**
 * One row per discovery run (`anvil scan`, `anvil inventory scan-files`) in `inv_scans`: when it
 * started, how long it took, how many targets it had, how many answered with a certificate, how
 * many failed and why. The metrics (src/inventory/metrics.ts) export the last run of each kind.
 *
 * Each target has one outcome: found, or failed in exactly one class, so `found + failed` is at
 * most `targets` (less only when a scan was interrupted) and the classes of `failures` add up to
 * `failed`.
 */
import { randomBytes } from 'node:crypto';
import type { InventoryStore } from './store.js';

export type ScanKind = 'network' | 'files';

export interface ScanRun {
  kind: ScanKind;
  startedAt: Date;
  durationMs: number;
  /** network: endpoints tried (host, port, SNI); files: files looked at. */
  targets: number;
  /** network: endpoints that presented a certificate; files: files that held at least one. */
  found: number;
  /** network: endpoints that presented no certificate; files: files from which none could be read. */
  failed: number;
  /**
   * The failed targets by class, each in one: ScanErrorKind (`timeout`, `refused`, ...,
   * `no-certificate`) or FileErrorCode (`unreadable`, ...). They add up to `failed`.
   */
  failures: Record<string, number>;
  /** Anything else worth keeping (interrupted, new certificates, places now missing). */
  extra?: Record<string, unknown>;
}

/** Counts of `codes`, for ScanRun.failures. */
export function countBy(codes: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of codes) out[c] = (out[c] ?? 0) + 1;
  return out;
}

/**
 * Records a run; returns its id (time-ordered: the start in ms as 12 hex digits, then 8 random
 * bytes). Throws when the classes of `failures` do not add up to `failed`.
 */
export async function recordScanRun(store: InventoryStore, run: ScanRun): Promise<string> {
  const classified = Object.values(run.failures).reduce((a, b) => a + b, 0);
  if (classified !== run.failed) throw new Error(`scan run: ${classified} failure(s) by class for ${run.failed} failed target(s)`);
  const id = `${run.startedAt.getTime().toString(16).padStart(12, '0')}${randomBytes(8).toString('hex')}`;
  await store.db
    .insertInto('inv_scans')
    .values({
      id,
      kind: run.kind,
      started_at: run.startedAt.getTime(),
      duration_ms: Math.round(run.durationMs),
      targets: run.targets,
      found: run.found,
      failed: run.failed,
      // `failures` last: `extra` cannot replace it.
      detail: JSON.stringify({ ...(run.extra ?? {}), failures: run.failures }),
    })
    .execute();
  return id;
}

/**
 * The failure class of a network observation (src/inventory/scan.ts: one per target), or null
 * when it presented a certificate: its error's code, else `no-certificate`.
 */
export function networkFailureClass(o: { chain: readonly Buffer[]; error?: { code: string } }): string | null {
  if (o.error) return o.error.code;
  return o.chain.length === 0 ? 'no-certificate' : null;
}

/**
 * The failure class of a file (src/inventory/files.ts: one per file), or null when some
 * certificate in it could be read: its error's code, else `no-certificate`. A file read in part
 * (an error, and certificates) is found, not failed; its error is counted apart (`partial` in the
 * run's detail).
 */
export function fileFailureClass(f: { certificates: readonly Buffer[]; error?: { code: string } }): string | null {
  if (f.certificates.length > 0) return null;
  return f.error?.code ?? 'no-certificate';
}

/** Records an `anvil scan` run: `observations` as src/inventory/scan.ts gave them, over `targets` endpoints. */
export async function recordNetworkRun(
  store: InventoryStore,
  run: { startedAt: Date; targets: number; observations: ReadonlyArray<{ chain: readonly Buffer[]; error?: { code: string } }>; interrupted: boolean; extra?: Record<string, unknown> },
  now: Date = new Date(),
): Promise<string> {
  const classes = run.observations.map(networkFailureClass).filter((c): c is string => c !== null);
  return recordScanRun(store, {
    kind: 'network',
    startedAt: run.startedAt,
    durationMs: now.getTime() - run.startedAt.getTime(),
    targets: run.targets,
    found: run.observations.length - classes.length,
    failed: classes.length,
    failures: countBy(classes),
    extra: { ...(run.extra ?? {}), interrupted: run.interrupted, scanned: run.observations.length },
  });
}

/** Records an `anvil inventory scan-files` run: the files src/inventory/files.ts reported. */
export async function recordFilesRun(
  store: InventoryStore,
  run: { startedAt: Date; files: ReadonlyArray<{ certificates: readonly Buffer[]; error?: { code: string } }>; extra?: Record<string, unknown> },
  now: Date = new Date(),
): Promise<string> {
  const classes = run.files.map(fileFailureClass).filter((c): c is string => c !== null);
  const partial = run.files.filter((f) => f.error && f.certificates.length > 0).map((f) => f.error!.code);
  return recordScanRun(store, {
    kind: 'files',
    startedAt: run.startedAt,
    durationMs: now.getTime() - run.startedAt.getTime(),
    targets: run.files.length,
    found: run.files.length - classes.length,
    failed: classes.length,
    failures: countBy(classes),
    extra: { ...(run.extra ?? {}), partial: countBy(partial) },
  });
}
