/** SECURITY.md (client): a token that is not plain base64url of a sane length never reaches a file or a record. */
import { AcmeClientError } from '../errors.js';

export function checkToken(token: unknown): string {
  // RFC 8555 §8.1: base64url, at least 128 bits of entropy (22 characters).
  if (typeof token !== 'string' || token.length < 22 || token.length > 256 || !/^[A-Za-z0-9_-]+$/.test(token)) {
    throw new AcmeClientError('BAD_RESPONSE', `the server sent an unsafe challenge token ${JSON.stringify(String(token).slice(0, 40))}; refusing to use it`);
  }
  return token;
}
