/**
 * Deliberate misbehaviour for testing ACME clients (the `testing` config section; never for
 * production). Modelled on what Pebble does with PEBBLE_WFE_NONCEREJECT and PEBBLE_AUTHZREUSE:
 * a server that refuses valid nonces, answers 503 now and then, and hands out authorizations
 * that are already valid or shared with another order keeps clients honest.
 *
 * Every draw comes from an injected `Random`, so tests can make the faults deterministic.
 */
import type { Random } from '../../lib/random.js';

export interface TestingFaults {
  /** Share (0-100) of requests with a valid nonce that are refused with badNonce anyway. */
  nonceRejectPercent: number;
  /** Share (0-100) of POSTs answered 503 serverInternal with Retry-After before anything changes. */
  serverErrorPercent: number;
  /**
   * Chance (0-100), per identifier of a new order, that an existing valid or pending authorization
   * of the account is reused. Undefined: the normal policy (valid ones always, pending never).
   */
  authzReusePercent?: number | undefined;
}

/** True with probability `percent`/100, from 32 random bits. 0 is never, 100 is always. */
export function chance(random: Random, percent: number): boolean {
  if (!(percent > 0)) return false;
  if (percent >= 100) return true;
  return random.bytes(4).readUInt32BE(0) < (percent / 100) * 2 ** 32;
}

/** Whether any fault is switched on (the server then warns loudly at start-up). */
export function faultsActive(f: TestingFaults | undefined): boolean {
  return !!f && (f.nonceRejectPercent > 0 || f.serverErrorPercent > 0 || f.authzReusePercent !== undefined);
}
