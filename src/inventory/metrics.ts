/**
 * The inventory as Prometheus metrics (docs/metrics.md): every current certificate's notBefore,
 * notAfter and renewal-due time as absolute Unix timestamps in seconds, the places it is deployed,
 * the estate's health, renewal results, and the last discovery run of each kind.
 *
 * The exposition is written by hand (src/lib/exposition.ts) from one lean query per table (no DER),
 * because an estate of 100,000 certificates means several hundred thousand samples, and one
 * prom-client label set per sample costs too much. InventoryMetrics caches the text for
 * `cacheSeconds`, and concurrent scrapes share one build.
 *
 * Which certificates are exported (the per-certificate gauges): those deployed somewhere (a present
 * installation), and the others unless a newer certificate for the same names exists (renewed: it
 * is history) or they expired more than `expiredRetentionDays` ago. Revoked ones stay, with
 * anvil_certificate_revoked_timestamp_seconds. The estate gauges count every certificate, as
 * `anvil inventory health` does.
 */
import type { Kysely } from 'kysely';
import type { Clock } from '../lib/clock.js';
import { escapeLabelValue, ExpositionWriter, labelSet, seconds } from '../lib/exposition.js';
import type { InvCertificatesTable, InvInstallationsTable, Database as Schema } from '../storage/schema.js';
import type { CertificateFacts, KeyType } from './certificate.js';
import { checkCertificate, DEFAULT_THRESHOLDS, estateHealth, healthOf, LEVELS, type CertificateHealth, type Health, type Thresholds } from './checks.js';
import type { InstallationState } from './checks.js';
import type { InventoryLocation } from './inventory.js';

export interface InventoryMetricsOptions {
  /** Expired certificates deployed nowhere are exported until this many days after their notAfter. */
  expiredRetentionDays: number;
  thresholds?: Thresholds;
}

/** What a build reads of each certificate and each place (no DER: the lean query of 100,000 rows). */
const CERT_COLUMNS = [
  'fingerprint',
  'subject',
  'issuer',
  'serial',
  'names_key',
  'key_type',
  'key_bits',
  'key_detail',
  'signature_algorithm',
  'not_before',
  'not_after',
  'is_ca',
  'self_signed',
  'known_weak_key',
  'source',
  'profile',
  'revoked_at',
] as const satisfies ReadonlyArray<keyof InvCertificatesTable>;
const INSTALLATION_COLUMNS = ['id', 'kind', 'location', 'sni', 'fingerprint', 'status', 'chain_error', 'hostname_error', 'last_seen'] as const satisfies ReadonlyArray<
  keyof InvInstallationsTable
>;
type CertRow = Pick<InvCertificatesTable, (typeof CERT_COLUMNS)[number]>;
type InstallationRow = Pick<InvInstallationsTable, (typeof INSTALLATION_COLUMNS)[number]>;

interface ScanRow {
  kind: string;
  runs: number;
  started_at: number;
  duration_ms: number;
  targets: number;
  found: number;
  failed: number;
  failures: Record<string, number>;
}

/** What one build reads from the inventory: no DER, no event bodies beyond the last failure of each lineage. */
export interface InventorySnapshot {
  certificates: CertRow[];
  installations: InstallationRow[];
  renewed: number;
  renewalFailed: number;
  /** renewal-failed events by installation (lineages): how many, and the last attempt (ms). */
  lineageFailures: Map<string, { count: number; lastAttempt: number }>;
  scans: ScanRow[];
}

const num = (v: unknown): number => Number(v ?? 0);

