/**
 * The Store contract (src/storage/store.ts), as one suite that every implementation must pass.
 * SQLite runs it today; the PostgreSQL store will run the same function.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { AccountRecord, AuthzRecord, CertificateRecord, EabKeyRecord, OrderRecord, Store, StoreTx } from '../../src/storage/store.js';

let seq = 0;
const id = (p: string) => `${p}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
const T0 = Date.UTC(2026, 5, 1);
const at = (ms: number) => new Date(T0 + ms);

export function account(o: Partial<AccountRecord> = {}): AccountRecord {
  return {
    id: id('acct'),
    status: 'valid',
    jwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' },
    thumbprint: id('tp'),
    contact: ['mailto:a@example.com'],
    termsOfServiceAgreed: true,
    eabKid: null,
    createdAt: at(0),
    ...o,
  };
}

export function authz(accountId: string, o: Partial<AuthzRecord> = {}): AuthzRecord {
  const aid = o.id ?? id('authz');
  return {
    id: aid,
    accountId,
    identifier: { type: 'dns', value: 'a.example.com' },
    wildcard: false,
    status: 'pending',
    expires: at(7 * 86400e3),
    createdAt: at(0),
    validatedAt: null,
    challenges: [
      { id: id('ch'), authzId: aid, type: 'http-01', token: id('tok'), status: 'pending', validated: null, error: null, validationRecords: null, requestedAt: null },
      { id: id('ch'), authzId: aid, type: 'dns-01', token: id('tok'), status: 'pending', validated: null, error: null, validationRecords: null, requestedAt: null },
    ],
    ...o,
  };
}

export function order(accountId: string, authzIds: string[], o: Partial<OrderRecord> = {}): OrderRecord {
  return {
    id: id('order'),
    accountId,
    status: 'pending',
    expires: at(7 * 86400e3),
    identifiers: [{ type: 'dns', value: 'a.example.com' }],
    notBefore: null,
    notAfter: null,
    error: null,
    authzIds,
    certificateId: null,
    createdAt: at(0),
    profile: null,
    replaces: null,
    ...o,
  };
}

function certificate(accountId: string, orderId: string, o: Partial<CertificateRecord> = {}): CertificateRecord {
  return {
    id: id('cert'),
    serial: id('serial'),
    accountId,
    orderId,
    status: 'pending',
    identifiers: [{ type: 'dns', value: 'a.example.com' }],
    notBefore: at(0),
    notAfter: at(90 * 86400e3),
    plan: { serial: 'x', spki: 'AAAA' },
    der: null,
    chainPem: null,
    issuedAt: null,
    revokedAt: null,
    revocationReason: null,
    createdAt: at(0),
    profile: null,
    replacesId: null,
    renewalWindow: null,
    ...o,
  };
}

function eabKey(o: Partial<EabKeyRecord> = {}): EabKeyRecord {
  return { kid: id('kid'), hmacKey: 'c2VjcmV0', maxUses: 1, uses: 0, accountIds: [], createdAt: at(0), expiresAt: null, comment: null, ...o };
}

/**
 * `standalone`: what the store does with TransactionOptions.standalone. 'statements': runs the
 * function outside a transaction (its writes stay when it throws later); 'transaction': runs it as
 * any transaction (they are rolled back).
 */
