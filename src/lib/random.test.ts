import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cryptoRandom, randomId, timeOrderedId } from './random.js';

test('pooled draws are independent copies, never repeat, and cross pool refills', () => {
  const seen = new Set<string>();
  // 20,000 draws of 16 bytes: about 80 refills of the 4 KiB pool.
  for (let i = 0; i < 20_000; i++) {
    const b = cryptoRandom.bytes(16);
    assert.equal(b.length, 16);
    const hex = b.toString('hex');
    assert.ok(!seen.has(hex), 'a repeated 128-bit draw');
    seen.add(hex);
  }
  const a = cryptoRandom.bytes(32);
  const copy = Buffer.from(a);
  cryptoRandom.bytes(32);
  assert.ok(a.equals(copy), 'a later draw does not change an earlier one');
  a.fill(0);
  assert.ok(!cryptoRandom.bytes(32).equals(Buffer.alloc(32)), 'changing a draw does not change the pool');
  assert.equal(cryptoRandom.bytes(1000).length, 1000);
  assert.equal(cryptoRandom.bytes(0).length, 0);
  assert.match(randomId(), /^[A-Za-z0-9_-]{22}$/);
});

test('time-ordered ids: 12 hex digits of milliseconds, then 128 random bits; they sort by time, byte for byte', () => {
  const t0 = Date.UTC(2026, 10, 25, 12, 0, 0);
  const id = timeOrderedId(t0);
  assert.match(id, /^[0-9a-f]{12}[A-Za-z0-9_-]{22}$/);
  assert.equal(parseInt(id.slice(0, 12), 16), t0);
  assert.equal(Buffer.from(id.slice(12), 'base64url').length, 16);
  // Across a hex-digit carry (0x...fff -> 0x...1000), a second, a year, and within one millisecond.
  const times = [0xfff, 0x1000, t0 - 1, t0, t0, t0 + 1, t0 + 1000, t0 + 365 * 86_400_000];
  const ids = times.map((t) => timeOrderedId(t));
  for (let i = 1; i < ids.length; i++) {
    const [a, b] = [ids[i - 1]!, ids[i]!];
    assert.ok(Buffer.compare(Buffer.from(a.slice(0, 12)), Buffer.from(b.slice(0, 12))) <= 0, `${a} then ${b}`);
    if (times[i]! > times[i - 1]!) assert.ok(a < b, 'a later id sorts after an earlier one');
  }
  assert.notEqual(ids[3], ids[4], 'two ids of the same millisecond differ');
  assert.ok(timeOrderedId(-5).startsWith('000000000000'), 'a clock before the epoch is clamped, not negative');
  const seen = new Set(Array.from({ length: 10_000 }, () => timeOrderedId(t0)));
  assert.equal(seen.size, 10_000);
});

test('the bits are balanced (a gross bias check, not a randomness test)', () => {
  let ones = 0;
  const n = 4096;
  for (let i = 0; i < n; i++) for (const byte of cryptoRandom.bytes(8)) ones += byte.toString(2).split('1').length - 1;
  const bits = n * 64;
  // Binomial(262144, 1/2): the standard deviation is 256 bits; 8 of them is far beyond chance.
  assert.ok(Math.abs(ones - bits / 2) < 8 * 256, `${ones} ones of ${bits} bits`);
});
