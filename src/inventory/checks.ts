/**
 * The inventory's checks: what is wrong with a certificate, how badly, and a health level that
 * says why. Pure functions of the recorded facts, where the certificate is deployed, and the time;
 * no I/O.
 *
 * Severities: `critical` (breaks or is unsafe now: expired while deployed, a broken key, a chain
 * that does not verify), `warning` (will break or is below standard: expiring, SHA-1, a name that
 * does not match, an old certificate still served after its renewal, gone from where it was
 * seen), `notice` (worth knowing: self-signed leaf, an expired certificate nobody serves).
 *
 * Health per certificate, four levels from its worst finding: `good` (none), `fair` (notices),
 * `poor` (a warning), `critical`. The score (0 to 100) starts at 100 and loses 60 per critical, 25
 * per warning and 5 per notice finding, floored at 0; the estate's score is the mean and its level
 * that of its worst certificate, with the counts per level and per check as the explanation.
 */
import type { CertificateFacts } from './certificate.js';
import { weakDigestOf } from './certificate.js';

export type Severity = 'critical' | 'warning' | 'notice';
export type Health = 'good' | 'fair' | 'poor' | 'critical';
export type CheckId =
  | 'expired'
  | 'expiring'
  | 'not-yet-valid'
  | 'weak-key'
  | 'weak-signature'
  | 'self-signed'
  | 'hostname-mismatch'
  | 'chain-invalid'
  | 'revoked'
  | 'stale-after-renewal'
  | 'missing';

export interface Finding {
  check: CheckId;
  severity: Severity;
  message: string;
  /** The installation the finding is about, when it is about one. */
  installation?: string;
}

/** Where the certificate is (or was) deployed, as far as the checks need it. */
export interface InstallationState {
  id: string;
  kind: 'endpoint' | 'file' | 'lineage';
  /** host:port, a file path, or a lineage directory. */
  location: string;
  sni: string | null;
  /** `present`: seen there at the last look; `missing`: not there any more (or unreachable). */
  status: 'present' | 'missing';
  /** Endpoints: OpenSSL's verification error for the chain served there; null when it verified. */
  chainError: string | null;
  /** Endpoints: why the certificate does not match the name asked for; null when it matches. */
  hostnameError: string | null;
}

export interface CheckContext {
  now: Date;
  installations: readonly InstallationState[];
  /** A newer certificate for the same names, when the inventory holds one. */
  renewedBy?: { fingerprint: string; notBefore: Date } | null;
  /** `source`: the CRL/OCSP look that found it (src/inventory/revocation.ts); absent or null: the CA's database. */
  revoked?: { at: Date; reason: number | null; source?: 'ocsp' | 'crl' | null } | null;
}

