import { randomBytes } from 'node:crypto';

/** Randomness source, passed into constructors. */
export interface Random {
  bytes(n: number): Buffer;
}

export const cryptoRandom: Random = { bytes: (n) => randomBytes(n) };

/** An unguessable identifier: 128 random bits, base64url. */
export function randomId(random: Random = cryptoRandom): string {
  return random.bytes(16).toString('base64url');
}
