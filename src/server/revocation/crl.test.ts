/** CRL building and the CrlService's regeneration rules (issue #4), without HTTP. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { FakeClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/logger.js';
import * as x509 from '../../lib/x509.js';
import { openStore } from '../../storage/index.js';
import type { CrlRecord, RevokedEntry } from '../../storage/store.js';
import { initCa, loadCa, type CertificateAuthority } from '../issuance/ca.js';
import { buildCrl, CrlService, type CrlStore } from './crl.js';
import { issuerIdentity } from './issuer.js';

const run = promisify(execFile);
const HOUR = 3_600_000;

/** A CrlStore in memory, with hooks to simulate another writer. */
class MemoryCrlStore implements CrlStore {
  crl: CrlRecord | null = null;
  revoked: RevokedEntry[] = [];
  puts = 0;
  /** Called before each putCrl; may change `crl` to simulate a concurrent writer. */
  beforePut: (() => void) | null = null;

  async listRevoked(notAfterAfter: Date, limit: number): Promise<RevokedEntry[]> {
    return this.revoked.filter((r) => r.notAfter > notAfterAfter).slice(0, limit);
  }
  async getCrl(): Promise<CrlRecord | null> {
    return this.crl;
  }
  async putCrl(crl: CrlRecord, expectNumber: number | null): Promise<boolean> {
    this.puts++;
    this.beforePut?.();
    if ((this.crl?.number ?? null) !== expectNumber) return false;
    this.crl = crl;
    return true;
  }
}

