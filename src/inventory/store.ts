/**
 * The inventory's records: certificates (once each, by SHA-256), the places they are deployed
 * (installations: an endpoint host:port with its SNI name, a file, a lineage), and a history of
 * events. Same storage layer as the CA (kysely; SQLite or PostgreSQL), its own tables and
 * migration ledger (INVENTORY_MIGRATIONS).
 *
 * Contract:
 * - Recording is idempotent, also with several writers at once (an INSERT that finds the row
 *   already there does nothing): the same certificate or the same observation again updates
 *   `last_seen`, and adds an event only when something changed (a new certificate, a different
 *   certificate at a place, a place gone or back).
 * - An installation is identified by (kind, location, sni); it holds the certificate seen there
 *   last. A look that fails (unreachable, unreadable) marks it `missing` and keeps that certificate,
 *   so the inventory still says what used to be there.
 * - Each record call is one transaction: a crash leaves either all of it or none.
 * - "Not found" is null, never an exception.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database as Schema, InvCertificatesTable, InvInstallationsTable } from '../storage/schema.js';
import { describeCertificate, type CertificateFacts } from './certificate.js';
import type { InstallationState } from './checks.js';

export type CertificateSource = 'ca' | 'lineage' | 'network' | 'file' | 'import';
export type InstallationKind = InstallationState['kind'];
export type EventType = 'issued' | 'renewed' | 'discovered' | 'deployed' | 'replaced' | 'missing' | 'back' | 'revoked' | 'unrevoked' | 'renewal-failed';

/** RFC 5280 §5.3.1 CRLReason certificateHold: the one revocation that may be lifted again. */
export const CERTIFICATE_HOLD = 6;

/**
 * A hold that a CRL/OCSP look found (reason 6, revocation_source 'ocsp' or 'crl'): the only
 * revocation a later look may clear. One recorded by Anvil's CA database sync or an import (whose
 * revocation_source is null) is never cleared by a look, nor one for any other reason.
 */
export function isNetworkHold(r: { revoked_at: number | null; revocation_reason: number | null; revocation_source?: string | null }): boolean {
  return r.revoked_at !== null && Number(r.revocation_reason) === CERTIFICATE_HOLD && (r.revocation_source === 'ocsp' || r.revocation_source === 'crl');
}

/**
 * What recordRevocationCheck did to the certificate's revocation: `revoked`, a revocation found
 * (new, or a hold found revoked for good now); `released`, a hold lifted (the revocation cleared,
 * an `unrevoked` event); `inconsistent`, a 'good' answer about a certificate whose revocation
 * stands (recorded in revocation_error); `unchanged`, anything else.
 */
export type RevocationCheckOutcome = 'revoked' | 'released' | 'inconsistent' | 'unchanged';

export interface InventoryCertificate extends CertificateFacts {
  der: Buffer;
  source: CertificateSource;
  profile: string | null;
  revoked: { at: Date; reason: number | null } | null;
  firstSeen: Date;
  lastSeen: Date;
  /** The last CRL/OCSP look (src/inventory/revocation.ts); absent: never looked. */
  revocationCheck?: { checkedAt: Date; source: 'ocsp' | 'crl' | null; error: string | null };
}

export interface Installation extends InstallationState {
  fingerprint: string | null;
  error: string | null;
  firstSeen: Date;
  lastSeen: Date;
  lastChecked: Date;
}

export interface InventoryEvent {
  id: string;
  at: Date;
  type: EventType;
  fingerprint: string | null;
  installationId: string | null;
  detail: Record<string, unknown>;
}

export interface Place {
  kind: InstallationKind;
  location: string;
  sni?: string | null;
}

/** What one look at a place found. */
export type Sighting =
  | { found: true; der: Buffer; chainError?: string | null; hostnameError?: string | null }
  | { found: false; error: string };

