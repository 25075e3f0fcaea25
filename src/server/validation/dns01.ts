/** dns-01 (RFC 8555 §8.4): a TXT record at _acme-challenge.<name> holding base64url(SHA-256(keyAuthorization)). */
import { createHash } from 'node:crypto';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import type { DnsLookup } from './resolver.js';
import type { ValidationResult } from './types.js';

export function dns01Value(keyAuthorization: string): string {
  return createHash('sha256').update(keyAuthorization).digest('base64url');
}

export async function validateDns01(identifier: Identifier, keyAuthorization: string, dns: DnsLookup): Promise<ValidationResult> {
  if (identifier.type !== 'dns') {
    // RFC 8738 §7: dns-01 cannot validate IP identifiers.
    return { ok: false, problem: new AcmeProblem('malformed', 'dns-01 cannot validate an IP address'), records: [] };
  }
  const base = identifier.value.replace(/^\*\./, '');
  const name = `_acme-challenge.${base}`;
  const records = [{ hostname: name, resolverAddrs: dns.servers }];
  let values: string[];
  try {
    values = await dns.txt(name);
  } catch (e) {
    if (e instanceof AcmeProblem) return { ok: false, problem: e, records };
    throw e;
  }
  const expected = dns01Value(keyAuthorization);
  if (values.includes(expected)) return { ok: true, records };
  if (values.length === 0) {
    return { ok: false, problem: new AcmeProblem('incorrectResponse', `no TXT record found at ${name}`), records };
  }
  return {
    ok: false,
    problem: new AcmeProblem('incorrectResponse', `${values.length} TXT record(s) found at ${name}, none with the expected value ${expected}`),
    records,
  };
}
