/** Which identifiers this CA will issue for (beyond syntax, which protocol/identifiers.ts checks). */
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';

export interface IdentifierPolicy {
  allowedDomains?: readonly string[] | undefined;
  deniedDomains: readonly string[];
  allowIp: boolean;
  allowWildcard: boolean;
}

function underSuffix(name: string, suffix: string): boolean {
  const s = suffix.toLowerCase().replace(/^\*?\./, '').replace(/\.$/, '');
  return name === s || name.endsWith(`.${s}`);
}

/** Throws rejectedIdentifier (with the identifier set) if the policy refuses it. */
export function checkPolicy(id: Identifier, policy: IdentifierPolicy): void {
  if (id.type === 'ip') {
    if (!policy.allowIp) throw new AcmeProblem('rejectedIdentifier', `this CA does not issue for IP addresses (${id.value})`, { identifier: id });
    return;
  }
  const wildcard = id.value.startsWith('*.');
  const base = wildcard ? id.value.slice(2) : id.value;
  if (wildcard && !policy.allowWildcard) {
    throw new AcmeProblem('rejectedIdentifier', `this CA does not issue wildcard certificates (${id.value})`, { identifier: id });
  }
  if (policy.deniedDomains.some((d) => underSuffix(base, d))) {
    throw new AcmeProblem('rejectedIdentifier', `policy forbids issuing for "${id.value}"`, { identifier: id });
  }
  if (policy.allowedDomains && !policy.allowedDomains.some((d) => underSuffix(base, d))) {
    throw new AcmeProblem('rejectedIdentifier', `"${id.value}" is not under a domain this CA issues for`, { identifier: id });
  }
}