export interface RecordResult {
  fingerprint: string;
  /** First time the inventory sees this certificate. */
  isNew: boolean;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The installation id: a hash of its place, so that every replica and rescan computes the same. */
export function installationId(p: Place): string {
  return createHash('sha256').update(`${p.kind}\n${p.location}\n${p.sni ?? ''}`).digest('hex').slice(0, 32);
}

/** The renewal key: the subjectAltNames, sorted. */
export function namesKey(names: readonly string[]): string {
  return [...new Set(names)].sort().join(' ');
}

function certificateRow(
  f: CertificateFacts,
  der: Buffer,
  source: CertificateSource,
  extra: { profile?: string | null; revoked?: { at: Date; reason: number | null } | null },
  t: number,
): InvCertificatesTable {
  return {
    fingerprint: f.fingerprint,
    subject: f.subject,
    issuer: f.issuer,
    serial: f.serial,
    names: JSON.stringify(f.names),
    names_key: namesKey(f.names),
    key_type: f.keyType,
    key_bits: f.keyBits,
    key_detail: f.keyDetail,
    spki_sha256: f.spkiSha256,
    signature_algorithm: f.signatureAlgorithm,
    not_before: f.notBefore.getTime(),
    not_after: f.notAfter.getTime(),
    is_ca: f.isCa ? 1 : 0,
    self_signed: f.selfSigned ? 1 : 0,
    known_weak_key: f.knownWeakKey,
    der,
    source,
    profile: extra.profile ?? null,
    revoked_at: extra.revoked ? extra.revoked.at.getTime() : null,
    revocation_reason: extra.revoked ? extra.revoked.reason : null,
    first_seen: t,
    last_seen: t,
  };
}

export class InventoryStore {
  /** Orders the events of one process within a millisecond (see #eventId). */
  #seq = 0;

  constructor(
    /** The database, for the modules that keep their own inventory tables (alerts, scans, revocation checks, management). */
    readonly db: Kysely<Schema>,
    private readonly ownsDb = true,
  ) {}

  async close(): Promise<void> {
    if (this.ownsDb) await this.db.destroy();
  }

