/**
 * The embedded default store: SQLite through better-sqlite3 (pinned to 12.x; 13.x crashes on
 * Node 20). WAL, synchronous=FULL (a signed certificate is on disk before the client hears of it),
 * foreign keys, a busy timeout so that `anvil eab create` can write while the server runs.
 */
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect, type DatabaseConnection, type Driver } from 'kysely';
import { KyselyStore, KyselyStoreTx, SQLITE_BUSY_TIMEOUT_MS, type DirectStatements } from './kysely-store.js';
import { MIGRATIONS, migrate, type Migration, type MigrationLedger } from './migrations.js';
import type { Database as Schema } from './schema.js';
import type { AccountRecord, AuthzRecord, CertificateRecord, ChallengeRecord, OrderRecord, Store, StoreTx } from './store.js';

/**
 * SQLite with `BEGIN IMMEDIATE` transactions: the write lock is taken when the transaction starts,
 * so that several processes on one file (anvil server --workers, anvil eab create while the server
 * runs) wait their turn (busy_timeout) instead of failing with SQLITE_BUSY when a transaction that
 * has read upgrades to a write after another process wrote.
 */
class ImmediateSqliteDialect extends SqliteDialect {
  override createDriver(): Driver {
    const driver = super.createDriver();
    driver.beginTransaction = async (connection: DatabaseConnection) => {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    };
    return driver;
  }
}

/**
 * kysely prepares every query it runs; the server runs the same few dozen statements over and
 * over, and preparing costs more than running them. Prepared statements are kept by SQL text
 * (bounded); better-sqlite3 runs a statement to completion synchronously, so sharing one is safe.
 */
function cacheStatements(sqlite: Database.Database): void {
  const prepare = sqlite.prepare.bind(sqlite);
  const cache = new Map<string, Database.Statement>();
  sqlite.prepare = ((source: string) => {
    let st = cache.get(source);
    if (!st) {
      st = prepare(source);
      if (cache.size >= 500) cache.delete(cache.keys().next().value!);
      cache.set(source, st);
    }
    return st;
  }) as typeof sqlite.prepare;
}

/**
 * Opens (creating if needed) a SQLite database set up as every Anvil database is: file 0600 in a
 * 0700 directory (it holds secrets or their hashes), WAL, synchronous=FULL, foreign keys, a busy
 * timeout; then runs `migrations`, recorded in the `ledger` table.
 */
export async function openSqliteDatabase(
  file: string,
  migrations: readonly Migration[] = MIGRATIONS,
  ledger: MigrationLedger = 'schema_migrations',
): Promise<Kysely<Schema>> {
  return (await openSqlite(file, migrations, ledger)).db;
}

