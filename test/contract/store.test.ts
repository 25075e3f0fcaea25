/** The Store contract against SQLite (in memory and on disk), plus SQLite-specific behaviour. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect } from 'kysely';
import { insertStatement, KyselyStore, KyselyStoreTx, updateByIdStatement, type DirectStatements } from '../../src/storage/kysely-store.js';
import type { Database as Schema } from '../../src/storage/schema.js';
import { MIGRATIONS } from '../../src/storage/migrations.js';
import { openSqliteDatabase, openSqliteStore } from '../../src/storage/sqlite.js';
import { account, authz, runStoreContract } from './store-contract.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-store-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

runStoreContract('SQLite in memory', () => openSqliteStore(':memory:'), { standalone: 'transaction' });
runStoreContract('SQLite file', () => openSqliteStore(path.join(dir, 'contract.db')), { standalone: 'transaction' });

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

/**
 * A group-commit KyselyStore over its own connection to `file` (created and migrated first), as
 * kysely alone runs it: the SQL it sends can be watched with `onQuery`.
 */
async function kyselyGroupStore(file: string, groupCommit: { busyWaitMs?: number }, onQuery?: (sql: string) => void): Promise<KyselyStore> {
  await (await openSqliteStore(file)).close();
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Schema>({
    dialect: new SqliteDialect({ database: sqlite }),
    log: (e) => {
      if (e.level === 'query') onQuery?.(e.query.sql);
    },
  });
  return new KyselyStore(db, undefined, { groupCommit });
}

describe('SQLite group commit', () => {
  async function counted(file: string): Promise<{ store: KyselyStore; commits: () => number }> {
    let commits = 0;
    const store = await kyselyGroupStore(file, {}, (sql) => {
      if (/^commit$/i.test(sql)) commits++;
    });
    return { store, commits: () => commits };
  }

  test('transactions ready together share one commit; one that throws is rolled back alone', async () => {
    const { store, commits } = await counted(path.join(dir, 'group.db'));
    try {
      const accounts = Array.from({ length: 40 }, () => account());
      const failing = account();
      const results = await Promise.allSettled([
        ...accounts.map((a) => store.transaction(async (tx) => tx.createAccount(a))),
        store.transaction(async (tx) => {
          await tx.createAccount(failing);
          throw new Error('changed my mind');
        }),
        ...accounts.slice(0, 5).map((a) => store.useNonce(`n-${a.id}`, new Date(Date.now() + 60_000))),
      ]);
      assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
      assert.match(String((results[40] as PromiseRejectedResult).reason), /changed my mind/);
      assert.ok(commits() <= 3, `46 writers ready together, ${commits()} commits`);
      for (const a of accounts) assert.deepEqual(await store.getAccount(a.id), a);
      assert.equal(await store.getAccount(failing.id), null, 'rolled back to its savepoint');
      assert.equal(await store.useNonce(`n-${accounts[0]!.id}`, new Date(Date.now() + 60_000)), false, 'the nonce use was committed');
    } finally {
      await store.close();
    }
  });

  test('a transaction that fails on a constraint leaves the others of its batch intact; close waits for the queue', async () => {
    const { store } = await counted(path.join(dir, 'group2.db'));
    const a = account();
    const twin = account({ thumbprint: a.thumbprint });
    const b = account();
    const pending = Promise.allSettled([store.createAccount(a), store.createAccount(twin), store.createAccount(b)]);
    await store.close();
    const [ra, rt, rb] = await pending;
    assert.equal(ra.status, 'fulfilled');
    assert.equal(rt.status, 'rejected', 'one key, one account');
    assert.equal(rb.status, 'fulfilled');
    const again = await openSqliteStore(path.join(dir, 'group2.db'));
    try {
      assert.deepEqual(await again.getAccount(b.id), b);
      assert.equal(await again.getAccount(twin.id), null);
    } finally {
      await again.close();
    }
  });
});

describe('SQLite group commit and other processes', () => {
  const open = (file: string, busyWaitMs: number) => kyselyGroupStore(file, { busyWaitMs });

  test("while another connection holds the write lock, a transaction waits without stopping the event loop, then commits", async () => {
    const file = path.join(dir, 'busy.db');
    const store = await open(file, 5000);
    const other = new Database(file);
    try {
      other.exec('BEGIN IMMEDIATE');
      const a = account();
      const pending = store.createAccount(a);
      // Timers keep firing while the transaction waits: SQLite's busy handler would have slept here.
      let ticks = 0;
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 20));
        ticks++;
      }
      assert.equal(ticks, 5);
      assert.equal(await store.getAccount(a.id), null, 'reads go on meanwhile, and see nothing uncommitted');
      other.exec('COMMIT');
      await pending;
      assert.deepEqual(await store.getAccount(a.id), a);
    } finally {
      other.close();
      await store.close();
    }
  });

  test('a write lock held past the wait fails the waiting transactions with SQLITE_BUSY, and the store recovers', async () => {
    const file = path.join(dir, 'busy2.db');
    const store = await open(file, 150);
    const other = new Database(file);
    try {
      other.exec('BEGIN IMMEDIATE');
      const a = account();
      await assert.rejects(store.createAccount(a), (e: { code?: string }) => e.code === 'SQLITE_BUSY');
      other.exec('ROLLBACK');
      await store.createAccount(a);
      assert.deepEqual(await store.getAccount(a.id), a);
    } finally {
      other.close();
      await store.close();
    }
  });
});

