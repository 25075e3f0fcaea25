/** Assertions on RFC 8555 problem documents. */
import assert from 'node:assert/strict';
import type { Response } from './raw-acme.js';

export const ERR = 'urn:ietf:params:acme:error:';

/** The response is a problem document of `type` with HTTP `status`, carrying a fresh nonce. */
export function assertProblem(r: Response, status: number, type: string): void {
  assert.equal(r.status, status, `expected ${status} ${type}, got ${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.body?.type, ERR + type, r.text);
  assert.ok(r.headers.get('replay-nonce'), 'every error response carries a fresh nonce');
}