  /** Records a certificate (DER); throws when it does not parse. */
  async recordCertificate(
    der: Buffer,
    source: CertificateSource,
    now: Date,
    extra: { profile?: string | null; revoked?: { at: Date; reason: number | null } | null; event?: EventType } = {},
  ): Promise<RecordResult> {
    const facts = describeCertificate(der);
    return this.db.transaction().execute((tx) => this.#recordCertificate(tx, facts, der, source, now, extra));
  }

  /**
   * Records several certificates in one transaction (a sync from the CA: one commit per batch).
   * Certificates the inventory already holds are not parsed again: only a revocation it does not
   * know yet is recorded for them (a sync reads some certificates twice, see sources.ts).
   * Certificates that do not parse are left out and counted in `failed`.
   */
  async recordCertificates(
    items: ReadonlyArray<{ der: Buffer; profile?: string | null; revoked?: { at: Date; reason: number | null } | null }>,
    source: CertificateSource,
    now: Date,
  ): Promise<{ recorded: number; isNew: number; failed: number }> {
    const withFp = items.map((it) => ({ ...it, fingerprint: createHash('sha256').update(it.der).digest('hex') }));
    const known = new Map<string, { revoked: boolean; profile: string | null }>();
    for (let i = 0; i < withFp.length; i += 500) {
      const fps = withFp.slice(i, i + 500).map((x) => x.fingerprint);
      const rows = await this.db
        .selectFrom('inv_certificates')
        .select(['fingerprint', 'revoked_at', 'revocation_reason', 'revocation_source', 'profile'])
        .where('fingerprint', 'in', fps)
        .execute();
      // A hold found by a CRL/OCSP look is not the CA's word: the CA's revocation replaces it.
      for (const r of rows) known.set(r.fingerprint, { revoked: r.revoked_at !== null && !isNetworkHold(r), profile: r.profile });
    }
    const work: Array<{ f: CertificateFacts | null; der: Buffer; profile?: string | null; revoked?: { at: Date; reason: number | null } | null }> = [];
    let failed = 0;
    for (const it of withFp) {
      const k = known.get(it.fingerprint);
      if (k) {
        // Only news matters for a certificate already recorded: its revocation, or a profile
        // when it was first found elsewhere (a scan, a file) and the CA now says which.
        if ((it.revoked && !k.revoked) || (it.profile && k.profile === null)) work.push({ ...it, f: null });
        continue;
      }
      try {
        work.push({ ...it, f: describeCertificate(it.der) });
      } catch {
        failed++;
      }
    }
    const fresh = new Map<string, { f: CertificateFacts; der: Buffer; profile?: string | null; revoked?: { at: Date; reason: number | null } | null }>();
    const revokeOnly: typeof work = [];
    for (const w of work) {
      if (w.f) fresh.set(w.f.fingerprint, { ...w, f: w.f });
      else revokeOnly.push(w);
    }
    let isNew = 0;
    if (work.length) {
      await this.db.transaction().execute(async (tx) => {
        for (const w of revokeOnly) await this.#recordCertificate(tx, describeCertificate(w.der), w.der, source, now, { profile: w.profile, revoked: w.revoked });
        if (fresh.size) isNew = await this.#insertNew(tx, [...fresh.values()], source, now);
      });
    }
    return { recorded: withFp.length - failed, isNew, failed };
  }

  async getCursor(source: string): Promise<unknown> {
    const r = await this.db.selectFrom('inv_sources').select('cursor').where('name', '=', source).executeTakeFirst();
    return r ? (JSON.parse(r.cursor) as unknown) : null;
  }

  async setCursor(source: string, cursor: unknown, now: Date): Promise<void> {
    const value = JSON.stringify(cursor);
    await this.db
      .insertInto('inv_sources')
      .values({ name: source, cursor: value, updated_at: now.getTime() })
      .onConflict((oc) => oc.column('name').doUpdateSet({ cursor: value, updated_at: now.getTime() }))
      .execute();
  }

  /**
   * Inserts certificates the inventory does not hold, several rows per statement, with their
   * events: `renewed` when an older certificate for the same names exists (in the inventory or
   * earlier in the batch), else `issued` (from the CA) or `discovered`.
   */
  async #insertNew(
    tx: Transaction<Schema>,
    items: Array<{ f: CertificateFacts; der: Buffer; profile?: string | null; revoked?: { at: Date; reason: number | null } | null }>,
    source: CertificateSource,
    now: Date,
  ): Promise<number> {
    const t = now.getTime();
    const rows = items.map((it) => certificateRow(it.f, it.der, source, it, t));
    // Older certificates for the same names: in the inventory, and in this batch.
    const byKey = new Map<string, Array<{ fingerprint: string; notBefore: number }>>();
    const keys = [...new Set(rows.map((r) => r.names_key).filter((k) => k !== ''))];
    for (let i = 0; i < keys.length; i += 500) {
      const found = await tx.selectFrom('inv_certificates').select(['fingerprint', 'names_key', 'not_before']).where('names_key', 'in', keys.slice(i, i + 500)).execute();
      for (const r of found) byKey.set(r.names_key, [...(byKey.get(r.names_key) ?? []), { fingerprint: r.fingerprint, notBefore: Number(r.not_before) }]);
    }
    for (const r of rows) if (r.names_key) byKey.set(r.names_key, [...(byKey.get(r.names_key) ?? []), { fingerprint: r.fingerprint, notBefore: r.not_before }]);
    // 23 columns a row: 40 rows stay far below SQLite's and PostgreSQL's limits on parameters. A
    // row another writer inserted meanwhile (a replica, a CLI sync) is left alone, without events.
    const inserted = new Set<string>();
    for (let i = 0; i < rows.length; i += 40) {
      const done = await tx
        .insertInto('inv_certificates')
        .values(rows.slice(i, i + 40))
        .onConflict((oc) => oc.column('fingerprint').doNothing())
        .returning('fingerprint')
        .execute();
      for (const d of done) inserted.add(d.fingerprint);
    }
    const events: Schema['inv_events'][] = [];
    for (const [i, r] of rows.entries()) {
      if (!inserted.has(r.fingerprint)) continue;
      const previous = (byKey.get(r.names_key) ?? []).filter((c) => c.notBefore < r.not_before).sort((a, b) => b.notBefore - a.notBefore)[0];
      const type: EventType = previous ? 'renewed' : source === 'ca' ? 'issued' : 'discovered';
      events.push(this.#eventRow(now, type, r.fingerprint, null, { source, ...(previous ? { previous: previous.fingerprint } : {}) }));
      const revoked = items[i]!.revoked;
      if (revoked) events.push(this.#eventRow(now, 'revoked', r.fingerprint, null, { reason: revoked.reason }));
    }
    for (let i = 0; i < events.length; i += 100) await tx.insertInto('inv_events').values(events.slice(i, i + 100)).execute();
    return inserted.size;
  }

  async #recordCertificate(
    tx: Transaction<Schema>,
    f: CertificateFacts,
    der: Buffer,
    source: CertificateSource,
    now: Date,
    extra: { profile?: string | null; revoked?: { at: Date; reason: number | null } | null; event?: EventType },
  ): Promise<RecordResult> {
    const t = now.getTime();
    const existing = await tx
      .selectFrom('inv_certificates')
      .select(['fingerprint', 'revoked_at', 'revocation_reason', 'revocation_source'])
      .where('fingerprint', '=', f.fingerprint)
      .executeTakeFirst();
    if (existing) {
      const set: Partial<InvCertificatesTable> = { last_seen: t };
      if (extra.profile) set.profile = extra.profile;
      // A revocation from the CA's database (or an import) is recorded over a hold that a CRL/OCSP
      // look found, so that no later look lifts it (isNetworkHold).
      if (extra.revoked && (existing.revoked_at === null || isNetworkHold(existing))) {
        set.revoked_at = extra.revoked.at.getTime();
        set.revocation_reason = extra.revoked.reason;
        // Not found by a CRL/OCSP look (whose earlier 'good' would otherwise be taken for the finder).
        set.revocation_source = null;
        await this.#event(tx, now, 'revoked', f.fingerprint, null, { reason: extra.revoked.reason });
      }
      await tx.updateTable('inv_certificates').set(set).where('fingerprint', '=', f.fingerprint).execute();
      return { fingerprint: f.fingerprint, isNew: false };
    }
    const key = namesKey(f.names);
    const ins = await tx
      .insertInto('inv_certificates')
      .values(certificateRow(f, der, source, extra, t))
      .onConflict((oc) => oc.column('fingerprint').doNothing())
      .executeTakeFirst();
    // Another writer (a replica, a CLI sync) recorded it meanwhile: theirs stands.
    if (Number(ins.numInsertedOrUpdatedRows ?? 0n) === 0) return { fingerprint: f.fingerprint, isNew: false };
    // A renewal: an older certificate for the same names (not a CA certificate, whose names are empty).
    const previous = key
      ? await tx
          .selectFrom('inv_certificates')
          .select('fingerprint')
          .where('names_key', '=', key)
          .where('not_before', '<', f.notBefore.getTime())
          .orderBy('not_before', 'desc')
          .limit(1)
          .executeTakeFirst()
      : undefined;
    const type: EventType = previous ? 'renewed' : (extra.event ?? (source === 'ca' ? 'issued' : 'discovered'));
    await this.#event(tx, now, type, f.fingerprint, null, { source, ...(previous ? { previous: previous.fingerprint } : {}) });
    if (extra.revoked) await this.#event(tx, now, 'revoked', f.fingerprint, null, { reason: extra.revoked.reason });
    return { fingerprint: f.fingerprint, isNew: true };
  }

  /**
   * Records one look at a place: the certificate found there (recorded too), or why nothing was.
   * Returns the installation's id.
   */
  async recordSighting(place: Place, sighting: Sighting, source: CertificateSource, now: Date): Promise<string> {
    const facts = sighting.found ? describeCertificate(sighting.der) : null;
    const id = installationId(place);
    const t = now.getTime();
    await this.db.transaction().execute(async (tx) => {
      if (sighting.found) await this.#recordCertificate(tx, facts!, sighting.der, source, now, {});
      const row = await tx.selectFrom('inv_installations').selectAll().where('id', '=', id).executeTakeFirst();
      if (!sighting.found) {
        if (!row) return; // never seen there: nothing to remember
        if (row.status !== 'missing') {
          await tx.updateTable('inv_installations').set({ status: 'missing', error: sighting.error, last_checked: t }).where('id', '=', id).execute();
          await this.#event(tx, now, 'missing', row.fingerprint, id, { error: sighting.error });
        } else {
          await tx.updateTable('inv_installations').set({ error: sighting.error, last_checked: t }).where('id', '=', id).execute();
        }
        return;
      }
      const fp = facts!.fingerprint;
      const values = {
        fingerprint: fp,
        status: 'present',
        chain_error: sighting.chainError ?? null,
        hostname_error: sighting.hostnameError ?? null,
        error: null,
        last_seen: t,
        last_checked: t,
      };
      if (!row) {
        await tx
          .insertInto('inv_installations')
          .values({ id, kind: place.kind, location: place.location, sni: place.sni ?? '', first_seen: t, ...values })
          .execute();
        await this.#event(tx, now, 'deployed', fp, id, { location: place.location, sni: place.sni ?? null });
        return;
      }
      await tx.updateTable('inv_installations').set(values).where('id', '=', id).execute();
      if (row.fingerprint !== fp) {
        if (row.fingerprint) await this.#event(tx, now, 'replaced', row.fingerprint, id, { by: fp });
        await this.#event(tx, now, 'deployed', fp, id, { location: place.location, sni: place.sni ?? null, previous: row.fingerprint });
      } else if (row.status === 'missing') {
        await this.#event(tx, now, 'back', fp, id, {});
      }
    });
    return id;
  }

  /**
   * Marks as missing every present installation of `kind` that a complete rescan did not see:
   * those whose location starts with one of `under` (file scans of directories) or is one of
   * `exactly` (network scans of their targets), but not under one of `exceptUnder` (directories
   * that could not be read this time), and whose id is not in `seen`.
   */
  async markUnseen(kind: InstallationKind, scope: { under?: string[]; exactly?: string[]; exceptUnder?: string[] }, seen: ReadonlySet<string>, now: Date): Promise<number> {
    const rows = await this.db.selectFrom('inv_installations').select(['id', 'location', 'fingerprint']).where('kind', '=', kind).where('status', '=', 'present').execute();
    // Under a directory, or one of a file's further places (path:2, path:3, ...).
    const within = (loc: string, u: string) => loc === u || loc.startsWith(u.endsWith('/') ? u : `${u}/`) || (kind === 'file' && new RegExp(`^${escapeRegExp(u)}:\\d+$`).test(loc));
    const inScope = (loc: string) =>
      ((scope.exactly ?? []).includes(loc) || (scope.under ?? []).some((u) => within(loc, u))) && !(scope.exceptUnder ?? []).some((u) => within(loc, u));
    const gone = rows.filter((r) => !seen.has(r.id) && inScope(r.location));
    for (const r of gone) {
      await this.db.transaction().execute(async (tx) => {
        await tx.updateTable('inv_installations').set({ status: 'missing', error: 'not found on rescan', last_checked: now.getTime() }).where('id', '=', r.id).execute();
        await this.#event(tx, now, 'missing', r.fingerprint, r.id, { error: 'not found on rescan' });
      });
    }
    return gone.length;
  }

  async addEvent(now: Date, type: EventType, fingerprint: string | null, installationIdValue: string | null, detail: Record<string, unknown>): Promise<void> {
    await this.#event(this.db, now, type, fingerprint, installationIdValue, detail);
  }

  async #event(db: Kysely<Schema>, now: Date, type: EventType, fingerprint: string | null, installation: string | null, detail: Record<string, unknown>): Promise<void> {
    await db.insertInto('inv_events').values(this.#eventRow(now, type, fingerprint, installation, detail)).execute();
  }

  #eventRow(now: Date, type: EventType, fingerprint: string | null, installation: string | null, detail: Record<string, unknown>): Schema['inv_events'] {
    return { id: this.#eventId(now), at: now.getTime(), type, fingerprint, installation_id: installation, detail: JSON.stringify(detail) };
  }

  /**
   * Time-ordered: 12 hex digits of milliseconds, 8 of this process's sequence (so that the events
   * of one transaction keep their order), 16 random (so that processes do not collide).
   */
  #eventId(now: Date): string {
    this.#seq = (this.#seq + 1) % 0x1_0000_0000;
    return `${now.getTime().toString(16).padStart(12, '0')}${this.#seq.toString(16).padStart(8, '0')}${randomBytes(8).toString('hex')}`;
  }

