/**
 * The DNS provider contract (the only thing a DNS plug-in implements). Providers create and delete
 * TXT records and nothing else: the ACME logic (record name, value, CNAME delegation, waiting for
 * the authoritative servers, clean-up after failure) lives once, in the dns-01 solver
 * (src/client/solvers/dns01.ts).
 *
 * Contract, for every implementation (test/contract/dns-provider-contract.ts checks it):
 * - `createTxtRecord` adds `value` to the TXT record set at `fqdn`; other values at the same name
 *   stay (a wildcard and its base name validate at once with two values on one name). Creating a
 *   value that is already there succeeds.
 * - `deleteTxtRecord` removes exactly that value; removing a value that is not there succeeds.
 * - Both resolve once the provider's own API accepted the change; propagation is the solver's job.
 * - Failures are `DnsProviderError`s whose message starts with the provider's name; secrets
 *   (TSIG keys, API passwords, tokens) never appear in messages.
 * - `fqdn` and `value` come from the ACME server through the solver, which has checked them: no
 *   provider passes them through a shell, eval or a template.
 */

export interface TxtRecord {
  /**
   * The name to write: absolute, lower case, without the trailing dot. `_acme-challenge.<domain>`,
   * or the end of its CNAME chain when the solver followed delegation.
   */
  fqdn: string;
  /** The TXT value (base64url of a SHA-256 digest, 43 characters for ACME). */
  value: string;
  /** The identifier being validated, without "*.", e.g. "example.com". */
  domain: string;
  /** The zone that holds `fqdn` (from its SOA), when the solver found it. */
  zone?: string;
}

export interface DnsProvider {
  /** The provider's registry name, e.g. "rfc2136". */
  readonly name: string;
  createTxtRecord(r: TxtRecord): Promise<void>;
  deleteTxtRecord(r: TxtRecord): Promise<void>;
  /** Releases sockets and the like. */
  close?(): Promise<void>;
}

export type DnsProviderErrorCode = 'DNS_PROVIDER_CONFIG' | 'DNS_PROVIDER_FAILED' | 'DNS_PROVIDER_TIMEOUT' | 'DNS_PROVIDER_CNAME_REQUIRED';

export class DnsProviderError extends Error {
  readonly code: DnsProviderErrorCode;
  readonly provider: string;
  constructor(provider: string, code: DnsProviderErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${provider}: ${message}`, options);
    this.name = 'DnsProviderError';
    this.provider = provider;
    this.code = code;
  }
}
