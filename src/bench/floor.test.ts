/** The crypto floor: its arithmetic, and a quick measurement that yields sane numbers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cryptoFloor, measureCryptoFloorUnits } from './floor.js';

test('the floor is signed POSTs x JWS check + one CSR check + one certificate signature', () => {
  const f = cryptoFloor({ jwsVerifyUs: 100, csrVerifyUs: 90, certSignUs: 40, tbsBytes: 560 }, 6);
  assert.deepEqual(f, { signedPostsPerFlow: 6, jwsVerifyMs: 0.6, csrVerifyMs: 0.09, certSignMs: 0.04, totalMs: 0.73 });
});

test('a short measurement gives positive costs (the operations really verify)', () => {
  const u = measureCryptoFloorUnits({ iterations: 20, batches: 3 });
  for (const v of [u.jwsVerifyUs, u.csrVerifyUs, u.certSignUs]) assert.ok(v > 0 && v < 100_000, `${v}`);
});