  async getCertificate(fingerprint: string): Promise<InventoryCertificate | null> {
    const r = await this.db.selectFrom('inv_certificates').selectAll().where('fingerprint', '=', fingerprint).executeTakeFirst();
    return r ? mapCertificate(r) : null;
  }

  /** Fingerprints starting with `prefix` (lower-case hex), at most `limit`. */
  async findByPrefix(prefix: string, limit = 2): Promise<string[]> {
    if (!/^[0-9a-f]{1,64}$/.test(prefix)) return [];
    const rows = await this.db.selectFrom('inv_certificates').select('fingerprint').where('fingerprint', '>=', prefix).where('fingerprint', '<', `${prefix}g`).limit(limit).execute();
    return rows.map((r) => r.fingerprint);
  }

  /**
   * Every certificate, soonest expiry first. `withDer: false` leaves the DER out (an empty buffer):
   * what the views need, at a fraction of the cost for a large estate.
   */
  async listCertificates(opts: { withDer?: boolean } = {}): Promise<InventoryCertificate[]> {
    if (opts.withDer === false) {
      const rows = await this.db.selectFrom('inv_certificates').select(LEAN_COLUMNS).orderBy('not_after').orderBy('fingerprint').execute();
      return rows.map((r) => mapCertificate({ ...r, der: EMPTY }));
    }
    const rows = await this.db.selectFrom('inv_certificates').selectAll().orderBy('not_after').orderBy('fingerprint').execute();
    return rows.map(mapCertificate);
  }

