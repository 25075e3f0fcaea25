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
import { PostgresAdapter, sql, type Kysely } from 'kysely';
import type { Clock } from '../lib/clock.js';
import { boundedLabelValue, escapeLabelValue, ExpositionWriter, labelSet, seconds } from '../lib/exposition.js';
import type { InvCertificatesTable, InvInstallationsTable, Database as Schema } from '../storage/schema.js';
import type { CertificateFacts, KeyType } from './certificate.js';
import { checkCertificate, DEFAULT_THRESHOLDS, estateHealth, healthOf, LEVELS, nextCheckChange, type CertificateHealth, type EstateHealth, type Health, type Thresholds } from './checks.js';
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

/** What a build reads of the events and discovery runs (a few aggregate queries, read whole every build). */
export interface EventStats {
  renewed: number;
  renewalFailed: number;
  /** renewal-failed events by installation (lineages): how many, and the last attempt (ms). */
  lineageFailures: Map<string, { count: number; lastAttempt: number }>;
  scans: ScanRow[];
}

/** What one build reads from the inventory: no DER, no event bodies beyond the last failure of each lineage. */
export interface InventorySnapshot extends EventStats {
  certificates: CertRow[];
  installations: InstallationRow[];
}

const num = (v: unknown): number => Number(v ?? 0);

/** Every certificate and place, and the event statistics (tests and benchmarks; a build reads only changes). */
export async function readInventorySnapshot(db: Kysely<Schema>): Promise<InventorySnapshot> {
  const r = await readInventoryChanges(db, null);
  return { ...r.stats, certificates: r.certificates, installations: r.installations };
}

/**
 * Where the last read of the inventory stopped, per table: rows stamped (`changed`, inventory
 * migration 3) from these on are read again. SQLite: the largest stamp read in the table plus one
 * (stamps come from one counter).
 * PostgreSQL: the oldest transaction still running when the last read took its snapshot, since a
 * transaction that started before it may commit after it.
 */
export interface ChangeCursor {
  certificates: number;
  installations: number;
  /** inv_changes.deletions at the last read: a reader that finds another number reads everything again. */
  deletions: number;
}

export interface InventoryChanges {
  /** Certificates and places written since the cursor (every one when the cursor is null). */
  certificates: CertRow[];
  installations: InstallationRow[];
  stats: EventStats;
  cursor: ChangeCursor;
}

/** One consistent read (one transaction, one snapshot) of what changed since `cursor` (null: everything). */
export async function readInventoryChanges(db: Kysely<Schema>, cursor: ChangeCursor | null): Promise<InventoryChanges> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter;
  const read = async (tx: Kysely<Schema>): Promise<InventoryChanges> => {
    // PostgreSQL: the snapshot's oldest running transaction, from the statement that takes the snapshot.
    const xmin = pg ? Number((await sql<{ x: string }>`select txid_snapshot_xmin(txid_current_snapshot())::text as x`.execute(tx)).rows[0]!.x) : 0;
    const deletions = num((await tx.selectFrom('inv_changes').select('deletions').where('id', '=', 1).executeTakeFirst())?.deletions);
    let cq = tx.selectFrom('inv_certificates').select([...CERT_COLUMNS, 'changed']);
    let iq = tx.selectFrom('inv_installations').select([...INSTALLATION_COLUMNS, 'changed']);
    if (cursor) {
      cq = cq.where('changed', '>=', cursor.certificates);
      iq = iq.where('changed', '>=', cursor.installations);
    }
    // Changes in no order (an ORDER BY would make the database walk that order's index past every
    // row instead of finding the changed ones by theirs); everything in the model's order, which
    // then sorts in one pass.
    const certificates = await (cursor ? cq : cq.orderBy('not_after').orderBy('fingerprint')).execute();
    const installations = await (cursor ? iq : iq.orderBy('kind').orderBy('location').orderBy('sni')).execute();
    const next = (rows: Array<{ changed?: number }>, from: number) => {
      if (pg) return xmin;
      for (const r of rows) from = Math.max(from, num(r.changed) + 1);
      return from;
    };
    const strip = <T extends { changed?: number }>(rows: T[]): Array<Omit<T, 'changed'>> => rows.map(({ changed: _, ...rest }) => rest);
    return {
      certificates: strip(certificates) satisfies CertRow[],
      installations: strip(installations) satisfies InstallationRow[],
      stats: await readEventStats(tx),
      cursor: { certificates: next(certificates, cursor?.certificates ?? 0), installations: next(installations, cursor?.installations ?? 0), deletions },
    };
  };
  return pg ? db.transaction().setIsolationLevel('repeatable read').execute(read) : db.transaction().execute(read);
}

