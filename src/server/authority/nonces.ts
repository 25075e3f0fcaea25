/**
 * RFC 8555 §6.5 anti-replay nonces that cost nothing to issue. A nonce carries its own expiry and
 * an HMAC over it under a key every replica shares (stored once in the database), so issuing one
 * writes nothing; the store records a nonce only when it is used, until it expires, so that each
 * is accepted once, by whichever replica or worker sees it first.
 *
 * Layout (24 bytes, 32 base64url characters): expiry in seconds since the epoch (4 bytes, big
 * endian) | 8 random bytes | the first 12 bytes of HMAC-SHA256(key, the 12 bytes before).
 * 96 bits of MAC make forging one as hard as guessing it; the random part keeps two nonces issued
 * in one second distinct.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Random } from '../../lib/random.js';

const BODY = 12;
const MAC = 12;
const LENGTH = 32; // base64url characters of BODY + MAC bytes
const SHAPE = /^[A-Za-z0-9_-]{32}$/;

export class NonceMinter {
  readonly #key: Buffer;
  readonly #random: Random;

  constructor(key: Buffer, random: Random) {
    if (key.length < 32) throw new Error('the nonce key must have at least 32 bytes');
    this.#key = key;
    this.#random = random;
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(body).digest().subarray(0, MAC);
  }

  /** A fresh nonce that expires at `expires` (rounded up to the second). */
  mint(expires: Date): string {
    const body = Buffer.alloc(BODY);
    body.writeUInt32BE(Math.ceil(expires.getTime() / 1000), 0);
    this.#random.bytes(8).copy(body, 4);
    return Buffer.concat([body, this.#mac(body)]).toString('base64url');
  }

  /**
   * The expiry of a nonce this key minted, or null: not one of ours (wrong shape or MAC) or expired
   * at `now`. Whether it was used already is the store's question.
   */
  check(value: string, now: Date): Date | null {
    if (value.length !== LENGTH || !SHAPE.test(value)) return null;
    const raw = Buffer.from(value, 'base64url');
    const body = raw.subarray(0, BODY);
    if (!timingSafeEqual(raw.subarray(BODY), this.#mac(body))) return null;
    const expires = new Date(body.readUInt32BE(0) * 1000);
    return expires.getTime() > now.getTime() ? expires : null;
  }
}
