/**
 * Inventory alerts (docs/alerts.md): the inventory's problems (assess() in inventory.ts, the
 * findings of checks.ts) held against the alert state kept in `inv_alerts`, giving notifications:
 *
 * - `opened`: a problem at or above `minSeverity` seen for the first time (or again after it was
 *   resolved);
 * - `reminder`: expiry reaching its next stage (30d, 14d, 7d, 3d, 1d, expired by default, scaled
 *   for short-lived certificates; one reminder per stage), another problem growing more severe, or
 *   a critical problem with no stage ahead still open after `repeatHours`;
 * - `resolved`: the problem gone (renewed, replaced, fixed, the certificate removed) or below
 *   `minSeverity` now.
 *
 * Contract:
 * - Deduplication holds with several evaluators at once (replicas on PostgreSQL, the server and a
 *   CLI run on one SQLite file): every change of an alert is a compare-and-set UPDATE on the row
 *   as it was read (stage, last_notified_at, resolved_at and the detail, whose `rev` changes with
 *   every write). Whoever wins creates the notification; the others find it done.
 * - Nothing is lost: a notification is kept in its alert's row (detail.pending) with the channels
 *   that still have to receive it, until each one has. Sending is claimed the same way (a lease in
 *   the row, so that only one evaluator sends it); a failed channel keeps it for the next run, a
 *   crash leaves a lease that runs out. Delivery is at least once: a receiver can recognise a
 *   repeat by the notification's id. After MAX_PENDING_MS undelivered, a notification is dropped
 *   and reported.
 * - Evaluators may have different channels (a CLI run with another config, a replica with an older
 *   one). An evaluator leases and sends only what is owed to channels it has, and leaves what is
 *   owed to the others alone: that is dropped only after MAX_PENDING_MS, like any undelivered
 *   notification, never because one evaluator does not know the channel.
 * - Each run sends one message per channel (a digest), split when longer than the channel takes.
 *   The channels are sent to at once, each on its own: a channel that does not answer costs only
 *   itself. After a failed message a channel gets nothing more in this run (the rest waits for the
 *   next), and every send ends by SEND_SHARE of the lease (aborted if need be), so that no send
 *   outlives the lease: another evaluator takes over only what this one has given up on (a
 *   receiver may still have got an aborted message: at least once, as above).
 * - The evaluation (`problemsOf`, `decide`) is pure; the channels are the only network edge.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Kysely } from 'kysely';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Database as Schema, InvAlertsTable } from '../storage/schema.js';
import type { AlertsConfig } from './alert-config.js';
import { AlertDeliveryError, newMessageId, type AlertChannel, type AlertMessage, type AlertNotification, type NotificationType, type ReminderReason, type SendOutcome } from './alert-channels.js';
import { DEFAULT_THRESHOLDS, type CheckId, type Severity } from './checks.js';
import { assess, type AssessedCertificate } from './inventory.js';
import type { InventoryStore } from './store.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
/** Expiry stages are scaled for certificates living less than this (checks.ts: a third of it is its 30 days). */
const FULL_LIFETIME_MS = 90 * DAY;
/** An undelivered notification is dropped (and reported) after this long. */
export const MAX_PENDING_MS = 7 * DAY;
/** Resolved alerts are kept this long (a problem that comes back within it reopens the same row). */
export const KEEP_RESOLVED_MS = 90 * DAY;
/** Resolved alerts younger than this are read each run (their undelivered `resolved` notifications). */
const LOAD_RESOLVED_MS = MAX_PENDING_MS + DAY;
/** A retry within the run waits at most this long; a longer Retry-After waits for the next run. */
const MAX_INLINE_WAIT_MS = 30_000;
/**
 * Sending ends (sends not started, the ones under way aborted) this share of the lease after the
 * run started. The rest is the margin for recording what arrived, and for an evaluator whose clock
 * runs ahead: none may find the lease run out while this run still sends.
 */
const SEND_SHARE = 0.5;

const RANK: Record<Severity, number> = { notice: 0, warning: 1, critical: 2 };

export type AlertOptions = Pick<AlertsConfig, 'minSeverity' | 'reminderDays' | 'repeatHours'>;

export type CertificateRef = NonNullable<AlertNotification['certificate']>;
export type InstallationRef = NonNullable<AlertNotification['installation']>;

/** One current problem: a finding at or above the threshold, under its alert key. */
export interface Problem {
  key: string;
  check: CheckId;
  severity: Severity;
  message: string;
  /** Expiry: its stage; otherwise the severity. */
  stage: string;
  /** No reminder stage lies ahead (every check but expiry, and expiry once expired): critical ones repeat. */
  final: boolean;
  fingerprint: string;
  certificate: CertificateRef;
  installation: InstallationRef | null;
  deployedAt: string[];
}

/** What to say when an alert resolves, per certificate (from the same assessment). */
export interface Assessment {
  problems: Map<string, Problem>;
  /** Findings under the threshold, by alert key: "now a notice: ...". */
  below: Map<string, { severity: Severity; message: string }>;
  certificates: Map<string, AssessedCertificate>;
}

export const isExpiryKey = (key: string): boolean => key.startsWith('expiry:');

/** One alert per problem: expiry (expiring, then expired) is one alert through all its stages. */
export function alertKey(check: CheckId, fingerprint: string, installation?: string | null): string {
  if (check === 'expiring' || check === 'expired') return `expiry:${fingerprint}`;
  return installation ? `${check}:${fingerprint}:${installation}` : `${check}:${fingerprint}`;
}

