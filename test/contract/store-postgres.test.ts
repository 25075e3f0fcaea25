/**
 * The Store contract against PostgreSQL, plus what only replicas sharing one database exercise:
 * two pools (as two `anvil server` processes would have) racing on one nonce, one EAB key, one
 * account key, one compare-and-set, one CRL number; replicas migrating at once; a newer schema
 * refused; and `anvil server` issuing on PostgreSQL and finding its certificate after a restart.
 *
 * Each run creates databases `anvil_test_<random>` through the admin URL (ANVIL_TEST_POSTGRES_URL,
 * default postgres://postgres@127.0.0.1:5432/postgres) and drops them at the end. No PostgreSQL
 * reachable: one loud line and these suites are skipped; under CI=true they fail instead.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { parseServerConfig } from '../../src/server/config.js';
import { MIGRATIONS } from '../../src/storage/migrations.js';
import { openPostgresStore } from '../../src/storage/postgres.js';
import type { AccountRecord, Store } from '../../src/storage/store.js';
import { issue } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { RawAcme } from '../helpers/raw-acme.js';
import { adminQuery, createDatabase, dropDatabases, PG_WHERE, pgSkip, pgUnreachable } from '../helpers/postgres.js';
import { account, authz, order, runStoreContract } from './store-contract.js';

const unreachable = pgUnreachable;
const skip = pgSkip;
const WHERE = PG_WHERE;
if (skip) console.error(`\n!!! PostgreSQL not reachable at ${WHERE}: PostgreSQL store tests SKIPPED (${unreachable})\n`);

after(dropDatabases);

test('PostgreSQL is reachable where CI runs these tests', { skip: process.env.CI === 'true' ? false : 'only under CI=true' }, () => {
  assert.equal(unreachable, null, `PostgreSQL not reachable at ${WHERE} under CI=true: ${unreachable}`);
});

describe('PostgreSQL', { skip }, () => {
  runStoreContract('PostgreSQL', async () => openPostgresStore(await createDatabase()), { standalone: 'statements' });

  test('a bigint beyond JavaScript\'s safe integers is refused, read alone or with its authorization', async () => {
    const url = await createDatabase();
    const s = await openPostgresStore(url);
    try {
      const a = account();
      await s.createAccount(a);
      const z = authz(a.id);
      await s.createAuthz(z);
      const ch = z.challenges[0]!.id;
      await adminQuery('update challenges set requested_at = $1 where id = $2', ['9007199254740993', ch], url);
      await assert.rejects(s.getChallenge(ch), /beyond JavaScript's safe integers/);
      await assert.rejects(s.getAuthz(z.id), /beyond JavaScript's safe integers/);
      await assert.rejects(s.transaction((tx) => tx.getAuthz(z.id)), /beyond JavaScript's safe integers/);
      await adminQuery('update challenges set requested_at = $1 where id = $2', ['8000000000000000', ch], url); // the largest Dates are near 8.64e15
      assert.equal((await s.getAuthz(z.id))!.challenges[0]!.requestedAt!.getTime(), 8e15);
    } finally {
      await s.close();
    }
  });
});

describe('PostgreSQL shared by replicas (two pools on one database)', { skip }, () => {
  let url: string;
  let r1: Store;
  let r2: Store;
  /** The i-th call goes to replica 1 or 2 in turn. */
  const replica = (i: number) => (i % 2 === 0 ? r1 : r2);

  before(async () => {
    url = await createDatabase();
    // One after the other: replicas starting together are the migrations suite's concern.
    r1 = await openPostgresStore(url, { poolSize: 12 });
    r2 = await openPostgresStore(url, { poolSize: 12 });
  });
  after(async () => {
    await r1?.close();
    await r2?.close();
  });

  test('a nonce issued by one replica is accepted by another exactly once, of 20 concurrent tries', async () => {
    const now = new Date();
    for (let round = 0; round < 5; round++) {
      const value = `nonce-${round}-${randomBytes(8).toString('hex')}`;
      const r = await Promise.all(Array.from({ length: 20 }, (_, i) => replica(i).useNonce(value, new Date(now.getTime() + 60_000))));
      assert.equal(r.filter(Boolean).length, 1, `round ${round}`);
    }
  });

  test('the nonce key is created once for all replicas, of 20 concurrent first starts', async () => {
    const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => replica(i).serverSecret('race-secret', () => randomBytes(32))));
    for (const k of keys) assert.ok(k.equals(keys[0]!));
  });

  test('an EAB key binds at most maxUses accounts, of 20 concurrent binds in transactions on both replicas', async () => {
    const kid = `kid-${randomBytes(6).toString('hex')}`;
    await r1.createEabKey({ kid, hmacKey: 'c2VjcmV0', maxUses: 3, uses: 0, accountIds: [], createdAt: new Date(), expiresAt: null, comment: null });
    const r = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        replica(i).transaction(async (tx) => {
          const ok = await tx.useEabKey(kid, `acct-${i}`);
          await new Promise((res) => setTimeout(res, 5)); // hold the row while the others queue
          return ok;
        }),
      ),
    );
    assert.equal(r.filter(Boolean).length, 3);
    const k = await r2.getEabKey(kid);
    assert.equal(k!.uses, 3);
    assert.equal(k!.accountIds.length, 3);
  });

  test('ten newAccount with one key on both replicas make one account, and every caller gets it', async () => {
    const proto = account();
    // The authority's newAccount: look the key up, create if absent, in one transaction. Under
    // concurrency all ten look before any commits; the losers' inserts hit the unique thumbprint,
    // and their transactions run again and find the winner.
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        replica(i).transaction(async (tx): Promise<AccountRecord> => {
          const existing = await tx.getAccountByThumbprint(proto.thumbprint);
          if (existing) return existing;
          await new Promise((res) => setTimeout(res, 20));
          const a = { ...proto, id: `${proto.id}-${i}` };
          await tx.createAccount(a);
          return a;
        }),
      ),
    );
    assert.equal(new Set(results.map((a) => a.id)).size, 1);
    const rows = await adminQuery<{ n: string }>('SELECT count(*) AS n FROM accounts WHERE thumbprint = $1', [proto.thumbprint], url);
    assert.equal(Number(rows[0]!.n), 1);
  });

  test('compare-and-set holds across replicas, in and out of transactions', async () => {
    const a = account();
    await r1.createAccount(a);
    const o = order(a.id, [], { status: 'ready' });
    await r1.createOrder(o);
    const plain = await Promise.all(Array.from({ length: 10 }, (_, i) => replica(i).updateOrder(o.id, { status: 'processing' }, ['ready'])));
    assert.equal(plain.filter(Boolean).length, 1);
    const o2 = order(a.id, [], { status: 'ready' });
    await r2.createOrder(o2);
    const inTx = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        replica(i).transaction(async (tx) => {
          const before = await tx.getOrder(o2.id);
          if (before!.status !== 'ready') return false;
          const won = await tx.updateOrder(o2.id, { status: 'processing' }, ['ready']);
          await new Promise((res) => setTimeout(res, 5));
          return won;
        }),
      ),
    );
    assert.equal(inTx.filter(Boolean).length, 1);
    assert.equal((await r1.getOrder(o2.id))!.status, 'processing');
  });

  test('the CRL number only grows, one writer per number, across replicas', async () => {
    const issuer = `issuer-${randomBytes(6).toString('hex')}`;
    const crl = (n: number) => ({ issuer, number: n, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + 86_400_000), der: Buffer.from([0x30, n]) });
    const first = await Promise.all(Array.from({ length: 10 }, (_, i) => replica(i).putCrl(crl(1), null)));
    assert.equal(first.filter(Boolean).length, 1);
    for (let n = 1; n < 6; n++) {
      // Every writer read number n and tries to store n + 1.
      const r = await Promise.all(Array.from({ length: 6 }, (_, i) => replica(i).putCrl(crl(n + 1), n)));
      assert.equal(r.filter(Boolean).length, 1, `number ${n + 1}`);
    }
    const got = await r2.getCrl(issuer);
    assert.equal(got!.number, 6);
    assert.deepEqual(got!.der, Buffer.from([0x30, 6]));
  });

  test("one replica's transaction is invisible to the other until it commits, and gone if it throws", async () => {
    const a = account();
    let release!: () => void;
    const held = new Promise<void>((res) => (release = res));
    let inside!: () => void;
    const started = new Promise<void>((res) => (inside = res));
    const tx = r1.transaction(async (t) => {
      await t.createAccount(a);
      inside();
      await held;
    });
    await started;
    assert.equal(await r2.getAccount(a.id), null, 'uncommitted rows are not visible to the other replica');
    release();
    await tx;
    assert.deepEqual(await r2.getAccount(a.id), a);
    const b = account();
    await assert.rejects(
      r2.transaction(async (t) => {
        await t.createAccount(b);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await r1.getAccount(b.id), null);
  });
});

