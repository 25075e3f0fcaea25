/**
 * The estate as the dashboard reads it: one assessment of every certificate (without DER), shared
 * by every request and concurrent caller, from which pages, counts, the expiry timeline and the
 * forecast are cut. For 100,000 certificates a page is a filter and a slice of an array in memory;
 * the assessment is rebuilt in the background, in chunks, when it is older than its interval.
 */
import { checkCertificate, estateHealth, healthOf, type EstateHealth, type Health, type Severity } from './checks.js';
import { forecast, type Forecast } from './forecast.js';
import type { AssessedCertificate } from './inventory.js';
import type { CertificateSource, Installation, InventoryCertificate, InventoryStore } from './store.js';

export interface EstateSnapshot {
  at: Date;
  /** The inventory's version when the build began (#version). */
  version: string;
  certificates: AssessedCertificate[];
  estate: EstateHealth;
  byFingerprint: Map<string, AssessedCertificate>;
}

export interface PageQuery {
  /** Case-insensitive substring of a name, the subject, the issuer, the serial or the fingerprint. */
  q?: string;
  /** Only this level or worse. */
  health?: Health;
  source?: CertificateSource;
  /** Only certificates with a finding of this check. */
  check?: string;
  /** Expiring within this many days (expired included). */
  expiringWithinDays?: number;
  /** Leave out CA certificates (default true). */
  leavesOnly?: boolean;
  sort?: 'notAfter' | '-notAfter' | 'health' | 'subject';
  /** How many to skip (the cursor of the API is this number). */
  offset?: number;
  limit?: number;
}

const RANK: Record<Health, number> = { good: 0, fair: 1, poor: 2, critical: 3 };
const DAY = 86_400_000;

export class EstateView {
  #snapshot: EstateSnapshot | null = null;
  #building: Promise<EstateSnapshot> | null = null;
  #buildingGeneration = -1;
  /** How long the last build took: a large estate is rebuilt less often (see #interval). */
  #lastBuildMs = 0;
  #checkedAt = 0;
  /** Moves on at each invalidate/refresh: a build that began under an older one is not kept. */
  #generation = 0;

  constructor(
    private readonly store: InventoryStore,
    private readonly opts: { now: () => Date; maxAgeMs?: number; chunk?: number; onError?: (e: unknown) => void },
  ) {}

  /** At least maxAgeMs (default 10 s) between builds, and at least 20 times a build's own length. */
  #interval(): number {
    return Math.max(this.opts.maxAgeMs ?? 10_000, 20 * this.#lastBuildMs);
  }