/**
 * The expiry stage a certificate is in: "expired", the last of `reminderDays` (descending) whose
 * threshold it has passed, or "open" before the first. Thresholds are scaled by lifetime / 90 days
 * for shorter-lived certificates, as checks.ts scales its warning (a third of the lifetime).
 */
export function expiryStage(notBefore: Date, notAfter: Date, now: Date, reminderDays: readonly number[]): string {
  const left = notAfter.getTime() - now.getTime();
  if (left < 0) return 'expired';
  const scale = Math.min(1, Math.max(0, notAfter.getTime() - notBefore.getTime()) / FULL_LIFETIME_MS);
  let stage = 'open';
  for (const d of [...reminderDays].sort((a, b) => b - a)) if (left <= d * scale * DAY) stage = `${d}d`;
  return stage;
}

/** Smaller is further along: "30d" 30, "7d" 7, "expired" -1, "open" (or anything else) Infinity. */
export function stageValue(stage: string): number {
  if (stage === 'expired') return -1;
  const m = /^(\d+(?:\.\d+)?)d$/.exec(stage);
  return m ? Number(m[1]) : Number.POSITIVE_INFINITY;
}

export function certificateRef(a: AssessedCertificate): CertificateRef {
  const c = a.certificate;
  return {
    fingerprint: c.fingerprint,
    names: c.names.slice(0, 100),
    subject: c.subject,
    issuer: c.issuer,
    serial: c.serial,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
  };
}

function placeOf(i: { location: string; sni: string | null }): string {
  return i.sni ? `${i.location} (SNI ${i.sni})` : i.location;
}

/** The current problems of the estate, by alert key. */
export function problemsOf(certificates: readonly AssessedCertificate[], now: Date, opts: AlertOptions): Assessment {
  const problems = new Map<string, Problem>();
  const below = new Map<string, { severity: Severity; message: string }>();
  const byFp = new Map<string, AssessedCertificate>();
  const min = RANK[opts.minSeverity];
  for (const a of certificates) {
    const c = a.certificate;
    byFp.set(c.fingerprint, a);
    const present = a.installations.filter((i) => i.status === 'present');
    // History is not alerted on: a certificate renewed and deployed nowhere keeps its findings
    // (a weak key, SHA-1) in `inventory show`, but nobody has anything to do about them.
    const history = a.renewedBy !== null && present.length === 0;
    for (const f of a.health.findings) {
      const key = alertKey(f.check, c.fingerprint, f.installation);
      if (history || RANK[f.severity] < min) {
        const b = below.get(key);
        if (!b || RANK[f.severity] > RANK[b.severity]) below.set(key, { severity: f.severity, message: history && RANK[f.severity] >= min ? `renewed by ${a.renewedBy!.fingerprint.slice(0, 16)} and deployed nowhere: ${f.message}` : f.message });
        continue;
      }
      const prev = problems.get(key);
      if (prev && RANK[prev.severity] >= RANK[f.severity]) continue;
      const expiry = isExpiryKey(key);
      const stage = expiry ? expiryStage(c.notBefore, c.notAfter, now, opts.reminderDays) : f.severity;
      const inst = f.installation ? a.installations.find((i) => i.id === f.installation) : undefined;
      problems.set(key, {
        key,
        check: f.check,
        severity: f.severity,
        message: f.message,
        stage,
        final: !expiry || stage === 'expired',
        fingerprint: c.fingerprint,
        certificate: certificateRef(a),
        installation: inst ? { id: inst.id, kind: inst.kind, location: inst.location, sni: inst.sni } : null,
        deployedAt: present.slice(0, 10).map(placeOf),
      });
    }
  }
  return { problems, below, certificates: byFp };
}

/** A notification kept in its alert's row until every channel has it. */
export interface PendingNotification {
  id: string;
  type: Exclude<NotificationType, 'test'>;
  reason: ReminderReason | null;
  createdAt: number;
  check: string;
  severity: Severity;
  stage: string;
  message: string;
  openedAt: number;
  resolvedAt: number | null;
  deployedAt: string[];
  /** Channels (by name) still to receive it. */
  channels: string[];
  /** Failed deliveries so far, and the last error. */
  attempts: number;
  lastError?: string;
  /** The run sending it, until when. */
  lease?: { run: string; until: number };
}

export interface AlertDetail {
  /** Changes with every write: what the compare-and-set compares. */
  rev: number;
  certificate: CertificateRef | null;
  installation: InstallationRef | null;
  pending: PendingNotification[];
}

/** An alert's row as read (raw, for the compare-and-set) and decoded. */
export interface AlertRow {
  raw: InvAlertsTable;
  key: string;
  check: string;
  severity: Severity;
  stage: string;
  message: string;
  openedAt: number;
  lastNotifiedAt: number | null;
  resolvedAt: number | null;
  detail: AlertDetail;
}

function decodeRow(r: InvAlertsTable): AlertRow {
  let detail: AlertDetail;
  try {
    const d = JSON.parse(r.detail) as Partial<AlertDetail>;
    detail = { rev: Number(d.rev ?? 0), certificate: d.certificate ?? null, installation: d.installation ?? null, pending: Array.isArray(d.pending) ? d.pending : [] };
  } catch {
    detail = { rev: 0, certificate: null, installation: null, pending: [] };
  }
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    raw: r,
    key: r.key,
    check: r.check_id,
    severity: (r.severity in RANK ? r.severity : 'warning') as Severity,
    stage: r.stage,
    message: r.message,
    openedAt: Number(r.opened_at),
    lastNotifiedAt: num(r.last_notified_at),
    resolvedAt: num(r.resolved_at),
    detail,
  };
}

