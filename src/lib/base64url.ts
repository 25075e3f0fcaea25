/** base64url without padding (RFC 4648 §5), as ACME and JOSE use it. */
export function b64u(data: Uint8Array | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Decodes strict base64url: refuses padding and characters outside the alphabet. */
export function fromB64u(s: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new TypeError('not base64url');
  return Buffer.from(s, 'base64url');
}

export function isB64u(s: unknown): s is string {
  return typeof s === 'string' && /^[A-Za-z0-9_-]*$/.test(s);
}
