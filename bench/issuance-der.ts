/**
 * Micro-benchmark of issue #5: CertificateAuthority.sign and checkCsr on the lean DER code
 * (src/server/issuance/leaf-der.ts, csr-der.ts) against the @peculiar/x509 code they replaced
 * (x509-reference.ts), with a P-256 CA and P-256 leaf keys, in one process. Rounds alternate
 * between old and new so that a busy neighbour slows both; the median round is printed, in µs per
 * call, as a table and one JSON line. A second table shows why csr-der.ts imports CSR keys as JWK
 * for P-256, RSA and Ed25519 but as SPKI for P-384: node:crypto's cost of each, per key type.
 *
 *   node --import tsx bench/issuance-der.ts [--ops 300] [--rounds 7]
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { freshCsr, sanAttribute } from '../src/bench/csr.js';
import { loadReference } from '../src/server/issuance/x509-reference.js';
import type { Identifier } from '../src/protocol/types.js';
import { BENCH_CA_URLS, benchCa, intOption, median } from './common.js';

const { values } = parseArgs({ options: { ops: { type: 'string', default: '300' }, rounds: { type: 'string', default: '7' } } });
const OPS = intOption('ops', values.ops, 10, 100_000);
const ROUNDS = intOption('rounds', values.rounds, 1, 99);

const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-bench-der-'));
try {
  const ca = await benchCa(dir);
  const ref = await loadReference(path.join(dir, 'ca'), BENCH_CA_URLS);
  const ids: Identifier[] = [{ type: 'dns', value: 'bench.example.com' }, { type: 'ip', value: '192.0.2.1' }];
  const csr = freshCsr(sanAttribute(ids));
  const plan = ca.plan({ identifiers: ids, spki: csr.spki, clientAuth: false, lifetimeMs: 90 * 86_400_000 });

  const cases = {
    'sign, @peculiar/x509': () => ref.sign(plan),
    'sign, lean DER': () => ca.sign(plan),
    'checkCsr, @peculiar/x509': () => ref.checkCsr(csr.der),
    'checkCsr, lean DER': () => ca.checkCsr(csr.der),
  };
  const samples = new Map<string, number[]>(Object.keys(cases).map((k) => [k, []]));
  for (let round = -1; round < ROUNDS; round++) {
    for (const [name, f] of Object.entries(cases)) {
      const t0 = performance.now();
      for (let i = 0; i < OPS; i++) await f();
      // Round -1 warms the JIT and the caches and is not counted.
      if (round >= 0) samples.get(name)!.push(((performance.now() - t0) * 1000) / OPS);
    }
  }
  const us = Object.fromEntries([...samples].map(([k, v]) => [k, Math.round(median(v))]));
  for (const [k, v] of Object.entries(us)) console.log(`${k.padEnd(26)} ${String(v).padStart(6)} µs`);

  const keyImport: Record<string, { spki: number; jwk: number }> = {};
  const keys = {
    'P-256': generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    'P-384': generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    'RSA-2048': generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    Ed25519: generateKeyPairSync('ed25519').publicKey,
  };
  for (const [name, k] of Object.entries(keys)) {
    const spki = k.export({ type: 'spki', format: 'der' });
    const jwk = k.export({ format: 'jwk' });
    const time = (f: () => unknown) => {
      const rounds: number[] = [];
      for (let round = -1; round < ROUNDS; round++) {
        const t0 = performance.now();
        for (let i = 0; i < OPS; i++) f();
        if (round >= 0) rounds.push(((performance.now() - t0) * 1000) / OPS);
      }
      return Number(median(rounds).toFixed(1));
    };
    keyImport[name] = {
      spki: time(() => createPublicKey({ key: spki, format: 'der', type: 'spki' }).asymmetricKeyDetails),
      jwk: time(() => createPublicKey({ key: jwk, format: 'jwk' }).asymmetricKeyDetails),
    };
    console.log(`KeyObject of a ${name.padEnd(8)} key   SPKI ${String(keyImport[name].spki).padStart(6)} µs   JWK ${String(keyImport[name].jwk).padStart(6)} µs`);
  }
  const speedup = (a: string, b: string) => Number((us[a]! / us[b]!).toFixed(1));
  console.log(
    JSON.stringify({
      us,
      speedup: { sign: speedup('sign, @peculiar/x509', 'sign, lean DER'), checkCsr: speedup('checkCsr, @peculiar/x509', 'checkCsr, lean DER') },
      keyImport,
      ops: OPS,
      rounds: ROUNDS,
      machine: { cpu: os.cpus()[0]?.model, cpus: os.cpus().length, node: process.version, load1: Number(os.loadavg()[0]!.toFixed(2)) },
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
