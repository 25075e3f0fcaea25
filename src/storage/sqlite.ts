/**
 * The embedded default store: SQLite through better-sqlite3 (pinned to 12.x; 13.x crashes on
 * Node 20). WAL, synchronous=FULL (a signed certificate is on disk before the client hears of it),
 * foreign keys, a busy timeout so that `anvil eab create` can write while the server runs.
 */
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect, type DatabaseConnection, type Driver } from 'kysely';
import { KyselyStore, SQLITE_BUSY_TIMEOUT_MS } from './kysely-store.js';
import { MIGRATIONS, migrate, type Migration, type MigrationLedger } from './migrations.js';
import type { Database as Schema } from './schema.js';
import type { Store } from './store.js';

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
  if (file !== ':memory:') await mkdir(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  const sqlite = new Database(file);
  try {
    // WAL and SHM files inherit this mode.
    if (file !== ':memory:') await chmod(file, 0o600);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
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
  return db;
}

/** The CA's store (it holds EAB HMAC keys). */
export async function openSqliteStore(file: string): Promise<Store> {
  return new KyselyStore(await openSqliteDatabase(file), undefined, { groupCommit: {} });
}
