/**
 * Table types for kysely. Portable to PostgreSQL: text ids, integer epoch milliseconds (bigint in
 * PostgreSQL), JSON as text, blobs as blob/bytea.
 */
export interface AccountsTable {
  id: string;
  status: string;
  jwk: string;
  thumbprint: string;
  contact: string;
  tos_agreed: number;
  eab_kid: string | null;
  created_at: number;
}

export interface OrdersTable {
  id: string;
  account_id: string;
  status: string;
  expires: number;
  identifiers: string;
  not_before: number | null;
  not_after: number | null;
  error: string | null;
  certificate_id: string | null;
  created_at: number;
  /** Migration 2: the profile asked for (draft-ietf-acme-profiles), null for the default. */
  profile: string | null;
  /** Migration 2: the certID (RFC 9773 §4.1) of the certificate this order replaces. */
  replaces: string | null;
}

export interface OrderAuthzsTable {
  order_id: string;
  authz_id: string;
  position: number;
}

export interface AuthzsTable {
  id: string;
  account_id: string;
  identifier_type: string;
  identifier_value: string;
  wildcard: number;
  status: string;
  expires: number;
  created_at: number;
  validated_at: number | null;
}

export interface ChallengesTable {
  id: string;
  authz_id: string;
  type: string;
  token: string;
  status: string;
  validated: number | null;
  error: string | null;
  validation_records: string | null;
  requested_at: number | null;
  position: number;
}

export interface CertificatesTable {
  id: string;
  serial: string;
  account_id: string;
  order_id: string;
  status: string;
  identifiers: string;
  not_before: number;
  not_after: number;
  plan: string;
  der: Buffer | null;
  chain_pem: string | null;
  issued_at: number | null;
  revoked_at: number | null;
  revocation_reason: number | null;
  created_at: number;
  /** Migration 2. */
  profile: string | null;
  replaces_id: string | null;
  /** Migration 2: an operator's renewal window (anvil ca renew-early), overriding the computed one. */
  ari_start: number | null;
  ari_end: number | null;
}

/** Migration 2: the newest CRL of an issuer, with its number (RFC 5280 §5.2.3). */
export interface CrlsTable {
  issuer: string;
  number: number;
  this_update: number;
  next_update: number;
  der: Buffer;
}

/** A nonce that was used (RFC 8555 §6.5), kept until it expires so that it is accepted only once. */
export interface UsedNoncesTable {
  value: string;
  expires: number;
}

/** Secrets every replica shares, by name (the nonce HMAC key). */
export interface ServerSecretsTable {
  name: string;
  value: Buffer;
  created_at: number;
}

export interface EabKeysTable {
  kid: string;
  hmac_key: string;
  max_uses: number;
  uses: number;
  created_at: number;
  expires_at: number | null;
  comment: string | null;
}

export interface EabUsesTable {
  kid: string;
  account_id: string;
  used_at: number;
}

/** `anvil dns`: one acme-dns registration (an API user allowed to set TXT at one subdomain). */
export interface DnsRegistrationsTable {
  /** A UUID, the X-Api-User. */
  username: string;
  /** scrypt hash of the X-Api-Key (see src/dns/server/credentials.ts). */
  password_hash: string;
  /** A UUID, lower case: the TXT records live at `<subdomain>.<zone>`. Unique. */
  subdomain: string;
  /** JSON array of CIDRs allowed to update; empty: any address. */
  allow_from: string;
  created_at: number;
}

/** `anvil dns`: the newest TXT values of a registration's subdomain (at most 2 rows per subdomain). */
export interface DnsTxtRecordsTable {
  subdomain: string;
  /** Increases with each update of the subdomain; the highest values are the newest. */
  seq: number;
  value: string;
  updated_at: number;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  applied_at: number;
}

/** The inventory (src/inventory/store.ts): every certificate seen, once, by its SHA-256. */
export interface InvCertificatesTable {
  fingerprint: string;
  subject: string;
  issuer: string;
  serial: string;
  /** JSON array of the subjectAltName DNS names and IP addresses. */
  names: string;
  /** The names sorted and joined by a space: certificates for the same names share it (renewals). */
  names_key: string;
  key_type: string;
  key_bits: number;
  key_detail: string | null;
  spki_sha256: string;
  signature_algorithm: string;
  not_before: number;
  not_after: number;
  is_ca: number;
  self_signed: number;
  /** Why the key is known to be weak (ROCA), computed once. */
  known_weak_key: string | null;
  der: Uint8Array;
  /** Where it was first seen: 'ca', 'lineage', 'network', 'file', 'import'. */
  source: string;
  profile: string | null;
  revoked_at: number | null;
  revocation_reason: number | null;
  first_seen: number;
  last_seen: number;
  /** When a CRL or OCSP look last answered (or failed) for it; null: never looked. */
  revocation_checked_at?: number | null;
  /** 'ocsp' or 'crl': what answered last. */
  revocation_source?: string | null;
  /** Why the last look could not tell (no responder, unreachable, bad signature). */
  revocation_error?: string | null;
  /** Change stamp, set by a trigger on every write (inventory migration 3); never written by code. */
  changed?: number;
}

