/**
 * The inventory as the CLI, the server and the dashboard use it: where it is stored, how scans and
 * file discoveries are recorded (with rescans marking what is gone), and the assessment of every
 * certificate and of the whole estate.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { INVENTORY_MIGRATIONS } from '../storage/migrations.js';
import type { Database as Schema } from '../storage/schema.js';
import { checkCertificate, DEFAULT_THRESHOLDS, estateHealth, healthOf, type CertificateHealth, type EstateHealth, type Thresholds } from './checks.js';
import { InventoryStore, installationId, type Installation, type InventoryCertificate, type Place } from './store.js';

export type InventoryLocation = { type: 'sqlite'; path: string } | { type: 'postgres'; url: string };

/** SQLite: inventory.db beside the CA's database (its own file, so scans never wait for the CA's writes); PostgreSQL: the same database. */
export function inventoryLocationOf(storage: { type: 'sqlite' } | { type: 'postgres'; url: string }, dataDir: string): InventoryLocation {
  return storage.type === 'postgres' ? { type: 'postgres', url: storage.url } : { type: 'sqlite', path: path.join(dataDir, 'inventory.db') };
}

export async function openInventory(where: InventoryLocation): Promise<InventoryStore> {
  let db: Kysely<Schema>;
  if (where.type === 'sqlite') {
    const { openSqliteDatabase } = await import('../storage/sqlite.js');
    db = await openSqliteDatabase(where.path, INVENTORY_MIGRATIONS, 'inventory_schema_migrations');
  } else {
    const { openPostgresDatabase } = await import('../storage/postgres.js');
    db = await openPostgresDatabase(where.url, { poolSize: 4 }, INVENTORY_MIGRATIONS, 'inventory_schema_migrations');
  }
  return new InventoryStore(db);
}

/** One network observation, as src/inventory/scan.ts reports it. */
export interface EndpointSighting {
  target: { host: string; port: number; sni?: string };
  chain: Buffer[];
  authorizationError?: string;
  hostnameError?: string;
  error?: { code: string; message: string };
}

export function endpointPlace(t: EndpointSighting['target']): Place {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return { kind: 'endpoint', location: `${host}:${t.port}`, sni: t.sni ?? null };
}

export interface RecordSummary {
  places: number;
  certificates: number;
  newCertificates: number;
  /**
   * Places that failed, each once: an endpoint that presented no certificate, a file from which
   * none could be read; or one whose certificate the inventory's reader refused.
   */
  failed: number;
  /** Installations in the scan's scope that were present before and were not seen now. */
  missing: number;
}

/**
 * Records a network scan. An endpoint that did not answer is marked missing if a certificate was
 * seen there before (and otherwise left out: a scan of a /24 does not record 250 empty addresses).
 */
export async function recordEndpointScan(store: InventoryStore, observations: readonly EndpointSighting[], now: Date): Promise<RecordSummary> {
  const s: RecordSummary = { places: 0, certificates: 0, newCertificates: 0, failed: 0, missing: 0 };
  const before = new Set((await store.listInstallations()).filter((i) => i.kind === 'endpoint' && i.status === 'present').map((i) => i.id));
  const fingerprints = new Set<string>();
  for (const o of observations) {
    const place = endpointPlace(o.target);
    const leaf = o.chain[0];
    if (o.error || !leaf) {
      s.failed++;
      await store.recordSighting(place, { found: false, error: o.error ? `${o.error.code}: ${o.error.message}` : 'no certificate presented' }, 'network', now);
      if (before.has(installationId(place))) s.missing++;
      continue;
    }
    const known = await store.getCertificate(fingerprintOf(leaf));
    try {
      await store.recordSighting(place, { found: true, der: leaf, chainError: o.authorizationError ?? null, hostnameError: o.hostnameError ?? null }, 'network', now);
    } catch {
      // A certificate OpenSSL accepted but the inventory's strict reader does not: counted, not fatal.
      s.failed++;
      continue;
    }
    s.places++;
    if (!known) s.newCertificates++;
    fingerprints.add(fingerprintOf(leaf));
  }
  s.certificates = fingerprints.size;
  return s;
}