/** The lean queries of one build. */
export async function readInventorySnapshot(db: Kysely<Schema>): Promise<InventorySnapshot> {
  const certificates = (await db
    .selectFrom('inv_certificates')
    .select(CERT_COLUMNS)
    .orderBy('not_after')
    .orderBy('fingerprint')
    .execute()) satisfies CertRow[];
  const installations = (await db
    .selectFrom('inv_installations')
    .select(INSTALLATION_COLUMNS)
    .orderBy('kind')
    .orderBy('location')
    .orderBy('sni')
    .execute()) satisfies InstallationRow[];

  let renewed = 0;
  let renewalFailed = 0;
  const byType = await db
    .selectFrom('inv_events')
    .select(['type', (eb) => eb.fn.countAll().as('n')])
    .where('type', 'in', ['renewed', 'renewal-failed'])
    .groupBy('type')
    .execute();
  for (const r of byType) {
    if (r.type === 'renewed') renewed = num(r.n);
    else renewalFailed = num(r.n);
  }

  const lineageFailures = new Map<string, { count: number; lastAttempt: number }>();
  if (renewalFailed > 0) {
    const groups = await db
      .selectFrom('inv_events')
      .select(['installation_id', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.max('id').as('last')])
      .where('type', '=', 'renewal-failed')
      .where('installation_id', 'is not', null)
      .groupBy('installation_id')
      .execute();
    const lastIds = groups.map((g) => String(g.last));
    const lastRows = new Map<string, { at: number; detail: string }>();
    for (let i = 0; i < lastIds.length; i += 500) {
      for (const r of await db.selectFrom('inv_events').select(['id', 'at', 'detail']).where('id', 'in', lastIds.slice(i, i + 500)).execute()) {
        lastRows.set(r.id, { at: num(r.at), detail: r.detail });
      }
    }
    for (const g of groups) {
      const last = lastRows.get(String(g.last));
      let attempt = last?.at ?? 0;
      try {
        const a = Date.parse((JSON.parse(last?.detail ?? '{}') as { attempt?: string }).attempt ?? '');
        if (Number.isFinite(a)) attempt = a;
      } catch {
        // A detail that is not JSON: the time of the event stands.
      }
      lineageFailures.set(g.installation_id!, { count: num(g.n), lastAttempt: attempt });
    }
  }

  const scans: ScanRow[] = [];
  const kinds = await db.selectFrom('inv_scans').select(['kind', (eb) => eb.fn.countAll().as('n')]).groupBy('kind').orderBy('kind').execute();
  for (const k of kinds) {
    const last = await db.selectFrom('inv_scans').selectAll().where('kind', '=', k.kind).orderBy('started_at', 'desc').orderBy('id', 'desc').limit(1).executeTakeFirst();
    if (!last) continue;
    let failures: Record<string, number> = {};
    try {
      failures = (JSON.parse(last.detail) as { failures?: Record<string, number> }).failures ?? {};
    } catch {
      failures = {};
    }
    scans.push({
      kind: k.kind,
      runs: num(k.n),
      started_at: num(last.started_at),
      duration_ms: num(last.duration_ms),
      targets: num(last.targets),
      found: num(last.found),
      failed: num(last.failed),
      failures,
    });
  }
  return { certificates, installations, renewed, renewalFailed, lineageFailures, scans };
}

/** The value of the first CN of an RFC 4514-style name as nameText writes it ("CN=a\\, b, O=x"); null if none. */
export function commonNameOf(name: string): string | null {
  // An attribute starts the name or follows ", " or " + " (an escaped separator is "\\,").
  let at = name.startsWith('CN=') ? 0 : -1;
  for (let from = 0; at < 0; ) {
    const k = name.indexOf('CN=', from);
    if (k < 0) return null;
    if ((name.startsWith(', ', k - 2) || name.startsWith('+ ', k - 2)) && name[k - 3] !== '\\') at = k;
    from = k + 3;
  }
  const start = at + 3;
  if (!name.includes('\\', start)) {
    const end = [name.indexOf(', ', start), name.indexOf(' + ', start)].filter((x) => x >= 0);
    return name.slice(start, end.length ? Math.min(...end) : name.length);
  }
  let value = '';
  for (let j = start; j < name.length; j++) {
    const ch = name[j]!;
    if (ch === '\\' && j + 1 < name.length) {
      value += name[++j];
      continue;
    }
    if (name.startsWith(', ', j) || name.startsWith(' + ', j)) break;
    value += ch;
  }
  return value;
}