describe('CRLs', () => {
  let dir: string;
  let ca: CertificateAuthority;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-crl-'));
    await initCa(path.join(dir, 'ca'));
    ca = await loadCa(path.join(dir, 'ca'));
    await writeFile(path.join(dir, 'cas.pem'), ca.rootPem + ca.intermediatePem);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const service = (store: CrlStore, clock = new FakeClock(Date.now()), extra: { maxEntries?: number } = {}) =>
    new CrlService({ store, issuer: ca, logger: silentLogger(), clock, validityHours: 24, refreshMinutes: 60, ...extra });

  test('a CRL with 5,000 entries is built in linear time and openssl verifies it', async () => {
    const now = new Date();
    const entries: RevokedEntry[] = Array.from({ length: 5_000 }, (_, i) => ({
      serial: (0x40000000 + i).toString(16) + 'ab'.repeat(12),
      revokedAt: now,
      reason: i % 3,
      notAfter: new Date(now.getTime() + 90 * 24 * HOUR),
    }));
    const t = performance.now();
    const der = buildCrl(ca, issuerIdentity(ca), { number: 7, thisUpdate: now, nextUpdate: new Date(now.getTime() + HOUR), entries });
    const ms = performance.now() - t;
    // About 0.1 ms per entry with @peculiar/asn1-schema (X509CrlGenerator was quadratic: 23 s for 20,000).
    assert.ok(ms < 5000, `building took ${ms} ms`);
    await writeFile(path.join(dir, 'big.der'), der);
    const r = await run('openssl', ['crl', '-inform', 'DER', '-in', 'big.der', '-noout', '-crlnumber', '-CAfile', 'cas.pem'], { cwd: dir, maxBuffer: 64 << 20 });
    assert.match(r.stderr, /verify OK/);
    assert.match(r.stdout, /crlNumber=0x07/);
    const parsed = new x509.X509Crl(der, { berOptions: { maxNodes: 1_000_000 } });
    assert.equal(parsed.entries.length, 5_000);
    assert.equal(parsed.findRevoked(entries[1]!.serial)?.reason, 1);
    assert.equal(parsed.findRevoked(entries[0]!.serial)?.reason, undefined);
    assert.ok(await parsed.verify({ publicKey: ca.issuerCertificate }));
  });

  test('a serial with the top bit set is encoded as a positive integer', () => {
    const der = buildCrl(ca, issuerIdentity(ca), {
      number: 1,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + HOUR),
      entries: [{ serial: 'ff01', revokedAt: new Date(), reason: 1, notAfter: new Date(Date.now() + HOUR) }],
    });
    assert.equal(new x509.X509Crl(der).entries[0]!.serialNumber.toLowerCase(), 'ff01');
  });

  test('current() signs the first CRL, then serves it until less than half its validity is left', async () => {
    const store = new MemoryCrlStore();
    const clock = new FakeClock(Date.now());
    const s = service(store, clock);
    const first = await s.current();
    assert.equal(first.number, 1);
    assert.equal(first.nextUpdate.getTime() - first.thisUpdate.getTime(), 24 * HOUR);
    clock.advance(11 * HOUR);
    assert.equal((await s.current()).number, 1);
    clock.advance(2 * HOUR);
    assert.equal((await s.current()).number, 2);
  });

  test('regenerate() lists revoked, unexpired certificates only; a revocation after it started gets another CRL', async () => {
    const store = new MemoryCrlStore();
    const now = Date.now();
    store.revoked = [
      { serial: '4a01', revokedAt: new Date(now), reason: 1, notAfter: new Date(now + HOUR) },
      { serial: '4a02', revokedAt: new Date(now), reason: 0, notAfter: new Date(now - HOUR) },
    ];
    const s = service(store, new FakeClock(now));
    const a = s.regenerate();
    const b = s.regenerate();
    const c = s.regenerate();
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    // The first call runs; the two that came while it ran share one more run after it.
    assert.equal(ra.number, 1);
    assert.equal(rb.number, 2);
    assert.equal(rc, rb);
    const crl = new x509.X509Crl(rb.der);
    assert.deepEqual(
      crl.entries.map((e) => e.serialNumber.toLowerCase()),
      ['4a01'],
    );
  });

  test('a compare-and-set conflict is retried on top of the other writer\'s CRL', async () => {
    const store = new MemoryCrlStore();
    const s = service(store);
    await s.regenerate();
    let once = true;
    store.beforePut = () => {
      if (once) {
        once = false;
        store.crl = { ...store.crl!, number: 5 };
      }
    };
    const r = await s.regenerate();
    assert.equal(r.number, 6);
    assert.equal(store.puts, 3);
  });

  test('two services on one SQLite database never reuse or lower a CRL number', async () => {
    const dbPath = path.join(dir, 'shared.db');
    const [s1, s2] = [await openStore({ type: 'sqlite', path: dbPath }), await openStore({ type: 'sqlite', path: dbPath })];
    try {
      const a = service(s1);
      const b = service(s2);
      const results = await Promise.all([...Array.from({ length: 4 }, () => a.regenerate()), ...Array.from({ length: 4 }, () => b.regenerate())]);
      const numbers = new Set(results.map((r) => r.number));
      // Each service coalesces to at most two runs (one running, one queued).
      assert.ok(numbers.size >= 2);
      const stored = await s1.getCrl(issuerIdentity(ca).storeId);
      assert.equal(stored!.number, Math.max(...numbers));
      const again = await a.regenerate();
      assert.equal(again.number, stored!.number + 1);
    } finally {
      await s1.close();
      await s2.close();
    }
  });

  test('too many entries fail loudly, and the previous CRL is served until its nextUpdate', async () => {
    const store = new MemoryCrlStore();
    const clock = new FakeClock(Date.now());
    const s = service(store, clock, { maxEntries: 1 });
    await s.current();
    const far = new Date(clock.now().getTime() + 1000 * HOUR);
    store.revoked = [
      { serial: '4b01', revokedAt: clock.now(), reason: 1, notAfter: far },
      { serial: '4b02', revokedAt: clock.now(), reason: 1, notAfter: far },
    ];
    await assert.rejects(s.regenerate(), /more than 1 unexpired revoked certificates/);
    clock.advance(13 * HOUR);
    assert.equal((await s.current()).number, 1);
    clock.advance(12 * HOUR);
    await assert.rejects(s.current(), /more than 1/);
  });

  test('refresh() leaves a CRL another replica signed moments ago alone', async () => {
    const store = new MemoryCrlStore();
    const clock = new FakeClock(Date.now());
    const s = service(store, clock);
    await s.regenerate();
    assert.equal((await s.refresh()).number, 1);
    clock.advance(31 * 60_000);
    assert.equal((await s.refresh()).number, 2);
  });

  test('after close() no new CRL is signed', async () => {
    const store = new MemoryCrlStore();
    const s = service(store);
    s.start();
    await s.current();
    await s.close();
    const n = store.crl!.number;
    await s.regenerate();
    assert.equal(store.crl!.number, n);
  });
});