export interface Thresholds {
  /** Warn when less than this many days (or a third of the lifetime, if less) remain. Default 30. */
  expiringWarningDays: number;
  /** Critical when less than this many days (or a tenth of the lifetime, if less) remain. Default 7. */
  expiringCriticalDays: number;
  /** How long an old certificate may still be served after its renewal was issued. Default 1 day. */
  staleAfterRenewalHours: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { expiringWarningDays: 30, expiringCriticalDays: 7, staleAfterRenewalHours: 24 };

const DAY = 86_400_000;

function days(ms: number): string {
  const d = ms / DAY;
  return d >= 2 ? `${Math.floor(d)} days` : `${Math.max(0, Math.round(ms / 3_600_000))} hours`;
}

/** Every finding for one certificate. */
export function checkCertificate(c: CertificateFacts, ctx: CheckContext, t: Thresholds = DEFAULT_THRESHOLDS): Finding[] {
  const out: Finding[] = [];
  const now = ctx.now.getTime();
  const present = ctx.installations.filter((i) => i.status === 'present');
  const deployed = present.length > 0;
  const replaced = ctx.renewedBy ?? null;
  const left = c.notAfter.getTime() - now;
  const lifetime = c.notAfter.getTime() - c.notBefore.getTime();

  // Validity (RFC 5280 §4.1.2.5). A certificate that was renewed and is served nowhere is history.
  if (left < 0) {
    if (deployed || !replaced) {
      out.push({ check: 'expired', severity: 'critical', message: `expired ${days(-left)} ago (${c.notAfter.toISOString()})${deployed ? `, still deployed at ${present.length} place(s)` : ''}` });
    } else {
      out.push({ check: 'expired', severity: 'notice', message: `expired ${days(-left)} ago; renewed by ${replaced.fingerprint.slice(0, 16)}, deployed nowhere` });
    }
  } else if (!(replaced && !deployed)) {
    const critical = Math.min(t.expiringCriticalDays * DAY, lifetime / 10);
    const warning = Math.min(t.expiringWarningDays * DAY, lifetime / 3);
    if (left < critical) out.push({ check: 'expiring', severity: 'critical', message: `expires in ${days(left)} (${c.notAfter.toISOString()})` });
    else if (left < warning) out.push({ check: 'expiring', severity: 'warning', message: `expires in ${days(left)} (${c.notAfter.toISOString()})` });
  }
  if (c.notBefore.getTime() > now) {
    out.push({ check: 'not-yet-valid', severity: deployed ? 'critical' : 'warning', message: `not valid until ${c.notBefore.toISOString()}` });
  }

  // Keys (NIST SP 800-57, CA/Browser Forum Baseline Requirements §6.1.5).
  const weak = weakKeyReason(c);
  if (weak) out.push({ check: 'weak-key', severity: weak.severity, message: weak.message });
  const digest = weakDigestOf(c.signatureAlgorithm);
  if (digest && !c.selfSigned) {
    out.push({ check: 'weak-signature', severity: digest === 'md5' ? 'critical' : 'warning', message: `signed with ${c.signatureAlgorithm} (${digest.toUpperCase()} is broken for signatures)` });
  }
  if (c.selfSigned && !c.isCa) out.push({ check: 'self-signed', severity: 'notice', message: 'a self-signed leaf: clients trust it only if pinned' });

  if (ctx.revoked) {
    // RFC 5280 §5.3.1: certificateHold (6) is the one reason that may be lifted again.
    out.push({
      check: 'revoked',
      severity: deployed ? 'critical' : 'notice',
      message: `revoked ${ctx.revoked.at.toISOString()}${ctx.revoked.reason !== null ? ` (reason ${ctx.revoked.reason}${ctx.revoked.reason === 6 ? ', on hold' : ''})` : ''}${ctx.revoked.source ? `, per ${ctx.revoked.source.toUpperCase()}` : ''}${deployed ? ', still deployed' : ''}`,
    });
  }

  for (const i of ctx.installations) {
    const where = i.sni ? `${i.location} (SNI ${i.sni})` : i.location;
    if (i.status === 'missing') {
      if (!replaced) out.push({ check: 'missing', severity: 'warning', message: `no longer found at ${where}`, installation: i.id });
      continue;
    }
    if (i.chainError) out.push({ check: 'chain-invalid', severity: 'critical', message: `the chain served at ${where} does not verify: ${i.chainError}`, installation: i.id });
    if (i.hostnameError) out.push({ check: 'hostname-mismatch', severity: 'warning', message: `does not match the name asked for at ${where}: ${i.hostnameError}`, installation: i.id });
    if (replaced && now - replaced.notBefore.getTime() > t.staleAfterRenewalHours * 3_600_000) {
      out.push({
        check: 'stale-after-renewal',
        severity: 'warning',
        message: `still served at ${where}, though renewed by ${replaced.fingerprint.slice(0, 16)} on ${replaced.notBefore.toISOString()}`,
        installation: i.id,
      });
    }
  }
  return out;
}

/**
 * The first instant (ms) from which checkCertificate may flag other checks or severities than it
 * does at `ctx.now` for the same certificate, places and renewal: the next validity or threshold
 * boundary. Until then only the wording of its messages changes with time, so a caller may keep
 * the result while `now < nextCheckChange(...)`. Infinity when no boundary lies ahead.
 */
export function nextCheckChange(c: Pick<CertificateFacts, 'notBefore' | 'notAfter'>, ctx: Pick<CheckContext, 'now' | 'renewedBy'>, t: Thresholds = DEFAULT_THRESHOLDS): number {
  const now = ctx.now.getTime();
  const nb = c.notBefore.getTime();
  const na = c.notAfter.getTime();
  const lifetime = na - nb;
  let next = Infinity;
  // `notBefore > now` turns false at notBefore itself.
  if (nb > now) next = nb;
  // `now > x` (expired, expiring, stale after renewal) turns true at the first whole millisecond past x.
  const past = [na, na - Math.min(t.expiringCriticalDays * DAY, lifetime / 10), na - Math.min(t.expiringWarningDays * DAY, lifetime / 3)];
  if (ctx.renewedBy) past.push(ctx.renewedBy.notBefore.getTime() + t.staleAfterRenewalHours * 3_600_000);
  for (const x of past) {
    const at = Math.floor(x) + 1;
    if (at > now && at < next) next = at;
  }
  return next;
}

function weakKeyReason(c: CertificateFacts): { severity: Severity; message: string } | null {
  if (c.knownWeakKey) return { severity: 'critical', message: c.knownWeakKey };
  switch (c.keyType) {
    case 'rsa': {
      if (c.keyBits < 2048) return { severity: 'critical', message: `RSA key of ${c.keyBits} bits (at least 2048 needed)` };
      const e = c.keyDetail === null ? null : BigInt(c.keyDetail);
      if (e !== null && (e < 65537n || e % 2n === 0n)) return { severity: 'critical', message: `RSA public exponent ${e} (65537 or more, odd, expected)` };
      return null;
    }
    case 'ec':
      if (c.keyBits === 0) return { severity: 'warning', message: `EC key on a curve Anvil does not know (${c.keyDetail ?? 'explicit parameters'})` };
      if (c.keyBits < 256) return { severity: 'critical', message: `EC key on ${c.keyDetail ?? 'an unknown curve'} (${c.keyBits} bits; P-256 or stronger expected)` };
      return null;
    case 'dsa':
      return { severity: 'warning', message: `DSA key (${c.keyBits} bits): no longer allowed for new certificates` };
    case 'unknown':
      return { severity: 'warning', message: 'a key of an unknown type' };
    default:
      return null;
  }
}

export interface CertificateHealth {
  level: Health;
  score: number;
  findings: Finding[];
}

const WEIGHT: Record<Severity, number> = { critical: 60, warning: 25, notice: 5 };

export function healthOf(findings: Finding[]): CertificateHealth {
  let score = 100;
  for (const f of findings) score -= WEIGHT[f.severity];
  const level: Health = findings.some((f) => f.severity === 'critical')
    ? 'critical'
    : findings.some((f) => f.severity === 'warning')
      ? 'poor'
      : findings.length
        ? 'fair'
        : 'good';
  return { level, score: Math.max(0, score), findings };
}

export interface EstateHealth {
  level: Health;
  /** Mean of the certificates' scores (100 for an empty estate). */
  score: number;
  certificates: number;
  byLevel: Record<Health, number>;
  /** How many certificates each check flags, most frequent first. */
  byCheck: Array<{ check: CheckId; severity: Severity; certificates: number }>;
}

export const LEVELS: readonly Health[] = ['good', 'fair', 'poor', 'critical'];

export function estateHealth(each: Iterable<CertificateHealth>): EstateHealth {
  const byLevel: Record<Health, number> = { good: 0, fair: 0, poor: 0, critical: 0 };
  const checks = new Map<string, { check: CheckId; severity: Severity; certificates: number }>();
  let n = 0;
  let sum = 0;
  for (const h of each) {
    n++;
    sum += h.score;
    byLevel[h.level]++;
    const seen = new Set<string>();
    for (const f of h.findings) {
      const k = `${f.check}/${f.severity}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const e = checks.get(k) ?? { check: f.check, severity: f.severity, certificates: 0 };
      e.certificates++;
      checks.set(k, e);
    }
  }
  const level = [...LEVELS].reverse().find((l) => byLevel[l] > 0) ?? 'good';
  const order = { critical: 0, warning: 1, notice: 2 };
  return {
    level,
    score: n ? Math.round((sum / n) * 10) / 10 : 100,
    certificates: n,
    byLevel,
    byCheck: [...checks.values()].sort((a, b) => order[a.severity] - order[b.severity] || b.certificates - a.certificates),
  };
}