/** A channel name an alert evaluator had at its last run (inventory migration 4). */
export interface InvAlertChannelsTable {
  name: string;
  last_seen: number;
}

/** One row (id 1): the SQLite change stamp counter, and how many deletes the two tables have seen (inventory migration 3). */
export interface InvChangesTable {
  id: number;
  stamp: number;
  deletions: number;
}

/** A place a certificate is deployed: an endpoint (host:port and SNI name), a file, a lineage. */
export interface InvInstallationsTable {
  id: string;
  kind: string;
  location: string;
  /** '' when none. */
  sni: string;
  /** The certificate found there at the last look that found one. */
  fingerprint: string | null;
  status: string;
  chain_error: string | null;
  hostname_error: string | null;
  /** Why the last look failed (unreachable, unreadable), when it did. */
  error: string | null;
  first_seen: number;
  last_seen: number;
  last_checked: number;
  /** Change stamp, set by a trigger on every write (inventory migration 3); never written by code. */
  changed?: number;
}

export interface InvEventsTable {
  /** Time-ordered (lib/random.ts timeOrderedId): ordering by id orders by time. */
  id: string;
  at: number;
  type: string;
  fingerprint: string | null;
  installation_id: string | null;
  /** JSON object. */
  detail: string;
}

export interface InvSourcesTable {
  name: string;
  /** JSON: the source's own position. */
  cursor: string;
  updated_at: number;
}

/** One network scan or file discovery. */
export interface InvScansTable {
  id: string;
  /** 'network' or 'files'. */
  kind: string;
  started_at: number;
  duration_ms: number;
  targets: number;
  found: number;
  failed: number;
  /** JSON: failures by class, and what else the scan reports. */
  detail: string;
}

/** An alert: a problem (a check on a certificate, at a place) from when it opened to when it resolved. */
export interface InvAlertsTable {
  /** check id, fingerprint and installation id: one alert per problem. */
  key: string;
  fingerprint: string | null;
  installation_id: string | null;
  check_id: string;
  severity: string;
  message: string;
  /** The reminder stage last announced (e.g. "30d", "7d", "1d", "expired"). */
  stage: string;
  opened_at: number;
  last_notified_at: number | null;
  resolved_at: number | null;
  /** JSON. */
  detail: string;
}

/** A management API token; only its SHA-256 is kept. */
export interface MgmtTokensTable {
  id: string;
  name: string;
  /** 'viewer', 'operator' or 'admin'. */
  role: string;
  token_sha256: string;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** One entry of the hash-chained audit log. */
export interface MgmtAuditTable {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  /** JSON object. */
  detail: string;
  prev_hash: string;
  hash: string;
}

export interface Database {
  accounts: AccountsTable;
  orders: OrdersTable;
  order_authzs: OrderAuthzsTable;
  authzs: AuthzsTable;
  challenges: ChallengesTable;
  certificates: CertificatesTable;
  crls: CrlsTable;
  used_nonces: UsedNoncesTable;
  server_secrets: ServerSecretsTable;
  eab_keys: EabKeysTable;
  eab_uses: EabUsesTable;
  schema_migrations: SchemaMigrationsTable;
  dns_registrations: DnsRegistrationsTable;
  dns_txt_records: DnsTxtRecordsTable;
  /** The DNS tables' own migration ledger (DNS_MIGRATIONS), independent of the ACME schema's. */
  dns_schema_migrations: SchemaMigrationsTable;
  inv_certificates: InvCertificatesTable;
  inv_installations: InvInstallationsTable;
  inv_changes: InvChangesTable;
  inv_alert_channels: InvAlertChannelsTable;
  inv_events: InvEventsTable;
  inv_sources: InvSourcesTable;
  inv_scans: InvScansTable;
  inv_alerts: InvAlertsTable;
  mgmt_tokens: MgmtTokensTable;
  mgmt_audit: MgmtAuditTable;
  /** The inventory tables' own migration ledger (INVENTORY_MIGRATIONS). */
  inventory_schema_migrations: SchemaMigrationsTable;
}
