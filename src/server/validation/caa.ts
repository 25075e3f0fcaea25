/**
 * CAA (RFC 8659, with RFC 8657 accounturi and validationmethods): may this CA issue for a name?
 * Looks for the closest CAA RRset from the name up to its top-level label; a lookup failure
 * refuses issuance, an empty tree permits it.
 */
import { AcmeProblem } from '../../protocol/problems.js';
import type { CaaRecord, DnsLookup } from './resolver.js';
import type { CaaCheck } from './types.js';

type CaaRequest = CaaCheck;

const KNOWN_TAGS = new Set(['issue', 'issuewild', 'iodef', 'contactemail', 'contactphone', 'issuemail', 'issuevmc']);

interface Parsed {
  domain: string;
  params: Map<string, string>;
}

/** RFC 8659 §4.2: issuer-domain-name [";" parameters]. Returns null for a value that does not parse. */
export function parseIssueValue(value: string): Parsed | null {
  const [head = '', ...rest] = value.split(';');
  const domain = head.trim().toLowerCase();
  if (domain !== '' && !/^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/.test(domain)) return null;
  const params = new Map<string, string>();
  for (const p of rest) {
    const t = p.trim();
    if (t === '') continue;
    const m = /^([A-Za-z0-9]+)=([\x21-\x3a\x3c-\x7e]*)$/.exec(t);
    if (!m) return null;
    params.set(m[1]!.toLowerCase(), m[2]!);
  }
  return { domain, params };
}

function permits(records: CaaRecord[], req: CaaRequest, identities: string[]): { ok: boolean; why: string } {
  for (const r of records) {
    if (r.critical && !KNOWN_TAGS.has(r.tag)) return { ok: false, why: `an unknown critical CAA tag "${r.tag}" forbids issuance` };
  }
  const issuewild = records.filter((r) => r.tag === 'issuewild');
  // RFC 8659 §4.3: for a wildcard, issuewild takes precedence when present.
  const set = req.wildcard && issuewild.length ? issuewild : records.filter((r) => r.tag === 'issue');
  if (set.length === 0) return { ok: true, why: 'no issue property' };
  const mine = identities.map((i) => i.toLowerCase());
  let reason = `CAA records allow only ${set.map((r) => `"${r.value}"`).join(', ')}`;
  for (const r of set) {
    const p = parseIssueValue(r.value);
    if (!p || p.domain === '' || !mine.includes(p.domain)) continue;
    const acct = p.params.get('accounturi');
    if (acct !== undefined && acct !== req.accountUri) {
      reason = 'the CAA accounturi does not name this account';
      continue;
    }
    const methods = p.params.get('validationmethods');
    if (methods !== undefined && !methods.split(',').map((m) => m.trim()).includes(req.method)) {
      reason = `the CAA validationmethods (${methods}) do not include ${req.method}`;
      continue;
    }
    return { ok: true, why: 'permitted' };
  }
  return { ok: false, why: reason };
}

/** null if issuance is permitted, else a `caa` (or `dns`) problem. */
export async function checkCaa(req: CaaRequest, identities: string[], dns: DnsLookup): Promise<AcmeProblem | null> {
  const labels = req.name.split('.');
  for (let i = 0; i < labels.length; i++) {
    const at = labels.slice(i).join('.');
    let records: CaaRecord[];
    try {
      records = await dns.caa(at);
    } catch (e) {
      const detail = e instanceof AcmeProblem ? e.detail : String(e);
      // RFC 8659 §3: a CA must not issue when the lookup fails.
      return new AcmeProblem('caa', `CAA lookup for ${at} failed: ${detail}`);
    }
    if (records.length === 0) continue;
    const r = permits(records, req, identities);
    return r.ok ? null : new AcmeProblem('caa', `CAA at ${at} forbids issuance for ${req.wildcard ? '*.' : ''}${req.name}: ${r.why}`);
  }
  return null;
}
