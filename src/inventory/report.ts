/**
 * Text and JSON views of the inventory for the CLI: the list, one certificate, the estate's
 * health. Pure functions of what assess() returns.
 */
import type { EstateHealth, Health } from './checks.js';
import type { AssessedCertificate } from './inventory.js';
import type { InventoryEvent } from './store.js';

const DAY = 86_400_000;

/**
 * Text for a terminal: control characters (C0, DEL, C1) shown as \xNN. Names, subjects and errors
 * come from certificates and servers someone else controls; escape sequences must not reach the
 * terminal.
 */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function left(notAfter: Date, now: Date): string {
  const ms = notAfter.getTime() - now.getTime();
  const d = Math.abs(ms) / DAY;
  const text = d >= 2 ? `${Math.floor(d)}d` : `${Math.floor(Math.abs(ms) / 3_600_000)}h`;
  return ms < 0 ? `-${text}` : text;
}

function pad(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n);
}

/** A filter on the assessed list, as `anvil inventory list` takes it. */
export interface ListFilter {
  /** Only certificates at this level or worse. */
  level?: Health;
  /** Substring of a name, the subject, the issuer, the serial or the fingerprint (case-insensitive). */
  search?: string;
  /** Only those expiring within this many days (expired included). */
  expiringWithinDays?: number;
  /** Leave out CA certificates (roots and intermediates found in files and bundles). */
  leavesOnly?: boolean;
}

const RANK: Record<Health, number> = { good: 0, fair: 1, poor: 2, critical: 3 };

export function filterAssessed(list: readonly AssessedCertificate[], f: ListFilter, now: Date): AssessedCertificate[] {
  const q = f.search?.toLowerCase();
  return list.filter((a) => {
    const c = a.certificate;
    if (f.level && RANK[a.health.level] < RANK[f.level]) return false;
    if (f.leavesOnly && c.isCa) return false;
    if (f.expiringWithinDays !== undefined && c.notAfter.getTime() - now.getTime() > f.expiringWithinDays * DAY) return false;
    if (q && ![c.subject, c.issuer, c.serial.toLowerCase(), c.fingerprint, ...c.names].some((s) => s.toLowerCase().includes(q))) return false;
    return true;
  });
}

