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

/** An unguessable identifier: 128 random bits, base64url (22 characters). */
export function randomId(random: Random = cryptoRandom): string {
  return random.bytes(16).toString('base64url');
}

/**
 * An unguessable identifier that sorts by creation time: the milliseconds since the epoch as 12
 * lowercase hex digits, then 128 random bits in base64url (34 characters). The random part alone
 * makes it unguessable; the prefix makes a database index on it grow at one end, as a sequence
 * would. With purely random keys every insert lands on its own leaf page of each index (orders,
 * authorizations, challenges, certificates and the tables that refer to them), so a group commit
 * wrote about one page per row to the WAL, and a large database reads them back from disk.
 */
export function timeOrderedId(now: number, random: Random = cryptoRandom): string {
  return Math.max(0, Math.floor(now)).toString(16).padStart(12, '0').slice(-12) + random.bytes(16).toString('base64url');
}
