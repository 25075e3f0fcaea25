/**
 * The names of the DNS providers in src/dns/registry.ts, without loading them (for help texts of
 * commands that must start fast). names.test.ts keeps the two in step.
 */
export const DNS_PROVIDER_NAMES: readonly string[] = ['rfc2136', 'acme-dns', 'exec', 'httpreq'];
