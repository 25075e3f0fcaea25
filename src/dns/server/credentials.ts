/**
 * acme-dns credentials: usernames and subdomains are random UUIDs, passwords 40 random characters
 * of the base64url alphabet (what acme-dns clients check), stored only as scrypt hashes and
 * compared in constant time.
 */
import { scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { cryptoRandom, type Random } from '../../lib/random.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
export const PASSWORD_LENGTH = 40;

/** scrypt cost: N=2^14, r=8, p=1 (about 16 MiB and tens of milliseconds per check). */
const N = 16384;
const R = 8;
const P = 1;
const KEYLEN = 32;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  const opts: ScryptOptions = { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(password, salt, KEYLEN, opts, (e, k) => (e ? reject(e) : resolve(k))));
}

/** A random version 4 UUID (RFC 9562 §5.4), lower case. */
export function randomUuid(random: Random = cryptoRandom): string {
  const b = Buffer.from(random.bytes(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** 40 characters from a 64-character alphabet: 240 random bits (each byte's low 6 bits, no bias). */
export function randomPassword(random: Random = cryptoRandom): string {
  const b = random.bytes(PASSWORD_LENGTH);
  let s = '';
  for (const x of b) s += ALPHABET[x & 63];
  return s;
}

/** The shape of a password this server hands out (checked before any hashing). */
export function wellFormedPassword(s: string): boolean {
  return s.length === PASSWORD_LENGTH && /^[A-Za-z0-9_-]+$/.test(s);
}

/** "scrypt$N$r$p$salt$hash", salt and hash base64url. */
export async function hashPassword(password: string, random: Random = cryptoRandom): Promise<string> {
  const salt = Buffer.from(random.bytes(16));
  const key = await scrypt(password, salt, N, R, P);
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** Compares in constant time; a malformed hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0) || n > 1 << 20) return false;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  const got = await scrypt(password, salt, n, r, p);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

/** A hash of nothing anyone knows: checked against when the user does not exist, so both cases take as long. */
let dummy: Promise<string> | undefined;
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword(randomPassword());
  return dummy;
}
