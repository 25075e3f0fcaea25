import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { cryptoRandom } from '../../lib/random.js';
import { NonceMinter } from './nonces.js';

const now = new Date('2026-11-25T12:00:00Z');
const later = (s: number) => new Date(now.getTime() + s * 1000);

test('a minted nonce checks until its expiry, under the same key only', () => {
  const key = randomBytes(32);
  const m = new NonceMinter(key, cryptoRandom);
  const n = m.mint(later(60));
  assert.match(n, /^[A-Za-z0-9_-]{32}$/);
  assert.deepEqual(m.check(n, now), later(60));
  assert.deepEqual(new NonceMinter(Buffer.from(key), cryptoRandom).check(n, now), later(60), 'another replica with the shared key');
  assert.equal(m.check(n, later(60)), null, 'expired at its expiry');
  assert.equal(new NonceMinter(randomBytes(32), cryptoRandom).check(n, now), null, 'another key');
});

test('two nonces minted in one second differ', () => {
  const m = new NonceMinter(randomBytes(32), cryptoRandom);
  const seen = new Set(Array.from({ length: 1000 }, () => m.mint(later(60))));
  assert.equal(seen.size, 1000);
});

test('any changed bit, a wrong length or a foreign alphabet is refused', () => {
  const m = new NonceMinter(randomBytes(32), cryptoRandom);
  const n = m.mint(later(3600));
  const raw = Buffer.from(n, 'base64url');
  for (let bit = 0; bit < raw.length * 8; bit++) {
    const b = Buffer.from(raw);
    b[bit >> 3]! ^= 1 << (bit & 7);
    assert.equal(m.check(b.toString('base64url'), now), null, `bit ${bit}`);
  }
  for (const bad of ['', n.slice(1), `${n}A`, `${n.slice(0, 31)}=`, n.replace(/./, '+'), 'A'.repeat(32)]) {
    assert.equal(m.check(bad, now), null, JSON.stringify(bad));
  }
  assert.throws(() => new NonceMinter(Buffer.alloc(16), cryptoRandom), /32 bytes/);
});
