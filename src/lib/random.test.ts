import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cryptoRandom, randomId } from './random.js';

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

test('the bits are balanced (a gross bias check, not a randomness test)', () => {
  let ones = 0;
  const n = 4096;
  for (let i = 0; i < n; i++) for (const byte of cryptoRandom.bytes(8)) ones += byte.toString(2).split('1').length - 1;
  const bits = n * 64;
  // Binomial(262144, 1/2): the standard deviation is 256 bits; 8 of them is far beyond chance.
  assert.ok(Math.abs(ones - bits / 2) < 8 * 256, `${ones} ones of ${bits} bits`);
});
