/**
 * What following the CA costs the inventory, per certificate: N leaves signed by a real Anvil CA
 * (P-256, one IP and one DNS name each) are stored in a CA database (SQLite), then synced into a
 * fresh inventory with syncFromCa, as the server's sync thread does. Prints µs per certificate for
 * reading the facts of one certificate (describeCertificate), for reading the CA's changes alone,
 * and for the whole sync (both, and recording), the median of the rounds, and one JSON line.
 *
 *   node --import tsx bench/inventory-sync.ts [--certs 3000] [--rounds 3]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { freshCsr, sanAttribute } from '../src/bench/csr.js';
import { describeCertificate } from '../src/inventory/certificate.js';
import { openInventory } from '../src/inventory/inventory.js';
import { syncFromCa } from '../src/inventory/sources.js';
import { openStore } from '../src/storage/index.js';
import { benchCa, intOption, median } from './common.js';

const { values } = parseArgs({ options: { certs: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' } } });
const N = intOption('certs', values.certs, 10, 200_000);
const ROUNDS = intOption('rounds', values.rounds, 1, 20);

const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-invsync-'));
try {
  const ca = await benchCa(dir);
  const store = await openStore({ type: 'sqlite', path: path.join(dir, 'anvil.db') });
  const ders: Buffer[] = [];
  const now = Date.now();
  await store.createAccount({ id: 'acct', status: 'valid', jwk: { kty: 'EC' }, thumbprint: 't', contact: [], tosAgreed: true, eabKid: null, createdAt: new Date(now) } as never);
  for (let i = 0; i < N; i++) {
    const ids = [
      { type: 'ip' as const, value: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
      { type: 'dns' as const, value: `host-${i}.bench.example` },
    ];
    const plan = ca.plan({ identifiers: ids, spki: freshCsr(sanAttribute(ids)).spki, clientAuth: false, lifetimeMs: 90 * 86_400_000 });
    const { der } = await ca.sign(plan);
    ders.push(der);
    const orderId = `o${i}`;
    await store.createOrder({ id: orderId, accountId: 'acct', status: 'valid', expires: new Date(now + 86_400_000), identifiers: ids, notBefore: null, notAfter: null, error: null, certificateId: null, authzIds: [], createdAt: new Date(now) } as never);
    await store.createCertificate({
      id: `c${String(i).padStart(7, '0')}`, serial: `s${i}`, accountId: 'acct', orderId, status: 'issued', identifiers: ids, notBefore: new Date(now), notAfter: new Date(now + 90 * 86_400_000),
      plan: {}, der, chainPem: null, issuedAt: new Date(now + i), revokedAt: null, revocationReason: null, createdAt: new Date(now + i), profile: 'default', replacesId: null, renewalWindow: null,
    });
  }

  const parse: number[] = [];
  const sync: number[] = [];
  const read: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let t0 = performance.now();
    for (const d of ders) describeCertificate(d);
    parse.push(((performance.now() - t0) * 1000) / N);
    t0 = performance.now();
    for (let cursor = null as null | { at: Date; id: string }; ; ) {
      const rows = await store.listCertificateChanges('issued', cursor, 500);
      if (rows.length < 500) break;
      cursor = { at: rows[rows.length - 1]!.at, id: rows[rows.length - 1]!.id };
    }
    read.push(((performance.now() - t0) * 1000) / N);
    const inv = await openInventory({ type: 'sqlite', path: path.join(dir, `inventory-${round}.db`) });
    t0 = performance.now();
    const r = await syncFromCa(inv, store, new Date(), { maxCertificates: 10_000_000 });
    sync.push(((performance.now() - t0) * 1000) / N);
    if (r.added !== N) throw new Error(`synced ${r.added} of ${N}`);
    await inv.close();
  }
  await store.close();
  const out = { certs: N, describeUsPerCert: Math.round(median(parse)), caReadUsPerCert: Math.round(median(read)), syncUsPerCert: Math.round(median(sync)) };
  console.log(`describeCertificate        ${String(out.describeUsPerCert).padStart(6)} µs per certificate`);
  console.log(`reading the CA's changes   ${String(out.caReadUsPerCert).padStart(6)} µs per certificate`);
  console.log(`syncFromCa (read + record) ${String(out.syncUsPerCert).padStart(6)} µs per certificate (${N} certificates, SQLite, synchronous=FULL)`);
  console.log(JSON.stringify({ bench: 'inventory-sync', ...out }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
