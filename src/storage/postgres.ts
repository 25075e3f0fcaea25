/**
 * The PostgreSQL store, for several `anvil server` replicas sharing one database: kysely's
 * PostgresDialect over a pg Pool, the same KyselyStoreTx and the same migrations as SQLite.
 *
 * - Everything runs READ COMMITTED, set on each connection and each transaction (whatever the
 *   database's default). The store's check-and-change operations are single statements, atomic
 *   there (see kysely-store.ts); a stricter level would turn a lost compare-and-set into a
 *   serialization error instead of `false`.
 * - A transaction that loses a conflict to one that committed meanwhile (unique_violation, e.g. two
 *   newAccount with one key; serialization_failure; deadlock_detected) is rolled back and run again,
 *   and then sees the winner's rows, as it would have under SQLite's one writer at a time.
 * - int8 (bigint) columns come back as numbers, not pg's strings, so records round-trip exactly;
 *   bytea comes back as a Buffer.
 * - Migrations run at start-up under a session advisory lock, so that replicas starting together
 *   migrate once: the first takes the lock and migrates, the others wait, then find nothing to do.
 *
 * `pg` loads only when a PostgreSQL store is opened, so SQLite users never load it.
 */
import { createHash } from 'node:crypto';
import type { CustomTypesConfig } from 'pg';
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import { KyselyStore, KyselyStoreTx, type DirectStatements } from './kysely-store.js';
import { MIGRATIONS, migrate, type Migration, type MigrationLedger } from './migrations.js';
import type { Database as Schema } from './schema.js';
import type { AccountRecord, AuthzRecord, ChallengeRecord, OrderRecord, Store } from './store.js';

export const DEFAULT_POOL_SIZE = 10;

export interface PostgresStoreOptions {
  /** Connections in this process's pool (default 10). */
  poolSize?: number;
  /** How long to wait for a connection before failing a query (default 10 s). */
  connectTimeoutMs?: number;
}

/** The database could not be reached at start-up. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
}

/** The URL with its password (in the user part or a `password` parameter) replaced by `***`, for messages and logs. */
export function redactDatabaseUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(unparseable database URL)';
  }
  if (u.password) u.password = '***';
  if (u.searchParams.has('password')) u.searchParams.set('password', '***');
  return u.toString();
}

/** SQLSTATEs after which a transaction is run again: unique_violation, serialization_failure, deadlock_detected. */
const RETRYABLE = new Set(['23505', '40001', '40P01']);
const retryable = (e: unknown): boolean => RETRYABLE.has((e as { code?: unknown } | null)?.code as string);

const INT8_OID = 20;
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`a bigint column holds ${text}, beyond JavaScript's safe integers`);
  return n;
}

/** The advisory lock key of a migration ledger: 64 bits of a hash of its name, the same in every replica. */
function lockKey(ledger: MigrationLedger): string {
  return createHash('sha256').update(`anvil migrations: ${ledger}`).digest().readBigInt64BE(0).toString();
}

/**
 * Opens a pool on `url`, checks that the database answers, and runs `migrations` (recorded in
 * `ledger`) under an advisory lock. A database newer than the code is refused (SCHEMA_TOO_NEW).
 */
export async function openPostgresDatabase(
  url: string,
  opts: PostgresStoreOptions = {},
  migrations: readonly Migration[] = MIGRATIONS,
  ledger: MigrationLedger = 'schema_migrations',
): Promise<Kysely<Schema>> {
  const { default: pg } = await import('pg');
  // One parser table per pool: pg's global `types` would change every other pg user in the process.
  const types: CustomTypesConfig = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as CustomTypesConfig['getTypeParser'],
  };
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? DEFAULT_POOL_SIZE,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    application_name: 'anvil',
    types,
  });
  // A broken idle connection (server restart, terminated backend) is reported here; unhandled, the
  // event would end the process. The pool has already dropped it, and the next query opens a new one.
  pool.on('error', () => {});
  const db = new Kysely<Schema>({
    dialect: new PostgresDialect({
      pool,
      // Statements outside a transaction too: under a stricter database default, a lost
      // useNonce or compare-and-set would be a serialization error instead of `false`.
      onCreateConnection: async (c) => {
        await c.executeQuery(CompiledQuery.raw('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED'));
      },
    }),
  });
  try {
    await sql`select 1`.execute(db);
  } catch (e) {
    await db.destroy().catch(() => {});
    throw new StoreUnavailableError(`PostgreSQL at ${redactDatabaseUrl(url)} is not reachable: ${(e as Error).message}`, { cause: e });
  }
  try {
    // Session-level lock on one connection; the migrations run on that connection too, each in
    // its own transaction. If this process dies, its session ends and the lock goes with it.
    await db.connection().execute(async (conn) => {
      const key = lockKey(ledger);
      await sql`select pg_advisory_lock(${key}::bigint)`.execute(conn);
      try {
        await migrate(conn, migrations, ledger);
      } finally {
        await sql`select pg_advisory_unlock(${key}::bigint)`.execute(conn);
      }
    });
  } catch (e) {
    await db.destroy().catch(() => {});
    throw e;
  }
  return db;
}

