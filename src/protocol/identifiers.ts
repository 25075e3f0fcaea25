/**
 * Identifier syntax: DNS names (RFC 8555 §7.1.4, §7.1.3 wildcards) and IP addresses (RFC 8738).
 * Pure functions; the CA's policy (which names it will issue for) lives in the authority.
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { AcmeProblem } from './problems.js';
import type { Identifier } from './types.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Canonical text of an IP address: IPv4 dotted quad, IPv6 compressed lower case (RFC 5952). */
export function canonicalIp(value: string): string | null {
  const v = isIP(value);
  if (v === 4) {
    const parts = value.split('.');
    // Refuse leading zeros ("010.0.0.1" is octal to some parsers).
    if (parts.some((p) => p.length > 1 && p.startsWith('0'))) return null;
    return parts.map((p) => String(Number(p))).join('.');
  }
  if (v === 6) {
    if (value.includes('%')) return null; // zone ids are local to a host
    // URL parsing gives the RFC 5952 form.
    try {
      return new URL(`http://[${value}]/`).hostname.slice(1, -1);
    } catch {
      return null;
    }
  }
  return null;
}

/** IP address bytes (4 or 16), for SAN iPAddress entries. */
export function ipToBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 8738 §6: the reverse-DNS name of an IP address (in-addr.arpa / ip6.arpa), used as tls-alpn-01 SNI. */
export function reverseDnsName(ip: string): string {
  if (isIP(ip) === 4) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  return `${[...ipToBytes(ip).toString('hex')].reverse().join('.')}.ip6.arpa`;
}

/**
 * Why a DNS name is not acceptable as an ACME identifier, or null if it is. The name must already be
 * lower case ASCII (A-labels); a leading "*." is allowed once (RFC 8555 §7.1.3).
 */
export function dnsNameError(name: string): string | null {
  if (name.length === 0) return 'the name is empty';
  if (name.endsWith('.')) return 'the name has a trailing dot';
  if (name.length > 253) return 'the name is longer than 253 characters';
  if (name !== name.toLowerCase()) return 'the name is not lower case';
  if (isIP(name)) return 'an IP address must use the "ip" identifier type';
  const labels = name.split('.');
  const wildcard = labels[0] === '*';
  const rest = wildcard ? labels.slice(1) : labels;
  if (rest.includes('*') || rest.some((l) => l.includes('*'))) return 'a wildcard is allowed only as the whole leftmost label';
  if (rest.length < 2) return wildcard ? 'a wildcard needs at least two labels after "*."' : 'the name needs at least two labels';
  for (const label of rest) {
    if (label.length === 0) return 'the name has an empty label';
    if (label.length > 63) return `the label "${label.slice(0, 20)}..." is longer than 63 characters`;
    if (!LABEL.test(label)) return `the label "${label}" has characters other than a-z, 0-9 and inner hyphens`;
    if (label.startsWith('xn--')) {
      // A-label must round-trip through punycode (RFC 5891 §5.4).
      const u = domainToASCII(label);
      if (u !== label) return `the label "${label}" is not valid punycode`;
    } else if (label.length >= 4 && label[2] === '-' && label[3] === '-') {
      return `the label "${label}" has hyphens in the third and fourth positions but is not an A-label`;
    }
  }
  const tld = rest[rest.length - 1]!;
  if (/^[0-9]+$/.test(tld)) return 'the top-level label is all digits';
  return null;
}

/**
 * Checks and canonicalises one identifier from a client. Throws AcmeProblem with the identifier set,
 * so callers can collect subproblems.
 */
export function canonicalIdentifier(id: unknown): Identifier {
  if (typeof id !== 'object' || id === null) throw new AcmeProblem('malformed', 'an identifier must be an object');
  const { type, value } = id as { type?: unknown; value?: unknown };
  if (typeof type !== 'string' || typeof value !== 'string') {
    throw new AcmeProblem('malformed', 'an identifier needs string "type" and "value" fields');
  }
  const shown: Identifier = { type: type as Identifier['type'], value };
  if (type === 'dns') {
    const lower = value.toLowerCase();
    const err = dnsNameError(lower);
    if (err) throw new AcmeProblem('rejectedIdentifier', `invalid DNS name "${value}": ${err}`, { identifier: shown });
    return { type: 'dns', value: lower };
  }
  if (type === 'ip') {
    const ip = canonicalIp(value);
    if (!ip) throw new AcmeProblem('rejectedIdentifier', `"${value}" is not an IP address`, { identifier: shown });
    return { type: 'ip', value: ip };
  }
  throw new AcmeProblem('unsupportedIdentifier', `identifier type "${type}" is not supported (use "dns" or "ip")`, {
    identifier: shown,
  });
}

export function identifierKey(id: Identifier): string {
  return `${id.type}:${id.value}`;
}

/** Sorted, de-duplicated copy. */
export function sortIdentifiers(ids: Identifier[]): Identifier[] {
  const m = new Map(ids.map((i) => [identifierKey(i), i]));
  return [...m.keys()].sort().map((k) => m.get(k)!);
}

export function sameIdentifierSet(a: Identifier[], b: Identifier[]): boolean {
  const sa = new Set(a.map(identifierKey));
  const sb = new Set(b.map(identifierKey));
  return sa.size === sb.size && [...sa].every((k) => sb.has(k));
}

export function isWildcard(id: Identifier): boolean {
  return id.type === 'dns' && id.value.startsWith('*.');
}
