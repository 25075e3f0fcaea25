/**
 * Versioned schema migrations, run at start-up, each in its own transaction, recorded in
 * schema_migrations. A database newer than the code is refused (SCHEMA_TOO_NEW).
 *
 * The tables of `anvil dns` (DNS_MIGRATIONS) are a second chain with its own ledger,
 * dns_schema_migrations, so that their version numbers never collide with the ACME schema's and an
 * ACME database does not carry them: `anvil dns` runs only this chain, on its own database file.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

/** The binary column type: SQLite's 'blob' does not exist in PostgreSQL, whose type is bytea. */
function binary(db: Kysely<Database>): 'blob' | 'bytea' {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'bytea' : 'blob';
}

export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<Database>): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial ACME schema',
    async up(db) {
      const s = db.schema;
      await s
        .createTable('accounts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('jwk', 'text', (c) => c.notNull())
        .addColumn('thumbprint', 'text', (c) => c.notNull().unique())
        .addColumn('contact', 'text', (c) => c.notNull())
        .addColumn('tos_agreed', 'integer', (c) => c.notNull())
        .addColumn('eab_kid', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await s
        .createTable('orders')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('expires', 'bigint', (c) => c.notNull())
        .addColumn('identifiers', 'text', (c) => c.notNull())
        .addColumn('not_before', 'bigint')
        .addColumn('not_after', 'bigint')
        .addColumn('error', 'text')
        .addColumn('certificate_id', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('orders_account_created').on('orders').columns(['account_id', 'created_at', 'id']).execute();
      await s.createIndex('orders_account_status').on('orders').columns(['account_id', 'status', 'expires']).execute();
      await s
        .createTable('authzs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
        .addColumn('identifier_type', 'text', (c) => c.notNull())
        .addColumn('identifier_value', 'text', (c) => c.notNull())
        .addColumn('wildcard', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('expires', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('validated_at', 'bigint')
        .execute();
      await s
        .createIndex('authzs_reuse')
        .on('authzs')
        .columns(['account_id', 'identifier_type', 'identifier_value', 'status', 'wildcard'])
        .execute();
      await s
        .createTable('order_authzs')
        .addColumn('order_id', 'text', (c) => c.notNull().references('orders.id'))
        .addColumn('authz_id', 'text', (c) => c.notNull().references('authzs.id'))
        .addColumn('position', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('order_authzs_pk', ['order_id', 'position'])
        .execute();
      await s.createIndex('order_authzs_authz').on('order_authzs').column('authz_id').execute();
      await s
        .createTable('challenges')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('authz_id', 'text', (c) => c.notNull().references('authzs.id'))
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('validated', 'bigint')
        .addColumn('error', 'text')
        .addColumn('validation_records', 'text')
        .addColumn('requested_at', 'bigint')
        .addColumn('position', 'integer', (c) => c.notNull())
        .execute();
      await s.createIndex('challenges_authz').on('challenges').column('authz_id').execute();
      await s.createIndex('challenges_status').on('challenges').columns(['status', 'requested_at']).execute();
      await s
        .createTable('certificates')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('serial', 'text', (c) => c.notNull().unique())
        .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
        .addColumn('order_id', 'text', (c) => c.notNull().unique().references('orders.id'))
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('identifiers', 'text', (c) => c.notNull())
        .addColumn('not_before', 'bigint', (c) => c.notNull())
        .addColumn('not_after', 'bigint', (c) => c.notNull())
        .addColumn('plan', 'text', (c) => c.notNull())
        .addColumn('der', binary(db))
        .addColumn('chain_pem', 'text')
        .addColumn('issued_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .addColumn('revocation_reason', 'integer')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('certificates_status').on('certificates').columns(['status', 'created_at']).execute();
      await s
        .createTable('nonces')
        .addColumn('value', 'text', (c) => c.primaryKey())
        .addColumn('expires', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('nonces_expires').on('nonces').column('expires').execute();
      await s
        .createTable('eab_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('hmac_key', 'text', (c) => c.notNull())
        .addColumn('max_uses', 'integer', (c) => c.notNull())
        .addColumn('uses', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('comment', 'text')
        .execute();
      await s
        .createTable('eab_uses')
        .addColumn('kid', 'text', (c) => c.notNull().references('eab_keys.kid'))
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('used_at', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('eab_uses_kid').on('eab_uses').column('kid').execute();
    },
  },
  {
    version: 2,
    name: 'profiles, renewal information (replaces, operator windows) and CRLs',
    async up(db) {
      const s = db.schema;
      // One column per statement: SQLite's ALTER TABLE adds one at a time.
      await s.alterTable('orders').addColumn('profile', 'text').execute();
      await s.alterTable('orders').addColumn('replaces', 'text').execute();
      await s.alterTable('certificates').addColumn('profile', 'text').execute();
      await s.alterTable('certificates').addColumn('replaces_id', 'text').execute();
      await s.alterTable('certificates').addColumn('ari_start', 'bigint').execute();
      await s.alterTable('certificates').addColumn('ari_end', 'bigint').execute();
      await s.createIndex('certificates_replaces').on('certificates').column('replaces_id').execute();
      await s.createIndex('certificates_revoked').on('certificates').columns(['revoked_at', 'not_after']).execute();
      await s
        .createTable('crls')
        .addColumn('issuer', 'text', (c) => c.primaryKey())
        .addColumn('number', 'bigint', (c) => c.notNull())
        .addColumn('this_update', 'bigint', (c) => c.notNull())
        .addColumn('next_update', 'bigint', (c) => c.notNull())
        .addColumn('der', binary(db), (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 3,
    name: 'a certificate is replaced at most once, enforced by the database',
    async up(db) {
      // RFC 9773 §5 alreadyReplaced: the check in the finalize transaction is enough on one SQLite
      // writer; replicas on PostgreSQL (READ COMMITTED) need the database to refuse the second one.
      await db.schema.dropIndex('certificates_replaces').execute();
      await db.schema.createIndex('certificates_replaces').unique().on('certificates').column('replaces_id').where('replaces_id', 'is not', null).execute();
    },
  },
  {
    version: 4,
    name: 'stateless nonces: only used nonces are stored; server secrets',
    async up(db) {
      // Nonces are now authenticated by an HMAC (src/server/authority/nonces.ts): issuing one writes
      // nothing, and only a used nonce is recorded, until it expires, so that it is accepted once.
      await db.schema.dropTable('nonces').execute();
      await db.schema
        .createTable('used_nonces')
        .addColumn('value', 'text', (c) => c.primaryKey())
        .addColumn('expires', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('used_nonces_expires').on('used_nonces').column('expires').execute();
      // Secrets every replica must share (the nonce HMAC key), created once by whichever starts first.
      await db.schema
        .createTable('server_secrets')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', binary(db), (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 5,
    name: 'certificates by issuance and revocation time (the inventory follows the CA)',
    async up(db) {
      await db.schema.createIndex('certificates_issued_at').on('certificates').columns(['issued_at', 'id']).execute();
      await db.schema.createIndex('certificates_revoked_at').on('certificates').columns(['revoked_at', 'id']).where('revoked_at', 'is not', null).execute();
    },
  },
  {
    version: 6,
    name: 'accounts and orders by creation time (the dashboard lists them newest first)',
    async up(db) {
      await db.schema.createIndex('accounts_created_at').on('accounts').columns(['created_at', 'id']).execute();
      await db.schema.createIndex('orders_created_at').on('orders').columns(['created_at', 'id']).execute();
    },
  },
];

/** The tables of `anvil dns` (src/storage/dns-store.ts), migrated with `migrate(db, DNS_MIGRATIONS, 'dns_schema_migrations')`. */
export const DNS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'acme-dns registrations and TXT records',
    async up(db) {
      const s = db.schema;
      await s
        .createTable('dns_registrations')
        .addColumn('username', 'text', (c) => c.primaryKey())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('subdomain', 'text', (c) => c.notNull().unique())
        .addColumn('allow_from', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await s
        .createTable('dns_txt_records')
        .addColumn('subdomain', 'text', (c) => c.notNull().references('dns_registrations.subdomain'))
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('dns_txt_records_pk', ['subdomain', 'seq'])
        .execute();
    },
  },
];

/**
 * The inventory's tables (src/inventory/store.ts), migrated with
 * `migrate(db, INVENTORY_MIGRATIONS, 'inventory_schema_migrations')`: in their own SQLite file
 * (inventory.db in the data directory), or beside the CA's tables in its PostgreSQL database.
 */
export const INVENTORY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'certificates, installations, events and source cursors',
    async up(db) {
      const s = db.schema;
      await s
        .createTable('inv_certificates')
        .addColumn('fingerprint', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('issuer', 'text', (c) => c.notNull())
        .addColumn('serial', 'text', (c) => c.notNull())
        .addColumn('names', 'text', (c) => c.notNull())
        .addColumn('names_key', 'text', (c) => c.notNull())
        .addColumn('key_type', 'text', (c) => c.notNull())
        .addColumn('key_bits', 'integer', (c) => c.notNull())
        .addColumn('key_detail', 'text')
        .addColumn('spki_sha256', 'text', (c) => c.notNull())
        .addColumn('signature_algorithm', 'text', (c) => c.notNull())
        .addColumn('not_before', 'bigint', (c) => c.notNull())
        .addColumn('not_after', 'bigint', (c) => c.notNull())
        .addColumn('is_ca', 'integer', (c) => c.notNull())
        .addColumn('self_signed', 'integer', (c) => c.notNull())
        .addColumn('known_weak_key', 'text')
        .addColumn('der', binary(db), (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('profile', 'text')
        .addColumn('revoked_at', 'bigint')
        .addColumn('revocation_reason', 'integer')
        .addColumn('first_seen', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('inv_certificates_not_after').on('inv_certificates').columns(['not_after', 'fingerprint']).execute();
      await s.createIndex('inv_certificates_names').on('inv_certificates').columns(['names_key', 'not_before']).execute();
      await s.createIndex('inv_certificates_serial').on('inv_certificates').columns(['serial']).execute();
      await s
        .createTable('inv_installations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('location', 'text', (c) => c.notNull())
        .addColumn('sni', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text', (c) => c.references('inv_certificates.fingerprint'))
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('chain_error', 'text')
        .addColumn('hostname_error', 'text')
        .addColumn('error', 'text')
        .addColumn('first_seen', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint', (c) => c.notNull())
        .addColumn('last_checked', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('inv_installations_place', ['kind', 'location', 'sni'])
        .execute();
      await s.createIndex('inv_installations_fingerprint').on('inv_installations').columns(['fingerprint']).execute();
      await s
        .createTable('inv_events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text')
        .addColumn('installation_id', 'text')
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await s.createIndex('inv_events_fingerprint').on('inv_events').columns(['fingerprint', 'id']).execute();
      await s.createIndex('inv_events_installation').on('inv_events').columns(['installation_id', 'id']).execute();
      // Where each automatic source (the CA's database, a lineage store) was read up to.
      await s
        .createTable('inv_sources')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('cursor', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: 'revocation checks, scan runs, alert state, management tokens and the audit log',
    async up(db) {
      const s = db.schema;
      // What the last CRL/OCSP look found (src/inventory/revocation.ts).
      await s.alterTable('inv_certificates').addColumn('revocation_checked_at', 'bigint').execute();
      await s.alterTable('inv_certificates').addColumn('revocation_source', 'text').execute();
      await s.alterTable('inv_certificates').addColumn('revocation_error', 'text').execute();
      // One row per network scan or file discovery: when, how long, what it found.
      await s
        .createTable('inv_scans')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('duration_ms', 'bigint', (c) => c.notNull())
        .addColumn('targets', 'integer', (c) => c.notNull())
        .addColumn('found', 'integer', (c) => c.notNull())
        .addColumn('failed', 'integer', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await s.createIndex('inv_scans_kind').on('inv_scans').columns(['kind', 'started_at']).execute();
      // Alerts: one row per open or resolved problem (a check on a certificate, at a place), so
      // that a problem is announced once, reminded at its stages, and resolved once.
      await s
        .createTable('inv_alerts')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('fingerprint', 'text')
        .addColumn('installation_id', 'text')
        .addColumn('check_id', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('opened_at', 'bigint', (c) => c.notNull())
        .addColumn('last_notified_at', 'bigint')
        .addColumn('resolved_at', 'bigint')
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await s.createIndex('inv_alerts_open').on('inv_alerts').columns(['resolved_at', 'opened_at']).execute();
      // Management API tokens (src/web/): only a hash of each token is kept.
      await s
        .createTable('mgmt_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('token_sha256', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('last_used_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      // The append-only, hash-chained audit log: every change made through the management API or
      // the CLI's management commands.
      await s
        .createTable('mgmt_audit')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 3,
    name: 'change stamps on certificates and installations; events by type',
    async up(db) {
      // Every write of a certificate or an installation stamps the row's `changed`, and every
      // delete counts in inv_changes.deletions, so that a reader that keeps the inventory in memory
      // (the metrics build, src/inventory/metrics.ts) reads only what changed since its last read,
      // and reads everything again after a delete. Triggers, not the writers, so that no write path
      // can forget it. SQLite has one writer at a time: the stamp is a counter in inv_changes, so
      // stamps grow in commit order. PostgreSQL has concurrent writers: the stamp is the writing
      // transaction's id, and a reader takes everything from the oldest transaction still running
      // at its last read (txid_snapshot_xmin) on.
      const pg = db.getExecutor().adapter instanceof PostgresAdapter;
      await db.schema
        .createTable('inv_changes')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('stamp', 'bigint', (c) => c.notNull())
        .addColumn('deletions', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('inv_changes').values({ id: 1, stamp: 0, deletions: 0 }).execute();
      for (const table of ['inv_certificates', 'inv_installations'] as const) {
        await db.schema.alterTable(table).addColumn('changed', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
        await db.schema.createIndex(`${table}_changed`).on(table).column('changed').execute();
      }
      // The metrics count renewal events by type at every build.
      await db.schema.createIndex('inv_events_type').on('inv_events').columns(['type', 'installation_id']).execute();
      if (pg) {
        await sql`CREATE FUNCTION inv_stamp_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.changed := txid_current(); RETURN NEW; END $$`.execute(db);
        await sql`CREATE FUNCTION inv_count_deletion() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE inv_changes SET deletions = deletions + 1 WHERE id = 1; RETURN NULL; END $$`.execute(db);
        for (const table of ['inv_certificates', 'inv_installations']) {
          const t = sql.table(table);
          await sql`CREATE TRIGGER ${sql.raw(`${table}_stamp`)} BEFORE INSERT OR UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION inv_stamp_changed()`.execute(db);
          await sql`CREATE TRIGGER ${sql.raw(`${table}_deletions`)} AFTER DELETE OR TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION inv_count_deletion()`.execute(db);
        }
        return;
      }
      for (const table of ['inv_certificates', 'inv_installations']) {
        const t = sql.table(table);
        const stamp = sql`UPDATE inv_changes SET stamp = stamp + 1 WHERE id = 1; UPDATE ${t} SET changed = (SELECT stamp FROM inv_changes WHERE id = 1) WHERE rowid = NEW.rowid;`;
        // The stamp's own update does not fire the update trigger again (recursive triggers are
        // off in SQLite by default, and WHEN skips a write that set `changed` itself).
        await sql`CREATE TRIGGER ${sql.raw(`${table}_stamp_insert`)} AFTER INSERT ON ${t} BEGIN ${stamp} END`.execute(db);
        await sql`CREATE TRIGGER ${sql.raw(`${table}_stamp_update`)} AFTER UPDATE ON ${t} WHEN NEW.changed = OLD.changed BEGIN ${stamp} END`.execute(db);
        await sql`CREATE TRIGGER ${sql.raw(`${table}_deletions`)} AFTER DELETE ON ${t} BEGIN UPDATE inv_changes SET deletions = deletions + 1 WHERE id = 1; END`.execute(db);
      }
    },
  },
  {
    version: 4,
    name: 'the alert channels evaluators have',
    async up(db) {
      // Each alert evaluator (the server, a replica, a cron job) records the names of its channels
      // at every run, so that a notification one of them makes is owed to the channels any of them
      // has, not only to its own (src/inventory/alerts.ts).
      await db.schema
        .createTable('inv_alert_channels')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('last_seen', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
];

/** Where a chain of migrations records what it applied. */
export type MigrationLedger = 'schema_migrations' | 'dns_schema_migrations' | 'inventory_schema_migrations';

export class SchemaTooNewError extends Error {
  readonly code = 'SCHEMA_TOO_NEW';
}

/** Applies every migration newer than the database's version. Returns the versions applied. */
export async function migrate(
  db: Kysely<Database>,
  migrations: readonly Migration[] = MIGRATIONS,
  ledger: MigrationLedger = 'schema_migrations',
): Promise<number[]> {
  await db.schema
    .createTable(ledger)
    .ifNotExists()
    .addColumn('version', 'integer', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('applied_at', 'bigint', (c) => c.notNull())
    .execute();
  const row = await db.selectFrom(ledger).select(sql<number>`max(version)`.as('v')).executeTakeFirst();
  const current = Number(row?.v ?? 0);
  const known = Math.max(0, ...migrations.map((m) => m.version));
  if (current > known) {
    throw new SchemaTooNewError(`the database schema is version ${current}, newer than this Anvil knows (${known}); upgrade Anvil`);
  }
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    await db.transaction().execute(async (tx) => {
      await m.up(tx);
      await tx.insertInto(ledger).values({ version: m.version, name: m.name, applied_at: Date.now() }).execute();
    });
    applied.push(m.version);
  }
  return applied;
}