/** The CA's store on PostgreSQL (it holds EAB HMAC keys). */
/**
 * Each statement is a round trip through the pg driver, and on one machine the sender pays for
 * loopback TCP: the reads of every ACME request fetch a row with its children in one statement
 * (an order with its authorization ids, an authorization with its challenges) instead of two.
 */
class PostgresTx extends KyselyStoreTx {
  /** One statement of fixed text, without kysely's query building (about 9 % of the server's CPU here). */
  async #run<R>(text: string, params: readonly unknown[]): Promise<{ rows: R[]; changed: number }> {
    const r = await this.db.executeQuery<R>(CompiledQuery.raw(text, [...params]));
    return { rows: r.rows, changed: Number(r.numAffectedRows ?? 0n) };
  }

  // Inserts and id-keyed updates as fixed SQL text too (KyselyStoreTx.direct).
  readonly #direct: DirectStatements = {
    placeholder: (n) => `$${n}`,
    run: async (st) => (await this.#run(st.text, st.params)).changed,
  };

  protected override get direct(): DirectStatements {
    return this.#direct;
  }

  override async useNonce(value: string, expires: Date): Promise<boolean> {
    const r = await this.#run('insert into "used_nonces" ("value", "expires") values ($1, $2) on conflict ("value") do nothing', [value, expires.getTime()]);
    return r.changed > 0;
  }

  override async getAccount(id: string): Promise<AccountRecord | null> {
    const r = (await this.#run<Schema['accounts']>('select * from "accounts" where "id" = $1', [id])).rows[0];
    return r ? this.mapAccount(r) : null;
  }

  override async getChallenge(id: string): Promise<ChallengeRecord | null> {
    const r = (await this.#run<Schema['challenges']>('select * from "challenges" where "id" = $1', [id])).rows[0];
    return r ? this.mapChallenge(r) : null;
  }

  override async getOrder(id: string): Promise<OrderRecord | null> {
    const r = await sql<Schema['orders'] & { authz_ids: string[] }>`
      select o.*, array(select oa.authz_id from order_authzs oa where oa.order_id = o.id order by oa.position) as authz_ids
      from orders o where o.id = ${id}`.execute(this.db);
    const row = r.rows[0];
    return row ? this.mapOrder(row, row.authz_ids) : null;
  }

  override async getAuthz(id: string): Promise<AuthzRecord | null> {
    // json_agg gives each column as the two-statement read does: the JSON text columns as strings,
    // bigints as JSON numbers, which JSON.parse rounds beyond 2^53 where parseInt8 refuses; the
    // same refusal is made here (millisecond timestamps are far below it).
    const r = await sql<Schema['authzs'] & { challenge_rows: Array<Schema['challenges']> }>`
      select a.*, coalesce((select json_agg(c order by c.position) from challenges c where c.authz_id = a.id), '[]'::json) as challenge_rows
      from authzs a where a.id = ${id}`.execute(this.db);
    const row = r.rows[0];
    if (!row) return null;
    for (const c of row.challenge_rows) {
      for (const v of [c.validated, c.requested_at]) {
        if (v !== null && !Number.isSafeInteger(v)) throw new RangeError(`a bigint column holds ${String(v)}, beyond JavaScript's safe integers`);
      }
    }
    return this.mapAuthz(row, row.challenge_rows);
  }
}

/** The PostgreSQL store: reads as PostgresTx does them, in transactions and outside. */
class PostgresStore extends KyselyStore {
  readonly #direct: PostgresTx;

  constructor(db: Kysely<Schema>) {
    const direct = new PostgresTx(db);
    super(db, undefined, {
      isolationLevel: 'read committed',
      retryable,
      attempts: 3,
      txFor: (conn) => new PostgresTx(conn),
      standalone: direct,
    });
    this.#direct = direct;
  }

  override getOrder(id: string): Promise<OrderRecord | null> {
    return this.#direct.getOrder(id);
  }

  override getAccount(id: string): Promise<AccountRecord | null> {
    return this.#direct.getAccount(id);
  }

  override getChallenge(id: string): Promise<ChallengeRecord | null> {
    return this.#direct.getChallenge(id);
  }

  override useNonce(value: string, expires: Date): Promise<boolean> {
    return this.#direct.useNonce(value, expires);
  }

  override getAuthz(id: string): Promise<AuthzRecord | null> {
    return this.#direct.getAuthz(id);
  }
}

export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<Store> {
  return new PostgresStore(await openPostgresDatabase(url, opts));
}