  /**
   * The current snapshot. The first call waits for a build; later calls get the snapshot at hand at
   * once, and one that finds it older than the interval starts a new build in the background
   * (stale while revalidate), so that no request waits for a large estate to be read again.
   */
  async snapshot(): Promise<EstateSnapshot> {
    const s = this.#snapshot;
    if (!s) return this.#build();
    const age = this.opts.now().getTime() - s.at.getTime();
    let stale = age >= this.#interval();
    // Something recorded since (an event: a new certificate, a deployment, a revocation)? Two
    // indexed lookups; for a large estate at most once a second.
    const t = this.opts.now().getTime();
    if (!stale && (this.#lastBuildMs < 100 || t - this.#checkedAt >= 1000)) {
      this.#checkedAt = t;
      if ((await this.#version()) !== s.version) stale = true;
    }
    if (!stale) return s;
    // A small estate is rebuilt before answering (fresh at a few milliseconds' cost); a large one
    // answers from the snapshot at hand while the next is built.
    if (this.#lastBuildMs < 100) return this.#build();
    void this.#build().catch((e: unknown) => this.opts.onError?.(e));
    return s;
  }

  /** What changes when the inventory records something: the newest event and the number of certificates. */
  async #version(): Promise<string> {
    const db = this.store.db;
    const [e, c] = await Promise.all([
      db.selectFrom('inv_events').select('id').orderBy('id', 'desc').limit(1).executeTakeFirst(),
      db.selectFrom('inv_certificates').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst(),
    ]);
    return `${e?.id ?? ''}/${Number(c?.n ?? 0)}`;
  }

  /** Starts a build now (at start-up, so that the first page is served from a snapshot). */
  warm(): void {
    void this.#build().catch((e: unknown) => this.opts.onError?.(e));
  }

  /**
   * After a change: the next read waits for a fresh build. A build that began before is not taken
   * for fresh (the generation moved on).
   */
  invalidate(): void {
    this.#generation++;
    this.#snapshot = null;
  }

  /**
   * One certificate read and checked again in the snapshot at hand (after a change made here, a
   * revocation): seen at once, without rebuilding a large estate. Its place in the not-after order
   * cannot have changed. A build already running is not taken for fresh.
   */
  async refresh(fingerprint: string): Promise<void> {
    this.#generation++;
    const s = this.#snapshot;
    if (!s) return;
    const old = s.byFingerprint.get(fingerprint);
    const c = await this.store.getCertificate(fingerprint);
    if (!c) return this.invalidate();
    if (!old) return this.invalidate();
    const installations = await this.store.listInstallations(fingerprint);
    const now = this.opts.now();
    const revoked = c.revoked && { ...c.revoked, source: c.revocationCheck?.source ?? null };
    const fresh: AssessedCertificate = {
      certificate: { ...c, der: Buffer.alloc(0) },
      installations,
      renewedBy: old.renewedBy,
      health: healthOf(checkCertificate(c, { now, installations, renewedBy: old.renewedBy, revoked })),
    };
    const i = s.certificates.indexOf(old);
    if (i < 0 || this.#snapshot !== s) return this.invalidate();
    const certificates = s.certificates.slice();
    certificates[i] = fresh;
    const byFingerprint = new Map(s.byFingerprint);
    byFingerprint.set(fingerprint, fresh);
    this.#snapshot = { ...s, certificates, byFingerprint, estate: estateHealth(certificates.map((a) => a.health)), version: `${s.version}+${fingerprint}` };
  }

  /**
   * Reads the estate a page at a time and checks it a chunk at a time, yielding to the event loop
   * in between: on a server, a build of 100,000 certificates never holds requests up for long.
   */
  #build(): Promise<EstateSnapshot> {
    if (this.#building && this.#buildingGeneration === this.#generation) return this.#building;
    const generation = this.#generation;
    this.#buildingGeneration = generation;
    let building: Promise<EstateSnapshot> | null = null;
    building = (async () => {
      const started = Date.now();
      try {
        const chunk = this.opts.chunk ?? 2000;
        const now = this.opts.now();
        const version = await this.#version();
        const yieldNow = () => new Promise<void>((r) => setImmediate(r));
        const certs: InventoryCertificate[] = [];
        for (let after: { notAfter: number; fingerprint: string } | null = null; ; ) {
          const page = await this.store.listCertificatesPage(after, chunk);
          certs.push(...page);
          if (page.length < chunk) break;
          const last = page[page.length - 1]!;
          after = { notAfter: last.notAfter.getTime(), fingerprint: last.fingerprint };
          await yieldNow();
        }
        const byCert = new Map<string, Installation[]>();
        for (let after: string | null = null; ; ) {
          const page = await this.store.listInstallationsPage(after, chunk);
          for (const i of page) {
            if (!i.fingerprint) continue;
            const list = byCert.get(i.fingerprint);
            if (list) list.push(i);
            else byCert.set(i.fingerprint, [i]);
          }
          if (page.length < chunk) break;
          after = page[page.length - 1]!.id;
          await yieldNow();
        }
        await yieldNow();
        const renewals = await this.store.renewals();
        const certificates: AssessedCertificate[] = [];
        for (let i = 0; i < certs.length; i++) {
          const c = certs[i]!;
          const installations = byCert.get(c.fingerprint) ?? [];
          const renewedBy = renewals.get(c.fingerprint) ?? null;
          const revoked = c.revoked && { ...c.revoked, source: c.revocationCheck?.source ?? null };
          certificates.push({ certificate: c, installations, renewedBy, health: healthOf(checkCertificate(c, { now, installations, renewedBy, revoked })) });
          if (i % chunk === chunk - 1) await yieldNow();
        }
        const snap = { at: now, version, certificates, estate: estateHealth(certificates.map((a) => a.health)), byFingerprint: new Map(certificates.map((a) => [a.certificate.fingerprint, a])) };
        // A change made here meanwhile (a revocation) would be undone by this older read.
        if (generation === this.#generation) this.#snapshot = snap;
        return snap;
      } finally {
        this.#lastBuildMs = Date.now() - started;
        if (this.#building === building) this.#building = null;
      }
    })();
    this.#building = building;
    return building!;
  }

  async page(query: PageQuery): Promise<{ items: AssessedCertificate[]; total: number; offset: number; next: number | null; at: Date }> {
    const snap = await this.snapshot();
    const q = query.q?.trim().toLowerCase();
    const now = snap.at.getTime();
    const leavesOnly = query.leavesOnly ?? true;
    let list = snap.certificates.filter((a) => {
      const c = a.certificate;
      if (leavesOnly && c.isCa) return false;
      if (query.health && RANK[a.health.level] < RANK[query.health]) return false;
      if (query.source && c.source !== query.source) return false;
      if (query.check && !a.health.findings.some((f) => f.check === query.check)) return false;
      if (query.expiringWithinDays !== undefined && c.notAfter.getTime() - now > query.expiringWithinDays * DAY) return false;
      if (q && !(c.fingerprint.startsWith(q) || c.serial.toLowerCase().includes(q) || c.subject.toLowerCase().includes(q) || c.issuer.toLowerCase().includes(q) || c.names.some((n) => n.toLowerCase().includes(q)))) {
        return false;
      }
      return true;
    });
    // The snapshot is in not-after order already.
    if (query.sort === '-notAfter') list = list.reverse();
    else if (query.sort === 'health') list = list.sort((a, b) => RANK[b.health.level] - RANK[a.health.level] || a.health.score - b.health.score);
    else if (query.sort === 'subject') list = list.sort((a, b) => labelOf(a).localeCompare(labelOf(b)));
    const offset = Math.max(0, query.offset ?? 0);
    const limit = Math.min(Math.max(1, query.limit ?? 50), 500);
    const items = list.slice(offset, offset + limit);
    return { items, total: list.length, offset, next: offset + limit < list.length ? offset + limit : null, at: snap.at };
  }

  /** The estate at a glance: health, counts, what expires soonest, findings. */
  async summary(soonest = 10) {
    const snap = await this.snapshot();
    const now = snap.at.getTime();
    const leaves = snap.certificates.filter((a) => !a.certificate.isCa);
    const live = leaves.filter((a) => !a.renewedBy && !a.certificate.revoked && a.certificate.notAfter.getTime() > now);
    const bySource: Record<string, number> = {};
    let deployed = 0;
    let missing = 0;
    for (const a of snap.certificates) {
      bySource[a.certificate.source] = (bySource[a.certificate.source] ?? 0) + 1;
      for (const i of a.installations) i.status === 'present' ? deployed++ : missing++;
    }
    const within = (d: number) => live.filter((a) => a.certificate.notAfter.getTime() - now <= d * DAY).length;
    return {
      at: snap.at,
      estate: snap.estate,
      certificates: snap.certificates.length,
      leaves: leaves.length,
      expired: leaves.filter((a) => a.certificate.notAfter.getTime() <= now && !a.renewedBy).length,
      expiring: { days7: within(7), days30: within(30) },
      installations: { present: deployed, missing },
      bySource,
      soonest: live.slice(0, soonest),
    };
  }

  /**
   * Certificates expiring per bucket of `bucketDays` over the next `days` (leaves that are not
   * renewed or revoked), by the severity of their worst finding; expired ones in the first bucket.
   */
  async timeline(days = 90, bucketDays = 7) {
    const snap = await this.snapshot();
    const start = Math.floor(snap.at.getTime() / DAY) * DAY;
    const n = Math.ceil(days / bucketDays);
    const buckets = Array.from({ length: n }, (_, i) => ({
      start: new Date(start + i * bucketDays * DAY),
      end: new Date(start + (i + 1) * bucketDays * DAY),
      total: 0,
      bySeverity: { critical: 0, warning: 0, notice: 0, none: 0 } as Record<Severity | 'none', number>,
    }));
    let expired = 0;
    for (const a of snap.certificates) {
      const c = a.certificate;
      if (c.isCa || a.renewedBy || c.revoked) continue;
      const t = c.notAfter.getTime();
      if (t <= snap.at.getTime()) {
        expired++;
        continue;
      }
      const i = Math.floor((t - start) / (bucketDays * DAY));
      if (i >= n) continue;
      const worst = a.health.findings.reduce<Severity | 'none'>((w, f) => (order(f.severity) < order(w) ? f.severity : w), 'none');
      buckets[i]!.total++;
      buckets[i]!.bySeverity[worst]++;
    }
    return { at: snap.at, days, bucketDays, expired, buckets };
  }

  async forecast(days = 365): Promise<Forecast> {
    const snap = await this.snapshot();
    return forecast(snap.certificates, snap.at, days);
  }
}

function order(s: Severity | 'none'): number {
  return s === 'critical' ? 0 : s === 'warning' ? 1 : s === 'notice' ? 2 : 3;
}

function labelOf(a: AssessedCertificate): string {
  return a.certificate.names[0] ?? a.certificate.subject;
}