/** Where a certificate's renewal is due: at two thirds of its lifetime (ms). */
export function renewalDueMs(notBeforeMs: number, notAfterMs: number): number {
  return notBeforeMs + ((notAfterMs - notBeforeMs) * 2) / 3;
}

const DAY = 86_400_000;
const FINGERPRINT_LABEL_DIGITS = 16;

/**
 * The exposition of a snapshot at `now`, as UTF-8. Pure: the same snapshot and time give the same
 * bytes.
 */
export function renderInventoryMetrics(s: InventorySnapshot, now: Date, opts: InventoryMetricsOptions): Buffer {
  const t = now.getTime();
  const thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
  const retentionMs = opts.expiredRetentionDays * DAY;

  // Installations by certificate, and the newest certificate for each set of names.
  const byCert = new Map<string, InstallationState[]>();
  for (const i of s.installations) {
    if (!i.fingerprint) continue;
    const state: InstallationState = {
      id: i.id,
      kind: i.kind as InstallationState['kind'],
      location: i.location,
      sni: i.sni || null,
      status: i.status as InstallationState['status'],
      chainError: i.chain_error,
      hostnameError: i.hostname_error,
    };
    const list = byCert.get(i.fingerprint);
    if (list) list.push(state);
    else byCert.set(i.fingerprint, [state]);
  }
  const newest = new Map<string, { fingerprint: string; notBefore: number }>();
  for (const c of s.certificates) {
    if (!c.names_key) continue;
    const nb = num(c.not_before);
    const n = newest.get(c.names_key);
    if (!n || nb > n.notBefore || (nb === n.notBefore && c.fingerprint > n.fingerprint)) newest.set(c.names_key, { fingerprint: c.fingerprint, notBefore: nb });
  }

  // Fingerprint labels: the first 16 hex digits (as `anvil inventory list` prints them), the full
  // fingerprint for the (astronomically rare) certificates that share those 16.
  const prefixCount = new Map<string, number>();
  for (const c of s.certificates) {
    const p = c.fingerprint.slice(0, FINGERPRINT_LABEL_DIGITS);
    prefixCount.set(p, (prefixCount.get(p) ?? 0) + 1);
  }
  const fpLabel = (fp: string): string => {
    const p = fp.slice(0, FINGERPRINT_LABEL_DIGITS);
    return (prefixCount.get(p) ?? 0) > 1 ? fp : p;
  };

  // Each certificate's health is made, counted into the estate and dropped (only its level stays):
  // keeping 100,000 health objects with their findings costs more in garbage collection than the checks.
  const exported: Array<{ c: CertRow; fp: string; labels: string; level: Health }> = [];
  function* assessed(): Generator<CertificateHealth> {
    for (const c of s.certificates) {
      const notBefore = num(c.not_before);
      const notAfter = num(c.not_after);
      const n = c.names_key ? newest.get(c.names_key) : undefined;
      const renewedBy = n && n.fingerprint !== c.fingerprint && n.notBefore > notBefore ? { fingerprint: n.fingerprint, notBefore: new Date(n.notBefore) } : null;
      const inst = byCert.get(c.fingerprint) ?? NONE;
      const facts: CertificateFacts = {
        fingerprint: c.fingerprint,
        subject: c.subject,
        issuer: c.issuer,
        serial: c.serial,
        // Neither is read by the checks (and neither is queried).
        names: [],
        spkiSha256: '',
        keyType: c.key_type as KeyType,
        keyBits: num(c.key_bits),
        keyDetail: c.key_detail,
        signatureAlgorithm: c.signature_algorithm,
        notBefore: new Date(notBefore),
        notAfter: new Date(notAfter),
        isCa: num(c.is_ca) === 1,
        selfSigned: num(c.self_signed) === 1,
        knownWeakKey: c.known_weak_key,
      };
      const revoked = c.revoked_at === null ? null : { at: new Date(num(c.revoked_at)), reason: null };
      const health = healthOf(checkCertificate(facts, { now, installations: inst, renewedBy, revoked }, thresholds));
      yield health;
      let present = false;
      for (const i of inst) if (i.status === 'present') present = true;
      if (!present && (renewedBy || notAfter < t - retentionMs)) continue;
      // The subject's CN, or else the first of the sorted subjectAltNames.
      let cn = commonNameOf(c.subject);
      if (cn === null) {
        const sp = c.names_key.indexOf(' ');
        cn = sp < 0 ? c.names_key : c.names_key.slice(0, sp);
      }
      const fp = fpLabel(c.fingerprint);
      exported.push({ c, fp, labels: labelSet(['fingerprint', fp, 'cn', cn, 'issuer', commonNameOf(c.issuer) ?? c.issuer, 'source', c.source]), level: health.level });
    }
  }
  // The estate, as `anvil inventory health` reports it (every certificate).
  const estate = estateHealth(assessed());

  const w = new ExpositionWriter(exported.length * 800 + s.installations.length * 300 + 65_536);
  w.family('anvil_certificate_not_before_timestamp_seconds', 'gauge', 'Start of the certificate validity (notBefore), Unix time in seconds.');
  for (const e of exported) w.sampleWith('anvil_certificate_not_before_timestamp_seconds', e.labels, seconds(num(e.c.not_before)));
  w.family('anvil_certificate_not_after_timestamp_seconds', 'gauge', 'End of the certificate validity (notAfter), Unix time in seconds.');
  for (const e of exported) w.sampleWith('anvil_certificate_not_after_timestamp_seconds', e.labels, seconds(num(e.c.not_after)));
  w.family('anvil_certificate_renewal_due_timestamp_seconds', 'gauge', 'When the certificate is due for renewal: notBefore plus two thirds of its lifetime, Unix time in seconds.');
  for (const e of exported) w.sampleWith('anvil_certificate_renewal_due_timestamp_seconds', e.labels, seconds(renewalDueMs(num(e.c.not_before), num(e.c.not_after))));
  w.family('anvil_certificate_info', 'gauge', 'Facts of each exported certificate (always 1): serial, profile, key, CA or leaf, health level (good, fair, poor, critical).');
  for (const e of exported) {
    const c = e.c;
    const key = c.key_detail && c.key_type === 'ec' ? `ec ${c.key_detail}` : `${c.key_type} ${num(c.key_bits)}`;
    w.sample('anvil_certificate_info', ['fingerprint', e.fp, 'serial', c.serial, 'profile', c.profile ?? '', 'key', key, 'ca', num(c.is_ca) === 1 ? 'true' : 'false', 'health', e.level], 1);
  }
  w.family('anvil_certificate_revoked_timestamp_seconds', 'gauge', 'When the certificate was revoked, Unix time in seconds (revoked certificates only).');
  for (const e of exported) if (e.c.revoked_at !== null) w.sample('anvil_certificate_revoked_timestamp_seconds', ['fingerprint', e.fp], seconds(num(e.c.revoked_at)));

  // Installations: every place the inventory knows, with the certificate seen there last.
  w.family('anvil_installation_info', 'gauge', 'A place a certificate is (status="present") or was (status="missing") deployed, and the fingerprint seen there last (always 1).');
  const placeLabels = s.installations.map((i) => labelSet(['kind', i.kind, 'location', i.location, 'sni', i.sni]));
  for (const [k, i] of s.installations.entries()) {
    w.sampleWith('anvil_installation_info', `${placeLabels[k]!.slice(0, -1)},status="${escapeLabelValue(i.status)}",fingerprint="${i.fingerprint ? fpLabel(i.fingerprint) : ''}"}`, 1);
  }
  w.family('anvil_installation_last_seen_timestamp_seconds', 'gauge', 'When a certificate was last seen at the place, Unix time in seconds.');
  for (const [k, i] of s.installations.entries()) w.sampleWith('anvil_installation_last_seen_timestamp_seconds', placeLabels[k]!, seconds(num(i.last_seen)));

  w.family('anvil_inventory_certificates', 'gauge', 'Certificates in the inventory by health level (good, fair, poor, critical).');
  for (const l of LEVELS) w.sample('anvil_inventory_certificates', ['health', l], estate.byLevel[l]);
  w.family('anvil_inventory_certificates_exported', 'gauge', 'Certificates with per-certificate gauges (current: deployed, or neither renewed nor expired beyond the retention).');
  w.sample('anvil_inventory_certificates_exported', [], exported.length);
  w.family('anvil_inventory_findings', 'gauge', 'Certificates each check flags, by check id and severity.');
  for (const f of [...estate.byCheck].sort((a, b) => (a.check < b.check ? -1 : a.check > b.check ? 1 : a.severity < b.severity ? -1 : 1))) {
    w.sample('anvil_inventory_findings', ['check', f.check, 'severity', f.severity], f.certificates);
  }
  w.family('anvil_inventory_health_score', 'gauge', "The estate's score: the mean of the certificates' scores (0 to 100).");
  w.sample('anvil_inventory_health_score', [], estate.score);
  const installCounts = new Map<string, number>();
  for (const i of s.installations) installCounts.set(`${i.kind}\n${i.status}`, (installCounts.get(`${i.kind}\n${i.status}`) ?? 0) + 1);
  w.family('anvil_inventory_installations', 'gauge', 'Installations by kind (endpoint, file, lineage) and status (present, missing).');
  for (const [k, n] of [...installCounts].sort()) {
    const [kind, status] = k.split('\n') as [string, string];
    w.sample('anvil_inventory_installations', ['kind', kind, 'status', status], n);
  }

  // Renewals: events of the inventory, and the lineages of Anvil's client.
  w.family('anvil_inventory_renewals_total', 'counter', 'Renewal events the inventory recorded: result="renewed" (a newer certificate for the same names appeared), result="failed" (a lineage renewal failed).');
  w.sample('anvil_inventory_renewals_total', ['result', 'renewed'], s.renewed);
  w.sample('anvil_inventory_renewals_total', ['result', 'failed'], s.renewalFailed);
  const lineages = s.installations.filter((i) => i.kind === 'lineage');
  const certById = new Map<string, CertRow>();
  if (lineages.length) for (const c of s.certificates) certById.set(c.fingerprint, c);
  const lineageLabels = lineages.map((i) => labelSet(['lineage', i.location.slice(Math.max(i.location.lastIndexOf('/'), i.location.lastIndexOf('\\')) + 1), 'location', i.location]));
  w.family('anvil_lineage_last_issued_timestamp_seconds', 'gauge', "notBefore of the lineage's live certificate: its last successful issuance or renewal, Unix time in seconds.");
  for (const [k, i] of lineages.entries()) {
    const c = i.fingerprint ? certById.get(i.fingerprint) : undefined;
    if (c) w.sampleWith('anvil_lineage_last_issued_timestamp_seconds', lineageLabels[k]!, seconds(num(c.not_before)));
  }
  w.family('anvil_lineage_last_renewal_failure_timestamp_seconds', 'gauge', "When the lineage's last failed renewal attempt was made, Unix time in seconds (lineages that ever failed).");
  for (const [k, i] of lineages.entries()) {
    const f = s.lineageFailures.get(i.id);
    if (f) w.sampleWith('anvil_lineage_last_renewal_failure_timestamp_seconds', lineageLabels[k]!, seconds(f.lastAttempt));
  }
  w.family('anvil_lineage_renewal_failures_total', 'counter', 'Failed renewal attempts of the lineage the inventory recorded.');
  for (const [k, i] of lineages.entries()) w.sampleWith('anvil_lineage_renewal_failures_total', lineageLabels[k]!, s.lineageFailures.get(i.id)?.count ?? 0);

  // Discovery runs: the last one of each kind.
  w.family('anvil_scan_runs_total', 'counter', 'Discovery runs recorded, by kind (network: anvil scan; files: anvil inventory scan-files).');
  for (const r of s.scans) w.sample('anvil_scan_runs_total', ['kind', r.kind], r.runs);
  w.family('anvil_scan_last_run_timestamp_seconds', 'gauge', 'When the last run of this kind started, Unix time in seconds.');
  for (const r of s.scans) w.sample('anvil_scan_last_run_timestamp_seconds', ['kind', r.kind], seconds(r.started_at));
  w.family('anvil_scan_last_duration_seconds', 'gauge', 'How long the last run of this kind took, in seconds.');
  for (const r of s.scans) w.sample('anvil_scan_last_duration_seconds', ['kind', r.kind], r.duration_ms / 1000);
  w.family('anvil_scan_last_targets', 'gauge', 'Targets of the last run: endpoints tried (network) or files looked at (files).');
  for (const r of s.scans) w.sample('anvil_scan_last_targets', ['kind', r.kind], r.targets);
  w.family('anvil_scan_last_found', 'gauge', 'Targets of the last run that held a certificate.');
  for (const r of s.scans) w.sample('anvil_scan_last_found', ['kind', r.kind], r.found);
  w.family('anvil_scan_last_failed', 'gauge', 'Targets of the last run that failed (connection errors; unreadable files).');
  for (const r of s.scans) w.sample('anvil_scan_last_failed', ['kind', r.kind], r.failed);
  w.family('anvil_scan_last_failures', 'gauge', 'Failures of the last run by class (network: timeout, refused, unreachable, dns, reset, tls, other; files: unreadable, bad-pem, pkcs12-password, ...).');
  for (const r of s.scans) {
    for (const cls of Object.keys(r.failures).sort()) w.sample('anvil_scan_last_failures', ['kind', r.kind, 'class', cls], num(r.failures[cls]));
  }
  return w.buffer();
}

