/**
 * ES256 flattened JWS (RFC 7515, RFC 8555 §6.2) with node:crypto's synchronous sign: about 30 µs a
 * request on the reference machine, against 110-160 µs for jose's FlattenedSign (WebCrypto,
 * promises) that the client library uses. The load generator signs every request, so this is its
 * largest saving (docs/benchmarks.md).
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export interface EcJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

export class Es256Signer {
  readonly jwk: EcJwk;
  /** RFC 7638 thumbprint (base64url SHA-256 of the canonical JWK), for key authorizations. */
  readonly thumbprint: string;

  constructor(private readonly key: KeyObject) {
    const j = key.export({ format: 'jwk' }) as { crv?: string; x?: string; y?: string };
    if (key.asymmetricKeyType !== 'ec' || j.crv !== 'P-256' || !j.x || !j.y) throw new Error('Es256Signer needs an ECDSA P-256 private key');
    this.jwk = { kty: 'EC', crv: 'P-256', x: j.x, y: j.y };
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    const canonical = `{"crv":"P-256","kty":"EC","x":"${j.x}","y":"${j.y}"}`;
    this.thumbprint = createHash('sha256').update(canonical).digest('base64url');
  }

  static generate(): Es256Signer {
    return new Es256Signer(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  }

  /**
   * The request body for `url`. `payload` null is POST-as-GET (RFC 8555 §6.3: empty payload).
   * `kid` null puts the public key in the header instead (newAccount).
   */
  body(url: string, nonce: string, kid: string | null, payload: unknown): string {
    const header = kid === null ? { alg: 'ES256', jwk: this.jwk, nonce, url } : { alg: 'ES256', kid, nonce, url };
    const protectedB64 = Buffer.from(JSON.stringify(header)).toString('base64url');
    const payloadB64 = payload === null ? '' : Buffer.from(JSON.stringify(payload)).toString('base64url');
    // RFC 7518 §3.4: ES256 signatures are R || S, 64 bytes (not DER).
    const signature = sign('sha256', Buffer.from(`${protectedB64}.${payloadB64}`), { key: this.key, dsaEncoding: 'ieee-p1363' });
    return `{"protected":"${protectedB64}","payload":"${payloadB64}","signature":"${signature.toString('base64url')}"}`;
  }
}