describe('SQLite group commit: wake-ups and close', () => {
  test('a write issued at any microtask after the previous one settled is run (no lost wake-up)', async () => {
    const store = await openSqliteStore(path.join(dir, 'wakeup.db'));
    try {
      for (let ticks = 0; ticks < 24; ticks++) {
        await store.useNonce(`first-${ticks}`, new Date(Date.now() + 60_000));
        for (let i = 0; i < ticks; i++) await null;
        const second = store.useNonce(`second-${ticks}`, new Date(Date.now() + 60_000));
        const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 2000).unref());
        assert.equal(await Promise.race([second, timeout]), true, `after ${ticks} microtasks`);
      }
    } finally {
      await store.close();
    }
  });

  test('close waits for queued writes; a write after close is refused, not lost and not fatal', async () => {
    const store = await openSqliteStore(path.join(dir, 'closed.db'));
    const queued = store.useNonce('queued', new Date(Date.now() + 60_000));
    await store.close();
    assert.equal(await queued, true);
    await assert.rejects(store.useNonce('late', new Date(Date.now() + 60_000)), /closed/);
    await assert.rejects(store.transaction(async (tx) => tx.getAccount('x')), /closed/);
  });
});

test('group commit routes exactly the writing methods of the Store through its batches', async () => {
  const store = await openSqliteStore(':memory:');
  try {
    // The routing puts a wrapper on the instance over each method of KyselyStoreTx that writes.
    const methods = new Set(Object.getOwnPropertyNames(KyselyStoreTx.prototype));
    const routed = Object.getOwnPropertyNames(store).filter((n) => methods.has(n));
    assert.deepEqual(routed.sort(), [
      'createAccount', 'createAuthz', 'createCertificate', 'createEabKey', 'createOrder', 'disableEabKey', 'purgeExpired', 'putCrl',
      'revokeCertificate', 'serverSecret', 'setRenewalWindow', 'updateAccount', 'updateAccountAuthzs', 'updateAuthz', 'updateCertificate',
      'updateChallenge', 'updateOrder', 'useEabKey', 'useNonce',
    ].sort());
  } finally {
    await store.close();
  }
});

test('the direct paths write the INSERT and UPDATE that kysely would, with numbered or plain placeholders', () => {
  const pg = (n: number) => `$${n}`;
  const rows = [
    { id: 'a', n: 1, skipped: undefined, der: Buffer.from([1]) },
    { id: 'b', n: 2, skipped: undefined, der: null },
  ];
  assert.deepEqual(insertStatement('t', rows, pg), {
    text: 'insert into "t" ("id", "n", "der") values ($1, $2, $3), ($4, $5, $6)',
    params: ['a', 1, Buffer.from([1]), 'b', 2, null],
  });
  assert.equal(insertStatement('t', rows, () => '?')!.text, 'insert into "t" ("id", "n", "der") values (?, ?, ?), (?, ?, ?)');
  assert.equal(insertStatement('t', [{ id: 'a', n: 1 }, { id: 'b' }], pg), null, 'rows of different shapes are left to kysely');
  assert.equal(insertStatement('t', [], pg), null);
  assert.deepEqual(updateByIdStatement('t', { status: 'valid', error: null, skipped: undefined }, 'x', ['pending', 'ready'], pg), {
    text: 'update "t" set "status" = $1, "error" = $2 where "id" = $3 and "status" in ($4, $5)',
    params: ['valid', null, 'x', 'pending', 'ready'],
  });
  assert.deepEqual(updateByIdStatement('t', { status: 'valid' }, 'x', undefined, () => '?'), {
    text: 'update "t" set "status" = ? where "id" = ?',
    params: ['valid', 'x'],
  });
  assert.equal(updateByIdStatement('t', { skipped: undefined }, 'x', ['pending'], pg), null, 'nothing to set is left to kysely');
});

test('inserts and id-keyed updates go through a dialect\'s direct path when it has one, and land as kysely would write them', async () => {
  const db = await openSqliteDatabase(':memory:');
  const ran: string[] = [];
  class Recording extends KyselyStoreTx {
    protected override get direct(): DirectStatements {
      return {
        placeholder: () => '?',
        run: async (st) => {
          ran.push(st.text.split(' (')[0]!.split(' where')[0]!);
          return Number((await db.executeQuery(CompiledQuery.raw(st.text, st.params))).numAffectedRows ?? 0n);
        },
      };
    }
  }
  try {
    const tx = new Recording(db);
    const plain = new KyselyStoreTx(db);
    const a = account();
    await tx.createAccount(a);
    const z = authz(a.id);
    await tx.createAuthz(z);
    assert.equal(await tx.updateAuthz(z.id, { status: 'valid' }, ['pending']), true);
    assert.equal(await tx.updateAuthz(z.id, { status: 'valid' }, ['pending']), false, 'the compare-and-set counts changed rows');
    assert.deepEqual(ran, ['insert into "accounts"', 'insert into "authzs"', 'insert into "challenges"', 'update "authzs" set "status" = ?', 'update "authzs" set "status" = ?']);
    assert.deepEqual(await plain.getAccount(a.id), a);
    assert.deepEqual(await plain.getAuthz(z.id), { ...z, status: 'valid' });
  } finally {
    await db.destroy();
  }
});