export function runStoreContract(name: string, open: () => Promise<Store>, opts: { standalone: 'statements' | 'transaction' }): void {
  describe(`Store contract: ${name}`, () => {
    let s: Store;
    before(async () => {
      s = await open();
    });
    after(async () => s.close());

    /** A stored account with one stored pending authorization. */
    async function accountWithAuthz(): Promise<{ a: AccountRecord; z: AuthzRecord }> {
      const a = account();
      await s.createAccount(a);
      const z = authz(a.id);
      await s.createAuthz(z);
      return { a, z };
    }

    test('not found is null, never an exception', async () => {
      assert.equal(await s.getAccount('nope'), null);
      assert.equal(await s.getAccountByThumbprint('nope'), null);
      assert.equal(await s.getOrder('nope'), null);
      assert.equal(await s.getAuthz('nope'), null);
      assert.equal(await s.getChallenge('nope'), null);
      assert.equal(await s.getCertificate('nope'), null);
      assert.equal(await s.getCertificateBySerial('nope'), null);
      assert.equal(await s.getEabKey('nope'), null);
    });

    test('records round-trip: JSON, dates and buffers', async () => {
      const a = account({ contact: ['mailto:x@example.com', 'mailto:y@example.com'] });
      await s.createAccount(a);
      assert.deepEqual(await s.getAccount(a.id), a);
      assert.deepEqual(await s.getAccountByThumbprint(a.thumbprint), a);
      const z = authz(a.id, { identifier: { type: 'ip', value: '2001:db8::1' } });
      await s.createAuthz(z);
      assert.deepEqual(await s.getAuthz(z.id), z);
      assert.deepEqual(await s.getChallenge(z.challenges[1]!.id), z.challenges[1]);
      const o = order(a.id, [z.id], { error: { type: 'urn:ietf:params:acme:error:dns', detail: 'x', status: 400 } });
      await s.createOrder(o);
      assert.deepEqual(await s.getOrder(o.id), o);
      const c = certificate(a.id, o.id, { status: 'issued', der: Buffer.from([0, 1, 2, 255]), chainPem: 'PEM', issuedAt: at(5) });
      await s.createCertificate(c);
      assert.deepEqual(await s.getCertificate(c.id), c);
      assert.deepEqual(await s.transaction((tx) => tx.getCertificate(c.id)), c);
      assert.equal(await s.transaction((tx) => tx.getCertificate('nope')), null);
      assert.deepEqual(await s.getCertificateBySerial(c.serial), c);
    });

    test('an authorization with its challenges and an order with its authorizations read back whole, in their order, in and out of transactions', async () => {
      const a = account();
      await s.createAccount(a);
      const zid = `${id('authz')}-b`;
      const full = authz(a.id, {
        id: zid,
        status: 'invalid',
        validatedAt: at(3),
        challenges: [
          {
            // Ids sort against position (z, y, x), so that no read gets the order right by accident.
            id: `${zid}-z`,
            authzId: zid,
            type: 'tls-alpn-01',
            token: id('tok'),
            status: 'invalid',
            validated: at(2 ** 40),
            error: { type: 'urn:ietf:params:acme:error:connection', detail: 'refused "quoted" \\ \u00e9', status: 400 },
            validationRecords: [{ hostname: 'a.example.com', addressesResolved: ['192.0.2.1', '2001:db8::1'], port: '443' }],
            requestedAt: at(1),
          },
          { id: `${zid}-y`, authzId: zid, type: 'http-01', token: id('tok'), status: 'pending', validated: null, error: null, validationRecords: null, requestedAt: null },
          { id: `${zid}-x`, authzId: zid, type: 'dns-01', token: id('tok'), status: 'pending', validated: null, error: null, validationRecords: null, requestedAt: null },
        ],
      });
      const none = authz(a.id, { id: `${zid}-a`, challenges: [] });
      const other = authz(a.id, { id: `${zid}-c` });
      for (const z of [full, none, other]) await s.createAuthz(z);
      // The first challenge rewritten after the others, through an indexed column (PostgreSQL then
      // stores the new version last, in the heap and in each index), so neither gives position order.
      assert.equal(await s.updateChallenge(full.challenges[0]!.id, { status: 'processing' }), true);
      assert.equal(await s.updateChallenge(full.challenges[0]!.id, { status: 'invalid' }), true);
      // Positions, not ids (c, b, a) nor the order of creation, give the order of an order's authorizations.
      const o = order(a.id, [other.id, full.id, none.id]);
      await s.createOrder(o);
      const empty = order(a.id, []);
      await s.createOrder(empty);
      const check = async (r: StoreTx, how: string) => {
        assert.deepEqual(await r.getAuthz(full.id), full, how);
        assert.deepEqual(await r.getAuthz(none.id), none, how);
        assert.deepEqual(await r.getOrder(o.id), o, how);
        assert.deepEqual(await r.getOrder(empty.id), empty, how);
        assert.deepEqual(await r.getChallenge(full.challenges[0]!.id), full.challenges[0], how);
      };
      await check(s, 'outside a transaction');
      await s.transaction((tx) => check(tx, 'in a transaction'));
      await s.transaction((tx) => check(tx, 'standalone'), { standalone: true });
    });

    test('a standalone transaction: its compare-and-sets take effect one by one; what a later error does to them is the store\'s', async () => {
      const { a, z } = await accountWithAuthz();
      const o = order(a.id, [z.id]);
      await s.createOrder(o);
      await assert.rejects(
        s.transaction(
          async (tx) => {
            assert.equal(await tx.updateOrder(o.id, { status: 'ready' }, ['pending']), true);
            assert.equal(await tx.updateOrder(o.id, { status: 'ready' }, ['pending']), false, 'the second compare-and-set sees the first');
            throw new Error('after the write');
          },
          { standalone: true },
        ),
        /after the write/,
      );
      const after = (await s.getOrder(o.id))!.status;
      assert.equal(after, opts.standalone === 'statements' ? 'ready' : 'pending');
      assert.equal(await s.transaction((tx) => tx.getOrder(o.id).then((r) => r!.status), { standalone: true }), after);
    });

    test('compare-and-set: the loser gets false and changes nothing', async () => {
      const a = account();
      await s.createAccount(a);
      const o = order(a.id, []);
      await s.createOrder(o);
      assert.equal(await s.updateOrder(o.id, { status: 'processing' }, ['ready']), false);
      assert.equal((await s.getOrder(o.id))!.status, 'pending');
      assert.equal(await s.updateOrder(o.id, { status: 'ready' }, ['pending']), true);
      const results = await Promise.all(Array.from({ length: 5 }, () => s.updateOrder(o.id, { status: 'processing' }, ['ready'])));
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal(await s.updateAccount(a.id, { status: 'deactivated' }, ['revoked']), false);
      assert.equal((await s.getAccount(a.id))!.status, 'valid');
      const z = authz(a.id);
      await s.createAuthz(z);
      assert.equal(await s.updateAuthz(z.id, { status: 'valid', validatedAt: at(10), expires: at(30 * 86400e3) }, ['pending']), true);
      assert.equal(await s.updateAuthz(z.id, { status: 'invalid' }, ['pending']), false);
      const back = await s.getAuthz(z.id);
      assert.equal(back!.status, 'valid');
      assert.deepEqual(back!.validatedAt, at(10));
      const ch = z.challenges[0]!;
      assert.equal(await s.updateChallenge(ch.id, { status: 'processing', requestedAt: at(1) }, ['pending']), true);
      assert.equal(await s.updateChallenge(ch.id, { status: 'processing' }, ['pending']), false);
    });

    test('of ten concurrent uses of one nonce, exactly one is the first; purged nonces are forgotten', async () => {
      const r = await Promise.all(Array.from({ length: 10 }, () => s.useNonce('n-race', at(1000))));
      assert.equal(r.filter(Boolean).length, 1);
      assert.equal(await s.useNonce('n-race', at(1000)), false, 'used once is used');
      assert.equal(await s.useNonce('n-other', at(5)), true);
      assert.ok((await s.purgeExpired(at(5))) >= 1, 'expired at or before now: purged');
      assert.equal(await s.useNonce('n-race', at(1000)), false, 'not expired: kept');
      assert.equal(await s.useNonce('n-other', at(5)), true, 'purged: forgotten (the minter refuses it by its expiry)');
    });

    test('a server secret is created once: concurrent and later callers all get the first value', async () => {
      const got = await Promise.all(Array.from({ length: 10 }, (_, i) => s.serverSecret('test-secret', () => Buffer.alloc(32, i + 1))));
      for (const g of got) assert.ok(g.equals(got[0]!));
      assert.ok((await s.serverSecret('test-secret', () => Buffer.alloc(32, 99))).equals(got[0]!));
      assert.ok(!(await s.serverSecret('other-secret', () => Buffer.alloc(32, 99))).equals(got[0]!));
    });

    test('a certificate serial and an order certificate are unique', async () => {
      const a = account();
      await s.createAccount(a);
      const o1 = order(a.id, []);
      const o2 = order(a.id, []);
      await s.createOrder(o1);
      await s.createOrder(o2);
      const c = certificate(a.id, o1.id);
      await s.createCertificate(c);
      await assert.rejects(s.createCertificate(certificate(a.id, o2.id, { serial: c.serial })));
      await assert.rejects(s.createCertificate(certificate(a.id, o1.id)));
    });

    test('of concurrent revocations of one certificate exactly one wins, and its reason stands', async () => {
      const a = account();
      await s.createAccount(a);
      const o = order(a.id, []);
      await s.createOrder(o);
      const c = certificate(a.id, o.id, { status: 'issued', revokedAt: null, revocationReason: null });
      await s.createCertificate(c);
      const results = await Promise.all([1, 4, 5, 9, 3].map((reason, i) => s.revokeCertificate(c.id, at(100 + i), reason)));
      assert.equal(results.filter(Boolean).length, 1);
      const won = [1, 4, 5, 9, 3][results.indexOf(true)];
      const stored = (await s.getCertificate(c.id))!;
      assert.equal(stored.revocationReason, won);
      assert.equal(await s.revokeCertificate(c.id, at(200), 0), false);
      assert.equal(await s.revokeCertificate('no-such-id', at(200), 0), false);
    });

    test('a transaction that throws leaves nothing behind; one that returns is visible after', async () => {
      const a = account();
      await assert.rejects(
        s.transaction(async (tx) => {
          await tx.createAccount(a);
          assert.ok(await tx.getAccount(a.id), 'visible inside the transaction');
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await s.getAccount(a.id), null);
      const b = account();
      const v = await s.transaction(async (tx) => {
        await tx.createAccount(b);
        return 42;
      });
      assert.equal(v, 42);
      assert.ok(await s.getAccount(b.id));
    });

    test("an account's orders are listed oldest first, page by page", async () => {
      const a = account();
      await s.createAccount(a);
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        const o = order(a.id, [], { createdAt: at(i % 3) }); // equal timestamps must not break paging
        await s.createOrder(o);
        ids.push(o.id);
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const p = await s.listOrders(a.id, cursor, 3);
        seen.push(...p.items);
        cursor = p.next;
        pages++;
      } while (cursor && pages < 10);
      assert.equal(pages, 3);
      assert.deepEqual([...seen].sort(), [...ids].sort());
      assert.equal(new Set(seen).size, 7);
      assert.deepEqual((await s.listOrders(a.id, 'garbage', 3)).items, []);
      assert.equal(await s.countOpenOrders(a.id, at(0)), 7);
      assert.equal(await s.countOpenOrders(a.id, at(8 * 86400e3)), 0, 'expired orders do not count');
      assert.equal(await s.countOpenOrders(a.id, at(7 * 86400e3)), 0, 'an order expiring at this instant does not count');
      assert.equal(await s.countOpenOrders(a.id, at(7 * 86400e3 - 1)), 7);
      // Only pending and ready orders are open; the same answers inside a transaction (SQLite runs
      // these statements on better-sqlite3 there, through kysely outside).
      await s.updateOrder(ids[0]!, { status: 'ready' });
      await s.updateOrder(ids[1]!, { status: 'valid' });
      await s.updateOrder(ids[2]!, { status: 'invalid' });
      assert.equal(await s.countOpenOrders(a.id, at(0)), 5);
      assert.equal(await s.countOpenOrders(account().id, at(0)), 0, 'another account has none');
      await s.transaction(async (tx) => {
        assert.equal(await tx.countOpenOrders(a.id, at(0)), 5);
        assert.equal(await tx.countOpenOrders(a.id, at(8 * 86400e3)), 0);
        assert.equal(await tx.countOpenOrders(a.id, at(7 * 86400e3)), 0);
      });
    });

    test('management views: accounts, orders and revocations newest first, page by page, equal times included; EAB keys disabled once', async () => {
      const a = account({ createdAt: at(50 * 86400e3) });
      await s.createAccount(a);
      const b = account({ createdAt: at(50 * 86400e3) }); // the same time: the id breaks the tie
      await s.createAccount(b);
      for (let i = 0; i < 5; i++) await s.createOrder(order(a.id, [], { createdAt: at(60 * 86400e3 + (i % 2)) }));
      const walk = async <T extends { id: string }>(fn: (c: string | null, l: number) => Promise<{ items: T[]; next: string | null }>, key: (x: T) => number) => {
        const seen: T[] = [];
        let cursor: string | null = null;
        for (let pages = 0; pages < 1000; pages++) {
          const p: { items: T[]; next: string | null } = await fn(cursor, 2);
          seen.push(...p.items);
          cursor = p.next;
          if (!cursor) break;
        }
        assert.equal(new Set(seen.map((x) => x.id)).size, seen.length, 'no item twice');
        for (let i = 1; i < seen.length; i++) assert.ok(key(seen[i - 1]!) >= key(seen[i]!), 'newest first');
        return seen;
      };
      const accounts = await walk((c, l) => s.listAccountsNewest(c, l), (x) => x.createdAt.getTime());
      assert.deepEqual(accounts.slice(0, 2).map((x) => x.id).sort(), [a.id, b.id].sort());
      const orders = await walk((c, l) => s.listOrdersNewest(c, l), (x) => x.createdAt.getTime());
      assert.equal(orders.filter((o) => o.accountId === a.id).length, 5);
      assert.ok(orders.slice(0, 5).every((o) => o.accountId === a.id));
      const revoked = await walk((c, l) => s.listRevocationsNewest(c, l), (x) => x.revokedAt!.getTime());
      assert.ok(revoked.every((c) => c.revokedAt !== null && c.der === null));
      assert.deepEqual(await s.listOrdersNewest('garbage', 3), { items: [], next: null });
      assert.deepEqual(await s.listAccountsNewest(Buffer.from('[1,2]').toString('base64url'), 3), { items: [], next: null });

      await s.createEabKey({ kid: 'kid-disable', hmacKey: 'k', maxUses: 1, uses: 0, accountIds: [], createdAt: at(0), expiresAt: null, comment: null });
      assert.equal(await s.disableEabKey('kid-disable', at(1000)), true);
      assert.equal(await s.disableEabKey('kid-disable', at(2000)), false, 'already ended');
      assert.equal(await s.disableEabKey('kid-unknown', at(2000)), false);
      assert.equal((await s.getEabKey('kid-disable'))!.expiresAt!.getTime(), at(1000).getTime());
      assert.equal(await s.useEabKey('kid-disable', a.id), false, 'a disabled key binds no account');
    });

    test('reusable authorizations: same account, identifier and wildcard flag, valid, recent, not expiring; newest first', async () => {
      const a = account();
      const other = account();
      await s.createAccount(a);
      await s.createAccount(other);
      const mk = async (o: Partial<AuthzRecord>, acct = a.id) => {
        const z = authz(acct, { identifier: { type: 'dns', value: 'reuse.example.com' }, status: 'valid', ...o });
        await s.createAuthz(z);
        return z;
      };
      const old = await mk({ validatedAt: at(100), expires: at(50 * 86400e3) });
      const newest = await mk({ validatedAt: at(200), expires: at(50 * 86400e3) });
      await mk({ validatedAt: at(300), expires: at(50 * 86400e3), wildcard: true });
      await mk({ validatedAt: at(400), expires: at(50 * 86400e3) }, other.id);
      await mk({ validatedAt: at(500), expires: at(50 * 86400e3), status: 'deactivated' });
      await mk({ validatedAt: at(600), expires: at(1000) });
      assert.equal((await s.findReusableAuthz(a.id, { type: 'dns', value: 'reuse.example.com' }, false, at(0), at(2000)))?.id, newest.id);
      assert.equal((await s.findReusableAuthz(a.id, { type: 'dns', value: 'reuse.example.com' }, false, at(150), at(2000)))?.id, newest.id);
      assert.equal(await s.findReusableAuthz(a.id, { type: 'dns', value: 'reuse.example.com' }, false, at(250), at(2000)), null);
      assert.equal(await s.findReusableAuthz(a.id, { type: 'dns', value: 'other.example.com' }, false, at(0), at(0)), null);
      void old;
      assert.equal(await s.hasValidAuthz(a.id, { type: 'dns', value: 'reuse.example.com' }, at(0)), true);
      assert.equal(await s.hasValidAuthz(a.id, { type: 'dns', value: 'reuse.example.com' }, at(60 * 86400e3)), false);
    });

    test('orders of an authorization, processing challenges and pending certificates are found', async () => {
      const { a, z } = await accountWithAuthz();
      const o1 = order(a.id, [z.id]);
      const o2 = order(a.id, [z.id]);
      await s.createOrder(o1);
      await s.createOrder(o2);
      assert.deepEqual((await s.ordersForAuthz(z.id)).map((o) => o.id).sort(), [o1.id, o2.id].sort());
      await s.transaction(async (tx) => {
        assert.deepEqual((await tx.ordersForAuthz(z.id)).sort((x, y) => x.id.localeCompare(y.id)), [o1, o2].sort((x, y) => x.id.localeCompare(y.id)));
        assert.deepEqual(await tx.ordersForAuthz('nope'), []);
      });
      await s.updateChallenge(z.challenges[1]!.id, { status: 'processing', requestedAt: at(5) }, ['pending']);
      assert.ok((await s.listProcessingChallenges(100)).some((c) => c.id === z.challenges[1]!.id));
      const c = certificate(a.id, o1.id);
      await s.createCertificate(c);
      assert.ok((await s.listPendingCertificates(100)).some((x) => x.id === c.id));
      assert.equal(await s.updateCertificate(c.id, { status: 'issued', der: Buffer.from('x'), chainPem: 'p', issuedAt: at(9) }, ['pending']), true);
      assert.ok(!(await s.listPendingCertificates(100)).some((x) => x.id === c.id));
      assert.ok((await s.countCertificates()) >= 1);
    });

    test("an account's authorizations move together, and only from the given statuses", async () => {
      const a = account();
      await s.createAccount(a);
      const p1 = authz(a.id);
      const v1 = authz(a.id, { status: 'valid', validatedAt: at(1) });
      const i1 = authz(a.id, { status: 'invalid' });
      for (const z of [p1, v1, i1]) await s.createAuthz(z);
      assert.equal(await s.updateAccountAuthzs(a.id, ['pending', 'valid'], 'deactivated'), 2);
      assert.equal((await s.getAuthz(p1.id))!.status, 'deactivated');
      assert.equal((await s.getAuthz(v1.id))!.status, 'deactivated');
      assert.equal((await s.getAuthz(i1.id))!.status, 'invalid');
    });

    test('EAB keys bind at most maxUses accounts, never after expiry, even concurrently', async () => {
      const k = eabKey();
      await s.createEabKey(k);
      assert.equal(await s.useEabKey(k.kid, 'acct-a'), true);
      assert.equal(await s.useEabKey(k.kid, 'acct-b'), false);
      const k3 = eabKey({ maxUses: 3 });
      await s.createEabKey(k3);
      const r = await Promise.all(Array.from({ length: 10 }, (_, i) => s.useEabKey(k3.kid, `acct-${i}`)));
      assert.equal(r.filter(Boolean).length, 3);
      const got = await s.getEabKey(k3.kid);
      assert.equal(got!.uses, 3);
      assert.equal(got!.accountIds.length, 3);
      const expired = eabKey({ expiresAt: new Date(Date.now() - 1000) });
      await s.createEabKey(expired);
      assert.equal(await s.useEabKey(expired.kid, 'acct-x'), false);
      assert.ok((await s.listEabKeys()).some((x) => x.kid === k.kid));
    });

    test('replacements, operator renewal windows and revoked entries', async () => {
      const a = account();
      await s.createAccount(a);
      const mk = async (o: Partial<CertificateRecord>) => {
        const ord = order(a.id, [], { profile: 'shortlived', replaces: 'AAA.BBB' });
        await s.createOrder(ord);
        assert.equal((await s.getOrder(ord.id))!.replaces, 'AAA.BBB');
        assert.equal((await s.getOrder(ord.id))!.profile, 'shortlived');
        const c = certificate(a.id, ord.id, { status: 'issued', issuedAt: at(0), ...o });
        await s.createCertificate(c);
        return c;
      };
      const old = await mk({ issuedAt: at(0) });
      assert.equal(await s.getCertificateReplacing(old.id), null);
      const next = await mk({ replacesId: old.id, issuedAt: at(5000), profile: 'mtls' });
      assert.equal((await s.getCertificateReplacing(old.id))!.id, next.id);
      // The database itself refuses a second replacement of one certificate (replicas).
      await assert.rejects(mk({ replacesId: old.id }));
      assert.equal((await s.getCertificateReplacing(old.id))!.id, next.id);
      assert.equal((await s.getCertificate(next.id))!.profile, 'mtls');
      const expired = await mk({ notAfter: at(1000) });
      const revoked = await mk({ revokedAt: at(100), revocationReason: 1 });

      const w = { start: at(10_000), end: at(20_000) };
      const now = at(2000);
      // By serial: only live, unrevoked, issued certificates change.
      assert.equal(await s.setRenewalWindow({ serials: [old.serial, expired.serial, revoked.serial] }, w, now), 1);
      assert.deepEqual((await s.getCertificate(old.id))!.renewalWindow, w);
      assert.equal((await s.getCertificate(expired.id))!.renewalWindow, null);
      assert.equal(await s.setRenewalWindow({ issuedBefore: at(1) }, w, now), 1);
      // Other tests' certificates share this store: "all" changes at least these two.
      assert.ok((await s.setRenewalWindow({ all: true }, w, now)) >= 2);
      assert.deepEqual((await s.getCertificate(next.id))!.renewalWindow, w);

      const entries = await s.listRevoked(now, 100);
      assert.ok(entries.some((e) => e.serial === revoked.serial && e.reason === 1 && e.revokedAt.getTime() === at(100).getTime()));
      assert.ok(!entries.some((e) => e.serial === old.serial));
    });

    test('issued and revoked certificates are listed in the order of their time, after a cursor', async () => {
      // Far in the future of the other tests' certificates, which share this store.
      const far = (ms: number) => at(1e12 + ms);
      const a = account();
      await s.createAccount(a);
      const mk = async (o: Partial<CertificateRecord>) => {
        const ord = order(a.id, []);
        await s.createOrder(ord);
        const c = certificate(a.id, ord.id, { status: 'issued', der: Buffer.from(`der of ${ord.id}`), ...o });
        await s.createCertificate(c);
        return c;
      };
      const first = await mk({ issuedAt: far(10), profile: 'p' });
      const revokedLater = await mk({ issuedAt: far(20), revokedAt: far(50), revocationReason: 4 });
      const sameTimeA = await mk({ issuedAt: far(30) });
      const sameTimeB = await mk({ issuedAt: far(30) });
      const pendingOrd = order(a.id, []);
      await s.createOrder(pendingOrd);
      await s.createCertificate(certificate(a.id, pendingOrd.id, { status: 'pending', issuedAt: null }));
      const start = { at: far(0), id: '' };
      const issued = await s.listCertificateChanges('issued', start, 100);
      const tied = [sameTimeA.id, sameTimeB.id].sort();
      assert.deepEqual(issued.map((c) => c.id), [first.id, revokedLater.id, ...tied], 'by issuance time, then id; pending left out');
      assert.deepEqual(issued.map((c) => c.at.getTime()), [far(10), far(20), far(30), far(30)].map((d) => d.getTime()));
      assert.deepEqual(issued[0], { id: first.id, der: first.der, profile: 'p', revokedAt: null, revocationReason: null, at: far(10) });
      // Paging: after the first of two tied rows comes the second.
      assert.deepEqual((await s.listCertificateChanges('issued', { at: far(30), id: tied[0]! }, 2)).map((c) => c.id), [tied[1]]);
      assert.deepEqual(await s.listCertificateChanges('issued', { at: far(30), id: tied[1]! }, 10), []);
      const revoked = await s.listCertificateChanges('revoked', start, 100);
      assert.deepEqual(revoked.map((c) => [c.id, c.at.getTime(), c.revocationReason]), [[revokedLater.id, far(50).getTime(), 4]]);
      assert.equal((await s.listCertificateChanges('issued', null, 1)).length, 1);
    });

    test('CRLs are stored with compare-and-set on their number', async () => {
      const issuer = id('issuer');
      assert.equal(await s.getCrl(issuer), null);
      const crl = { issuer, number: 1, thisUpdate: at(0), nextUpdate: at(86_400_000), der: Buffer.from([0x30, 0x00]) };
      assert.equal(await s.putCrl(crl, null), true);
      assert.equal(await s.putCrl({ ...crl, number: 9 }, null), false);
      assert.equal(await s.putCrl({ ...crl, number: 2 }, 5), false);
      assert.equal(await s.putCrl({ ...crl, number: 2, der: Buffer.from([0x30, 0x01]) }, 1), true);
      const got = await s.getCrl(issuer);
      assert.equal(got!.number, 2);
      assert.deepEqual(got!.der, Buffer.from([0x30, 0x01]));
    });
  });
}