export type Decision = { kind: 'opened' } | { kind: 'reminder'; reason: ReminderReason } | { kind: 'resolved' } | { kind: 'severity' };

/**
 * What a run does about one alert key, from its row (null: never seen) and its current problem
 * (null: none). Pure.
 */
export function decide(row: Pick<AlertRow, 'key' | 'severity' | 'stage' | 'openedAt' | 'lastNotifiedAt' | 'resolvedAt'> | null, problem: Problem | null, now: Date, opts: Pick<AlertOptions, 'repeatHours'>): Decision | null {
  if (problem && (!row || row.resolvedAt !== null)) return { kind: 'opened' };
  if (!row || row.resolvedAt !== null) return null;
  if (!problem) return { kind: 'resolved' };
  if (isExpiryKey(row.key)) {
    if (stageValue(problem.stage) < stageValue(row.stage)) return { kind: 'reminder', reason: 'stage' };
  } else if (RANK[problem.severity] > (RANK[row.stage as Severity] ?? -1)) {
    return { kind: 'reminder', reason: 'escalated' };
  }
  if (problem.final && problem.severity === 'critical' && opts.repeatHours > 0 && now.getTime() - (row.lastNotifiedAt ?? row.openedAt) >= opts.repeatHours * HOUR) {
    return { kind: 'reminder', reason: 'repeat' };
  }
  if (problem.severity !== row.severity) return { kind: 'severity' };
  return null;
}

/** Why an alert resolved, in a sentence. */
export function resolvedMessage(row: Pick<AlertRow, 'key' | 'detail'>, a: Assessment): string {
  const fp = row.detail.certificate?.fingerprint ?? row.key.split(':')[1] ?? '';
  const cert = a.certificates.get(fp);
  if (!cert) return 'the certificate is no longer in the inventory';
  if (cert.renewedBy) {
    const next = a.certificates.get(cert.renewedBy.fingerprint);
    const deployed = cert.installations.some((i) => i.status === 'present');
    return `renewed by ${cert.renewedBy.fingerprint.slice(0, 16)}${next ? ` (valid until ${next.certificate.notAfter.toISOString()})` : ''}${deployed ? '' : '; the old certificate is deployed nowhere'}`;
  }
  const b = a.below.get(row.key);
  if (b) return `now ${b.severity === 'notice' ? 'a notice' : `a ${b.severity}`}, below the alert threshold: ${b.message}`;
  const inst = row.detail.installation;
  if (inst && !cert.installations.some((i) => i.id === inst.id && i.status === 'present')) return `no longer deployed at ${placeOf(inst)}`;
  return 'the check no longer finds the problem';
}

export function toWire(row: Pick<AlertRow, 'key' | 'detail'>, p: PendingNotification): AlertNotification {
  return {
    id: p.id,
    type: p.type,
    reason: p.reason,
    createdAt: new Date(p.createdAt).toISOString(),
    alert: {
      key: row.key,
      check: p.check,
      severity: p.severity,
      stage: p.stage,
      message: p.message,
      openedAt: new Date(p.openedAt).toISOString(),
      resolvedAt: p.resolvedAt === null ? null : new Date(p.resolvedAt).toISOString(),
    },
    certificate: row.detail.certificate,
    installation: row.detail.installation,
    deployedAt: p.deployedAt,
  };
}

export interface DeliveryReport {
  channel: string;
  target: string;
  messages: number;
  notifications: number;
  ok: boolean;
  /** Sends tried, retries within the run included. */
  attempts: number;
  /** When not ok: how many notifications this channel still lacks after the run (they stay pending). */
  undelivered?: number;
  code?: string;
  error?: string;
  permanent?: boolean;
  /** Delivered, but with something to know (recipients refused). */
  warning?: string;
}

export interface AlertRunReport {
  at: string;
  dryRun: boolean;
  /** Current problems at or above the threshold. */
  problems: number;
  /** Open alerts after the run. */
  open: number;
  /** Notifications this run created (or, dry, would create). */
  created: Array<{ id: string; type: NotificationType; reason: ReminderReason | null; key: string; names: string[]; severity: Severity; stage: string; message: string }>;
  deliveries: DeliveryReport[];
  /** Dry run: what each channel would receive now. */
  plan?: Array<{ channel: string; notifications: AlertNotification[] }>;
  /** Notifications still owed to one of this evaluator's channels after the run (tried again at its next run). */
  pending: number;
  /**
   * Channels this evaluator does not have that notifications are still owed to, with how many:
   * another evaluator with that channel sends them; else they are dropped after MAX_PENDING_MS.
   */
  otherChannels: Array<{ channel: string; pending: number }>;
  dropped: Array<{ id: string; key: string; channels: string[]; why: string }>;
  /** Changes another evaluator made first (found done, not repeated). */
  conflicts: number;
}

export interface AlertEngineOptions {
  store: InventoryStore;
  config: Pick<AlertsConfig, 'minSeverity' | 'reminderDays' | 'repeatHours' | 'source'>;
  channels: readonly AlertChannel[];
  clock?: Clock;
  /** Waits before the 2nd, 3rd, ... attempt within a run (default 1 s, 5 s). */
  retryDelaysMs?: readonly number[];
  sleep?: (ms: number) => Promise<void>;
  /**
   * How long a run's claim on what it sends holds before another evaluator may send it (default 10
   * minutes). The run's sending ends within half of it.
   */
  leaseMs?: number;
  /** Called once the state is read and before anything is written (tests make evaluators race with it). */
  beforeWrite?: () => Promise<void>;
}