const NONE: InstallationState[] = [];

/** Builds the inventory part of the exposition: in this thread (directBuilder) or in one of its own (startMetricsThread). */
export interface InventoryMetricsBuilder {
  build(now: Date): Promise<Buffer>;
  close(): Promise<void>;
}

/** Builds in this thread, on a database opened at the first build (and again after a failure to open). */
export function directBuilder(open: () => Promise<{ db: Kysely<Schema>; close(): Promise<void> }>, opts: InventoryMetricsOptions): InventoryMetricsBuilder {
  let store: { db: Kysely<Schema>; close(): Promise<void> } | null = null;
  return {
    async build(now) {
      store ??= await open();
      return renderInventoryMetrics(await readInventorySnapshot(store.db), now, opts);
    },
    async close() {
      await store?.close();
      store = null;
    },
  };
}

/** What the metrics thread (metrics-worker.ts) is given. */
export interface MetricsThreadConfig {
  inventory: InventoryLocation;
  options: InventoryMetricsOptions;
}

/**
 * Builds in a worker thread of its own (metrics-worker.ts) with its own database connection, so that
 * a build over 100,000 certificates never holds the server's event loop (SQLite queries are
 * synchronous). The bytes come back transferred, not copied.
 */
export async function startMetricsThread(config: MetricsThreadConfig): Promise<InventoryMetricsBuilder> {
  const { spawnInventoryWorker } = await import('./thread.js');
  const worker = spawnInventoryWorker('metrics-worker', config);
  worker.unref();
  let next = 0;
  const waiting = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  let dead: Error | null = null;
  const failAll = (e: Error) => {
    dead = e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('message', (m: MetricsThreadAnswer) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.ok) w.resolve(Buffer.from(m.bytes, 0, m.length));
    else w.reject(new Error(m.message));
  });
  worker.on('error', (e) => failAll(e));
  const exit = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      failAll(new Error('the inventory metrics thread stopped'));
      resolve();
    }),
  );
  return {
    build(now) {
      if (dead) return Promise.reject(dead);
      const id = next++;
      return new Promise<Buffer>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        worker.postMessage({ id, now: now.getTime() } satisfies MetricsThreadRequest);
      });
    },
    async close() {
      if (dead) return;
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** A builder started on its first build (the server starts no metrics thread until the first scrape). */
export function lazyBuilder(start: () => Promise<InventoryMetricsBuilder>): InventoryMetricsBuilder {
  let started: Promise<InventoryMetricsBuilder> | null = null;
  return {
    async build(now) {
      started ??= start().catch((e: unknown) => {
        started = null;
        throw e;
      });
      return (await started).build(now);
    },
    async close() {
      const b = await started?.catch(() => null);
      await b?.close();
    },
  };
}

export interface MetricsThreadRequest {
  id: number;
  now: number;
}

export type MetricsThreadAnswer = { id: number; ok: true; bytes: ArrayBuffer; length: number } | { id: number; ok: false; message: string };

export interface InventoryMetricsDeps {
  builder: InventoryMetricsBuilder;
  clock: Clock;
  /** A failed build, for the log. */
  onError?: (e: unknown) => void;
}

/**
 * The inventory part of /metrics, cached: a build is reused for `cacheSeconds`, and scrapes that
 * arrive during a build wait for it instead of starting their own. Once there is an answer, an
 * older one is still served at once while a new build runs in the background (stale while
 * revalidating), so that no scrape after the first waits for a build of a large inventory; the
 * data are then at most about twice `cacheSeconds` plus one build old, and
 * anvil_inventory_metrics_generated_timestamp_seconds says when they were built. `cacheSeconds`
 * 0: every scrape builds and waits for its build (tests). render() never throws: a failed build gives the last good body (its
 * anvil_inventory_metrics_generated_timestamp_seconds shows its age) and anvil_inventory_metrics_up 0.
 */
export class InventoryMetrics {
  readonly #deps: InventoryMetricsDeps;
  readonly #cacheMs: number;
  /** The last good body (without the trailer), and the whole answer last given. */
  #body: Buffer | null = null;
  #answer: Buffer | null = null;
  #builtAt = -Infinity;
  #building: Promise<Buffer> | null = null;
  #buildSeconds = 0;
  #generatedAt = 0;
  #closed = false;

  constructor(opts: { cacheSeconds: number }, deps: InventoryMetricsDeps) {
    this.#cacheMs = opts.cacheSeconds * 1000;
    this.#deps = deps;
  }

  /** The inventory part of the exposition (UTF-8). */
  async render(): Promise<Buffer> {
    const now = this.#deps.clock.now().getTime();
    if (this.#answer !== null && now - this.#builtAt < this.#cacheMs) return this.#answer;
    this.#building ??= this.#build().finally(() => {
      this.#building = null;
    });
    // Stale while revalidating: the last good answer now, the new one for the next scrapes.
    if (this.#cacheMs > 0 && this.#answer !== null && this.#body !== null && this.#builtAt > -Infinity) return this.#answer;
    return this.#building;
  }

  async #build(): Promise<Buffer> {
    const started = performance.now();
    const now = this.#deps.clock.now();
    let up = 1;
    try {
      if (this.#closed) throw new Error('the inventory metrics are closed');
      this.#body = await this.#deps.builder.build(now);
      this.#buildSeconds = (performance.now() - started) / 1000;
      this.#generatedAt = now.getTime();
      this.#builtAt = now.getTime();
    } catch (e) {
      this.#deps.onError?.(e);
      up = 0;
      // A failure is tried again at the next scrape, not after cacheSeconds.
      this.#builtAt = -Infinity;
    }
    this.#answer = Buffer.concat([this.#body ?? Buffer.alloc(0), this.#trailer(up)]);
    return this.#answer;
  }

  #trailer(up: number): Buffer {
    return new ExpositionWriter()
      .family('anvil_inventory_metrics_up', 'gauge', 'Whether the last build of the inventory metrics succeeded (1) or failed (0).')
      .sample('anvil_inventory_metrics_up', [], up)
      .family('anvil_inventory_metrics_generated_timestamp_seconds', 'gauge', 'When the inventory metrics shown were built (they are cached), Unix time in seconds.')
      .sample('anvil_inventory_metrics_generated_timestamp_seconds', [], this.#generatedAt ? seconds(this.#generatedAt) : 'NaN')
      .family('anvil_inventory_metrics_build_seconds', 'gauge', 'How long the last successful build of the inventory metrics took, in seconds.')
      .sample('anvil_inventory_metrics_build_seconds', [], this.#buildSeconds)
      .buffer();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#building?.catch(() => {});
    await this.#deps.builder.close();
  }
}
