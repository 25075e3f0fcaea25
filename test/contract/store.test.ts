/** The Store contract against SQLite (in memory and on disk), plus SQLite-specific behaviour. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../src/storage/migrations.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { account, runStoreContract } from './store-contract.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-store-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

runStoreContract('SQLite in memory', () => openSqliteStore(':memory:'));
runStoreContract('SQLite file', () => openSqliteStore(path.join(dir, 'contract.db')));

describe('SQLite file store', () => {
  test('reopening keeps the data and does not run migrations again; the file is private', async () => {
    const file = path.join(dir, 'reopen.db');
    const s1 = await openSqliteStore(file);
    const a = account();
    await s1.createAccount(a);
    await s1.close();
    const s2 = await openSqliteStore(file);
    assert.deepEqual(await s2.getAccount(a.id), a);
    await s2.close();
    const db = new Database(file, { readonly: true });
    const rows = db.prepare('SELECT version FROM schema_migrations').all();
    assert.equal(rows.length, MIGRATIONS.length);
    assert.equal((db.pragma('journal_mode', { simple: true }) as string).toLowerCase(), 'wal');
    db.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  test('a database of schema version 1 with data is upgraded in place, its rows kept', async () => {
    const file = path.join(dir, 'v1.db');
    const { Kysely, SqliteDialect } = await import('kysely');
    const { migrate } = await import('../../src/storage/migrations.js');
    const raw = new Database(file);
    const db = new Kysely<import('../../src/storage/schema.js').Database>({ dialect: new SqliteDialect({ database: raw }) });
    await migrate(db, MIGRATIONS.slice(0, 1));
    const a = account();
    raw
      .prepare('INSERT INTO accounts (id, status, jwk, thumbprint, contact, tos_agreed, eab_kid, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(a.id, a.status, JSON.stringify(a.jwk), a.thumbprint, '[]', 1, null, a.createdAt.getTime());
    await db.destroy();
    const s = await openSqliteStore(file);
    assert.equal((await s.getAccount(a.id))!.id, a.id);
    assert.equal(await s.getCrl('none'), null);
    await s.close();
  });

  test('a database from a newer Anvil is refused', async () => {
    const file = path.join(dir, 'newer.db');
    (await openSqliteStore(file)).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run('future');
    db.close();
    await assert.rejects(openSqliteStore(file), (e: unknown) => (e as { code?: string }).code === 'SCHEMA_TOO_NEW');
  });
});