describe('PostgreSQL migrations', { skip }, () => {
  test('three replicas starting at once on a new database migrate it once', async () => {
    const url = await createDatabase();
    const stores = await Promise.all([openPostgresStore(url), openPostgresStore(url), openPostgresStore(url)]);
    try {
      const rows = await adminQuery<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version', [], url);
      assert.deepEqual(
        rows.map((r) => r.version),
        MIGRATIONS.map((m) => m.version),
      );
      const a = account();
      await stores[0]!.createAccount(a);
      assert.deepEqual(await stores[2]!.getAccount(a.id), a);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    // Reopening finds nothing to do.
    const again = await openPostgresStore(url);
    await again.close();
    assert.equal((await adminQuery('SELECT version FROM schema_migrations', [], url)).length, MIGRATIONS.length);
  });

  test('binary columns are bytea and times bigint', async () => {
    const url = await createDatabase();
    await (await openPostgresStore(url)).close();
    const cols = await adminQuery<{ table_name: string; column_name: string; data_type: string }>(
      "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE column_name IN ('der', 'created_at') ORDER BY table_name, column_name",
      [],
      url,
    );
    for (const c of cols) assert.equal(c.data_type, c.column_name === 'der' ? 'bytea' : 'bigint', `${c.table_name}.${c.column_name}`);
    assert.ok(cols.some((c) => c.table_name === 'crls' && c.column_name === 'der'));
  });

  test("races still have one winner, without errors, when the database's default isolation is serializable", async () => {
    const url = await createDatabase();
    await adminQuery(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET default_transaction_isolation TO 'serializable'`);
    const [r1, r2] = [await openPostgresStore(url), await openPostgresStore(url)];
    try {
      const now = new Date();
      const nonces = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? r1 : r2).useNonce('n-serializable', new Date(now.getTime() + 60_000))));
      assert.equal(nonces.filter(Boolean).length, 1);
      const a = account();
      await r1.createAccount(a);
      const o = order(a.id, [], { status: 'ready' });
      await r1.createOrder(o);
      const cas = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? r1 : r2).updateOrder(o.id, { status: 'processing' }, ['ready'])));
      assert.equal(cas.filter(Boolean).length, 1);
    } finally {
      await r1.close();
      await r2.close();
    }
  });

  test('a database from a newer Anvil is refused', async () => {
    const url = await createDatabase();
    await (await openPostgresStore(url)).close();
    await adminQuery("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)", [], url);
    await assert.rejects(openPostgresStore(url), (e: unknown) => (e as { code?: string }).code === 'SCHEMA_TOO_NEW');
  });
});

test('an unreachable PostgreSQL fails with STORE_UNAVAILABLE and a message without the password', async () => {
  await assert.rejects(openPostgresStore('postgres://anvil:s3cret-pw@127.0.0.1:1/anvil', { connectTimeoutMs: 2000 }), (e: unknown) => {
    const err = e as { code?: string; message: string };
    assert.equal(err.code, 'STORE_UNAVAILABLE');
    assert.match(err.message, /127\.0\.0\.1:1/);
    assert.doesNotMatch(err.message, /s3cret-pw/);
    return true;
  });
});

describe('storage config', () => {
  test('a postgres storage section is accepted, and printed and inspected without its password', () => {
    const url = 'postgres://anvil:s3cret-pw@db.example:5432/anvil?sslmode=require';
    const c = parseServerConfig({ storage: { type: 'postgres', url, poolSize: 20 } });
    assert.equal(c.storage.type, 'postgres');
    assert.equal(c.storage.type === 'postgres' && c.storage.url, url, 'the store gets the real URL');
    for (const shown of [JSON.stringify(c), inspect(c, { depth: 5 })]) {
      assert.doesNotMatch(shown, /s3cret-pw/);
      assert.match(shown, /postgres:\/\/anvil:\*\*\*@db\.example:5432\/anvil/);
    }
  });

  test('old SQLite configs stay valid; a bad postgres section names its field', () => {
    assert.deepEqual({ ...parseServerConfig({}).storage }, { type: 'sqlite', path: 'anvil.db' });
    assert.deepEqual({ ...parseServerConfig({ storage: { path: 'x.db' } }).storage }, { type: 'sqlite', path: 'x.db' });
    assert.throws(() => parseServerConfig({ storage: { type: 'postgres' } }), /storage\.url/);
    assert.throws(() => parseServerConfig({ storage: { type: 'postgres', url: 'mysql://x/y' } }), /storage\.url: expected postgres:/);
    assert.throws(() => parseServerConfig({ storage: { type: 'postgres', url: 'postgres://x/y', poolSize: 0 } }), /storage\.poolSize/);
    assert.throws(() => parseServerConfig({ storage: { type: 'postgres', url: 'postgres://x/y', path: 'a.db' } }), /storage/);
  });
});

describe('anvil server on PostgreSQL', { skip }, () => {
  let url: string;
  let ts: TestServer | undefined;
  let ts2: TestServer | undefined;
  let dataDir: string | undefined;
  before(async () => {
    url = await createDatabase();
  });
  after(async () => {
    await ts2?.stop();
    await ts?.srv.close().catch(() => {});
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('issues a certificate; after a restart on the same database the certificate and the account are still there', async () => {
    ts = await startTestServer({ storage: { type: 'postgres', url } });
    dataDir = ts.dataDir;
    const acme = await new RawAcme(ts.directoryUrl).init();
    assert.equal((await acme.register()).status, 201);
    const { chain, certUrl } = await issue(acme, ['pg.example.com']);
    assert.match(chain, /BEGIN CERTIFICATE/);
    const leftover = await acme.nonce();

    // Restart: same data dir (the CA) and port (the URLs), same database.
    const port = Number(new URL(ts.directoryUrl).port);
    await ts.srv.close();
    ts = undefined;
    ts2 = await startTestServer({ storage: { type: 'postgres', url }, dataDir, listen: { host: '127.0.0.1', port } });
    const again = await new RawAcme(ts2.directoryUrl, acme.key).init();
    const reg = await again.register({ onlyReturnExisting: true });
    assert.equal(reg.status, 200);
    assert.equal(reg.headers.get('location'), acme.kid);
    const c = await again.post(certUrl, { payload: null });
    assert.equal(c.status, 200);
    assert.equal(c.text, chain);
    // A nonce the first process issued is good once in the second (nonces live in the database).
    assert.equal((await again.post(certUrl, { payload: null, nonce: leftover })).status, 200);
    const replay = await again.post(certUrl, { payload: null, nonce: leftover });
    assert.equal(replay.status, 400);
    assert.equal(replay.body.type, 'urn:ietf:params:acme:error:badNonce');
  });
});
