/**
 * A deliberately low-level ACME client for protocol tests: it signs whatever it is told to, so tests
 * can send malformed, mis-signed or replayed requests and check the server's answer.
 */
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CompactSign, FlattenedSign, exportJWK, type JWK } from 'jose';

export interface TestKey {
  privateKey: KeyObject;
  jwk: JWK;
  alg: string;
}

export function newKey(kind: 'ec256' | 'ec384' | 'rsa2048' | 'rsa1024' | 'ed25519' = 'ec256'): TestKey {
  switch (kind) {
    case 'ec256': {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' };
    }
    case 'ec384': {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES384' };
    }
    case 'rsa2048':
    case 'rsa1024': {
      const k = generateKeyPairSync('rsa', { modulusLength: kind === 'rsa2048' ? 2048 : 1024 });
      return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'RS256' };
    }
    case 'ed25519': {
      const k = generateKeyPairSync('ed25519');
      return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'EdDSA' };
    }
  }
}

export interface Response {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

export interface SignOptions {
  key?: TestKey;
  /** Use "jwk" instead of "kid". */
  useJwk?: boolean;
  kid?: string | null;
  nonce?: string | null;
  url?: string | null;
  alg?: string;
  extraHeader?: Record<string, unknown>;
  /** Raw payload string (already JSON) or object; null = POST-as-GET (""). */
  payload?: unknown;
  contentType?: string;
  /** Mutate the flattened JWS before sending. */
  tamper?: (jws: Record<string, unknown>) => unknown;
}

export class RawAcme {
  directory!: Record<string, string>;
  key: TestKey;
  kid: string | null = null;

  constructor(
    readonly directoryUrl: string,
    key?: TestKey,
  ) {
    this.key = key ?? newKey();
  }

  async init(): Promise<this> {
    const r = await fetch(this.directoryUrl);
    this.directory = (await r.json()) as Record<string, string>;
    return this;
  }

  async nonce(): Promise<string> {
    const r = await fetch(this.directory.newNonce!, { method: 'HEAD' });
    const n = r.headers.get('replay-nonce');
    if (!n) throw new Error('no nonce');
    return n;
  }

  async jws(url: string, o: SignOptions = {}): Promise<Record<string, unknown>> {
    const key = o.key ?? this.key;
    const header: Record<string, unknown> = { alg: o.alg ?? key.alg };
    const nonce = o.nonce === undefined ? await this.nonce() : o.nonce;
    if (nonce !== null) header.nonce = nonce;
    const u = o.url === undefined ? url : o.url;
    if (u !== null) header.url = u;
    if (o.useJwk) header.jwk = key.jwk;
    else {
      const kid = o.kid === undefined ? this.kid : o.kid;
      if (kid !== null) header.kid = kid;
    }
    Object.assign(header, o.extraHeader ?? {});
    const payload =
      o.payload === null || o.payload === undefined ? '' : typeof o.payload === 'string' ? o.payload : JSON.stringify(o.payload);
    const signer = new FlattenedSign(new TextEncoder().encode(payload)).setProtectedHeader(header as never);
    const jws = (await signer.sign(key.privateKey)) as unknown as Record<string, unknown>;
    return jws;
  }

  async post(url: string, o: SignOptions = {}): Promise<Response> {
    let jws: unknown = await this.jws(url, o);
    if (o.tamper) jws = o.tamper(jws as Record<string, unknown>);
    return this.send(url, typeof jws === 'string' ? jws : JSON.stringify(jws), o.contentType);
  }

  async send(url: string, body: string, contentType = 'application/jose+json'): Promise<Response> {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
    const text = await r.text();
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: r.status, headers: r.headers, body: parsed, text };
  }

  async register(payload: Record<string, unknown> = { termsOfServiceAgreed: true }): Promise<Response> {
    const r = await this.post(this.directory.newAccount!, { useJwk: true, payload });
    if (r.status === 200 || r.status === 201) this.kid = r.headers.get('location');
    return r;
  }

  thumbprint(): string {
    const j = this.key.jwk;
    const canon =
      j.kty === 'EC'
        ? JSON.stringify({ crv: j.crv, kty: j.kty, x: j.x, y: j.y })
        : j.kty === 'RSA'
          ? JSON.stringify({ e: j.e, kty: j.kty, n: j.n })
          : JSON.stringify({ crv: j.crv, kty: j.kty, x: j.x });
    return createHash('sha256').update(canon).digest('base64url');
  }

  /** A compact JWS, to check that the server refuses the compact serialization. */
  async compact(url: string): Promise<string> {
    return new CompactSign(new TextEncoder().encode('{}'))
      .setProtectedHeader({ alg: this.key.alg, nonce: await this.nonce(), url, kid: this.kid ?? undefined } as never)
      .sign(this.key.privateKey);
  }
}

export { exportJWK };