/** Renewal results, the lineages' renewal failures and the last discovery run of each kind. */
async function readEventStats(db: Kysely<Schema>): Promise<EventStats> {
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
  return { renewed, renewalFailed, lineageFailures, scans };
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

/** One certificate as the model keeps it between builds. A new row (a write) is a new entry. */
interface CertEntry {
  row: CertRow;
  /** Its fingerprint label (16 hex digits, or all 64 where two share the 16). */
  fp: string;
  /** The label set of its timestamp gauges, made when first exported. */
  labels: string | null;
  /** Its health, valid while the time is before `until` and nothing it depends on changes. */
  health: CertificateHealth | null;
  until: number;
}

/** The parts of the inventory exposition, in order: a build sends only the parts that changed. */
const PARTS = ['certificate timestamps', 'certificate info', 'revoked', 'installations', 'estate'] as const;
export const INVENTORY_PARTS = PARTS.length;

/**
 * The inventory as the metrics need it, kept in memory between builds and brought up to date from
 * what changed (readInventoryChanges), and its exposition in parts: a part is written again only
 * when something it shows changed, and each certificate's health is assessed again only when its
 * row, its places or its renewal changed, or time crossed one of its thresholds (nextCheckChange).
 * At 100,000 certificates a build with nothing changed costs a few milliseconds instead of seconds.
 */
export class InventoryMetricsModel {
  readonly #opts: InventoryMetricsOptions;
  readonly #thresholds: Thresholds;
  #certs = new Map<string, CertEntry>();
  /** The entries in (notAfter, fingerprint) order; null: to be sorted again. */
  #order: CertEntry[] | null = [];
  #installations = new Map<string, InstallationRow>();
  #byCert = new Map<string, InstallationState[]>();
  #newest = new Map<string, { fingerprint: string; notBefore: number }>();
  #prefixCount = new Map<string, number>();
  /** Entries rewritten by the apply() in progress, and their successors. */
  readonly #replaced = new Map<CertEntry, CertEntry>();
  #stats: EventStats = { renewed: 0, renewalFailed: 0, lineageFailures: new Map(), scans: [] };
  #cursor: ChangeCursor | null = null;
  /** What the last render sent, to tell which parts changed. */
  /** null: nothing rendered yet (since the start or a reset), so every part differs. */
  #lastExported: CertEntry[] | null = null;
  #lastLevels: Health[] = [];
  #installationsDirty = true;
  #small: Array<Buffer | null> = PARTS.map(() => null);
  #estateHealth: EstateHealth | null = null;
  /** Rows were read since the last render. */
  #changed = true;
  /** Before this instant no certificate's health or export changes by time alone. */
  #quietUntil = -Infinity;
  /** The time of the last render. */
  #lastTime = -Infinity;

  constructor(opts: InventoryMetricsOptions) {
    this.#opts = opts;
    this.#thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
  }

  /** Reads what changed since the last read (everything the first time, or when rows were deleted). */
  async refresh(db: Kysely<Schema>): Promise<void> {
    let ch = await readInventoryChanges(db, this.#cursor);
    if (this.#cursor && ch.cursor.deletions !== this.#cursor.deletions) {
      // Rows went away (nothing in Anvil deletes them today): start again from everything.
      this.reset();
      ch = await readInventoryChanges(db, null);
    }
    this.apply(ch);
  }

  /** Forgets everything: the next refresh reads the whole inventory, the next render writes every part. */
  reset(): void {
    this.#certs = new Map();
    this.#order = [];
    this.#installations = new Map();
    this.#byCert = new Map();
    this.#newest = new Map();
    this.#prefixCount = new Map();
    this.#cursor = null;
    this.#lastExported = null;
    this.#lastLevels = [];
    this.#installationsDirty = true;
    this.#small = PARTS.map(() => null);
    this.#estateHealth = null;
    this.#changed = true;
    this.#quietUntil = -Infinity;
  }

  /** Takes in rows read from the inventory (new or rewritten). */
  apply(ch: Pick<InventoryChanges, 'certificates' | 'installations' | 'stats'> & { cursor?: ChangeCursor }): void {
    this.#stats = ch.stats;
    if (ch.cursor) this.#cursor = ch.cursor;
    // Certificates: a rewritten row is a new entry (its caches go); a new names set may renew older ones.
    const renewedKeys = new Set<string>();
    for (const row of ch.certificates) {
      const old = this.#certs.get(row.fingerprint);
      // Rewritten in columns the metrics do not read (last seen, revocation checked): nothing to do.
      if (old && CERT_COLUMNS.every((k) => old.row[k] === row[k])) continue;
      if (!old) {
        this.#order = null;
        const p = row.fingerprint.slice(0, FINGERPRINT_LABEL_DIGITS);
        const n = (this.#prefixCount.get(p) ?? 0) + 1;
        this.#prefixCount.set(p, n);
        // Astronomically rare: the first certificate to share its 16 digits takes the long label too.
        if (n === 2) {
          for (const [fp, e] of this.#certs) if (fp.startsWith(p)) this.#replace(e.row);
          this.#installationsDirty = true;
        }
      }
      this.#replace(row);
      if (!row.names_key) continue;
      const nb = num(row.not_before);
      const n = this.#newest.get(row.names_key);
      if (!n || nb > n.notBefore || (nb === n.notBefore && row.fingerprint > n.fingerprint)) {
        this.#newest.set(row.names_key, { fingerprint: row.fingerprint, notBefore: nb });
        if (n) renewedKeys.add(row.names_key);
      }
    }
    // Rewritten rows take their old entries' places in the order (their notAfter never changes).
    if (this.#replaced.size && this.#order) for (const [k, e] of this.#order.entries()) this.#order[k] = this.#replaced.get(e) ?? e;
    this.#replaced.clear();
    if (renewedKeys.size) for (const e of this.#certs.values()) if (renewedKeys.has(e.row.names_key)) e.health = null;
    // Places: the certificates they showed before and show now are assessed again.
    let places = 0;
    for (const row of ch.installations) {
      const old = this.#installations.get(row.id);
      if (old && INSTALLATION_COLUMNS.every((k) => old[k] === row[k])) continue;
      places++;
      this.#installations.set(row.id, row);
      for (const fp of [old?.fingerprint, row.fingerprint]) {
        const e = fp ? this.#certs.get(fp) : undefined;
        if (e) e.health = null;
      }
    }
    if (places === 0) return;
    this.#changed = true;
    this.#installationsDirty = true;
    this.#byCert = new Map();
    for (const i of this.#installations.values()) {
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
      const list = this.#byCert.get(i.fingerprint);
      if (list) list.push(state);
      else this.#byCert.set(i.fingerprint, [state]);
    }
  }

  #replace(row: CertRow): void {
    const p = row.fingerprint.slice(0, FINGERPRINT_LABEL_DIGITS);
    const fp = (this.#prefixCount.get(p) ?? 0) > 1 ? row.fingerprint : p;
    const entry: CertEntry = { row, fp, labels: null, health: null, until: -Infinity };
    this.#changed = true;
    const old = this.#certs.get(row.fingerprint);
    if (old) this.#replaced.set(old, entry);
    this.#certs.set(row.fingerprint, entry);
  }

  #fpLabel(fp: string): string {
    return this.#certs.get(fp)?.fp ?? fp.slice(0, FINGERPRINT_LABEL_DIGITS);
  }

  /**
   * The exposition at `now`, in parts (INVENTORY_PARTS of them): a part is null when it is
   * byte for byte what the previous render gave, unless `full`.
   */
  render(now: Date, full: boolean): Array<Buffer | null> {
    const t = now.getTime();
    const retentionMs = this.#opts.expiredRetentionDays * DAY;
    this.#order ??= [...this.#certs.values()].sort((a, b) => num(a.row.not_after) - num(b.row.not_after) || (a.row.fingerprint < b.row.fingerprint ? -1 : a.row.fingerprint > b.row.fingerprint ? 1 : 0));
    // Nothing read since the last render and no certificate's threshold or retention crossed:
    // the same certificates, healths and estate (a build of an idle inventory costs no loop).
    // Time went back (the clock was stepped): what was assessed for a later instant is not kept.
    if (t < this.#lastTime) {
      for (const e of this.#certs.values()) e.health = null;
      this.#quietUntil = -Infinity;
    }
    this.#lastTime = t;
    if (!full && !this.#changed && t < this.#quietUntil && this.#estateHealth && this.#lastExported) {
      return this.#renderParts(false, this.#lastExported, this.#lastLevels, this.#estateHealth);
    }
    // Each certificate's health (kept until it may change), the estate, and which ones are exported.
    const exported: CertEntry[] = [];
    const levels: Health[] = [];
    const healths: CertificateHealth[] = [];
    let assessed = false;
    let quietUntil = Infinity;
    for (const e of this.#order) {
      const c = e.row;
      const notBefore = num(c.not_before);
      const notAfter = num(c.not_after);
      const n = c.names_key ? this.#newest.get(c.names_key) : undefined;
      const renewed = n !== undefined && n.fingerprint !== c.fingerprint && n.notBefore > notBefore;
      const inst = this.#byCert.get(c.fingerprint) ?? NONE;
      if (e.health === null || t >= e.until) {
        assessed = true;
        const renewedBy = renewed ? { fingerprint: n.fingerprint, notBefore: new Date(n.notBefore) } : null;
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
        const ctx = { now, installations: inst, renewedBy, revoked };
        e.health = healthOf(checkCertificate(facts, ctx, this.#thresholds));
        e.until = nextCheckChange(facts, ctx, this.#thresholds);
      }
      healths.push(e.health);
      if (e.until < quietUntil) quietUntil = e.until;
      let present = false;
      for (const i of inst) if (i.status === 'present') present = true;
      // Leaves the export at the first whole millisecond past notAfter + the retention.
      const leaves = Math.floor(notAfter + retentionMs) + 1;
      if (leaves > t && leaves < quietUntil) quietUntil = leaves;
      if (!present && (renewed || notAfter < t - retentionMs)) continue;
      exported.push(e);
      levels.push(e.health.level);
    }
    // The estate changes only when a health was assessed again or the set of certificates changed.
    if (assessed || !this.#estateHealth || this.#estateHealth.certificates !== healths.length) this.#estateHealth = estateHealth(healths);
    this.#quietUntil = quietUntil;
    this.#changed = false;
    return this.#renderParts(full, exported, levels, this.#estateHealth);
  }

  /** The parts that differ from the last render's (every one when `full`). */
  #renderParts(full: boolean, exported: CertEntry[], levels: Health[], estate: EstateHealth): Array<Buffer | null> {
    const parts: Array<Buffer | null> = PARTS.map(() => null);
    const last = this.#lastExported;
    const sameSet = !full && last !== null && exported.length === last.length && exported.every((e, k) => e === last[k]);
    const sameLevels = sameSet && levels.every((l, k) => l === this.#lastLevels[k]);
    if (!sameSet) parts[0] = this.#timestamps(exported);
    if (!sameLevels) parts[1] = this.#info(exported, levels);
    if (full || this.#installationsDirty || !sameSet) parts[3] = this.#places();
    // The small parts are written every time and sent when they differ.
    const small: Array<[number, Buffer]> = [
      [2, this.#revoked(exported)],
      [4, this.#estate(estate, exported.length)],
    ];
    for (const [k, b] of small) {
      if (full || !this.#small[k]?.equals(b)) parts[k] = b;
      // A copy: the part itself may be handed to (transferred to) another thread.
      this.#small[k] = Buffer.from(b);
    }
    this.#lastExported = exported;
    this.#lastLevels = levels;
    this.#installationsDirty = false;
    return parts;
  }

  #timestamps(exported: CertEntry[]): Buffer {
    for (const e of exported) {
      if (e.labels !== null) continue;
      const c = e.row;
      // The subject's CN, or else the first of the sorted subjectAltNames.
      let cn = commonNameOf(c.subject);
      if (cn === null) {
        const sp = c.names_key.indexOf(' ');
        cn = sp < 0 ? c.names_key : c.names_key.slice(0, sp);
      }
      e.labels = labelSet(['fingerprint', e.fp, 'cn', boundedLabelValue(cn), 'issuer', boundedLabelValue(commonNameOf(c.issuer) ?? c.issuer), 'source', c.source]);
    }
    const w = new ExpositionWriter(exported.length * 600 + 4096);
    w.family('anvil_certificate_not_before_timestamp_seconds', 'gauge', 'Start of the certificate validity (notBefore), Unix time in seconds.');
    for (const e of exported) w.sampleWith('anvil_certificate_not_before_timestamp_seconds', e.labels!, seconds(num(e.row.not_before)));
    w.family('anvil_certificate_not_after_timestamp_seconds', 'gauge', 'End of the certificate validity (notAfter), Unix time in seconds.');
    for (const e of exported) w.sampleWith('anvil_certificate_not_after_timestamp_seconds', e.labels!, seconds(num(e.row.not_after)));
    w.family('anvil_certificate_renewal_due_timestamp_seconds', 'gauge', 'When the certificate is due for renewal: notBefore plus two thirds of its lifetime, Unix time in seconds.');
    for (const e of exported) w.sampleWith('anvil_certificate_renewal_due_timestamp_seconds', e.labels!, seconds(renewalDueMs(num(e.row.not_before), num(e.row.not_after))));
    return w.buffer();
  }

  #info(exported: CertEntry[], levels: Health[]): Buffer {
    const w = new ExpositionWriter(exported.length * 200 + 4096);
    w.family('anvil_certificate_info', 'gauge', 'Facts of each exported certificate (always 1): serial, profile, key, CA or leaf, health level (good, fair, poor, critical).');
    for (const [k, e] of exported.entries()) {
      const c = e.row;
      const key = c.key_detail && c.key_type === 'ec' ? `ec ${c.key_detail}` : `${c.key_type} ${num(c.key_bits)}`;
      w.sample('anvil_certificate_info', ['fingerprint', e.fp, 'serial', boundedLabelValue(c.serial), 'profile', boundedLabelValue(c.profile ?? ''), 'key', boundedLabelValue(key), 'ca', num(c.is_ca) === 1 ? 'true' : 'false', 'health', levels[k]!], 1);
    }
    return w.buffer();
  }

  #revoked(exported: CertEntry[]): Buffer {
    const w = new ExpositionWriter();
    w.family('anvil_certificate_revoked_timestamp_seconds', 'gauge', 'When the certificate was revoked, Unix time in seconds (revoked certificates only).');
    for (const e of exported) if (e.row.revoked_at !== null) w.sample('anvil_certificate_revoked_timestamp_seconds', ['fingerprint', e.fp], seconds(num(e.row.revoked_at)));
    return w.buffer();
  }

  /** Every place the inventory knows, with the certificate seen there last, in (kind, location, sni) order. */
  #places(): Buffer {
    const places = [...this.#installations.values()].sort((a, b) => cmp(a.kind, b.kind) || cmp(a.location, b.location) || cmp(a.sni, b.sni));
    const w = new ExpositionWriter(places.length * 300 + 4096);
    const labels = places.map((i) => labelSet(['kind', i.kind, 'location', boundedLabelValue(i.location), 'sni', boundedLabelValue(i.sni)]));
    w.family('anvil_installation_info', 'gauge', 'A place a certificate is (status="present") or was (status="missing") deployed, and the fingerprint seen there last (always 1).');
    for (const [k, i] of places.entries()) {
      w.sampleWith('anvil_installation_info', `${labels[k]!.slice(0, -1)},status="${escapeLabelValue(i.status)}",fingerprint="${i.fingerprint ? this.#fpLabel(i.fingerprint) : ''}"}`, 1);
    }
    w.family('anvil_installation_last_seen_timestamp_seconds', 'gauge', 'When a certificate was last seen at the place, Unix time in seconds.');
    for (const [k, i] of places.entries()) w.sampleWith('anvil_installation_last_seen_timestamp_seconds', labels[k]!, seconds(num(i.last_seen)));
    return w.buffer();
  }

  /** The estate, installation counts, renewals, lineages and discovery runs. */
  #estate(estate: EstateHealth, exported: number): Buffer {
    const s = this.#stats;
    const w = new ExpositionWriter();
    w.family('anvil_inventory_certificates', 'gauge', 'Certificates in the inventory by health level (good, fair, poor, critical).');
    for (const l of LEVELS) w.sample('anvil_inventory_certificates', ['health', l], estate.byLevel[l]);
    w.family('anvil_inventory_certificates_exported', 'gauge', 'Certificates with per-certificate gauges (current: deployed, or neither renewed nor expired beyond the retention).');
    w.sample('anvil_inventory_certificates_exported', [], exported);
    w.family('anvil_inventory_findings', 'gauge', 'Certificates each check flags, by check id and severity.');
    for (const f of [...estate.byCheck].sort((a, b) => cmp(a.check, b.check) || cmp(a.severity, b.severity))) {
      w.sample('anvil_inventory_findings', ['check', f.check, 'severity', f.severity], f.certificates);
    }
    w.family('anvil_inventory_health_score', 'gauge', "The estate's score: the mean of the certificates' scores (0 to 100).");
    w.sample('anvil_inventory_health_score', [], estate.score);
    const installCounts = new Map<string, number>();
    const lineages: InstallationRow[] = [];
    for (const i of this.#installations.values()) {
      installCounts.set(`${i.kind}\n${i.status}`, (installCounts.get(`${i.kind}\n${i.status}`) ?? 0) + 1);
      if (i.kind === 'lineage') lineages.push(i);
    }
    w.family('anvil_inventory_installations', 'gauge', 'Installations by kind (endpoint, file, lineage) and status (present, missing).');
    for (const [k, n] of [...installCounts].sort()) {
      const [kind, status] = k.split('\n') as [string, string];
      w.sample('anvil_inventory_installations', ['kind', kind, 'status', status], n);
    }

    // Renewals: events of the inventory, and the lineages of Anvil's client.
    w.family('anvil_inventory_renewals_total', 'counter', 'Renewal events the inventory recorded: result="renewed" (a newer certificate for the same names appeared), result="failed" (a lineage renewal failed).');
    w.sample('anvil_inventory_renewals_total', ['result', 'renewed'], s.renewed);
    w.sample('anvil_inventory_renewals_total', ['result', 'failed'], s.renewalFailed);
    lineages.sort((a, b) => cmp(a.location, b.location) || cmp(a.sni, b.sni));
    const lineageLabels = lineages.map((i) =>
      labelSet(['lineage', boundedLabelValue(i.location.slice(Math.max(i.location.lastIndexOf('/'), i.location.lastIndexOf('\\')) + 1)), 'location', boundedLabelValue(i.location)]),
    );
    w.family('anvil_lineage_last_issued_timestamp_seconds', 'gauge', "notBefore of the lineage's live certificate: its last successful issuance or renewal, Unix time in seconds.");
    for (const [k, i] of lineages.entries()) {
      const c = i.fingerprint ? this.#certs.get(i.fingerprint)?.row : undefined;
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
      for (const cls of Object.keys(r.failures).sort()) w.sample('anvil_scan_last_failures', ['kind', r.kind, 'class', boundedLabelValue(cls)], num(r.failures[cls]));
    }
    return w.buffer();
  }
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The exposition of a snapshot at `now`, as UTF-8 (tests, benchmarks). Pure: the same snapshot and time give the same bytes. */
export function renderInventoryMetrics(s: InventorySnapshot, now: Date, opts: InventoryMetricsOptions): Buffer {
  const model = new InventoryMetricsModel(opts);
  model.apply({ certificates: s.certificates, installations: s.installations, stats: s });
  return Buffer.concat(model.render(now, true) as Buffer[]);
}

const NONE: InstallationState[] = [];

/** Builds the inventory part of the exposition: in this thread (directBuilder) or in one of its own (startMetricsThread). */
export interface InventoryMetricsBuilder {
  /** The parts (INVENTORY_PARTS) at `now`; a part is null when it did not change since the last build, unless `full`. */
  build(now: Date, full: boolean): Promise<Array<Buffer | null>>;
  close(): Promise<void>;
  /** True when this builder can build no more (its thread ended): a new one is needed. */
  ended?(): boolean;
}

/**
 * Builds in this thread, from an InventoryMetricsModel kept up to date from the inventory's
 * changes, on a database opened at the first build (and opened again after a failed build).
 */
export function directBuilder(open: () => Promise<{ db: Kysely<Schema>; close(): Promise<void> }>, opts: InventoryMetricsOptions): InventoryMetricsBuilder {
  let store: { db: Kysely<Schema>; close(): Promise<void> } | null = null;
  const model = new InventoryMetricsModel(opts);
  return {
    async build(now, full) {
      try {
        store ??= await open();
        await model.refresh(store.db);
      } catch (e) {
        const s = store;
        store = null;
        await s?.close().catch(() => {});
        throw e;
      }
      return model.render(now, full);
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
 * synchronous). The bytes come back transferred, not copied. A build that takes longer than
 * `deadlineMs` ends the thread (a stuck query, a lost connection): it fails, and the builder
 * reports ended() so that lazyBuilder starts a new one for the next scrape.
 */
export async function startMetricsThread(config: MetricsThreadConfig, deadlineMs = 120_000): Promise<InventoryMetricsBuilder> {
  const { spawnInventoryWorker } = await import('./thread.js');
  const worker = spawnInventoryWorker('metrics-worker', config);
  worker.unref();
  let next = 0;
  const waiting = new Map<number, { resolve: (b: Array<Buffer | null>) => void; reject: (e: Error) => void }>();
  let dead: Error | null = null;
  const failAll = (e: Error) => {
    dead ??= e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('message', (m: MetricsThreadAnswer) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.ok) w.resolve(m.parts.map((p) => (p === null ? null : Buffer.from(p.bytes, 0, p.length))));
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
    build(now, full) {
      if (dead) return Promise.reject(dead);
      const id = next++;
      return new Promise<Array<Buffer | null>>((resolve, reject) => {
        const timer = setTimeout(() => {
          failAll(new Error(`the inventory metrics build did not finish within ${Math.round(deadlineMs / 1000)} s; its thread was ended`));
          void worker.terminate();
        }, deadlineMs);
        waiting.set(id, {
          resolve: (b) => {
            clearTimeout(timer);
            resolve(b);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        worker.postMessage({ id, now: now.getTime(), full } satisfies MetricsThreadRequest);
      });
    },
    async close() {
      if (dead) return void (await exit);
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await exit;
      clearTimeout(timer);
    },
    ended: () => dead !== null,
  };
}

/**
 * A builder started on its first build, and started again when the one it has ended (its thread
 * died or missed its deadline). A builder that ended soon after it started (a thread that dies at
 * every start) is not started again at once: builds fail until a pause has passed, which doubles
 * from 5 s up to 5 minutes (and starts from 5 s again once a builder lasted 10 minutes).
 * `monotonicMs` is the clock of those pauses (tests).
 */
export function lazyBuilder(start: () => Promise<InventoryMetricsBuilder>, monotonicMs: () => number = () => performance.now()): InventoryMetricsBuilder {
  let started: Promise<InventoryMetricsBuilder> | null = null;
  let startedAt = 0;
  let pause = 5_000;
  let notBefore = -Infinity;
  return {
    async build(now, full) {
      const current = await started?.catch(() => null);
      if (current?.ended?.()) {
        started = null;
        const t = monotonicMs();
        pause = t - startedAt > 600_000 ? 5_000 : pause;
        notBefore = t + pause;
        pause = Math.min(pause * 2, 300_000);
      }
      if (started === null && monotonicMs() < notBefore) {
        throw new Error(`the inventory metrics thread ended; a new one is started in ${Math.ceil((notBefore - monotonicMs()) / 1000)} s`);
      }
      if (started === null) startedAt = monotonicMs();
      started ??= start().catch((e: unknown) => {
        started = null;
        throw e;
      });
      return (await started).build(now, full);
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
  full: boolean;
}

export type MetricsThreadAnswer = { id: number; ok: true; parts: Array<{ bytes: ArrayBuffer; length: number } | null> } | { id: number; ok: false; message: string };

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
 * 0: every scrape builds and waits for its build (tests). render() never throws: a failed build
 * gives the last good parts (anvil_inventory_metrics_generated_timestamp_seconds shows their age)
 * and anvil_inventory_metrics_up 0.
 *
 * The exposition is kept once, as the parts the builder gave (a build sends only the parts that
 * changed), and served as those buffers, never copied into one.
 */
export class InventoryMetrics {
  readonly #deps: InventoryMetricsDeps;
  readonly #cacheMs: number;
  /** The last good parts. */
  #parts: Buffer[] | null = null;
  /** The next build must send every part (the first, and any after a failure). */
  #full = true;
  /** What the last answer was: the parts and the trailer. */
  #answer: Buffer[] | null = null;
  #builtAt = -Infinity;
  #building: Promise<Buffer[]> | null = null;
  #buildSeconds = 0;
  #generatedAt = 0;
  #closed = false;

  constructor(opts: { cacheSeconds: number }, deps: InventoryMetricsDeps) {
    this.#cacheMs = opts.cacheSeconds * 1000;
    this.#deps = deps;
  }

  /** The inventory part of the exposition (UTF-8), in pieces to be sent one after another. */
  async render(): Promise<Buffer[]> {
    const now = this.#deps.clock.now().getTime();
    if (this.#answer !== null && now - this.#builtAt < this.#cacheMs) return this.#answer;
    this.#building ??= this.#build().finally(() => {
      this.#building = null;
    });
    // Stale while revalidating: the last good answer now, the new one for the next scrapes.
    if (this.#cacheMs > 0 && this.#answer !== null && this.#builtAt > -Infinity) return this.#answer;
    return this.#building;
  }

  /** Starts the first build now (server start-up), so that the first scrape finds it done or under way. */
  warm(): void {
    void this.render();
  }

  async #build(): Promise<Buffer[]> {
    const started = performance.now();
    const now = this.#deps.clock.now();
    let up = 1;
    try {
      if (this.#closed) throw new Error('the inventory metrics are closed');
      const full = this.#full || this.#parts === null;
      const got = await this.#deps.builder.build(now, full);
      if (got.length !== INVENTORY_PARTS || (full && got.some((p) => p === null))) throw new Error('the inventory metrics builder gave an incomplete exposition');
      const last = this.#parts;
      this.#parts = got.map((p, k) => p ?? last![k]!);
      this.#full = false;
      this.#buildSeconds = (performance.now() - started) / 1000;
      this.#generatedAt = now.getTime();
      this.#builtAt = now.getTime();
    } catch (e) {
      this.#deps.onError?.(e);
      up = 0;
      // A failure is tried again at the next scrape, not after cacheSeconds, with every part
      // (the builder may have moved on from what this side holds).
      this.#builtAt = -Infinity;
      this.#full = true;
    }
    this.#answer = [...(this.#parts ?? []), this.#trailer(up)];
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
    // The builder first: a build under way (the first one at start-up may take seconds) then ends
    // with it instead of being waited for.
    await this.#deps.builder.close();
    await this.#building?.catch(() => {});
  }
}
