/**
 * The inventory store's contract (src/inventory/store.ts), on SQLite and on PostgreSQL (a fresh
 * database per case; skipped loudly when PostgreSQL is not reachable, failing under CI=true).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { describeCertificate } from '../../src/inventory/certificate.js';
import { assess, openInventory, recordEndpointScan, recordFileScan, type InventoryLocation } from '../../src/inventory/inventory.js';
import type { InventoryStore } from '../../src/inventory/store.js';
import { testCa, testLeaf } from '../../src/inventory/test-certs.js';
import { pgSkip } from '../helpers/postgres.js';
import { inventoryLocations } from '../helpers/inventory-locations.js';

const DAY = 86_400_000;
const { sqlite, postgres } = inventoryLocations('anvil-inv-');

function contract(name: string, where: () => Promise<InventoryLocation>, skip: string | false = false): void {
  describe(`inventory store: ${name}`, { skip }, () => {
    async function withStore(fn: (s: InventoryStore) => Promise<void>): Promise<void> {
      const s = await openInventory(await where());
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    }
    const t0 = new Date('2026-11-01T00:00:00Z');
    const later = (days: number) => new Date(t0.getTime() + days * DAY);

    test('a certificate is recorded once, with the facts read from it, and one event', () =>
      withStore(async (s) => {
        const leaf = await testLeaf({ names: ['a.test', 'b.test'] });
        assert.deepEqual(await s.recordCertificate(leaf.der, 'import', t0), { fingerprint: describeCertificate(leaf.der).fingerprint, isNew: true });
        const again = await s.recordCertificate(leaf.der, 'file', later(1));
        assert.equal(again.isNew, false);
        const c = await s.getCertificate(again.fingerprint);
        assert.ok(c);
        const { der, source, profile, revoked, firstSeen, lastSeen, ...facts } = c;
        assert.deepEqual(facts, describeCertificate(leaf.der));
        assert.ok(der.equals(leaf.der));
        assert.equal(source, 'import');
        assert.equal(profile, null);
        assert.equal(revoked, null);
        assert.equal(firstSeen.getTime(), t0.getTime());
        assert.equal(lastSeen.getTime(), later(1).getTime());
        assert.deepEqual((await s.listEvents({ fingerprint: c.fingerprint })).map((e) => e.type), ['discovered']);
        assert.equal(await s.countCertificates(), 1);
      }));

    test('a certificate from the CA is issued; a later one for the same names is a renewal of it', () =>
      withStore(async (s) => {
        const old = await testLeaf({ names: ['x.test', 'y.test'], notBefore: t0 });
        const renewed = await testLeaf({ names: ['y.test', 'x.test'], notBefore: later(60) });
        const other = await testLeaf({ names: ['x.test'], notBefore: later(61) });
        const a = await s.recordCertificate(old.der, 'ca', t0);
        const b = await s.recordCertificate(renewed.der, 'ca', later(60));
        const c = await s.recordCertificate(other.der, 'ca', later(61));
        assert.deepEqual((await s.listEvents({ fingerprint: a.fingerprint })).map((e) => e.type), ['issued']);
        const [ev] = await s.listEvents({ fingerprint: b.fingerprint });
        assert.equal(ev?.type, 'renewed');
        assert.equal(ev?.detail.previous, a.fingerprint);
        assert.deepEqual((await s.listEvents({ fingerprint: c.fingerprint })).map((e) => e.type), ['issued']);
        const r = await s.renewals();
        assert.equal(r.get(a.fingerprint)?.fingerprint, b.fingerprint);
        assert.equal(r.has(b.fingerprint), false);
        assert.equal(r.has(c.fingerprint), false);
      }));

    test('a batch: renewals within it and against what is recorded; known certificates only gain their revocation', () =>
      withStore(async (s) => {
        const a1 = await testLeaf({ names: ['a.test'], notBefore: t0 });
        const a2 = await testLeaf({ names: ['a.test'], notBefore: later(30) });
        const b1 = await testLeaf({ names: ['b.test'], notBefore: t0 });
        const b2 = await testLeaf({ names: ['b.test'], notBefore: later(30) });
        const fp = (x: { der: Buffer }) => describeCertificate(x.der).fingerprint;
        await s.recordCertificate(b1.der, 'ca', t0);
        const r = await s.recordCertificates(
          [{ der: a2.der }, { der: a1.der, profile: 'p' }, { der: b2.der }, { der: b1.der, revoked: { at: later(1), reason: 5 } }, { der: Buffer.from('junk') }],
          'ca',
          later(31),
        );
        assert.deepEqual(r, { recorded: 4, isNew: 3, failed: 1 });
        const ev = async (x: { der: Buffer }) => (await s.listEvents({ fingerprint: fp(x) })).map((e) => `${e.type}${e.detail.previous ? `<${String(e.detail.previous).slice(0, 6)}` : ''}`);
        assert.deepEqual(await ev(a1), ['issued']);
        assert.deepEqual(await ev(a2), [`renewed<${fp(a1).slice(0, 6)}`]);
        assert.deepEqual(await ev(b2), [`renewed<${fp(b1).slice(0, 6)}`]);
        assert.deepEqual(await ev(b1), ['issued', 'revoked']);
        assert.equal((await s.getCertificate(fp(a1)))?.profile, 'p');
        assert.deepEqual((await s.getCertificate(fp(b1)))?.revoked, { at: later(1), reason: 5 });
        const c = await s.getCertificate(fp(a2));
        assert.ok(c?.der.equals(a2.der));
        assert.equal(c?.firstSeen.getTime(), later(31).getTime());
        // Again: nothing new, no new events.
        assert.deepEqual(await s.recordCertificates([{ der: a1.der }, { der: a2.der }], 'ca', later(32)), { recorded: 2, isNew: 0, failed: 0 });
        assert.equal((await s.listEvents()).length, 5);
      }));

    // SQLite: two connections in one process would wait for each other's lock on one event loop
    // (better-sqlite3 waits synchronously); its writers are separate threads or processes.
    const oneProcessWriters = name === 'SQLite' ? 'SQLite writers are separate threads or processes' : false;
    test('two writers recording the same certificates at once: no error, each recorded once with one event', { skip: oneProcessWriters }, async () => {
      const loc = await where();
      const [a, b] = [await openInventory(loc), await openInventory(loc)];
      try {
        const items = (await Promise.all([1, 2, 3].map((i) => testLeaf({ names: [`w${i}.test`] })))).map((l) => ({ der: l.der }));
        const [ra, rb] = await Promise.all([a.recordCertificates(items, 'ca', t0), b.recordCertificates(items, 'ca', t0)]);
        assert.equal(ra.isNew + rb.isNew, 3);
        assert.equal(await a.countCertificates(), 3);
        assert.equal((await a.listEvents()).length, 3);
        // One at a time through the single-record path too.
        const one = await testLeaf();
        const [x, y] = await Promise.all([a.recordCertificate(one.der, 'import', t0), b.recordCertificate(one.der, 'import', t0)]);
        assert.equal(Number(x.isNew) + Number(y.isNew), 1);
        assert.equal((await a.listEvents()).length, 4);
      } finally {
        await a.close();
        await b.close();
      }
    });

    test('a place: deployed, seen again quietly, replaced, missing once, back', () =>
      withStore(async (s) => {
        const one = await testLeaf();
        const two = await testLeaf();
        const place = { kind: 'endpoint' as const, location: '127.0.0.1:8443', sni: 'www.example.test' };
        const id = await s.recordSighting(place, { found: true, der: one.der, chainError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'network', t0);
        assert.equal(await s.recordSighting(place, { found: true, der: one.der }, 'network', later(1)), id);
        let [inst] = await s.listInstallations();
        assert.equal(inst?.status, 'present');
        assert.equal(inst?.chainError, null, 'the last look decides');
        assert.equal(inst?.lastSeen.getTime(), later(1).getTime());
        await s.recordSighting(place, { found: true, der: two.der }, 'network', later(2));
        await s.recordSighting(place, { found: false, error: 'refused' }, 'network', later(3));
        await s.recordSighting(place, { found: false, error: 'timeout' }, 'network', later(4));
        [inst] = await s.listInstallations();
        assert.equal(inst?.status, 'missing');
        assert.equal(inst?.error, 'timeout');
        assert.equal(inst?.fingerprint, describeCertificate(two.der).fingerprint, 'what was there is remembered');
        await s.recordSighting(place, { found: true, der: two.der }, 'network', later(5));
        const types = (await s.listEvents({ installationId: id })).map((e) => `${e.type}:${e.fingerprint?.slice(0, 4)}`);
        const f1 = describeCertificate(one.der).fingerprint.slice(0, 4);
        const f2 = describeCertificate(two.der).fingerprint.slice(0, 4);
        assert.deepEqual(types, [`deployed:${f1}`, `replaced:${f1}`, `deployed:${f2}`, `missing:${f2}`, `back:${f2}`]);
        assert.deepEqual((await s.listInstallations(describeCertificate(one.der).fingerprint)).length, 0);
      }));

    test('a failed look at a place never seen records nothing', () =>
      withStore(async (s) => {
        await s.recordSighting({ kind: 'endpoint', location: '127.0.0.9:443' }, { found: false, error: 'refused' }, 'network', t0);
        assert.deepEqual(await s.listInstallations(), []);
        assert.deepEqual(await s.listEvents(), []);
      }));

    test('bytes that are not a certificate are refused and leave nothing behind', () =>
      withStore(async (s) => {
        await assert.rejects(s.recordSighting({ kind: 'file', location: '/x.pem' }, { found: true, der: Buffer.from('30030201ff', 'hex') }, 'file', t0));
        await assert.rejects(s.recordCertificate(Buffer.from('not a certificate'), 'import', t0));
        assert.equal(await s.countCertificates(), 0);
        assert.deepEqual(await s.listInstallations(), []);
        assert.deepEqual(await s.listEvents(), []);
      }));

    test('a rescan marks what it did not see, within its scope only', () =>
      withStore(async (s) => {
        const c = await testLeaf();
        const a = await s.recordSighting({ kind: 'file', location: '/srv/a/x.pem' }, { found: true, der: c.der }, 'file', t0);
        await s.recordSighting({ kind: 'file', location: '/srv/a/y.pem' }, { found: true, der: c.der }, 'file', t0);
        await s.recordSighting({ kind: 'file', location: '/srv/ab/z.pem' }, { found: true, der: c.der }, 'file', t0);
        await s.recordSighting({ kind: 'endpoint', location: '/srv/a/not-a-file' }, { found: true, der: c.der }, 'network', t0);
        assert.equal(await s.markUnseen('file', { under: ['/srv/a'] }, new Set([a]), later(1)), 1);
        const byLoc = Object.fromEntries((await s.listInstallations()).map((i) => [`${i.kind}:${i.location}`, i.status]));
        assert.deepEqual(byLoc, { 'endpoint:/srv/a/not-a-file': 'present', 'file:/srv/a/x.pem': 'present', 'file:/srv/a/y.pem': 'missing', 'file:/srv/ab/z.pem': 'present' });
        assert.equal(await s.markUnseen('file', { under: ['/srv/a'] }, new Set([a]), later(2)), 0, 'already missing');
        // A directory that could not be read this time: what was under it is not known to be gone.
        assert.equal(await s.markUnseen('file', { under: ['/srv'], exceptUnder: ['/srv/ab'] }, new Set([a]), later(3)), 0);
        assert.equal(await s.markUnseen('file', { under: ['/srv'] }, new Set([a]), later(4)), 1);
      }));

    test('revocation is recorded once; fingerprints are found by prefix', () =>
      withStore(async (s) => {
        const c = await testLeaf();
        const { fingerprint } = await s.recordCertificate(c.der, 'ca', t0);
        await s.recordCertificate(c.der, 'ca', later(1), { revoked: { at: later(1), reason: 4 } });
        await s.recordCertificate(c.der, 'ca', later(2), { revoked: { at: later(1), reason: 4 } });
        assert.deepEqual((await s.getCertificate(fingerprint))?.revoked, { at: later(1), reason: 4 });
        assert.deepEqual((await s.listEvents({ fingerprint })).map((e) => e.type), ['issued', 'revoked']);
        assert.deepEqual(await s.findByPrefix(fingerprint.slice(0, 6)), [fingerprint]);
        assert.deepEqual(await s.findByPrefix('zz'), []);
        assert.deepEqual(await s.findByPrefix("' or 1=1 --"), []);
      }));

    test('a revocation check is recorded: good, undetermined, then revoked once with its source and URL', () =>
      withStore(async (s) => {
        const c = await testLeaf();
        const { fingerprint } = await s.recordCertificate(c.der, 'file', t0);
        assert.equal((await s.getCertificate(fingerprint))?.revocationCheck, undefined, 'never looked');
        assert.deepEqual(await s.recordRevocationCheck(fingerprint, later(1), { source: 'ocsp', error: null }), { outcome: 'unchanged', error: null });
        assert.deepEqual((await s.getCertificate(fingerprint))?.revocationCheck, { checkedAt: later(1), source: 'ocsp', error: null });
        await s.recordRevocationCheck(fingerprint, later(2), { source: null, error: 'ocsp http://o.test: timeout: timed out' });
        assert.deepEqual((await s.getCertificate(fingerprint))?.revocationCheck, { checkedAt: later(2), source: null, error: 'ocsp http://o.test: timeout: timed out' });
        const revoked = { source: 'crl' as const, error: null, revoked: { at: later(1), reason: 1, url: 'http://c.test/crl' } };
        assert.equal((await s.recordRevocationCheck(fingerprint, later(3), revoked)).outcome, 'revoked');
        assert.equal((await s.recordRevocationCheck(fingerprint, later(4), revoked)).outcome, 'unchanged', 'already revoked');
        const got = await s.getCertificate(fingerprint);
        assert.deepEqual(got?.revoked, { at: later(1), reason: 1 });
        assert.deepEqual(got?.revocationCheck, { checkedAt: later(4), source: 'crl', error: null });
        const events = await s.listEvents({ fingerprint, type: 'revoked' });
        assert.deepEqual(events.map((e) => e.detail), [{ reason: 1, source: 'crl', url: 'http://c.test/crl' }]);
      }));

    test('a hold (reason 6) that a look found is lifted by a later good answer; any other revocation stands', () =>
      withStore(async (s) => {
        const hold = (at: Date) => ({ source: 'ocsp' as const, error: null, url: 'http://o.test', revoked: { at, reason: 6, url: 'http://o.test' } });
        const good = { source: 'crl' as const, error: null, url: 'http://c.test/crl' };
        const { fingerprint: held } = await s.recordCertificate((await testLeaf()).der, 'file', t0);
        assert.equal((await s.recordRevocationCheck(held, later(1), hold(later(1)))).outcome, 'revoked');
        assert.deepEqual((await s.getCertificate(held))?.revoked, { at: later(1), reason: 6 });
        // Still on hold, then undetermined: the hold and the source that found it stay.
        assert.equal((await s.recordRevocationCheck(held, later(2), hold(later(1)))).outcome, 'unchanged');
        assert.equal((await s.recordRevocationCheck(held, later(3), { source: null, error: 'crl http://c.test/crl: timeout: timed out' })).outcome, 'unchanged');
        assert.deepEqual((await s.getCertificate(held))?.revocationCheck, { checkedAt: later(3), source: 'ocsp', error: 'crl http://c.test/crl: timeout: timed out' });
        assert.deepEqual(await s.recordRevocationCheck(held, later(4), good), { outcome: 'released', error: null });
        const released = await s.getCertificate(held);
        assert.equal(released?.revoked, null);
        assert.deepEqual(released?.revocationCheck, { checkedAt: later(4), source: 'crl', error: null });
        assert.deepEqual((await s.listEvents({ fingerprint: held })).map((e) => e.type), ['discovered', 'revoked', 'unrevoked']);
        assert.deepEqual((await s.listEvents({ fingerprint: held, type: 'unrevoked' }))[0]?.detail, { reason: 6, revokedAt: later(1).toISOString(), source: 'crl', url: 'http://c.test/crl' });

        // On hold, then revoked for good (keyCompromise): that revocation replaces the hold, and stands.
        const { fingerprint: final } = await s.recordCertificate((await testLeaf()).der, 'file', t0);
        await s.recordRevocationCheck(final, later(1), hold(later(1)));
        const compromised = { source: 'crl' as const, error: null, url: 'http://c.test/crl', revoked: { at: later(2), reason: 1, url: 'http://c.test/crl' } };
        assert.equal((await s.recordRevocationCheck(final, later(2), compromised)).outcome, 'revoked');
        assert.deepEqual((await s.getCertificate(final))?.revoked, { at: later(2), reason: 1 });
        assert.deepEqual((await s.listEvents({ fingerprint: final, type: 'revoked' })).map((e) => e.detail.reason), [6, 1]);
        const contradicted = await s.recordRevocationCheck(final, later(3), good);
        assert.equal(contradicted.outcome, 'inconsistent');
        assert.match(contradicted.error ?? '', /^crl http:\/\/c\.test\/crl: inconsistent: answered good, but the certificate is recorded revoked .* \(reason 1, found by CRL\); the revocation stands/);
        const stands = await s.getCertificate(final);
        assert.deepEqual(stands?.revoked, { at: later(2), reason: 1 });
        assert.deepEqual(stands?.revocationCheck, { checkedAt: later(3), source: 'crl', error: contradicted.error });

        // A hold the CA's database recorded is the CA's to lift: a look never clears it.
        const { fingerprint: caHold } = await s.recordCertificate((await testLeaf()).der, 'ca', t0, { revoked: { at: later(1), reason: 6 } });
        assert.equal((await s.recordRevocationCheck(caHold, later(2), good)).outcome, 'inconsistent');
        assert.deepEqual((await s.getCertificate(caHold))?.revoked, { at: later(1), reason: 6 });
        assert.equal((await s.getCertificate(caHold))?.revocationCheck?.source ?? null, null, 'the look is not credited with the revocation');

        // A hold a look found, then the CA's sync revokes it: the CA's record replaces the hold, and a look no longer lifts it.
        const leaf = await testLeaf();
        const { fingerprint: synced } = await s.recordCertificate(leaf.der, 'file', t0);
        await s.recordRevocationCheck(synced, later(1), hold(later(1)));
        await s.recordCertificates([{ der: leaf.der, revoked: { at: later(2), reason: 4 } }], 'ca', later(2));
        assert.deepEqual((await s.getCertificate(synced))?.revoked, { at: later(2), reason: 4 });
        assert.equal((await s.recordRevocationCheck(synced, later(3), good)).outcome, 'inconsistent');
        assert.deepEqual((await s.getCertificate(synced))?.revoked, { at: later(2), reason: 4 });
      }));

    test('scans recorded and assessed: a broken chain, a stale certificate after its renewal, a file gone', () =>
      withStore(async (s) => {
        const ca = await testCa();
        const now = new Date();
        const old = await testLeaf({ ca, names: ['app.test'], notBefore: new Date(now.getTime() - 40 * DAY), notAfter: new Date(now.getTime() + 50 * DAY) });
        const renewed = await testLeaf({ ca, names: ['app.test'], notBefore: new Date(now.getTime() - 3 * DAY) });
        const sum = await recordEndpointScan(
          s,
          [
            { target: { host: '127.0.0.1', port: 8443, sni: 'app.test' }, chain: [old.der], authorizationError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
            { target: { host: '::1', port: 443 }, chain: [], error: { code: 'refused', message: 'connect ECONNREFUSED' } },
          ],
          now,
        );
        assert.deepEqual(sum, { places: 1, certificates: 1, newCertificates: 1, failed: 1, missing: 0 });
        const files = await recordFileScan(s, [{ path: '/etc/app/fullchain.pem', certificates: [renewed.der, Buffer.from(ca.cert.rawData)] }], ['/etc/app'], now);
        assert.deepEqual(files, { places: 2, certificates: 2, newCertificates: 2, failed: 0, missing: 0 });
        const locations = (await s.listInstallations()).map((i) => i.location).sort();
        assert.deepEqual(locations, ['/etc/app/fullchain.pem', '/etc/app/fullchain.pem:2', '127.0.0.1:8443']);
        const { certificates, estate } = await assess(s, now);
        const oldOne = certificates.find((c) => c.certificate.fingerprint === describeCertificate(old.der).fingerprint)!;
        assert.deepEqual(oldOne.health.findings.map((f) => f.check).sort(), ['chain-invalid', 'stale-after-renewal']);
        assert.equal(oldOne.health.level, 'critical');
        assert.equal(estate.level, 'critical');
        assert.equal(estate.certificates, 3);
        // The file loses its CA certificate on the next scan: that place is missing.
        const again = await recordFileScan(s, [{ path: '/etc/app/fullchain.pem', certificates: [renewed.der] }], ['/etc/app'], new Date(now.getTime() + 1000));
        assert.equal(again.missing, 1);
      }));
  });
}

contract('SQLite', sqlite);
if (pgSkip) console.error(`\n!!! ${pgSkip}: PostgreSQL inventory store tests SKIPPED\n`);
contract('PostgreSQL', postgres, pgSkip);

describe('syncFromCa: the inventory follows the CA database', () => {
  test('in batches, from a saved cursor, re-reading only a short window; revocations later; unreadable DER counted', async () => {
    const { openStore } = await import('../../src/storage/index.js');
    const { syncFromCa, CA_REREAD_MS } = await import('../../src/inventory/sources.js');
    const { account, order } = await import('./store-contract.js');
    // A temporary directory of its own (removed at the end) for the CA's database beside the inventory.
    const d = path.dirname(((await sqlite()) as { path: string }).path);
    const ca = await openStore({ type: 'sqlite', path: path.join(d, 'anvil.db') });
    const inv = await openInventory({ type: 'sqlite', path: path.join(d, 'inventory.db') });
    try {
      const acct = account();
      await ca.createAccount(acct);
      const base = Date.now() - 3_600_000;
      let n = 0;
      const issue = async (der: Buffer, issuedAt: number) => {
        const ord = order(acct.id, []);
        await ca.createOrder(ord);
        const id = `c${String(++n).padStart(4, '0')}`;
        await ca.createCertificate({
          id, serial: `s${n}`, accountId: acct.id, orderId: ord.id, status: 'issued', identifiers: [], notBefore: new Date(base), notAfter: new Date(base + 90 * DAY),
          plan: {}, der, chainPem: null, issuedAt: new Date(issuedAt), revokedAt: null, revocationReason: null, createdAt: new Date(issuedAt), profile: 'tlsserver', replacesId: null, renewalWindow: null,
        });
        return id;
      };
      const leaves = await Promise.all(Array.from({ length: 7 }, (_, i) => testLeaf({ names: [`n${i}.test`] })));
      const ids: string[] = [];
      // 10 s apart: the re-read window (30 s) holds only the last few.
      for (const [i, l] of leaves.entries()) ids.push(await issue(l.der, base + i * 10_000));
      await issue(Buffer.from('not a certificate'), base + 70_000);

      const first = await syncFromCa(inv, ca, new Date(), { batch: 3 });
      assert.deepEqual(first, { read: 8, added: 7, failed: 1, more: false });
      assert.equal(await inv.countCertificates(), 7);
      assert.equal((await inv.getCertificate(describeCertificate(leaves[0]!.der).fingerprint))?.profile, 'tlsserver');
      assert.deepEqual(await inv.getCursor('ca'), { issued: { at: base + 70_000, id: 'c0008' } });

      // Nothing new: only the re-read window (the last 30 s of changes) is read again.
      const again = await syncFromCa(inv, ca, new Date(), { batch: 3 });
      assert.equal(again.added, 0);
      assert.equal(CA_REREAD_MS, 30_000);
      assert.equal(again.read, 4, 'the rows of the last 30 s before the cursor (40 s to 70 s), not all 8');

      // A revocation now is a change after the cursor: the certificate is revoked in the inventory.
      await ca.updateCertificate(ids[0]!, { revokedAt: new Date(), revocationReason: 1 });
      const rev = await syncFromCa(inv, ca, new Date(), { batch: 3 });
      assert.equal(rev.added, 0);
      const c = await inv.getCertificate(describeCertificate(leaves[0]!.der).fingerprint);
      assert.equal(c?.revoked?.reason, 1);

      // A re-read window holding more rows than the cap: every call still makes progress
      // (30 revocations at one instant, then one more later; batches of 10, at most 20 a call).
      const many = await Promise.all(Array.from({ length: 31 }, (_, i) => testLeaf({ names: [`r${i}.test`] })));
      const rids: string[] = [];
      for (const l of many) rids.push(await issue(l.der, base + 80_000));
      const instant = new Date();
      for (const id of rids.slice(0, 30)) await ca.updateCertificate(id, { revokedAt: instant, revocationReason: 4 });
      await ca.updateCertificate(rids[30]!, { revokedAt: new Date(instant.getTime() + 1), revocationReason: 1 });
      let calls = 0;
      for (let more = true; more; calls++) {
        assert.ok(calls < 10, 'the sync ends');
        more = (await syncFromCa(inv, ca, new Date(), { batch: 10, maxCertificates: 20 })).more;
      }
      assert.equal((await inv.getCertificate(describeCertificate(many[30]!.der).fingerprint))?.revoked?.reason, 1);
      assert.equal((await inv.getCertificate(describeCertificate(many[0]!.der).fingerprint))?.revoked?.reason, 4);
      // And when called again with nothing new, it reads the window and stops at once.
      assert.equal((await syncFromCa(inv, ca, new Date(), { batch: 10, maxCertificates: 20 })).more, false);

      // A cap stops a long catch-up and says there is more.
      const fresh = await openInventory({ type: 'sqlite', path: path.join(d, 'inventory2.db') });
      try {
        const capped = await syncFromCa(fresh, ca, new Date(), { batch: 2, maxCertificates: 4 });
        assert.equal(capped.more, true);
        assert.equal(capped.read, 4);
        const rest = await syncFromCa(fresh, ca, new Date(), { batch: 2 });
        assert.equal(await fresh.countCertificates(), 7 + 31, `after ${JSON.stringify(rest)}`);
      } finally {
        await fresh.close();
      }
    } finally {
      await inv.close();
      await ca.close();
    }
  });
});