type SendResult = Pick<DeliveryReport, 'ok' | 'attempts' | 'code' | 'error' | 'permanent' | 'warning'>;

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class AlertEngine {
  readonly #db: Kysely<Schema>;
  readonly #o: AlertEngineOptions;
  readonly #clock: Clock;
  readonly #leaseMs: number;

  constructor(o: AlertEngineOptions) {
    this.#o = o;
    this.#db = o.store.db;
    this.#clock = o.clock ?? systemClock;
    this.#leaseMs = o.leaseMs ?? 10 * 60_000;
  }

  get #source(): string {
    return this.#o.config.source ?? os.hostname();
  }

  /** Evaluates the inventory, records what changed, and sends what is due. `dryRun`: only says what it would do. */
  async run(opts: { dryRun?: boolean } = {}): Promise<AlertRunReport> {
    const now = this.#clock.now();
    // The leases this run takes run from `now`: its sending ends, by the wall clock, well before.
    const sendUntil = Date.now() + this.#leaseMs * SEND_SHARE;
    const dryRun = opts.dryRun === true;
    const runId = randomUUID();
    const { certificates } = await assess(this.#o.store, now, DEFAULT_THRESHOLDS, { withDer: false });
    const a = problemsOf(certificates, now, this.#o.config);
    const rows = await this.#load(now);
    // Whom a notification made now is owed to: this evaluator's channels, and those other
    // evaluators had within MAX_PENDING_MS (a cron job with only some of the channels must not
    // leave the server's others without it).
    const own = this.#o.channels.map((c) => c.name);
    if (!dryRun) await this.#register(own, now);
    const addressees = await this.#addressees(own, now);
    const report: AlertRunReport = { at: now.toISOString(), dryRun, problems: a.problems.size, open: 0, created: [], deliveries: [], pending: 0, otherChannels: [], dropped: [], conflicts: 0 };

    const keys = new Set([...a.problems.keys(), ...[...rows.values()].filter((r) => r.resolvedAt === null).map((r) => r.key)]);
    await this.#o.beforeWrite?.();
    for (const key of keys) {
      const problem = a.problems.get(key) ?? null;
      let row = rows.get(key) ?? null;
      for (let attempt = 0; attempt < 5; attempt++) {
        const d = decide(row, problem, now, this.#o.config);
        if (!d) break;
        const next = this.#transition(row, key, problem, d, a, now, dryRun ? null : runId, addressees);
        if (dryRun) {
          rows.set(key, next.row);
          if (next.created) report.created.push(createdOf(next.row, next.created));
          break;
        }
        if (await this.#write(row, next.row, d)) {
          rows.set(key, next.row);
          if (next.created) report.created.push(createdOf(next.row, next.created));
          break;
        }
        report.conflicts++;
        row = await this.#read(key);
        if (row) rows.set(key, row);
      }
    }
    report.open = [...rows.values()].filter((r) => r.resolvedAt === null).length;
    if (dryRun) {
      report.plan = this.#plan(rows, now);
      report.pending = [...rows.values()].reduce((n, r) => n + r.detail.pending.length, 0);
      report.otherChannels = this.#otherChannels(rows);
      return report;
    }
    await this.#deliver(rows, now, runId, sendUntil, report);
    // Owed to one of this evaluator's channels (the rest are in otherChannels).
    const mine = new Set(this.#o.channels.map((c) => c.name));
    report.pending = [...rows.values()].reduce((n, r) => n + r.detail.pending.filter((p) => p.channels.some((c) => mine.has(c))).length, 0);
    report.otherChannels = this.#otherChannels(rows);
    // Resolved alerts go after KEEP_RESOLVED_MS (whatever they still owed was dropped after MAX_PENDING_MS).
    await this.#db.deleteFrom('inv_alerts').where('resolved_at', '<', now.getTime() - KEEP_RESOLVED_MS).execute();
    return report;
  }

  async #load(now: Date): Promise<Map<string, AlertRow>> {
    const rows = await this.#db
      .selectFrom('inv_alerts')
      .selectAll()
      .where((eb) => eb.or([eb('resolved_at', 'is', null), eb('resolved_at', '>', now.getTime() - LOAD_RESOLVED_MS)]))
      .execute();
    return new Map(rows.map((r) => [r.key, decodeRow(r)]));
  }

  async #read(key: string): Promise<AlertRow | null> {
    const r = await this.#db.selectFrom('inv_alerts').selectAll().where('key', '=', key).executeTakeFirst();
    return r ? decodeRow(r) : null;
  }

  /** Records that this evaluator has these channels (now). */
  async #register(names: string[], now: Date): Promise<void> {
    for (const name of names) {
      await this.#db
        .insertInto('inv_alert_channels')
        .values({ name, last_seen: now.getTime() })
        .onConflict((oc) => oc.column('name').doUpdateSet({ last_seen: now.getTime() }))
        .execute();
    }
  }

  /** This evaluator's channels and those any evaluator had within MAX_PENDING_MS, sorted. */
  async #addressees(own: string[], now: Date): Promise<string[]> {
    const seen = await this.#db.selectFrom('inv_alert_channels').select('name').where('last_seen', '>', now.getTime() - MAX_PENDING_MS).execute();
    return [...new Set([...own, ...seen.map((r) => r.name)])].sort();
  }

  /** The row after a decision, and the notification it adds (leased to `runId` when given), owed to `channels`. */
  #transition(
    row: AlertRow | null,
    key: string,
    problem: Problem | null,
    d: Decision,
    a: Assessment,
    now: Date,
    runId: string | null,
    channels: string[],
  ): { row: AlertRow; created: PendingNotification | null } {
    const t = now.getTime();
    const pending = (type: PendingNotification['type'], reason: ReminderReason | null, fields: Pick<PendingNotification, 'check' | 'severity' | 'stage' | 'message' | 'openedAt' | 'resolvedAt' | 'deployedAt'>): PendingNotification => ({
      id: randomUUID(),
      type,
      reason,
      createdAt: t,
      ...fields,
      channels,
      attempts: 0,
      ...(runId ? { lease: { run: runId, until: t + this.#leaseMs } } : {}),
    });
    const withDetail = (base: AlertRow, detail: AlertDetail, set: Partial<AlertRow>): AlertRow => {
      const next = { ...base, ...set, detail };
      next.raw = {
        key: next.key,
        fingerprint: detail.certificate?.fingerprint ?? base.raw.fingerprint,
        installation_id: detail.installation?.id ?? base.raw.installation_id,
        check_id: next.check,
        severity: next.severity,
        message: next.message,
        stage: next.stage,
        opened_at: next.openedAt,
        last_notified_at: next.lastNotifiedAt,
        resolved_at: next.resolvedAt,
        detail: JSON.stringify(detail),
      };
      return next;
    };
    if (d.kind === 'opened') {
      const p = problem!;
      const created = pending('opened', null, { check: p.check, severity: p.severity, stage: p.stage, message: p.message, openedAt: t, resolvedAt: null, deployedAt: p.deployedAt });
      // Notifications of an earlier episode still owed to a channel stay ahead of this one.
      const detail: AlertDetail = { rev: (row?.detail.rev ?? 0) + 1, certificate: p.certificate, installation: p.installation, pending: [...(row?.detail.pending ?? []), created] };
      const base: AlertRow = row ?? {
        raw: { key, fingerprint: p.fingerprint, installation_id: p.installation?.id ?? null } as InvAlertsTable,
        key,
        check: p.check,
        severity: p.severity,
        stage: p.stage,
        message: p.message,
        openedAt: t,
        lastNotifiedAt: t,
        resolvedAt: null,
        detail,
      };
      return { row: withDetail(base, detail, { check: p.check, severity: p.severity, stage: p.stage, message: p.message, openedAt: t, lastNotifiedAt: t, resolvedAt: null }), created };
    }
    const r = row!;
    if (d.kind === 'severity') return { row: withDetail(r, r.detail, { severity: problem!.severity }), created: null };
    if (d.kind === 'reminder') {
      const p = problem!;
      const stage = isExpiryKey(key) ? p.stage : RANK[p.severity] > (RANK[r.stage as Severity] ?? -1) ? p.severity : r.stage;
      const created = pending('reminder', d.reason, { check: p.check, severity: p.severity, stage, message: p.message, openedAt: r.openedAt, resolvedAt: null, deployedAt: p.deployedAt });
      const detail: AlertDetail = { ...r.detail, rev: r.detail.rev + 1, certificate: p.certificate, installation: p.installation ?? r.detail.installation, pending: [...r.detail.pending, created] };
      return { row: withDetail(r, detail, { check: p.check, severity: p.severity, stage, message: p.message, lastNotifiedAt: t }), created };
    }
    // resolved
    const cert = a.certificates.get(r.detail.certificate?.fingerprint ?? '');
    const created = pending('resolved', null, {
      check: r.check,
      severity: r.severity,
      stage: r.stage,
      message: resolvedMessage(r, a),
      openedAt: r.openedAt,
      resolvedAt: t,
      deployedAt: cert ? cert.installations.filter((i) => i.status === 'present').slice(0, 10).map(placeOf) : [],
    });
    const detail: AlertDetail = { ...r.detail, rev: r.detail.rev + 1, pending: [...r.detail.pending, created] };
    return { row: withDetail(r, detail, { resolvedAt: t, lastNotifiedAt: t }), created };
  }

  /** Writes a transition: an INSERT that finds no row, or a compare-and-set on the row as read. */
  async #write(before: AlertRow | null, after: AlertRow, d: Decision): Promise<boolean> {
    if (!before) {
      const r = await this.#db
        .insertInto('inv_alerts')
        .values(after.raw)
        .onConflict((oc) => oc.column('key').doNothing())
        .executeTakeFirst();
      return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
    }
    if (d.kind === 'severity') {
      // Not a notification: no compare-and-set needed, the next transition rewrites it anyway.
      await this.#db.updateTable('inv_alerts').set({ severity: after.severity }).where('key', '=', after.key).execute();
      return true;
    }
    return this.#cas(before, after.raw);
  }

  /** UPDATE ... WHERE the row is still as read: true when this evaluator's write won. */
  async #cas(before: AlertRow, set: Partial<InvAlertsTable>): Promise<boolean> {
    const b = before.raw;
    const { key: _key, ...values } = set;
    let q = this.#db.updateTable('inv_alerts').set(values).where('key', '=', b.key).where('stage', '=', b.stage).where('detail', '=', b.detail);
    q = b.last_notified_at === null ? q.where('last_notified_at', 'is', null) : q.where('last_notified_at', '=', b.last_notified_at);
    q = b.resolved_at === null ? q.where('resolved_at', 'is', null) : q.where('resolved_at', '=', b.resolved_at);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Writes a new detail (the same row otherwise) with compare-and-set; re-reads and re-applies `edit` on conflict. */
  async #editDetail(row: AlertRow, edit: (d: AlertDetail) => AlertDetail | null, report: AlertRunReport): Promise<AlertRow | null> {
    let cur: AlertRow | null = row;
    for (let attempt = 0; attempt < 5 && cur; attempt++) {
      const next = edit(structuredClone(cur.detail));
      if (!next) return cur;
      next.rev = cur.detail.rev + 1;
      const detail = JSON.stringify(next);
      if (await this.#cas(cur, { detail })) return { ...cur, detail: next, raw: { ...cur.raw, detail } };
      report.conflicts++;
      cur = await this.#read(row.key);
    }
    return null;
  }

  /** What is still owed to channels this evaluator does not have, per channel. */
  #otherChannels(rows: Map<string, AlertRow>): AlertRunReport['otherChannels'] {
    const known = new Set(this.#o.channels.map((c) => c.name));
    const counts = new Map<string, number>();
    for (const row of rows.values()) for (const p of row.detail.pending) for (const c of p.channels) if (!known.has(c)) counts.set(c, (counts.get(c) ?? 0) + 1);
    return [...counts].sort(([x], [y]) => x.localeCompare(y)).map(([channel, pending]) => ({ channel, pending }));
  }

  /** Dry run: what each channel would receive now (unleased or expired leases). */
  #plan(rows: Map<string, AlertRow>, now: Date): Array<{ channel: string; notifications: AlertNotification[] }> {
    return this.#o.channels.map((ch) => {
      const list: Array<{ row: AlertRow; p: PendingNotification }> = [];
      for (const row of rows.values()) for (const p of row.detail.pending) if (p.channels.includes(ch.name) && (!p.lease || p.lease.until <= now.getTime())) list.push({ row, p });
      list.sort((x, y) => x.p.createdAt - y.p.createdAt || x.row.key.localeCompare(y.row.key));
      return { channel: ch.name, notifications: list.map(({ row, p }) => toWire(row, p)) };
    });
  }

  /** Claims what is owed and unclaimed, sends one digest per channel, and records what arrived. */
  async #deliver(rows: Map<string, AlertRow>, now: Date, runId: string, sendUntil: number, report: AlertRunReport): Promise<void> {
    const t = now.getTime();
    const known = new Set(this.#o.channels.map((c) => c.name));
    const forMe = (p: PendingNotification) => p.channels.some((c) => known.has(c));
    // 1. Claim: lease what nobody is sending and this evaluator has a channel for; drop what is too
    //    old. What is owed only to channels this evaluator does not have is left as it is: another
    //    evaluator may have them (a CLI run with another config, a replica with an older one).
    for (const [key, row] of rows) {
      const claimable = row.detail.pending.some((p) => forMe(p) && p.lease?.run !== runId && (!p.lease || p.lease.until <= t));
      const stale = row.detail.pending.some((p) => t - p.createdAt > MAX_PENDING_MS || p.channels.length === 0);
      if (!claimable && !stale) continue;
      const dropped: AlertRunReport['dropped'] = [];
      const next = await this.#editDetail(
        row,
        (d) => {
          dropped.length = 0;
          const keep: PendingNotification[] = [];
          for (const p of d.pending) {
            const leasedByOther = p.lease !== undefined && p.lease.run !== runId && p.lease.until > t;
            if (!leasedByOther && t - p.createdAt > MAX_PENDING_MS && p.channels.length) {
              const elsewhere = p.channels.filter((c) => !known.has(c));
              const where = elsewhere.length ? ` (${elsewhere.join(', ')}: not a channel of this evaluator)` : '';
              dropped.push({ id: p.id, key, channels: p.channels, why: `undelivered for ${Math.round(MAX_PENDING_MS / DAY)} days${where}${p.lastError ? `; last error: ${p.lastError}` : ''}` });
              continue;
            }
            if (p.channels.length === 0) continue;
            if (!leasedByOther) {
              if (forMe(p)) p.lease = { run: runId, until: t + this.#leaseMs };
              else delete p.lease;
            }
            keep.push(p);
          }
          d.pending = keep;
          return d;
        },
        report,
      );
      if (next) {
        rows.set(key, next);
        report.dropped.push(...dropped);
      }
    }
    // 2. Send: every channel at once and on its own, so that one that does not answer delays no
    //    other; each until sendUntil, well within the lease.
    const results = new Map<string, ChannelResults>();
    const deliveries = await Promise.all(this.#o.channels.map((ch) => this.#sendTo(ch, rows, runId, sendUntil, results)));
    for (const dr of deliveries) if (dr) report.deliveries.push(dr);
    // 3. Record: delivered channels leave each notification; the rest keep it, unleased, for the next run.
    for (const [key, row] of rows) {
      if (!row.detail.pending.some((p) => p.lease?.run === runId)) continue;
      const next = await this.#editDetail(
        row,
        (d) => {
          d.pending = d.pending.flatMap((p) => {
            const res = results.get(p.id);
            if (p.lease?.run === runId) delete p.lease;
            if (!res) return [p];
            p.channels = p.channels.filter((c) => !res.ok.has(c));
            if (res.failed.size) {
              if (res.tried) p.attempts++;
              p.lastError = [...res.failed.values()].join('; ').slice(0, 500);
            }
            return p.channels.length ? [p] : [];
          });
          return d;
        },
        report,
      );
      if (next) rows.set(key, next);
      else report.deliveries.push({ channel: STATE_CHANNEL, target: key, messages: 0, notifications: 0, ok: false, attempts: 0, code: 'ALERT_FAILED', error: `could not record the deliveries of ${key} (kept changing); its lease runs out and they are sent again` });
    }
  }

  /**
   * Sends one channel what this run holds for it, oldest first, in messages of at most
   * maxPerMessage. After a message fails (or the time is up) the channel gets nothing more in this
   * run: the rest stays pending with the same error, for the next run.
   */
  async #sendTo(ch: AlertChannel, rows: Map<string, AlertRow>, runId: string, sendUntil: number, results: Map<string, ChannelResults>): Promise<DeliveryReport | null> {
    const mine: Array<{ row: AlertRow; p: PendingNotification }> = [];
    for (const row of rows.values()) for (const p of row.detail.pending) if (p.lease?.run === runId && p.channels.includes(ch.name)) mine.push({ row, p });
    if (mine.length === 0) return null;
    mine.sort((x, y) => x.p.createdAt - y.p.createdAt || x.row.key.localeCompare(y.row.key));
    const dr: DeliveryReport = { channel: ch.name, target: ch.target, messages: 0, notifications: 0, ok: true, attempts: 0 };
    const note = (chunk: typeof mine, ok: boolean, error: string, tried: boolean) => {
      for (const { p } of chunk) {
        const e = results.get(p.id) ?? { ok: new Set<string>(), failed: new Map<string, string>(), tried: false };
        if (ok) e.ok.add(ch.name);
        else e.failed.set(ch.name, error);
        e.tried ||= tried;
        results.set(p.id, e);
      }
    };
    let failure: SendResult | null = null;
    for (let i = 0; i < mine.length; i += ch.maxPerMessage) {
      const chunk = mine.slice(i, i + ch.maxPerMessage);
      if (failure) {
        note(chunk, false, failure.error ?? 'failed', false);
        continue;
      }
      const r = await this.#sendWithRetry(ch, { id: newMessageId(), source: this.#source, sentAt: this.#clock.now(), notifications: chunk.map(({ row, p }) => toWire(row, p)) }, sendUntil);
      dr.attempts += r.attempts;
      if (r.ok) {
        dr.messages++;
        dr.notifications += chunk.length;
        if (r.warning) dr.warning = r.warning;
        note(chunk, true, '', true);
        continue;
      }
      failure = r;
      Object.assign(dr, { ok: false, code: r.code, error: r.error, permanent: r.permanent });
      note(chunk, false, r.error ?? 'failed', r.attempts > 0);
    }
    if (!dr.ok) dr.undelivered = mine.length - dr.notifications;
    return dr;
  }

  #sendWithRetry(ch: AlertChannel, m: AlertMessage, until: number): Promise<SendResult> {
    return sendWithRetry(ch, m, this.#o.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS, this.#o.sleep ?? realSleep, until);
  }
}

