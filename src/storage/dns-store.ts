/**
 * The store of `anvil dns` (the acme-dns compatible DNS server): registrations and the newest TXT
 * values of each registration's subdomain. Same storage layer as the CA (kysely, versioned
 * migrations in migrations.ts, SQLite opened the same way), its own tables and migration ledger.
 *
 * Contract:
 * - "Not found" is `null` (never an exception).
 * - `putTxt` keeps at most `TXT_VALUES_PER_NAME` values per subdomain, the newest ones, also under
 *   concurrent updates (each update is one transaction). Putting a value that is already there
 *   makes it the newest without evicting the other one.
 * - `getTxt` returns the values newest first, or `null` when the subdomain is not registered.
 */
import type { Kysely } from 'kysely';
import { DNS_MIGRATIONS } from './migrations.js';
import { openSqliteDatabase } from './sqlite.js';
import type { Database as Schema } from './schema.js';

/** acme-dns keeps two values per name: a wildcard and its base name validate at the same time. */
export const TXT_VALUES_PER_NAME = 2;

export interface DnsRegistrationRecord {
  /** A UUID: the X-Api-User. */
  username: string;
  /** The scrypt hash of the X-Api-Key, never the key itself. */
  passwordHash: string;
  /** A lower-case UUID: the label under the zone. */
  subdomain: string;
  /** CIDRs allowed to update; empty: any address. */
  allowFrom: string[];
  createdAt: Date;
}

export interface DnsStore {
  /** Fails if the username or subdomain exists. */
  createRegistration(r: DnsRegistrationRecord): Promise<void>;
  getRegistration(username: string): Promise<DnsRegistrationRecord | null>;
  countRegistrations(): Promise<number>;
  /** The subdomain's values, newest first; `null` if no registration has this subdomain. */
  getTxt(subdomain: string): Promise<string[] | null>;
  /** Adds `value` as the newest value of `subdomain`, dropping older ones beyond the limit. False if not registered. */
  putTxt(subdomain: string, value: string, now: Date): Promise<boolean>;
  close(): Promise<void>;
}

export class KyselyDnsStore implements DnsStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async createRegistration(r: DnsRegistrationRecord): Promise<void> {
    await this.db
      .insertInto('dns_registrations')
      .values({
        username: r.username,
        password_hash: r.passwordHash,
        subdomain: r.subdomain,
        allow_from: JSON.stringify(r.allowFrom),
        created_at: r.createdAt.getTime(),
      })
      .execute();
  }

  async getRegistration(username: string): Promise<DnsRegistrationRecord | null> {
    const r = await this.db.selectFrom('dns_registrations').selectAll().where('username', '=', username).executeTakeFirst();
    if (!r) return null;
    return {
      username: r.username,
      passwordHash: r.password_hash,
      subdomain: r.subdomain,
      allowFrom: JSON.parse(r.allow_from) as string[],
      createdAt: new Date(Number(r.created_at)),
    };
  }

  async countRegistrations(): Promise<number> {
    const r = await this.db.selectFrom('dns_registrations').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async getTxt(subdomain: string): Promise<string[] | null> {
    const reg = await this.db.selectFrom('dns_registrations').select('subdomain').where('subdomain', '=', subdomain).executeTakeFirst();
    if (!reg) return null;
    const rows = await this.db
      .selectFrom('dns_txt_records')
      .select('value')
      .where('subdomain', '=', subdomain)
      .orderBy('seq', 'desc')
      .limit(TXT_VALUES_PER_NAME)
      .execute();
    return rows.map((r) => r.value);
  }

  async putTxt(subdomain: string, value: string, now: Date): Promise<boolean> {
    // One transaction: read the current values, write the new one, trim to the newest N. SQLite
    // serialises writers; on PostgreSQL this needs SERIALIZABLE or a row lock on the registration.
    return this.db.transaction().execute(async (tx) => {
      const reg = await tx.selectFrom('dns_registrations').select('subdomain').where('subdomain', '=', subdomain).executeTakeFirst();
      if (!reg) return false;
      const rows = await tx.selectFrom('dns_txt_records').select(['seq', 'value']).where('subdomain', '=', subdomain).orderBy('seq', 'desc').execute();
      const next = Number(rows[0]?.seq ?? 0) + 1;
      const same = rows.find((r) => r.value === value);
      if (same) {
        await tx
          .updateTable('dns_txt_records')
          .set({ seq: next, updated_at: now.getTime() })
          .where('subdomain', '=', subdomain)
          .where('seq', '=', same.seq)
          .execute();
      } else {
        await tx.insertInto('dns_txt_records').values({ subdomain, seq: next, value, updated_at: now.getTime() }).execute();
      }
      const keep = await tx
        .selectFrom('dns_txt_records')
        .select('seq')
        .where('subdomain', '=', subdomain)
        .orderBy('seq', 'desc')
        .limit(TXT_VALUES_PER_NAME)
        .execute();
      const oldestKept = keep[keep.length - 1]?.seq;
      if (oldestKept !== undefined) {
        await tx.deleteFrom('dns_txt_records').where('subdomain', '=', subdomain).where('seq', '<', oldestKept).execute();
      }
      return true;
    });
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

/**
 * Opens (creating if needed) the SQLite database of `anvil dns`, set up like the CA's
 * (src/storage/sqlite.ts): file 0600 in a 0700 directory, WAL, synchronous=FULL, busy timeout so
 * that `anvil dns register` can write while the server runs. Runs DNS_MIGRATIONS.
 */
export async function openSqliteDnsStore(file: string): Promise<DnsStore> {
  const db = await openSqliteDatabase(file, DNS_MIGRATIONS, 'dns_schema_migrations');
  return new KyselyDnsStore(db);
}
