/**
 * One typed method per RFC 8555 resource, on top of AcmeHttp. No policy here beyond what the RFC
 * requires of a client (status checks, polling with Retry-After); flows (issue, renew) build on it.
 */
import { createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { AccountJson, AuthorizationJson, ChallengeJson, Identifier, OrderJson } from '../protocol/types.js';
import { AcmeClientError } from './errors.js';
import type { AccountSigner, AcmeHttp } from './http.js';
import { fetchRenewalInfo, type RenewalInfo, type UnauthenticatedGet } from './renewal/ari.js';

export interface Account {
  url: string;
  body: AccountJson;
}

export interface Order {
  url: string;
  body: OrderJson;
}

/** Optional newOrder fields beyond the identifiers. */
export interface NewOrderOptions {
  /** RFC 9773 §5: the certID of the certificate this order replaces. */
  replaces?: string;
  /** draft-ietf-acme-profiles: a profile the directory lists in meta.profiles. */
  profile?: string;
}

export interface ExternalAccountBinding {
  kid: string;
  /** base64url HMAC key, as CAs hand it out. */
  hmacKey: string;
}

const ORDER_STATUS_RANK: Record<string, number> = { pending: 0, ready: 1, processing: 2, valid: 3, invalid: 3 };

export class AcmeApi {
  #account: Account | undefined;

  constructor(
    readonly http: AcmeHttp,
    public signer: AccountSigner,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  get accountUrl(): string {
    if (!this.#account) throw new AcmeClientError('BAD_RESPONSE', 'no account yet: register or find one first');
    return this.#account.url;
  }

  /** Uses a known account URL (from the client's store) without asking the server. */
  useAccount(url: string): void {
    this.#account = { url: this.http.checkOrigin(url), body: { status: 'valid' } as AccountJson };
  }

  /** RFC 8555 §7.3 (and §7.3.4 EAB). Returns the existing account for a known key. */
  async register(opts: { contact?: string[]; termsOfServiceAgreed?: boolean; eab?: ExternalAccountBinding } = {}): Promise<Account> {
    const d = await this.http.directory();
    const payload: Record<string, unknown> = {};
    if (opts.contact) payload.contact = opts.contact;
    if (opts.termsOfServiceAgreed) payload.termsOfServiceAgreed = true;
    if (opts.eab) {
      const { FlattenedSign } = await import('jose');
      payload.externalAccountBinding = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(this.signer.jwk)))
        .setProtectedHeader({ alg: 'HS256', kid: opts.eab.kid, url: d.newAccount })
        .sign(Buffer.from(opts.eab.hmacKey, 'base64url'));
    }
    const r = await this.http.post<AccountJson>(d.newAccount, payload, this.signer, null);
    if (!r.location) throw new AcmeClientError('BAD_RESPONSE', 'newAccount answered without a Location');
    this.#account = { url: r.location, body: r.body };
    return this.#account;
  }

  /** The account of this key, without creating one (onlyReturnExisting). */
  async find(): Promise<Account> {
    const d = await this.http.directory();
    const r = await this.http.post<AccountJson>(d.newAccount, { onlyReturnExisting: true }, this.signer, null);
    if (!r.location) throw new AcmeClientError('BAD_RESPONSE', 'newAccount answered without a Location');
    this.#account = { url: r.location, body: r.body };
    return this.#account;
  }

  async updateAccount(patch: { contact?: string[] }): Promise<Account> {
    const r = await this.http.post<AccountJson>(this.accountUrl, patch, this.signer, this.accountUrl);
    this.#account = { url: this.accountUrl, body: r.body };
    return this.#account;
  }

  async deactivateAccount(): Promise<Account> {
    const r = await this.http.post<AccountJson>(this.accountUrl, { status: 'deactivated' }, this.signer, this.accountUrl);
    return { url: this.accountUrl, body: r.body };
  }

  /** RFC 8555 §7.3.5: the inner JWS is signed by the new key and names the old one. */
  async rollover(next: AccountSigner): Promise<void> {
    const d = await this.http.directory();
    const inner = await this.http.sign(d.keyChange, { account: this.accountUrl, oldKey: this.signer.jwk }, next, null, null);
    await this.http.post(d.keyChange, inner, this.signer, this.accountUrl);
    this.signer = next;
  }

  async newOrder(identifiers: Identifier[], opts: NewOrderOptions = {}): Promise<Order> {
    const d = await this.http.directory();
    const payload: Record<string, unknown> = { identifiers };
    if (opts.replaces !== undefined) payload.replaces = opts.replaces;
    if (opts.profile !== undefined) payload.profile = opts.profile;
    const r = await this.http.post<OrderJson>(d.newOrder, payload, this.signer, this.accountUrl);
    if (!r.location) throw new AcmeClientError('BAD_RESPONSE', 'newOrder answered without a Location');
    return { url: r.location, body: this.#checkOrder(r.body) };
  }

  #checkOrder(o: OrderJson): OrderJson {
    if (!o || typeof o !== 'object' || !(o.status in ORDER_STATUS_RANK) || !Array.isArray(o.authorizations) || typeof o.finalize !== 'string') {
      throw new AcmeClientError('BAD_RESPONSE', 'the server sent an order that is not an RFC 8555 order object');
    }
    for (const u of o.authorizations) this.http.checkOrigin(u);
    this.http.checkOrigin(o.finalize);
    if (o.certificate) this.http.checkOrigin(o.certificate);
    return o;
  }

  /**
   * RFC 9773 §4: the CA's suggested renewal window for a certificate (an unauthenticated GET), or
   * null when the CA does not offer renewalInfo. `get` stands in while AcmeHttp has no public GET.
   */
  async renewalInfo(certId: string, opts: { get?: UnauthenticatedGet; now?: Date } = {}): Promise<RenewalInfo | null> {
    return fetchRenewalInfo(this.http, certId, { ...(opts.get ? { get: opts.get } : {}), now: opts.now ?? new Date() });
  }

  async getOrder(url: string): Promise<Order> {
    const r = await this.http.post<OrderJson>(url, null, this.signer, this.accountUrl);
    return { url, body: this.#checkOrder(r.body) };
  }

  async getAuthorization(url: string): Promise<AuthorizationJson> {
    const r = await this.http.post<AuthorizationJson>(url, null, this.signer, this.accountUrl);
    return r.body;
  }

  async deactivateAuthorization(url: string): Promise<AuthorizationJson> {
    return (await this.http.post<AuthorizationJson>(url, { status: 'deactivated' }, this.signer, this.accountUrl)).body;
  }

  /** RFC 8555 §7.5.1: tells the server the challenge is ready to be validated. */
  async respondChallenge(ch: ChallengeJson): Promise<ChallengeJson> {
    return (await this.http.post<ChallengeJson>(ch.url, {}, this.signer, this.accountUrl)).body;
  }

  /** RFC 8555 §8.1 key authorization for a token. */
  async keyAuthorization(token: string): Promise<string> {
    return `${token}.${await calculateJwkThumbprint(this.signer.jwk as JWK, 'sha256')}`;
  }

  /** Polls until `done`, honouring Retry-After (capped), bounded by `timeoutMs`. */
  async #poll<T>(url: string, done: (b: T) => boolean, timeoutMs: number): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (let i = 0; ; i++) {
      const r = await this.http.post<T>(url, null, this.signer, this.accountUrl);
      if (done(r.body)) return r.body;
      if (Date.now() > end) throw new AcmeClientError('TIMEOUT', `${url} did not settle within ${Math.round(timeoutMs / 1000)} s`);
      const wait = r.retryAfter !== undefined ? r.retryAfter * 1000 : Math.min(250 * 2 ** i, 5000);
      await this.sleep(Math.min(Math.max(wait, 100), 10_000, Math.max(0, end - Date.now())));
    }
  }

  async waitAuthorization(url: string, timeoutMs = 120_000): Promise<AuthorizationJson> {
    return this.#poll<AuthorizationJson>(url, (b) => b.status !== 'pending', timeoutMs);
  }

  /** Polls an order until it leaves `pending`/`processing`. A status going backwards is an error. */
  async waitOrder(order: Order, timeoutMs = 120_000): Promise<Order> {
    let rank = ORDER_STATUS_RANK[order.body.status] ?? 0;
    const body = await this.#poll<OrderJson>(
      order.url,
      (b) => {
        const r = ORDER_STATUS_RANK[b.status];
        if (r === undefined) throw new AcmeClientError('BAD_RESPONSE', `order status "${String(b.status)}" is not an RFC 8555 status`);
        if (r < rank) throw new AcmeClientError('BAD_RESPONSE', `order status went backwards to ${b.status}`);
        rank = r;
        return b.status !== 'pending' && b.status !== 'processing';
      },
      timeoutMs,
    );
    return { url: order.url, body: this.#checkOrder(body) };
  }

  async finalize(order: Order, csrDer: Buffer): Promise<Order> {
    const r = await this.http.post<OrderJson>(order.body.finalize, { csr: csrDer.toString('base64url') }, this.signer, this.accountUrl);
    return { url: order.url, body: this.#checkOrder(r.body) };
  }

  /** RFC 8555 §7.4.2: the PEM chain; only CERTIFICATE blocks are accepted. */
  async downloadCertificate(url: string): Promise<string> {
    const r = await this.http.post<string>(url, null, this.signer, this.accountUrl);
    const text = r.text.replace(/\r\n/g, '\n');
    // Every BEGIN line counts, also one nested in or after a CERTIFICATE block or never ended.
    if ([...text.matchAll(/-----BEGIN ([^\n]*?)-----/g)].some((m) => m[1] !== 'CERTIFICATE')) {
      throw new AcmeClientError('BAD_RESPONSE', `${url} sent something other than CERTIFICATE blocks; refusing it`);
    }
    const blocks = text.match(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g) ?? [];
    if (blocks.length === 0) throw new AcmeClientError('BAD_RESPONSE', `${url} sent no certificate`);
    if (blocks.some((b) => !b.startsWith('-----BEGIN CERTIFICATE-----'))) {
      throw new AcmeClientError('BAD_RESPONSE', `${url} sent something other than CERTIFICATE blocks; refusing it`);
    }
    return `${blocks.join('\n')}\n`;
  }

  /** RFC 8555 §7.6, signed by the account, or by the certificate's own key when `certKey` is given. */
  async revoke(certDer: Buffer, opts: { reason?: number; certKey?: AccountSigner } = {}): Promise<void> {
    const d = await this.http.directory();
    const payload: Record<string, unknown> = { certificate: certDer.toString('base64url') };
    if (opts.reason !== undefined) payload.reason = opts.reason;
    if (opts.certKey) await this.http.post(d.revokeCert, payload, opts.certKey, null);
    else await this.http.post(d.revokeCert, payload, this.signer, this.accountUrl);
  }
}

/** SubjectPublicKeyInfo DER of a signer, to compare with a certificate key. */
export function signerSpki(s: AccountSigner): Buffer {
  return createPublicKey(s.privateKey).export({ type: 'spki', format: 'der' });
}