/** What one run's sends did for one notification: the channels that have it, the ones that failed (and why). */
interface ChannelResults {
  ok: Set<string>;
  failed: Map<string, string>;
  /** Whether a failed channel was really tried (not only skipped after an earlier failure). */
  tried: boolean;
}

/** The `channel` of a delivery report that is not a channel's: what arrived could not be recorded. */
export const STATE_CHANNEL = '(state)';

const DEFAULT_RETRY_DELAYS_MS = [1000, 5000];

const OUT_OF_TIME = "this run's time to send ran out (its lease on the notifications ends soon); the next run sends them";

/**
 * Sends, and tries again after each of `delays` while the failure is not permanent (and a
 * Retry-After is short). Nothing is started, waited for or still awaited at `until` (wall clock):
 * a send under way then is aborted, and left behind even if its channel ignores the signal.
 */
async function sendWithRetry(ch: AlertChannel, m: AlertMessage, delays: readonly number[], sleep: (ms: number) => Promise<void>, until = Number.POSITIVE_INFINITY): Promise<SendResult> {
  for (let i = 0; ; i++) {
    if (Date.now() >= until) return { ok: false, attempts: i, code: 'ALERT_TIMEOUT', error: `${ch.name}: not sent: ${OUT_OF_TIME}`, permanent: false };
    try {
      const out = await sendBefore(ch, m, until);
      return { ok: true, attempts: i + 1, ...(out.warning ? { warning: out.warning } : {}) };
    } catch (e) {
      const err = e instanceof AlertDeliveryError ? e : new AlertDeliveryError('ALERT_FAILED', `${ch.name}: ${(e as Error).name}: an unexpected error in the channel`, false);
      const failed = { ok: false, attempts: i + 1, code: err.code, error: err.message, permanent: err.permanent };
      const wait = Math.max(delays[i] ?? 0, err.retryAfterMs ?? 0);
      if (err.permanent || i >= delays.length || wait > MAX_INLINE_WAIT_MS) return failed;
      if (Date.now() + wait >= until) return Date.now() >= until ? failed : { ...failed, error: `${err.message}; not tried again: ${OUT_OF_TIME}` };
      await sleep(wait);
    }
  }
}