  async countCertificates(): Promise<number> {
    const r = await this.db.selectFrom('inv_certificates').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /**
   * One page of certificates without DER, in (not_after, fingerprint) order after `after` (the
   * last one of the previous page): how a large estate is read without holding the event loop.
   */
  async listCertificatesPage(after: { notAfter: number; fingerprint: string } | null, limit: number): Promise<InventoryCertificate[]> {
    let q = this.db.selectFrom('inv_certificates').select(LEAN_COLUMNS).orderBy('not_after').orderBy('fingerprint').limit(limit);
    if (after) q = q.where((eb) => eb.or([eb('not_after', '>', after.notAfter), eb.and([eb('not_after', '=', after.notAfter), eb('fingerprint', '>', after.fingerprint)])]));
    const rows = await q.execute();
    return rows.map((r) => mapCertificate({ ...r, der: EMPTY }));
  }

  /** One page of installations in id order after `afterId`. */
  async listInstallationsPage(afterId: string | null, limit: number): Promise<Installation[]> {
    let q = this.db.selectFrom('inv_installations').selectAll().orderBy('id').limit(limit);
    if (afterId !== null) q = q.where('id', '>', afterId);
    return (await q.execute()).map(mapInstallation);
  }

  /** Installations, of one certificate or all. */
  async listInstallations(fingerprint?: string): Promise<Installation[]> {
    let q = this.db.selectFrom('inv_installations').selectAll();
    if (fingerprint) q = q.where('fingerprint', '=', fingerprint);
    const rows = await q.orderBy('kind').orderBy('location').orderBy('sni').execute();
    return rows.map(mapInstallation);
  }

  /** Events of one certificate (or all), oldest first. */
  async listEvents(filter: { fingerprint?: string; installationId?: string; type?: EventType; limit?: number } = {}): Promise<InventoryEvent[]> {
    let q = this.db.selectFrom('inv_events').selectAll();
    if (filter.type) q = q.where('type', '=', filter.type);
    if (filter.fingerprint) q = q.where('fingerprint', '=', filter.fingerprint);
    if (filter.installationId) q = q.where('installation_id', '=', filter.installationId);
    const rows = await q.orderBy('id').limit(filter.limit ?? 1000).execute();
    return rows.map((r) => ({
      id: r.id,
      at: new Date(Number(r.at)),
      type: r.type as EventType,
      fingerprint: r.fingerprint,
      installationId: r.installation_id,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
    }));
  }

  /** For each certificate, the newest later certificate for the same names, if any. */
  async renewals(): Promise<Map<string, { fingerprint: string; notBefore: Date }>> {
    const rows = await this.db.selectFrom('inv_certificates').select(['fingerprint', 'names_key', 'not_before']).where('names_key', '!=', '').orderBy('names_key').orderBy('not_before').execute();
    const out = new Map<string, { fingerprint: string; notBefore: Date }>();
    for (let i = 0; i < rows.length; ) {
      let j = i;
      while (j < rows.length && rows[j]!.names_key === rows[i]!.names_key) j++;
      const newest = rows[j - 1]!;
      for (let k = i; k < j - 1; k++) {
        if (Number(rows[k]!.not_before) < Number(newest.not_before)) out.set(rows[k]!.fingerprint, { fingerprint: newest.fingerprint, notBefore: new Date(Number(newest.not_before)) });
      }
      i = j;
    }
    return out;
  }

  /**
   * Records what a CRL/OCSP look at a certificate found (src/inventory/revocation.ts), in one
   * transaction: when, which source decided (null: none could), why not (null: one did), and what
   * that means for the certificate's revocation (RevocationCheckOutcome):
   *
   * - not revoked, found revoked: recorded (time, reason) with a `revoked` event naming the source
   *   and URL;
   * - on hold as a look found it (isNetworkHold), found good: the hold is lifted (revoked_at and
   *   the reason cleared) with an `unrevoked` event; found revoked for another reason: that
   *   revocation replaces the hold, with a `revoked` event;
   * - revoked in any other way (another reason, or by the CA's database or an import), found good:
   *   the revocation stands (RFC 5280 §5.3.1: only certificateHold is temporary) and the
   *   contradiction is recorded as revocation_error;
   * - already revoked, a look that could not tell: only when and why; the source that found the
   *   revocation stays.
   */
  async recordRevocationCheck(
    fingerprint: string,
    now: Date,
    r: { source: 'ocsp' | 'crl' | null; error: string | null; url?: string | null; revoked?: { at: Date; reason: number | null; url: string } },
  ): Promise<{ outcome: RevocationCheckOutcome; error: string | null }> {
    const t = now.getTime();
    return this.db.transaction().execute(async (tx) => {
      const cur = await tx
        .selectFrom('inv_certificates')
        .select(['revoked_at', 'revocation_reason', 'revocation_source'])
        .where('fingerprint', '=', fingerprint)
        .executeTakeFirst();
      if (!cur) return { outcome: 'unchanged' as const, error: r.error };
      const update = (set: Partial<InvCertificatesTable>) => tx.updateTable('inv_certificates').set({ revocation_checked_at: t, ...set }).where('fingerprint', '=', fingerprint).execute();
      const decided = r.source !== null;
      const revokedEvent = async (rv: NonNullable<typeof r.revoked>, extra: Record<string, unknown> = {}) => {
        await update({ revoked_at: rv.at.getTime(), revocation_reason: rv.reason, revocation_source: r.source, revocation_error: null });
        await this.#event(tx, now, 'revoked', fingerprint, null, { reason: rv.reason, source: r.source, url: rv.url, ...extra });
        return { outcome: 'revoked' as const, error: null };
      };
      if (cur.revoked_at === null) {
        if (r.revoked && decided) return revokedEvent(r.revoked);
        await update({ revocation_source: r.source, revocation_error: r.error });
        return { outcome: 'unchanged' as const, error: r.error };
      }
      const held = isNetworkHold(cur);
      if (r.revoked && decided) {
        // RFC 5280 §5.3.1: a certificate on hold may be revoked for good later (or its reason change).
        if (held && r.revoked.reason !== CERTIFICATE_HOLD) return revokedEvent(r.revoked, { previousReason: CERTIFICATE_HOLD });
        await update({ revocation_error: null, ...(held ? { revocation_source: r.source } : {}) });
        return { outcome: 'unchanged' as const, error: null };
      }
      if (decided) {
        if (held) {
          // RFC 5280 §5.3.1: certificateHold is reversible; a good answer now means the hold was lifted.
          await update({ revoked_at: null, revocation_reason: null, revocation_source: r.source, revocation_error: null });
          await this.#event(tx, now, 'unrevoked', fingerprint, null, {
            reason: CERTIFICATE_HOLD,
            revokedAt: new Date(Number(cur.revoked_at)).toISOString(),
            source: r.source,
            url: r.url ?? null,
          });
          return { outcome: 'released' as const, error: null };
        }
        const reason = cur.revocation_reason === null ? 'no reason given' : `reason ${Number(cur.revocation_reason)}`;
        const by = cur.revocation_source === 'ocsp' || cur.revocation_source === 'crl' ? `found by ${cur.revocation_source.toUpperCase()}` : 'per the CA or an import';
        const error =
          `${r.source}${r.url ? ` ${r.url}` : ''}: inconsistent: answered good, but the certificate is recorded revoked ` +
          `${new Date(Number(cur.revoked_at)).toISOString()} (${reason}, ${by}); the revocation stands: a look lifts only a hold (reason 6) that a look found`;
        await update({ revocation_error: error });
        return { outcome: 'inconsistent' as const, error };
      }
      // Could not tell: the revocation, and the source that found it, stay.
      await update({ revocation_error: r.error });
      return { outcome: 'unchanged' as const, error: r.error };
    });
  }
}

