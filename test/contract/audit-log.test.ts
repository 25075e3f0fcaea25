/**
 * The audit log (src/web/audit.ts) and API tokens (src/web/tokens.ts) on SQLite and PostgreSQL:
 * the chain holds with several writers appending at once (PostgreSQL: two connection pools, as two
 * replicas), every entry's hash is recomputable, and tokens authenticate only while valid.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openInventory, type InventoryLocation } from '../../src/inventory/inventory.js';
import { AuditLog, entryHash, GENESIS_HASH } from '../../src/web/audit.js';
import { TokenStore } from '../../src/web/tokens.js';
import { pgSkip } from '../helpers/postgres.js';
import { inventoryLocations } from '../helpers/inventory-locations.js';

const { sqlite, postgres } = inventoryLocations('anvil-audit-');
const KEY = Buffer.alloc(32, 7);
const actor = (name: string) => ({ kind: 'token' as const, name, role: 'admin' as const });

function contract(name: string, where: () => Promise<InventoryLocation>, skip: string | false, concurrentWriters: boolean): void {
  describe(`audit log and tokens: ${name}`, { skip }, () => {
    test('entries chain from the genesis hash; each hash is recomputable; list is newest first', async () => {
      const s = await openInventory(await where());
      try {
        const log = new AuditLog(s.db, KEY);
        assert.deepEqual(await log.verify(), { ok: true, entries: 0, head: null, problems: [] });
        const e1 = await log.append(actor('a'), 'token.create', 'token:x', { role: 'viewer' }, new Date('2026-11-25T10:00:00Z'));
        const e2 = await log.append(actor('b'), 'certificate.revoke', 'serial:ab', { reason: 1, note: 'quote " and unicode é' }, new Date('2026-11-25T10:00:01Z'));
        assert.equal(e1.seq, 1);
        assert.equal(e1.prevHash, GENESIS_HASH);
        assert.equal(e2.prevHash, e1.hash);
        assert.equal(e2.hash, entryHash(KEY, { seq: 2, at: Date.parse('2026-11-25T10:00:01Z'), actor: 'token:b', action: 'certificate.revoke', target: 'serial:ab', detail: JSON.stringify(e2.detail), prevHash: e1.hash }));
        const list = await log.list();
        assert.deepEqual(list.map((e) => e.seq), [2, 1]);
        assert.deepEqual(list[0]!.detail, { reason: 1, note: 'quote " and unicode é' });
        const v = await log.verify({ expectHead: { seq: 1, hash: e1.hash } });
        assert.deepEqual(v, { ok: true, entries: 2, head: { seq: 2, hash: e2.hash }, problems: [] });
        const wrongHead = await log.verify({ expectHead: { seq: 1, hash: 'f'.repeat(64) } });
        assert.equal(wrongHead.ok, false);
      } finally {
        await s.close();
      }
    });

    test(
      'two writers appending at once (two connection pools) leave one unbroken chain with every entry',
      { skip: concurrentWriters ? false : 'SQLite: one writer per file; two connections in one process would block each other (the other database runs it)' },
      async () => {
        const loc = await where();
        const s1 = await openInventory(loc);
        const s2 = await openInventory(loc);
        try {
          const l1 = new AuditLog(s1.db, KEY);
          const l2 = new AuditLog(s2.db, KEY);
          const now = new Date();
          await Promise.all([
            ...Array.from({ length: 15 }, (_, i) => l1.append(actor('one'), 'test.append', `n:${i}`, {}, now)),
            ...Array.from({ length: 15 }, (_, i) => l2.append(actor('two'), 'test.append', `n:${i}`, {}, now)),
          ]);
          const v = await l1.verify();
          assert.equal(v.ok, true, JSON.stringify(v.problems));
          assert.equal(v.entries, 30);
          assert.equal(v.head!.seq, 30);
        } finally {
          await s1.close();
          await s2.close();
        }
      },
    );

    test('tokens: a name once, the secret only as a hash, refused when revoked or expired', async () => {
      const s = await openInventory(await where());
      try {
        const tokens = new TokenStore(s.db);
        const now = new Date('2026-11-25T10:00:00Z');
        const t = await tokens.create({ name: 'ops', role: 'operator', createdBy: 'test', expiresAt: new Date(now.getTime() + 3600e3) }, now);
        assert.match(t.token, /^anvil_[A-Za-z0-9_-]{43}$/);
        await assert.rejects(tokens.create({ name: 'ops', role: 'viewer', createdBy: 'test' }, now), /exists already/);
        await assert.rejects(tokens.create({ name: '', role: 'viewer', createdBy: 'test' }, now), /token name/);
        await assert.rejects(tokens.create({ name: 'x', role: 'root' as 'admin', createdBy: 'test' }, now), /role must be/);
        assert.equal((await tokens.authenticate(t.token, now))!.role, 'operator');
        assert.equal(await tokens.authenticate(`${t.token.slice(0, -1)}${t.token.endsWith('A') ? 'B' : 'A'}`, now), null);
        assert.equal(await tokens.authenticate(t.token, new Date(now.getTime() + 3600e3)), null, 'expired at its expiry');
        assert.equal((await tokens.list())[0]!.lastUsedAt!.getTime(), now.getTime());
        await tokens.revoke('ops', now);
        assert.equal(await tokens.authenticate(t.token, now), null);
        await assert.rejects(tokens.revoke('nobody', now), /no token/);
      } finally {
        await s.close();
      }
    });
  });
}

contract('SQLite', sqlite, false, false);
contract('PostgreSQL', postgres, pgSkip, true);