/** `ch.send`, given a signal aborted at `until`, and not awaited past it even if the channel ignores the signal. */
async function sendBefore(ch: AlertChannel, m: AlertMessage, until: number): Promise<SendOutcome> {
  if (!Number.isFinite(until)) return ch.send(m);
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new AlertDeliveryError('ALERT_TIMEOUT', `${ch.name}: stopped: ${OUT_OF_TIME}`, false));
      ac.abort(new Error(OUT_OF_TIME));
    }, Math.max(0, until - Date.now()));
  });
  const sending = ch.send(m, { signal: ac.signal });
  // Once stopped, how the send ends is no longer awaited: its failure is not an unhandled one.
  sending.catch(() => {});
  try {
    return await Promise.race([sending, stopped]);
  } finally {
    clearTimeout(timer);
  }
}

/** `anvil inventory alerts --test`: one test notification to every channel, now; no state is read or changed. */
export async function sendTestMessages(
  channels: readonly AlertChannel[],
  o: { source?: string | undefined; clock?: Clock; retryDelaysMs?: readonly number[]; sleep?: (ms: number) => Promise<void> } = {},
): Promise<DeliveryReport[]> {
  const now = (o.clock ?? systemClock).now();
  const out: DeliveryReport[] = [];
  for (const ch of channels) {
    const n: AlertNotification = {
      id: randomUUID(),
      type: 'test',
      reason: null,
      createdAt: now.toISOString(),
      alert: { key: 'test', check: 'test', severity: 'notice', stage: 'test', message: `a test message to channel "${ch.name}"`, openedAt: now.toISOString(), resolvedAt: null },
      certificate: null,
      installation: null,
      deployedAt: [],
    };
    const r = await sendWithRetry(ch, { id: newMessageId(), source: o.source ?? os.hostname(), sentAt: now, notifications: [n] }, o.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS, o.sleep ?? realSleep);
    out.push({ channel: ch.name, target: ch.target, messages: 1, notifications: 1, ...r });
  }
  return out;
}

