/**
 * What the micro-benchmark scripts share: their numeric options, the median of their rounds, and
 * a throw-away CA in a temporary directory.
 */
import path from 'node:path';
import { initCa, loadCa } from '../src/server/issuance/ca.js';

/**
 * A whole-number option between `min` and `max` (values outside are clamped); anything that is not
 * a number ends the script with a message naming the option.
 */
export function intOption(name: string, value: string | undefined, min: number, max: number): number {
  const n = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isFinite(n)) {
    console.error(`--${name}: expected a number from ${min} to ${max}, got "${value ?? ''}"`);
    process.exit(2);
  }
  return Math.min(Math.max(Math.round(n), min), max);
}

/** The middle value (the upper one of the two middles for an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** The URLs a benchmark CA writes into its certificates (nothing answers there). */
export const BENCH_CA_URLS = { issuerUrl: 'http://ca.example/ca/intermediate.der', ocspUrl: 'http://ca.example/ocsp' };

/** A new P-256 CA under `dir`/ca, loaded. */
export async function benchCa(dir: string) {
  await initCa(path.join(dir, 'ca'), { keyAlgorithm: 'ecdsa-p256' });
  return loadCa(path.join(dir, 'ca'), BENCH_CA_URLS);
}
