import { randomBytes } from 'node:crypto';

/** Randomness source, passed into constructors. */
export interface Random {
  bytes(n: number): Buffer;
}

/**
 * node:crypto randomness, drawn from a 4 KiB pool refilled from the CSPRNG: the server takes a few
 * dozen small draws per issuance (ids, tokens, serials, nonces), and one randomBytes call per draw
 * cost more than all of them from the pool. Each caller gets its own copy; the pool part it came
 * from is zeroed, so a value exists once in memory. Large draws go straight to randomBytes.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;
export const cryptoRandom: Random = {
  bytes(n: number): Buffer {
    if (n > 256) return randomBytes(n);
    if (used + n > pool.length) {
      pool = randomBytes(POOL_BYTES);
      used = 0;
    }
    const out = Buffer.from(pool.subarray(used, used + n));
    pool.fill(0, used, used + n);
    used += n;
    return out;
  },
};

/** An unguessable identifier: 128 random bits, base64url. */
export function randomId(random: Random = cryptoRandom): string {
  return random.bytes(16).toString('base64url');
}
