/**
 * One row per discovery run (`anvil scan`, `anvil inventory scan-files`) in `inv_scans`: when it
 * started, how long it took, how many targets it had, how many answered with a certificate, how
 * many failed and why. The metrics (src/inventory/metrics.ts) export the last run of each kind.
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
  /** network: connections that failed; files: files that could not be read. */
  failed: number;
  /** Failures by class: ScanErrorKind (`timeout`, `refused`, ...) or FileErrorCode (`unreadable`, ...). */
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

/** Records a run; returns its id (time-ordered: the start in ms as 12 hex digits, then 8 random bytes). */
export async function recordScanRun(store: InventoryStore, run: ScanRun): Promise<string> {
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
      detail: JSON.stringify({ failures: run.failures, ...(run.extra ?? {}) }),
    })
    .execute();
  return id;
}

/** Records an `anvil scan` run: `observations` as src/inventory/scan.ts gave them, over `targets` endpoints. */
export async function recordNetworkRun(
  store: InventoryStore,
  run: { startedAt: Date; targets: number; observations: ReadonlyArray<{ chain: readonly Buffer[]; error?: { code: string } }>; interrupted: boolean; extra?: Record<string, unknown> },
  now: Date = new Date(),
): Promise<string> {
  const failed = run.observations.filter((o) => o.error || o.chain.length === 0);
  return recordScanRun(store, {
    kind: 'network',
    startedAt: run.startedAt,
    durationMs: now.getTime() - run.startedAt.getTime(),
    targets: run.targets,
    found: run.observations.length - failed.length,
    failed: failed.length,
    failures: countBy(failed.map((o) => o.error?.code ?? 'no-certificate')),
    extra: { interrupted: run.interrupted, scanned: run.observations.length, ...(run.extra ?? {}) },
  });
}

/** Records an `anvil inventory scan-files` run: the files src/inventory/files.ts reported. */
export async function recordFilesRun(
  store: InventoryStore,
  run: { startedAt: Date; files: ReadonlyArray<{ certificates: readonly Buffer[]; error?: { code: string } }>; extra?: Record<string, unknown> },
  now: Date = new Date(),
): Promise<string> {
  const failed = run.files.filter((f) => f.error && f.certificates.length === 0);
  return recordScanRun(store, {
    kind: 'files',
    startedAt: run.startedAt,
    durationMs: now.getTime() - run.startedAt.getTime(),
    targets: run.files.length,
    found: run.files.filter((f) => f.certificates.length > 0).length,
    failed: failed.length,
    failures: countBy(run.files.filter((f) => f.error).map((f) => f.error!.code)),
    extra: run.extra ?? {},
  });
}