async function openSqlite(
  file: string,
  migrations: readonly Migration[],
  ledger: MigrationLedger,
): Promise<{ db: Kysely<Schema>; sqlite: Database.Database }> {
  if (file !== ':memory:') await mkdir(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  const sqlite = new Database(file);
  try {
    // WAL and SHM files inherit this mode.
    if (file !== ':memory:') await chmod(file, 0o600);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
    // Savepoint journals (the group commit runs each transaction in a savepoint) and temporary
    // b-trees stay in memory: on disk they made about half of the server's pwrite calls (files
    // under /var/tmp), for nothing durable.
    sqlite.pragma('temp_store = MEMORY');
    sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
    cacheStatements(sqlite);
  } catch (e) {
    sqlite.close();
    throw e;
  }
  const db = new Kysely<Schema>({ dialect: new ImmediateSqliteDialect({ database: sqlite }) });
  try {
    await migrate(db, migrations, ledger);
  } catch (e) {
    await db.destroy();
    throw e;
  }
  return { db, sqlite };
}

/**
 * The statements every ACME request runs, prepared once and run on better-sqlite3 directly: through
 * kysely each costs about 7 µs more (query building, compiling, a chain of promises) than SQLite
 * itself takes. The SQL is what the kysely code of KyselyStoreTx builds for the same methods, and
 * the store contract suite runs against this store, so both stay the same.
 */
function hotStatements(sqlite: Database.Database) {
  return {
    account: sqlite.prepare<[string], Schema['accounts']>('select * from "accounts" where "id" = ?'),
    authz: sqlite.prepare<[string], Schema['authzs']>('select * from "authzs" where "id" = ?'),
    challenges: sqlite.prepare<[string], Schema['challenges']>('select * from "challenges" where "authz_id" = ? order by "position"'),
    challenge: sqlite.prepare<[string], Schema['challenges']>('select * from "challenges" where "id" = ?'),
    order: sqlite.prepare<[string], Schema['orders']>('select * from "orders" where "id" = ?'),
    orderAuthzs: sqlite.prepare<[string], { authz_id: string }>('select "authz_id" from "order_authzs" where "order_id" = ? order by "position"'),
    useNonce: sqlite.prepare<[string, number]>('insert into "used_nonces" ("value", "expires") values (?, ?) on conflict ("value") do nothing'),
    certificate: sqlite.prepare<[string], Schema['certificates']>('select * from "certificates" where "id" = ?'),
    openOrders: sqlite.prepare<[string, number], { n: number }>(
      'select count(*) as "n" from "orders" where "account_id" = ? and "status" in (\'pending\', \'ready\') and "expires" > ?',
    ),
    ordersForAuthz: sqlite.prepare<[string], Schema['orders']>(
      'select "orders".* from "orders" inner join "order_authzs" on "order_authzs"."order_id" = "orders"."id" where "order_authzs"."authz_id" = ?',
    ),
  };
}
type HotStatements = ReturnType<typeof hotStatements>;

/** KyselyStoreTx with the hot statements run directly; everything else as KyselyStoreTx does it. */
class SqliteTx extends KyselyStoreTx {
  constructor(
    db: Kysely<Schema>,
    private readonly st: HotStatements,
    private readonly sqlite: Database.Database,
  ) {
    super(db);
  }

  // Inserts and id-keyed updates as fixed SQL text (KyselyStoreTx.direct), kept by their text
  // (cacheStatements).
  readonly #direct: DirectStatements = {
    placeholder: () => '?',
    run: async (st) => this.sqlite.prepare(st.text).run(...st.params).changes,
  };

  protected override get direct(): DirectStatements {
    return this.#direct;
  }

  /** A row by id through a hot statement, mapped; null when there is none. */
  #one<R, T>(statement: Database.Statement<[string], R>, id: string, map: (r: R) => T): T | null {
    const r = statement.get(id);
    return r ? map(r) : null;
  }

  override async useNonce(value: string, expires: Date): Promise<boolean> {
    return this.st.useNonce.run(value, expires.getTime()).changes > 0;
  }

  override async getCertificate(id: string): Promise<CertificateRecord | null> {
    return this.#one(this.st.certificate, id, (r) => this.mapCertificate(r));
  }

  override async countOpenOrders(accountId: string, now: Date): Promise<number> {
    return Number(this.st.openOrders.get(accountId, now.getTime())?.n ?? 0);
  }

  override async ordersForAuthz(authzId: string): Promise<OrderRecord[]> {
    return Promise.all(this.st.ordersForAuthz.all(authzId).map((r) => this.mapOrder(r)));
  }

  override async getAccount(id: string): Promise<AccountRecord | null> {
    return this.#one(this.st.account, id, (r) => this.mapAccount(r));
  }

  override async getAuthz(id: string): Promise<AuthzRecord | null> {
    return this.#one(this.st.authz, id, (r) => this.mapAuthz(r));
  }

  override async getChallenge(id: string): Promise<ChallengeRecord | null> {
    return this.#one(this.st.challenge, id, (r) => this.mapChallenge(r));
  }

  override async getOrder(id: string): Promise<OrderRecord | null> {
    return this.#one(this.st.order, id, (r) => this.mapOrder(r));
  }

  protected override async loadChallengeRows(authzId: string): Promise<Array<Schema['challenges']>> {
    return this.st.challenges.all(authzId);
  }

  protected override async loadOrderAuthzIds(orderId: string): Promise<string[]> {
    return this.st.orderAuthzs.all(orderId).map((r) => r.authz_id);
  }
}

/**
 * The SQLite store: group commit (KyselyStore), with the hot statements on better-sqlite3 directly.
 * A read outside a transaction runs at once when no batch holds the connection (then nothing
 * uncommitted is on it); otherwise it joins the batch, and is answered after its commit, as any
 * transaction is (a kysely read would wait for the connection just as long, at more cost).
 */
class SqliteStore extends KyselyStore {
  readonly #fast: SqliteTx;

  constructor(db: Kysely<Schema>, sqlite: Database.Database) {
    const st = hotStatements(sqlite);
    const control = new Map<string, Database.Statement>();
    super(db, undefined, {
      groupCommit: {
        exec: (statement) => {
          let c = control.get(statement);
          if (!c) control.set(statement, (c = sqlite.prepare(statement)));
          c.run();
        },
      },
      txFor: (conn) => new SqliteTx(conn, st, sqlite),
    });
    this.#fast = new SqliteTx(db, st, sqlite);
  }

  /** A read outside a transaction: at once on an idle connection, else in the batch holding it. */
  #read<T>(f: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.batchRunning ? this.transaction(f) : f(this.#fast);
  }

  override getAccount(id: string): Promise<AccountRecord | null> {
    return this.#read((tx) => tx.getAccount(id));
  }

  override getAuthz(id: string): Promise<AuthzRecord | null> {
    return this.#read((tx) => tx.getAuthz(id));
  }

  override getChallenge(id: string): Promise<ChallengeRecord | null> {
    return this.#read((tx) => tx.getChallenge(id));
  }

  override getOrder(id: string): Promise<OrderRecord | null> {
    return this.#read((tx) => tx.getOrder(id));
  }

  override getCertificate(id: string): Promise<CertificateRecord | null> {
    return this.#read((tx) => tx.getCertificate(id));
  }
}

/** The CA's store (it holds EAB HMAC keys). */
export async function openSqliteStore(file: string): Promise<Store> {
  const { db, sqlite } = await openSqlite(file, MIGRATIONS, 'schema_migrations');
  return new SqliteStore(db, sqlite);
}