function createdOf(row: AlertRow, p: PendingNotification): AlertRunReport['created'][number] {
  return { id: p.id, type: p.type, reason: p.reason, key: row.key, names: row.detail.certificate?.names.slice(0, 10) ?? [], severity: p.severity, stage: p.stage, message: p.message };
}

/** What the alerts thread needs: where the inventory is, the alerts section, and how often. */
export interface AlertsThreadConfig {
  inventory: import('./inventory.js').InventoryLocation;
  alerts: AlertsConfig;
  intervalMs: number;
}

export type AlertsThreadReport = { type: 'run'; report: AlertRunReport } | { type: 'error'; message: string; code?: string };

/**
 * Runs the alerts in a worker thread of its own (alerts-worker.ts), with its own database
 * connections: assessing a large inventory takes CPU the server's event loop should not lose. The
 * thread runs at once, then every `intervalMs`; `stop()` ends it after the run in progress (or
 * after 10 s: what it had claimed is sent by the next run, once its lease runs out).
 */
export async function startAlertsThread(config: AlertsThreadConfig, onReport: (r: AlertsThreadReport) => void): Promise<{ stop(): Promise<void> }> {
  // Only the enumerable values travel (the toJSON redaction does not): the thread gets the real ones.
  const data = { ...config, alerts: { ...config.alerts, channels: config.alerts.channels.map((c) => ({ ...c })) } };
  const { startInventoryThread } = await import('./thread.js');
  return startInventoryThread<AlertsThreadReport>('alerts-worker', data, onReport);
}

