/**
 * The PostgreSQL these machines run (127.0.0.1:5432, trust auth) for tests: one fresh database per
 * use, dropped by dropDatabases(). Not reachable: `pgSkip` is a reason to skip (printed loudly),
 * except under CI=true, where the tests run and fail instead.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { redactDatabaseUrl } from '../../src/storage/postgres.js';

export const ADMIN_URL = process.env.ANVIL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const PG_WHERE = redactDatabaseUrl(ADMIN_URL);

export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = [], url = ADMIN_URL): Promise<R[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

async function probe(): Promise<string | null> {
  try {
    await adminQuery('select 1');
    return null;
  } catch (e) {
    return (e as Error).message || String(e);
  }
}

/** Null when PostgreSQL answers; otherwise why not. */
export const pgUnreachable = await probe();
/** A `skip` option for node:test: false when PostgreSQL answers or under CI=true. */
export const pgSkip: string | false = pgUnreachable !== null && process.env.CI !== 'true' ? `PostgreSQL not reachable at ${PG_WHERE} (${pgUnreachable})` : false;

const created: string[] = [];

/** A fresh, empty database; returns its URL. Dropped by dropDatabases(). */
export async function createDatabase(): Promise<string> {
  const name = `anvil_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  created.push(name);
  const u = new URL(ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Drops every database createDatabase() made here, ending their connections first. */
export async function dropDatabases(): Promise<void> {
  for (const name of created.splice(0)) {
    await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    await adminQuery(`DROP DATABASE IF EXISTS ${name}`);
  }
}
