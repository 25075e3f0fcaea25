/**
 * The renewal forecast: how many renewals a day the current estate needs over the coming days, as
 * it is (each certificate renewed at two thirds of its lifetime, with the same lifetime), and the
 * same estate under the CA/Browser Forum's schedule of maximum lifetimes (Baseline Requirements
 * §6.3.2 as amended by ballot SC-081: 200 days for certificates issued from 15 March 2026, 100
 * from 15 March 2027, 47 from 15 March 2029).
 *
 * Counted: leaf certificates that are not revoked and not replaced by a renewal (the newest of
 * their names), unexpired, or expired but still deployed somewhere (due today). Pure: no I/O.
 */
import type { AssessedCertificate } from './inventory.js';

const DAY = 86_400_000;

/** The schedule: from each date on, the longest lifetime a new certificate may have. */
export const CABF_SCHEDULE: ReadonlyArray<{ from: Date; maxDays: number }> = [
  { from: new Date('2026-03-15T00:00:00Z'), maxDays: 200 },
  { from: new Date('2027-03-15T00:00:00Z'), maxDays: 100 },
  { from: new Date('2029-03-15T00:00:00Z'), maxDays: 47 },
];

/** The longest lifetime (ms) the schedule allows for a certificate issued at `t`; Infinity before it starts. */
export function cabfMaxLifetime(t: number): number {
  let max = Infinity;
  for (const step of CABF_SCHEDULE) if (t >= step.from.getTime()) max = step.maxDays * DAY;
  return max;
}

export interface Forecast {
  /** The first day (UTC midnight) of the series. */
  start: Date;
  days: number;
  certificates: number;
  /** Renewals per day, as the estate is. */
  current: number[];
  /** Renewals per day, with each renewal's lifetime capped by the schedule. */
  cabf: number[];
}

/** Renewal times in [first, to): the first at `first`, then every 2/3 of the (capped) lifetime. */
function renewalTimes(lifetime: number, first: number, to: number, cap: boolean, out: (t: number) => void): void {
  if (lifetime <= 0) return;
  let t = first;
  // At most one renewal a day, whatever the lifetime, so that the count stays bounded.
  for (let n = 0; t < to && n < 10_000; n++) {
    out(t);
    if (cap) lifetime = Math.min(lifetime, cabfMaxLifetime(t));
    t += Math.max(DAY, (lifetime * 2) / 3);
  }
}

export function forecast(list: readonly AssessedCertificate[], now: Date, days = 365): Forecast {
  const start = Math.floor(now.getTime() / DAY) * DAY;
  const end = start + days * DAY;
  const current = new Array<number>(days).fill(0);
  const cabf = new Array<number>(days).fill(0);
  let certificates = 0;
  for (const a of list) {
    const c = a.certificate;
    if (c.isCa || c.revoked || a.renewedBy) continue;
    const expired = c.notAfter.getTime() <= now.getTime();
    if (expired && !a.installations.some((i) => i.status === 'present')) continue;
    certificates++;
    const lifetime = c.notAfter.getTime() - c.notBefore.getTime();
    // The first renewal: at 2/3 of the present certificate's lifetime, or now if that is past.
    const first = Math.max(now.getTime(), c.notBefore.getTime() + (lifetime * 2) / 3);
    renewalTimes(lifetime, first, end, false, (t) => current[Math.floor((t - start) / DAY)]!++);
    renewalTimes(lifetime, first, end, true, (t) => cabf[Math.floor((t - start) / DAY)]!++);
  }
  return { start: new Date(start), days, certificates, current, cabf };
}

/** Sums of a daily series by calendar month (UTC), as [YYYY-MM, current, cabf]. */
export function byMonth(f: Forecast): Array<[string, number, number]> {
  const out: Array<[string, number, number]> = [];
  for (let d = 0; d < f.days; d++) {
    const month = new Date(f.start.getTime() + d * DAY).toISOString().slice(0, 7);
    const last = out[out.length - 1];
    if (last && last[0] === month) {
      last[1] += f.current[d]!;
      last[2] += f.cabf[d]!;
    } else out.push([month, f.current[d]!, f.cabf[d]!]);
  }
  return out;
}