/** One file, as src/inventory/files.ts reports it. */
export interface FileSighting {
  path: string;
  certificates: Buffer[];
  error?: { code: string; message: string };
}

/** The place of the n-th certificate (0-based) of a file: the path, then path:2, path:3, ... */
export function filePlace(file: string, index: number): Place {
  return { kind: 'file', location: index === 0 ? file : `${file}:${index + 1}`, sni: null };
}

/**
 * Records a file discovery over `roots` (absolute). Every certificate of a file is recorded with
 * its position; certificates previously seen under the roots that are gone are marked missing,
 * except under a path reported unreadable (a root or a directory that could not be read now).
 */
export async function recordFileScan(store: InventoryStore, files: readonly FileSighting[], roots: readonly string[], now: Date): Promise<RecordSummary> {
  const s: RecordSummary = { places: 0, certificates: 0, newCertificates: 0, failed: 0, missing: 0 };
  const seen = new Set<string>();
  const fingerprints = new Set<string>();
  for (const f of files) {
    // One count per file, not per certificate: a file with three refused certificates is one failure.
    let failed = f.error !== undefined && f.certificates.length === 0;
    for (const [i, der] of f.certificates.entries()) {
      const fp = fingerprintOf(der);
      const isNew = !fingerprints.has(fp) && !(await store.getCertificate(fp));
      try {
        seen.add(await store.recordSighting(filePlace(f.path, i), { found: true, der }, 'file', now));
      } catch {
        // Not readable by the inventory's strict reader: counted; its place is not marked missing.
        failed = true;
        seen.add(installationId(filePlace(f.path, i)));
        continue;
      }
      if (isNew) s.newCertificates++;
      fingerprints.add(fp);
      s.places++;
    }
    if (failed) s.failed++;
  }
  s.certificates = fingerprints.size;
  // What could not be read this time (a root, a directory, a file) is not known to be gone.
  // A file with an error (unreadable now, a PKCS#12 without its password this time) keeps its places.
  const unreadable = files.filter((f) => f.error).map((f) => f.path);
  s.missing = await store.markUnseen('file', { under: [...roots], exceptUnder: unreadable }, seen, now);
  return s;
}

/** describeCertificate's fingerprint, without parsing. */
const fingerprintOf = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

export interface AssessedCertificate {
  certificate: InventoryCertificate;
  installations: Installation[];
  renewedBy: { fingerprint: string; notBefore: Date } | null;
  health: CertificateHealth;
}

/** Every certificate with its installations and health, soonest expiry first; and the estate's health. */
export async function assess(
  store: InventoryStore,
  now: Date,
  thresholds: Thresholds = DEFAULT_THRESHOLDS,
  opts: { withDer?: boolean } = {},
): Promise<{ certificates: AssessedCertificate[]; estate: EstateHealth }> {
  const [certs, installations, renewals] = await Promise.all([store.listCertificates(opts), store.listInstallations(), store.renewals()]);
  const byCert = new Map<string, Installation[]>();
  for (const i of installations) {
    if (!i.fingerprint) continue;
    const list = byCert.get(i.fingerprint) ?? [];
    list.push(i);
    byCert.set(i.fingerprint, list);
  }
  const out = certs.map((c) => {
    const inst = byCert.get(c.fingerprint) ?? [];
    const renewedBy = renewals.get(c.fingerprint) ?? null;
    const findings = checkCertificate(c, { now, installations: inst, renewedBy, revoked: c.revoked && { ...c.revoked, source: c.revocationCheck?.source ?? null } }, thresholds);
    return { certificate: c, installations: inst, renewedBy, health: healthOf(findings) };
  });
  return { certificates: out, estate: estateHealth(out.map((a) => a.health)) };
}