const EMPTY = new Uint8Array(0);
const LEAN_COLUMNS = [
  'fingerprint',
  'subject',
  'issuer',
  'serial',
  'names',
  'names_key',
  'key_type',
  'key_bits',
  'key_detail',
  'spki_sha256',
  'signature_algorithm',
  'not_before',
  'not_after',
  'is_ca',
  'self_signed',
  'known_weak_key',
  'source',
  'profile',
  'revoked_at',
  'revocation_reason',
  'first_seen',
  'last_seen',
  'revocation_checked_at',
  'revocation_source',
  'revocation_error',
] as const;

function mapCertificate(r: InvCertificatesTable): InventoryCertificate {
  return {
    fingerprint: r.fingerprint,
    subject: r.subject,
    issuer: r.issuer,
    serial: r.serial,
    names: JSON.parse(r.names) as string[],
    keyType: r.key_type as CertificateFacts['keyType'],
    keyBits: Number(r.key_bits),
    keyDetail: r.key_detail,
    spkiSha256: r.spki_sha256,
    signatureAlgorithm: r.signature_algorithm,
    notBefore: new Date(Number(r.not_before)),
    notAfter: new Date(Number(r.not_after)),
    isCa: Number(r.is_ca) === 1,
    selfSigned: Number(r.self_signed) === 1,
    der: Buffer.from(r.der),
    source: r.source as CertificateSource,
    profile: r.profile,
    knownWeakKey: r.known_weak_key,
    revoked: r.revoked_at === null ? null : { at: new Date(Number(r.revoked_at)), reason: r.revocation_reason === null ? null : Number(r.revocation_reason) },
    firstSeen: new Date(Number(r.first_seen)),
    lastSeen: new Date(Number(r.last_seen)),
    // Only once looked at (the key is absent before: the facts of a certificate stay comparable).
    ...(r.revocation_checked_at === null || r.revocation_checked_at === undefined
      ? {}
      : { revocationCheck: { checkedAt: new Date(Number(r.revocation_checked_at)), source: (r.revocation_source as 'ocsp' | 'crl' | null) ?? null, error: r.revocation_error ?? null } }),
  };
}

function mapInstallation(r: InvInstallationsTable): Installation {
  return {
    id: r.id,
    kind: r.kind as InstallationKind,
    location: r.location,
    sni: r.sni || null,
    fingerprint: r.fingerprint,
    status: r.status as Installation['status'],
    chainError: r.chain_error,
    hostnameError: r.hostname_error,
    error: r.error,
    firstSeen: new Date(Number(r.first_seen)),
    lastSeen: new Date(Number(r.last_seen)),
    lastChecked: new Date(Number(r.last_checked)),
  };
}