/**
 * Logs a run as the server does: failures and drops as errors (no secret is in them), news as
 * info. Each message says what really happens next: the server's next interval runs again; a
 * failed channel's notifications stay pending and are tried by later runs until they arrive or
 * MAX_PENDING_MS has passed since they were made; what arrived but could not be recorded is sent
 * again once its lease runs out.
 */
export function logAlertReport(log: { error(o: object, m: string): void; warn(o: object, m: string): void; info(o: object, m: string): void; debug(o: object, m: string): void }, r: AlertsThreadReport): void {
  const days = Math.round(MAX_PENDING_MS / DAY);
  if (r.type === 'error') {
    log.error({ error: r.message, code: r.code }, 'inventory alerts: the run failed; what it had leased waits until the lease runs out');
    return;
  }
  const rep = r.report;
  for (const d of rep.deliveries) {
    if (d.channel === STATE_CHANNEL) {
      log.error({ key: d.target, error: d.error }, 'inventory alerts: notifications were sent but their delivery could not be recorded; they are sent again once their lease runs out');
    } else if (!d.ok) {
      const fields = { channel: d.channel, target: d.target, code: d.code, permanent: d.permanent, attempts: d.attempts, undelivered: d.undelivered, error: d.error };
      log.error(
        fields,
        d.permanent
          ? `inventory alerts: a delivery was refused (fix the channel or the receiver); its notifications stay pending, each run tries again, and they are dropped ${days} days after they were made`
          : `inventory alerts: a delivery failed; its notifications stay pending, the next runs try again, and they are dropped ${days} days after they were made`,
      );
    }
    if (d.warning) log.warn({ channel: d.channel, warning: d.warning }, 'inventory alerts: delivered with a warning');
  }
  for (const x of rep.otherChannels) {
    log.warn({ channel: x.channel, pending: x.pending }, `inventory alerts: notifications are owed to a channel this server does not have; an evaluator that has it sends them, else they are dropped ${days} days after they were made`);
  }
  for (const x of rep.dropped) log.error({ ...x }, 'inventory alerts: a notification was dropped undelivered; it is not sent again');
  const count = (t: string) => rep.created.filter((c) => c.type === t).length;
  const fields = { problems: rep.problems, open: rep.open, opened: count('opened'), reminders: count('reminder'), resolved: count('resolved'), delivered: rep.deliveries.reduce((n, d) => n + d.notifications, 0), pending: rep.pending };
  if (rep.created.length || fields.delivered) log.info(fields, 'inventory alerts sent');
  else log.debug(fields, 'inventory alerts: nothing new');
}