export function listText(list: readonly AssessedCertificate[], now: Date): string {
  if (list.length === 0) return 'no certificates\n';
  const lines = [`${pad('FINGERPRINT', 16)}  ${pad('HEALTH', 8)}  ${pad('EXPIRES', 10)}  ${pad('LEFT', 6)}  ${pad('DEPLOYED', 8)}  ${pad('NAMES / SUBJECT', 40)}  ISSUER`];
  for (const a of list) {
    const c = a.certificate;
    const present = a.installations.filter((i) => i.status === 'present').length;
    const names = printable(c.names.length ? c.names.join(',') : c.subject);
    lines.push(
      `${c.fingerprint.slice(0, 16)}  ${pad(a.health.level, 8)}  ${c.notAfter.toISOString().slice(0, 10)}  ${pad(left(c.notAfter, now), 6)}  ${pad(String(present), 8)}  ${pad(names, 40)}  ${printable(c.issuer)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** What every JSON view of an assessed certificate shows (`anvil inventory --json`, the management API's list and detail). */
export function certificateFactsJson(a: AssessedCertificate) {
  const c = a.certificate;
  return {
    fingerprint: c.fingerprint,
    subject: c.subject,
    issuer: c.issuer,
    serial: c.serial,
    names: c.names,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    isCa: c.isCa,
    source: c.source,
    renewedBy: a.renewedBy?.fingerprint ?? null,
    health: { level: a.health.level, score: a.health.score, findings: a.health.findings },
  };
}

export function assessedJson(a: AssessedCertificate) {
  const c = a.certificate;
  return {
    ...certificateFactsJson(a),
    key: { type: c.keyType, bits: c.keyBits, detail: c.keyDetail },
    signatureAlgorithm: c.signatureAlgorithm,
    selfSigned: c.selfSigned,
    profile: c.profile,
    revoked: c.revoked ? { at: c.revoked.at.toISOString(), reason: c.revoked.reason } : null,
    revocationCheck: c.revocationCheck ? { checkedAt: c.revocationCheck.checkedAt.toISOString(), source: c.revocationCheck.source, error: c.revocationCheck.error } : null,
    firstSeen: c.firstSeen.toISOString(),
    lastSeen: c.lastSeen.toISOString(),
    installations: a.installations.map((i) => ({
      id: i.id,
      kind: i.kind,
      location: i.location,
      sni: i.sni,
      status: i.status,
      chainError: i.chainError,
      hostnameError: i.hostnameError,
      error: i.error,
      firstSeen: i.firstSeen.toISOString(),
      lastSeen: i.lastSeen.toISOString(),
    })),
  };
}

export function showText(a: AssessedCertificate, events: readonly InventoryEvent[], now: Date): string {
  const c = a.certificate;
  const out = [
    `fingerprint  ${c.fingerprint}`,
    `subject      ${c.subject}`,
    `names        ${c.names.join(', ') || '(none)'}`,
    `issuer       ${c.issuer}`,
    `serial       ${c.serial}`,
    `key          ${c.keyType}${c.keyBits ? ` ${c.keyBits} bits` : ''}${c.keyDetail ? ` (${c.keyType === 'rsa' ? `e=${c.keyDetail}` : c.keyDetail})` : ''}`,
    `signature    ${c.signatureAlgorithm}`,
    `valid        ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()} (${left(c.notAfter, now)} left)`,
    `kind         ${c.isCa ? 'CA certificate' : 'leaf'}${c.selfSigned ? ', self-signed' : ''}`,
    `source       ${c.source}${c.profile ? `, profile ${c.profile}` : ''}; first seen ${c.firstSeen.toISOString()}, last seen ${c.lastSeen.toISOString()}`,
  ];
  if (c.revoked) out.push(`revoked      ${c.revoked.at.toISOString()}${c.revoked.reason !== null ? ` (reason ${c.revoked.reason})` : ''}`);
  const rc = c.revocationCheck;
  if (rc) {
    const verdict = rc.source ? `${rc.source.toUpperCase()} answered${c.revoked ? '' : ' good'}` : `could not tell: ${rc.error ?? 'no answer'}`;
    out.push(`revocation   checked ${rc.checkedAt.toISOString()}: ${verdict}`);
  }
  if (a.renewedBy) out.push(`renewed by   ${a.renewedBy.fingerprint} (${a.renewedBy.notBefore.toISOString()})`);
  out.push('', `health       ${a.health.level} (score ${a.health.score})`);
  for (const f of a.health.findings) out.push(`  ${pad(f.severity, 8)}  ${f.check}: ${f.message}`);
  out.push('', 'deployed at');
  if (a.installations.length === 0) out.push('  (nowhere known)');
  for (const i of a.installations) {
    out.push(`  ${pad(i.status, 7)}  ${i.kind} ${i.location}${i.sni ? ` (SNI ${i.sni})` : ''}  last seen ${i.lastSeen.toISOString()}${i.error ? `  (${i.error})` : ''}`);
  }
  out.push('', 'history');
  for (const e of events) {
    const detail = Object.entries(e.detail)
      .map(([k, v]) => `${k}=${typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? v.slice(0, 16) : String(v)}`)
      .join(' ');
    out.push(`  ${e.at.toISOString()}  ${pad(e.type, 14)}${detail}`);
  }
  return `${out.map(printable).join('\n')}\n`;
}

export function healthText(e: EstateHealth): string {
  const out = [
    `estate health: ${e.level} (score ${e.score} of 100, ${e.certificates} certificates)`,
    `  good ${e.byLevel.good}, fair ${e.byLevel.fair}, poor ${e.byLevel.poor}, critical ${e.byLevel.critical}`,
  ];
  if (e.byCheck.length) {
    out.push('', 'findings');
    for (const c of e.byCheck) out.push(`  ${pad(c.severity, 8)}  ${pad(c.check, 20)}  ${c.certificates} certificate(s)`);
  }
  out.push(
    '',
    'Levels: good (no findings), fair (notices only), poor (a warning), critical (a critical finding).',
    'Score: 100, less 60 per critical, 25 per warning and 5 per notice finding, at least 0; the estate shows the mean.',
  );
  return `${out.join('\n')}\n`;
}
