/**
 * The registration authority (Boulder's RA): accounts, orders, authorizations, challenges, finalize,
 * revocation. The only part that changes CA state, always through one store transaction per request.
 * It knows nothing of HTTP: the API layer turns records into JSON and URLs.
 */
import { randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { randomId, timeOrderedId, type Random } from '../../lib/random.js';
import {
  canonicalIdentifier,
  identifierKey,
  isWildcard,
  sameIdentifierSet,
  sortIdentifiers,
} from '../../protocol/identifiers.js';
import { jwkThumbprint, jwkToSpki, keyAuthorization, publicJwk } from '../../protocol/jws.js';
import { AcmeProblem } from '../../protocol/problems.js';
import { REVOCATION_REASONS, type ChallengeType, type Identifier } from '../../protocol/types.js';
import type {
  AccountRecord,
  AuthzRecord,
  CertificateRecord,
  CertificateSelector,
  ChallengeRecord,
  OrderRecord,
  Store,
  StoreTx,
  TransactionOptions,
} from '../../storage/store.js';
import type { Profile, Profiles } from '../issuance/profiles.js';
import type { CsrInfo, IssuancePlan, IssuedCertificate } from '../issuance/types.js';
import type { Validator } from '../validation/types.js';
import { NonceMinter } from './nonces.js';
import { checkPolicy, type IdentifierPolicy } from './policy.js';
import { chance } from './testing-faults.js';

/** What the authority needs from issuance (server/issuance implements it). */
export interface Issuer {
  checkCsr(csrDer: Buffer, opts: { accountKeySpki?: Buffer }): Promise<CsrInfo>;
  plan(input: { identifiers: Identifier[]; spki: Buffer; clientAuth: boolean; serverAuth?: boolean; lifetimeMs: number }): IssuancePlan;
  sign(plan: IssuancePlan): Promise<IssuedCertificate>;
  /** Serial (canonical hex) and SubjectPublicKeyInfo of a DER certificate; null if it does not parse. */
  inspect(der: Buffer): { serial: string; spki: Buffer } | null;
  /** keyIdentifier of the AKI in every leaf, the first half of an ARI certID (RFC 9773 §4.1). */
  readonly authorityKeyId: Buffer;
}

export interface AuthorityConfig {
  externalAccountRequired: boolean;
  authzReuseDays: number;
  validAuthzLifetimeDays: number;
  pendingAuthzLifetimeHours: number;
  orderLifetimeHours: number;
  maxIdentifiersPerOrder: number;
  maxPendingOrdersPerAccount: number;
  ordersPageSize: number;
  nonceLifetimeSeconds: number;
  maxContacts: number;
  identifierPolicy: IdentifierPolicy;
  /** Certificate profiles (lifetime, EKUs) and the default one. */
  profiles: Profiles;
  validationConcurrency: number;
  /** At finalize, CAA is checked again for names validated longer ago than this. */
  caaRecheckAfterHours: number;
  /**
   * TEST ONLY (config `testing.authzReusePercent`): reuse an authorization for an identifier with
   * this chance (0-100), and reuse pending ones too. Undefined: valid ones always, pending never.
   */
  authzReusePercent?: number | undefined;
  /** RFC 9773: Retry-After of renewalInfo responses, and an optional explanationURL. */
  renewalInfoRetryAfterSeconds: number;
  renewalInfoExplanationUrl?: string | undefined;
}

export interface AuthorityDeps {
  store: Store;
  issuer: Issuer;
  validator: Validator;
  clock: Clock;
  random: Random;
  logger: Logger;
  config: AuthorityConfig;
  /** The URL of an account, for CAA accounturi (RFC 8657). */
  accountUrl?: (id: string) => string;
  /** Draws for the test-only faults (config `testing`); defaults to `random`. */
  testingRandom?: Random;
  /** Called after a revocation committed (the CRL is signed again). Errors are logged, not thrown. */
  onRevoked?: (serial: string) => Promise<void>;
  /** Told what happened, for metrics (src/server/metrics.ts). Must be cheap and must not throw. */
  observer?: AuthorityObserver;
}

/** What the authority reports as it happens (the server's Prometheus metrics implement it). */
export interface AuthorityObserver {
  orderCreated(profile: string): void;
  certificateIssued(profile: string): void;
  certificateRevoked(reason: number): void;
  /** A validation ended (CAA included): its challenge type, the problem type when it failed, how long it took. */
  validationFinished(type: ChallengeType, problem: string | null, seconds: number): void;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * The reads of POST-as-GET: their only writes (#refreshAuthz, #refreshOrder) are compare-and-sets
 * that stand alone, so a store may skip BEGIN and COMMIT for them (TransactionOptions.standalone).
 */
const STANDALONE: TransactionOptions = { standalone: true };

/** Serialised IssuancePlan, as stored with a pending certificate. */
interface StoredPlan {
  serial: string;
  notBefore: string;
  notAfter: string;
  identifiers: Identifier[];
  commonName?: string;
  spki: string;
  clientAuth: boolean;
  serverAuth?: boolean;
}

function planToJson(p: IssuancePlan): StoredPlan {
  return {
    serial: p.serial,
    notBefore: p.notBefore.toISOString(),
    notAfter: p.notAfter.toISOString(),
    identifiers: p.identifiers,
    ...(p.commonName ? { commonName: p.commonName } : {}),
    spki: p.spki.toString('base64'),
    clientAuth: p.clientAuth,
    ...(p.serverAuth === false ? { serverAuth: false } : {}),
  };
}

function planFromJson(j: StoredPlan): IssuancePlan {
  return {
    serial: j.serial,
    notBefore: new Date(j.notBefore),
    notAfter: new Date(j.notAfter),
    identifiers: j.identifiers,
    ...(j.commonName ? { commonName: j.commonName } : {}),
    spki: Buffer.from(j.spki, 'base64'),
    clientAuth: j.clientAuth,
    ...(j.serverAuth === false ? { serverAuth: false } : {}),
  };
}

const EMAIL = /^[A-Za-z0-9.!#$&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

/** RFC 8555 §7.3.5: the new key belongs to another account: 409 with that account's URL in Location. */
export class KeyInUseProblem extends AcmeProblem {
  constructor(readonly accountId: string) {
    super('malformed', 'the new key is already in use by another account', { status: 409 });
  }
}

/**
 * RFC 9773 §4.2 window for a certificate at `now`: the operator's, a past one when revoked (renew
 * at once), the last third of the lifetime, or the middle tenth for lifetimes under 10 days.
 */
export function suggestedWindow(cert: Pick<CertificateRecord, 'notBefore' | 'notAfter' | 'revokedAt' | 'renewalWindow'>, now: Date): { start: Date; end: Date } {
  if (cert.revokedAt) {
    const t = Math.min(now.getTime(), cert.revokedAt.getTime());
    return { start: new Date(t - 2 * HOUR), end: new Date(t - HOUR) };
  }
  if (cert.renewalWindow) return cert.renewalWindow;
  const nb = cert.notBefore.getTime();
  const life = cert.notAfter.getTime() - nb;
  if (life < 10 * DAY) return { start: new Date(nb + life * 0.45), end: new Date(nb + life * 0.55) };
  return { start: new Date(nb + (life * 2) / 3), end: new Date(nb + (life * 5) / 6) };
}

export type RevokeAuth = { kind: 'account'; account: AccountRecord } | { kind: 'certKey'; jwk: JWK };

export class Authority {
  readonly #store: Store;
  readonly #issuer: Issuer;
  readonly #validator: Validator;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #testingRandom: Random;
  readonly #log: Logger;
  readonly #cfg: AuthorityConfig;
  readonly #accountUrl: (id: string) => string;
  readonly #onRevoked: ((serial: string) => Promise<void>) | undefined;
  readonly #observer: AuthorityObserver | undefined;
  /** Challenge ids being validated by this process, and the queue waiting for a slot. */
  readonly #running = new Set<string>();
  readonly #queue: string[] = [];
  readonly #idle = new Set<() => void>();
  #closed = false;
  #nonces: Promise<NonceMinter> | undefined;
  /** SPKI of account keys by thumbprint (importing a JWK costs as much as a signature check). Bounded. */
  readonly #spkis = new Map<string, Buffer>();

  constructor(deps: AuthorityDeps) {
    this.#store = deps.store;
    this.#issuer = deps.issuer;
    this.#validator = deps.validator;
    this.#clock = deps.clock;
    this.#random = deps.random;
    this.#testingRandom = deps.testingRandom ?? deps.random;
    this.#log = deps.logger;
    this.#cfg = deps.config;
    this.#accountUrl = deps.accountUrl ?? ((id) => id);
    this.#onRevoked = deps.onRevoked;
    this.#observer = deps.observer;
  }

  get config(): AuthorityConfig {
    return this.#cfg;
  }

  #now(): Date {
    return this.#clock.now();
  }

  /** Ids of orders, authorizations, challenges and certificates (src/lib/random.ts timeOrderedId). */
  #id(): string {
    return timeOrderedId(this.#now().getTime(), this.#random);
  }

  // ---------------------------------------------------------------- nonces (RFC 8555 §7.2)

  #accountSpki(account: AccountRecord): Buffer {
    let spki = this.#spkis.get(account.thumbprint);
    if (!spki) {
      spki = jwkToSpki(account.jwk);
      if (this.#spkis.size >= 10_000) this.#spkis.delete(this.#spkis.keys().next().value!);
      this.#spkis.set(account.thumbprint, spki);
    }
    return spki;
  }

  /** The minter, with the key every process on this database shares (created by the first). */
  #minter(): Promise<NonceMinter> {
    this.#nonces ??= this.#store.serverSecret('nonce-hmac-sha256', () => randomBytes(32)).then(
      (key) => new NonceMinter(key, this.#random),
      (e: unknown) => {
        this.#nonces = undefined;
        throw e;
      },
    );
    return this.#nonces;
  }

  async newNonce(): Promise<string> {
    return (await this.#minter()).mint(new Date(this.#now().getTime() + this.#cfg.nonceLifetimeSeconds * 1000));
  }

  /** True if the nonce was issued by this CA (any replica), has not expired, and was not used before. Atomic. */
  async consumeNonce(value: string): Promise<boolean> {
    const expires = (await this.#minter()).check(value, this.#now());
    return expires !== null && this.#store.useNonce(value, expires);
  }

  // ---------------------------------------------------------------- accounts (RFC 8555 §7.3)

  #checkContacts(contact: unknown): string[] {
    if (contact === undefined) return [];
    if (!Array.isArray(contact)) throw new AcmeProblem('malformed', '"contact" must be an array of URLs');
    if (contact.length > this.#cfg.maxContacts) {
      throw new AcmeProblem('invalidContact', `at most ${this.#cfg.maxContacts} contacts are allowed`);
    }
    return contact.map((c) => {
      if (typeof c !== 'string') throw new AcmeProblem('malformed', 'each contact must be a string');
      // RFC 8555 §7.3: servers MUST support mailto: and MAY refuse others with unsupportedContact.
      if (!c.toLowerCase().startsWith('mailto:')) {
        throw new AcmeProblem('unsupportedContact', `only mailto: contacts are supported, not "${c.slice(0, 64)}"`);
      }
      const addr = c.slice('mailto:'.length);
      // RFC 8555 §7.3: no hfields, exactly one address.
      if (addr.includes('?') || addr.includes(',') || addr.includes('%') || !EMAIL.test(addr) || addr.length > 254) {
        throw new AcmeProblem('invalidContact', `"${c.slice(0, 100)}" is not a single valid email address`);
      }
      return `mailto:${addr}`;
    });
  }

  /**
   * newAccount (RFC 8555 §7.3). Returns the existing account for a known key (§7.3.1) or, with
   * onlyReturnExisting, accountDoesNotExist.
   */
  async newAccount(input: {
    jwk: JWK;
    payload: Record<string, unknown>;
    verifyEab: (eab: unknown) => Promise<string>;
  }): Promise<{ account: AccountRecord; created: boolean }> {
    const jwk = publicJwk(input.jwk);
    const thumbprint = await jwkThumbprint(jwk);
    const p = input.payload;
    const existing = await this.#store.getAccountByThumbprint(thumbprint);
    if (existing) {
      if (existing.status !== 'valid') {
        throw new AcmeProblem('unauthorized', `the account for this key is ${existing.status}`, { status: 401 });
      }
      return { account: existing, created: false };
    }
    if (p.onlyReturnExisting === true) {
      throw new AcmeProblem('accountDoesNotExist', 'no account exists for this key');
    }
    if (p.onlyReturnExisting !== undefined && typeof p.onlyReturnExisting !== 'boolean') {
      throw new AcmeProblem('malformed', '"onlyReturnExisting" must be a boolean');
    }
    if (p.termsOfServiceAgreed !== undefined && typeof p.termsOfServiceAgreed !== 'boolean') {
      throw new AcmeProblem('malformed', '"termsOfServiceAgreed" must be a boolean');
    }
    const contact = this.#checkContacts(p.contact);
    let eabKid: string | null = null;
    if (p.externalAccountBinding !== undefined) {
      eabKid = await input.verifyEab(p.externalAccountBinding);
    } else if (this.#cfg.externalAccountRequired) {
      // RFC 8555 §7.3.4
      throw new AcmeProblem('externalAccountRequired', 'this CA requires an external account binding (get a key id and HMAC key from the operator: anvil eab create)');
    }
    const account: AccountRecord = {
      // Not time-ordered: an account URL is published (CAA accounturi, RFC 8657), and its creation
      // time is nobody's business. Accounts are few and long-lived; their index order does not matter.
      id: randomId(this.#random),
      status: 'valid',
      jwk,
      thumbprint,
      contact,
      termsOfServiceAgreed: p.termsOfServiceAgreed === true,
      eabKid,
      createdAt: this.#now(),
    };
    return this.#store.transaction(async (tx) => {
      // Two racing newAccount calls with one key: the unique thumbprint decides, the loser gets the winner.
      const again = await tx.getAccountByThumbprint(thumbprint);
      if (again) return { account: again, created: false };
      if (eabKid !== null && !(await tx.useEabKey(eabKid, account.id))) {
        throw new AcmeProblem('unauthorized', 'this external account key has already been used or has expired');
      }
      await tx.createAccount(account);
      return { account, created: true };
    });
  }

  /** The account a `kid` names; accountDoesNotExist / unauthorized as RFC 8555 §6.2 and §7.3.6 say. */
  async accountForKid(id: string): Promise<AccountRecord> {
    const a = await this.#store.getAccount(id);
    if (!a) throw new AcmeProblem('accountDoesNotExist', 'no account exists with this key id', { status: 400 });
    if (a.status !== 'valid') throw new AcmeProblem('unauthorized', `the account is ${a.status}`, { status: 401 });
    return a;
  }

  /** RFC 8555 §7.3.2 update (contact, termsOfServiceAgreed) and §7.3.6 deactivation. */
  async updateAccount(account: AccountRecord, payload: Record<string, unknown> | null): Promise<AccountRecord> {
    if (payload === null) return account;
    if (payload.status !== undefined) {
      if (payload.status !== 'deactivated') throw new AcmeProblem('malformed', 'the only status a client may set is "deactivated"');
      return this.#store.transaction(async (tx) => {
        await tx.updateAccount(account.id, { status: 'deactivated' }, ['valid']);
        // RFC 8555 §7.3.6: the server SHOULD cancel pending operations authorized by the account:
        // its authorizations stop counting, so its open orders can never become ready.
        await tx.updateAccountAuthzs(account.id, ['pending', 'valid'], 'deactivated');
        return { ...account, status: 'deactivated' as const };
      });
    }
    const patch: Partial<AccountRecord> = {};
    if (payload.contact !== undefined) patch.contact = this.#checkContacts(payload.contact);
    if (payload.termsOfServiceAgreed === true) patch.termsOfServiceAgreed = true;
    if (Object.keys(patch).length === 0) return account;
    return this.#store.transaction(async (tx) => {
      if (!(await tx.updateAccount(account.id, patch, ['valid']))) {
        throw new AcmeProblem('unauthorized', 'the account is no longer valid', { status: 401 });
      }
      return { ...account, ...patch };
    });
  }

  /** RFC 8555 §7.3.5 key rollover. The caller has verified both signatures and the inner fields. */
  async changeKey(account: AccountRecord, newJwk: JWK): Promise<AccountRecord> {
    const jwk = publicJwk(newJwk);
    const thumbprint = await jwkThumbprint(jwk);
    return this.#store.transaction(async (tx) => {
      const other = await tx.getAccountByThumbprint(thumbprint);
      if (other) {
        throw new KeyInUseProblem(other.id);
      }
      if (!(await tx.updateAccount(account.id, { jwk, thumbprint }, ['valid']))) {
        throw new AcmeProblem('unauthorized', 'the account is no longer valid', { status: 401 });
      }
      return { ...account, jwk, thumbprint };
    });
  }

  async listOrders(account: AccountRecord, cursor: string | null) {
    return this.#store.listOrders(account.id, cursor, this.#cfg.ordersPageSize);
  }

  // ---------------------------------------------------------------- orders (RFC 8555 §7.4)

  async newOrder(account: AccountRecord, payload: Record<string, unknown> | null): Promise<OrderRecord> {
    if (!payload) throw new AcmeProblem('malformed', 'newOrder needs a payload with "identifiers"');
    if (payload.notBefore !== undefined || payload.notAfter !== undefined) {
      // RFC 8555 §7.4: the server MAY refuse; Anvil sets validity by its own profile.
      throw new AcmeProblem('malformed', 'this CA does not support "notBefore"/"notAfter" in orders; leave them out');
    }
    const profile = this.#orderProfile(payload.profile);
    const raw = payload.identifiers;
    if (!Array.isArray(raw) || raw.length === 0) throw new AcmeProblem('malformed', '"identifiers" must be a non-empty array');
    if (raw.length > this.#cfg.maxIdentifiersPerOrder) {
      throw new AcmeProblem('rejectedIdentifier', `an order may have at most ${this.#cfg.maxIdentifiersPerOrder} identifiers, not ${raw.length}`);
    }
    // Check every identifier and report each bad one as a subproblem (RFC 8555 §6.7.1).
    const subproblems: AcmeProblem[] = [];
    const ids: Identifier[] = [];
    for (const r of raw) {
      try {
        const id = canonicalIdentifier(r);
        checkPolicy(id, this.#cfg.identifierPolicy);
        ids.push(id);
      } catch (e) {
        if (!(e instanceof AcmeProblem)) throw e;
        subproblems.push(e);
      }
    }
    if (subproblems.length === 1) throw subproblems[0]!;
    if (subproblems.length > 1) {
      const types = new Set(subproblems.map((s) => s.type));
      const top = types.size === 1 ? subproblems[0]!.type : 'compound';
      throw new AcmeProblem(top === 'compound' ? 'compound' : top, `${subproblems.length} identifiers were refused`, {
        subproblems,
      });
    }
    const identifiers = sortIdentifiers(ids);
    const replaced = payload.replaces === undefined ? null : await this.#checkReplaces(account, payload.replaces, identifiers);
    const now = this.#now();
    const reuseAfter = new Date(now.getTime() - this.#cfg.authzReuseDays * DAY);
    const orderExpires = new Date(now.getTime() + this.#cfg.orderLifetimeHours * HOUR);

    const created = await this.#store.transaction(async (tx) => {
      if (this.#cfg.maxPendingOrdersPerAccount > 0) {
        const open = await tx.countOpenOrders(account.id, now);
        if (open >= this.#cfg.maxPendingOrdersPerAccount) {
          throw new AcmeProblem('rateLimited', `too many open orders for this account (${open}); finish or let some expire`, {
            retryAfter: 3600,
          });
        }
      }
      const authzIds: string[] = [];
      const testingReuse = this.#cfg.authzReusePercent;
      let pending: Map<string, AuthzRecord> | undefined;
      for (const id of identifiers) {
        const wildcard = isWildcard(id);
        const base: Identifier = wildcard ? { type: 'dns', value: id.value.slice(2) } : id;
        // Normally a young valid authorization is always reused; with the test-only
        // testing.authzReusePercent only by chance, and then a pending one too (as Boulder does),
        // so clients meet orders that are ready at once and authorizations shared between orders.
        const tryReuse =
          this.#cfg.authzReuseDays > 0 && (testingReuse === undefined || chance(this.#testingRandom, testingReuse));
        if (tryReuse) {
          // Reuse must not outlive the order needs: the authorization must be valid until the order expires.
          let reuse = await tx.findReusableAuthz(account.id, base, wildcard, reuseAfter, now);
          if (!reuse && testingReuse !== undefined) {
            pending ??= await this.#pendingAuthzs(tx, account.id, now);
            reuse = pending.get(`${identifierKey(base)}|${wildcard}`) ?? null;
          }
          if (reuse) {
            authzIds.push(reuse.id);
            continue;
          }
        }
        const authz = this.#newAuthz(account.id, base, wildcard, now);
        await tx.createAuthz(authz);
        authzIds.push(authz.id);
      }
      const order: OrderRecord = {
        id: this.#id(),
        accountId: account.id,
        status: 'pending',
        expires: orderExpires,
        identifiers,
        notBefore: null,
        notAfter: null,
        error: null,
        authzIds,
        certificateId: null,
        createdAt: now,
        profile: profile.name,
        replaces: replaced ? (payload.replaces as string) : null,
      };
      await tx.createOrder(order);
      // All authorizations may already be valid (reuse): the order is then ready at once.
      return this.#refreshOrder(tx, order);
    });
    this.#observer?.orderCreated(created.profile ?? this.#cfg.profiles.default.name);
    return created;
  }

  /** draft-ietf-acme-profiles §4: the profile an order names, or the default; invalidProfile if unknown. */
  #orderProfile(raw: unknown): Profile {
    if (raw === undefined) return this.#cfg.profiles.default;
    if (typeof raw !== 'string') throw new AcmeProblem('malformed', '"profile" must be a string naming one of the directory\'s meta.profiles');
    const p = this.#cfg.profiles.get(raw);
    if (!p) {
      throw new AcmeProblem('invalidProfile', `this CA has no profile "${raw.slice(0, 64)}"; choose one of ${this.#cfg.profiles.names().join(', ')}`);
    }
    return p;
  }

  /**
   * RFC 9773 §5: "replaces" names a certificate of this account that shares an identifier with the
   * order and has not been replaced yet.
   */
  async #checkReplaces(account: AccountRecord, raw: unknown, identifiers: Identifier[]): Promise<CertificateRecord> {
    if (typeof raw !== 'string') throw new AcmeProblem('malformed', '"replaces" must be a certificate identifier string (RFC 9773 §4.1)');
    const cert = await this.#certificateByCertId(raw);
    if (cert.accountId !== account.id) {
      throw new AcmeProblem('unauthorized', 'the certificate named in "replaces" was not issued to this account');
    }
    const wanted = new Set(identifiers.map(identifierKey));
    if (!cert.identifiers.some((i) => wanted.has(identifierKey(i)))) {
      throw new AcmeProblem('malformed', 'the certificate named in "replaces" shares no identifier with this order');
    }
    const by = await this.#store.getCertificateReplacing(cert.id);
    if (by) throw new AcmeProblem('alreadyReplaced', `certificate ${cert.serial} was already replaced (by certificate ${by.serial}); leave "replaces" out or name the newest certificate`);
    return cert;
  }

  /**
   * RFC 9773 §4.1: certID = base64url(AKI keyIdentifier) "." base64url(serial DER bytes). Unknown
   * or foreign certificates are 404; a malformed certID is 400.
   */
  async #certificateByCertId(certId: string): Promise<CertificateRecord> {
    const m = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{1,64})$/.exec(certId);
    if (!m) throw new AcmeProblem('malformed', 'a certificate identifier is base64url(keyIdentifier) "." base64url(serial) (RFC 9773 §4.1)');
    const keyId = Buffer.from(m[1]!, 'base64url');
    const serialBytes = Buffer.from(m[2]!, 'base64url');
    if (serialBytes.length === 0 || serialBytes.length > 21) throw new AcmeProblem('malformed', 'the serial in the certificate identifier is not a valid serial number');
    const notFound = new AcmeProblem('malformed', 'this CA did not issue a certificate with this identifier', { status: 404 });
    if (!keyId.equals(this.#issuer.authorityKeyId)) throw notFound;
    const serial = serialBytes.toString('hex').replace(/^0+(?=.)/, '');
    const cert = await this.#store.getCertificateBySerial(serial);
    if (!cert || cert.status !== 'issued') throw notFound;
    return cert;
  }

  /**
   * RFC 9773 §4.2: the suggested renewal window of a certificate. The operator's window (anvil ca
   * renew-early) wins; a revoked certificate gets a window in the past (renew now); otherwise the
   * last third of the lifetime, or around the midpoint for lifetimes under 10 days.
   */
  async renewalInfo(certId: string): Promise<{ start: Date; end: Date; retryAfterSeconds: number; explanationUrl?: string }> {
    const cert = await this.#certificateByCertId(certId);
    const retryAfterSeconds = this.#cfg.renewalInfoRetryAfterSeconds;
    const extra = this.#cfg.renewalInfoExplanationUrl ? { explanationUrl: this.#cfg.renewalInfoExplanationUrl } : {};
    return { ...suggestedWindow(cert, this.#now()), retryAfterSeconds, ...extra };
  }

  /** `anvil ca renew-early`: moves the renewal window of the selected certificates to [start, end]. */
  async setRenewalWindow(selector: CertificateSelector, window: { start: Date; end: Date }): Promise<number> {
    if (!(window.start.getTime() < window.end.getTime())) throw new Error('the window must start before it ends');
    return this.#store.setRenewalWindow(selector, window, this.#now());
  }

  /**
   * TEST ONLY (testing.authzReusePercent): the account's pending, unexpired authorizations, newest
   * per identifier and wildcard flag, keyed `identifierKey|wildcard`. The store has no index for
   * this, so it walks the account's most recent orders (bounded); a test server's accounts are small.
   */
  async #pendingAuthzs(tx: StoreTx, accountId: string, now: Date): Promise<Map<string, AuthzRecord>> {
    const orderIds: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const page = await tx.listOrders(accountId, cursor, 100);
      orderIds.push(...page.items);
      if (orderIds.length > 200) orderIds.splice(0, orderIds.length - 200);
      cursor = page.next;
      if (!cursor) break;
    }
    const out = new Map<string, AuthzRecord>();
    // Oldest first, so that the newest pending authorization for a name wins.
    for (const orderId of orderIds) {
      const o = await tx.getOrder(orderId);
      // Ready, processing and valid orders hold only valid authorizations.
      if (!o || (o.status !== 'pending' && o.status !== 'invalid')) continue;
      for (const authzId of o.authzIds) {
        const a = await tx.getAuthz(authzId);
        if (!a || a.accountId !== accountId || a.status !== 'pending' || a.expires.getTime() <= now.getTime()) continue;
        out.set(`${identifierKey(a.identifier)}|${a.wildcard}`, a);
      }
    }
    return out;
  }

  #newAuthz(accountId: string, identifier: Identifier, wildcard: boolean, now: Date): AuthzRecord {
    const id = this.#id();
    // RFC 8555 §8.4 / RFC 8738 §7: wildcards only by dns-01, IP addresses never by dns-01.
    const types: ChallengeType[] = wildcard
      ? ['dns-01']
      : identifier.type === 'ip'
        ? ['http-01', 'tls-alpn-01']
        : ['http-01', 'dns-01', 'tls-alpn-01'];
    const challenges: ChallengeRecord[] = types.map((type) => ({
      id: this.#id(),
      authzId: id,
      type,
      // RFC 8555 §8.1: tokens have at least 128 bits of entropy.
      token: this.#random.bytes(32).toString('base64url'),
      status: 'pending',
      validated: null,
      error: null,
      validationRecords: null,
      requestedAt: null,
    }));
    return {
      id,
      accountId,
      identifier,
      wildcard,
      status: 'pending',
      expires: new Date(now.getTime() + this.#cfg.pendingAuthzLifetimeHours * HOUR),
      createdAt: now,
      validatedAt: null,
      challenges,
    };
  }

  /**
   * Brings an authorization's status up to date with time: pending/valid past `expires` become
   * expired (RFC 8555 §7.1.6). Persists the change.
   */
  async #refreshAuthz(tx: StoreTx, a: AuthzRecord): Promise<AuthzRecord> {
    if ((a.status === 'pending' || a.status === 'valid') && a.expires.getTime() <= this.#now().getTime()) {
      await tx.updateAuthz(a.id, { status: 'expired' }, [a.status]);
      return { ...a, status: 'expired' };
    }
    return a;
  }

  /** RFC 8555 §7.1.6 order state machine, driven by its authorizations and by time. Persists. */
  async #refreshOrder(tx: StoreTx, o: OrderRecord): Promise<OrderRecord> {
    if (o.status !== 'pending' && o.status !== 'ready') return o;
    if (o.expires.getTime() <= this.#now().getTime()) {
      const error = new AcmeProblem('malformed', 'the order expired before it was finalized').toJSON();
      await tx.updateOrder(o.id, { status: 'invalid', error }, [o.status]);
      return { ...o, status: 'invalid', error };
    }
    if (o.status === 'ready') return o;
    let allValid = true;
    for (const id of o.authzIds) {
      const raw = await tx.getAuthz(id);
      if (!raw) throw new Error(`order ${o.id} refers to missing authorization ${id}`);
      const a = await this.#refreshAuthz(tx, raw);
      if (a.status === 'valid') continue;
      allValid = false;
      if (a.status !== 'pending') {
        const failed = a.challenges.find((c) => c.status === 'invalid' && c.error);
        const detail = `authorization for ${a.identifier.value} is ${a.status}`;
        const error = failed?.error
          ? { ...failed.error, identifier: a.identifier }
          : new AcmeProblem('unauthorized', detail, { identifier: a.identifier }).toJSON();
        await tx.updateOrder(o.id, { status: 'invalid', error }, ['pending']);
        return { ...o, status: 'invalid', error };
      }
    }
    if (allValid) {
      await tx.updateOrder(o.id, { status: 'ready' }, ['pending']);
      return { ...o, status: 'ready' };
    }
    return o;
  }

  /** 404 for ids that do not exist or belong to another account (never reveal which). */
  #notFound(what: string): AcmeProblem {
    return new AcmeProblem('malformed', `no such ${what}`, { status: 404 });
  }

  async getOrder(account: AccountRecord, id: string): Promise<OrderRecord> {
    return this.#store.transaction(async (tx) => {
      const o = await tx.getOrder(id);
      if (!o || o.accountId !== account.id) throw this.#notFound('order');
      return this.#refreshOrder(tx, o);
    }, STANDALONE);
  }

  async getAuthz(account: AccountRecord, id: string): Promise<AuthzRecord> {
    return this.#store.transaction(async (tx) => {
      const a = await tx.getAuthz(id);
      if (!a || a.accountId !== account.id) throw this.#notFound('authorization');
      return this.#refreshAuthz(tx, a);
    }, STANDALONE);
  }

  /** RFC 8555 §7.5.2 client deactivation of an authorization. */
  async deactivateAuthz(account: AccountRecord, id: string): Promise<AuthzRecord> {
    return this.#store.transaction(async (tx) => {
      const a0 = await tx.getAuthz(id);
      if (!a0 || a0.accountId !== account.id) throw this.#notFound('authorization');
      const a = await this.#refreshAuthz(tx, a0);
      if (a.status !== 'pending' && a.status !== 'valid') {
        throw new AcmeProblem('malformed', `an authorization that is ${a.status} cannot be deactivated`);
      }
      if (!(await tx.updateAuthz(id, { status: 'deactivated' }, [a.status]))) {
        throw new AcmeProblem('malformed', 'the authorization changed while deactivating it; try again');
      }
      return { ...a, status: 'deactivated' };
    });
  }

  async getChallenge(account: AccountRecord, id: string): Promise<{ challenge: ChallengeRecord; authz: AuthzRecord }> {
    return this.#store.transaction(async (tx) => {
      const c = await tx.getChallenge(id);
      const a = c ? await tx.getAuthz(c.authzId) : null;
      if (!c || !a || a.accountId !== account.id) throw this.#notFound('challenge');
      return { challenge: c, authz: await this.#refreshAuthz(tx, a) };
    }, STANDALONE);
  }

  /**
   * RFC 8555 §7.5.1: the client says it is ready. The challenge moves to processing and the
   * validation runs outside this request; the client polls.
   */
  async respondChallenge(account: AccountRecord, id: string): Promise<{ challenge: ChallengeRecord; authz: AuthzRecord }> {
    const r = await this.#store.transaction(async (tx) => {
      const c = await tx.getChallenge(id);
      const a0 = c ? await tx.getAuthz(c.authzId) : null;
      if (!c || !a0 || a0.accountId !== account.id) throw this.#notFound('challenge');
      const a = await this.#refreshAuthz(tx, a0);
      if (c.status !== 'pending') return { challenge: c, authz: a, queued: false }; // idempotent
      if (a.status !== 'pending') {
        throw new AcmeProblem('malformed', `the authorization is ${a.status}; its challenges can no longer be answered`);
      }
      const requestedAt = this.#now();
      if (!(await tx.updateChallenge(id, { status: 'processing', requestedAt }, ['pending']))) {
        const again = await tx.getChallenge(id);
        return { challenge: again ?? c, authz: a, queued: false };
      }
      return { challenge: { ...c, status: 'processing' as const, requestedAt }, authz: a, queued: true };
    });
    if (r.queued) this.#enqueue(id);
    return { challenge: r.challenge, authz: r.authz };
  }

  #enqueue(challengeId: string): void {
    if (this.#closed || this.#running.has(challengeId) || this.#queue.includes(challengeId)) return;
    this.#queue.push(challengeId);
    this.#pump();
  }

  #pump(): void {
    while (!this.#closed && this.#running.size < this.#cfg.validationConcurrency && this.#queue.length > 0) {
      const id = this.#queue.shift()!;
      this.#running.add(id);
      void this.#validate(id)
        .catch((e: unknown) => this.#log.error({ err: e, challenge: id }, 'validation failed unexpectedly'))
        .finally(() => {
          this.#running.delete(id);
          this.#pump();
          if (this.#running.size === 0 && this.#queue.length === 0) for (const f of this.#idle) f();
        });
    }
  }

  /** Resolves when no validation is queued or running (tests and shutdown). */
  async validationsIdle(): Promise<void> {
    if (this.#running.size === 0 && this.#queue.length === 0) return;
    await new Promise<void>((resolve) => {
      const f = () => {
        this.#idle.delete(f);
        resolve();
      };
      this.#idle.add(f);
    });
  }

  async #validate(challengeId: string): Promise<void> {
    const c = await this.#store.getChallenge(challengeId);
    if (!c || c.status !== 'processing') return;
    const a = await this.#store.getAuthz(c.authzId);
    if (!a) return;
    const account = await this.#store.getAccount(a.accountId);
    if (!account) return;
    const started = Date.now();
    let result = await this.#validator.validate({
      type: c.type,
      identifier: a.identifier,
      token: c.token,
      keyAuthorization: keyAuthorization(c.token, account.thumbprint),
    });
    if (result.ok && a.identifier.type === 'dns' && this.#validator.checkCaa) {
      const caa = await this.#validator.checkCaa({
        name: a.identifier.value,
        wildcard: a.wildcard,
        accountUri: this.#accountUrl(account.id),
        method: c.type,
      });
      if (caa) result = { ok: false, problem: caa, records: result.records };
    }
    const now = this.#now();
    await this.#store.transaction(async (tx) => {
      if (result.ok) {
        if (!(await tx.updateChallenge(c.id, { status: 'valid', validated: now, validationRecords: result.records }, ['processing']))) return;
        // RFC 8555 §7.1.6: one valid challenge makes the authorization valid.
        await tx.updateAuthz(
          a.id,
          { status: 'valid', validatedAt: now, expires: new Date(now.getTime() + this.#cfg.validAuthzLifetimeDays * DAY) },
          ['pending'],
        );
      } else {
        const error = { ...result.problem.toJSON(), identifier: a.identifier };
        if (!(await tx.updateChallenge(c.id, { status: 'invalid', error, validationRecords: result.records }, ['processing']))) return;
        await tx.updateAuthz(a.id, { status: 'invalid' }, ['pending']);
      }
      for (const o of await tx.ordersForAuthz(a.id)) await this.#refreshOrder(tx, o);
    });
    this.#observer?.validationFinished(c.type, result.ok ? null : result.problem.type, (Date.now() - started) / 1000);
    this.#log.info(
      {
        challenge: c.id,
        authz: a.id,
        account: account.id,
        type: c.type,
        identifier: a.identifier.value,
        ok: result.ok,
        problem: result.ok ? undefined : result.problem.type,
        ms: Date.now() - started,
      },
      'validation finished',
    );
  }

  // ---------------------------------------------------------------- finalize (RFC 8555 §7.4)

  async finalize(account: AccountRecord, orderId: string, payload: Record<string, unknown> | null): Promise<OrderRecord> {
    if (!payload || typeof payload.csr !== 'string' || !/^[A-Za-z0-9_-]+$/.test(payload.csr)) {
      throw new AcmeProblem('malformed', 'finalize needs a payload with "csr": base64url DER');
    }
    const csrDer = Buffer.from(payload.csr, 'base64url');
    // Cheap state check first, so an order that is not ready does not cost a CSR parse.
    const current = await this.getOrder(account, orderId);
    if (current.status !== 'ready') throw this.#orderNotReady(current);

    const csr = await this.#issuer.checkCsr(csrDer, { accountKeySpki: this.#accountSpki(account) });
    if (!sameIdentifierSet(csr.identifiers, current.identifiers)) {
      const want = current.identifiers.map(identifierKey).join(', ');
      const got = csr.identifiers.map(identifierKey).join(', ');
      // The order stays ready: the client may send a corrected CSR.
      throw new AcmeProblem('badCSR', `the CSR's names (${got}) must be exactly the order's identifiers (${want})`);
    }
    await this.#recheckCaa(account, current);
    const replaced = current.replaces ? await this.#certificateByCertId(current.replaces) : null;
    // An order made before profiles existed, or under a profile since removed from the config, gets the default.
    const profile = (current.profile ? this.#cfg.profiles.get(current.profile) : undefined) ?? this.#cfg.profiles.default;
    const plan = this.#issuer.plan({
      identifiers: current.identifiers,
      spki: csr.spki,
      clientAuth: profile.clientAuth,
      serverAuth: profile.serverAuth,
      lifetimeMs: profile.lifetimeMs,
    });
    const certId = this.#id();
    const now = this.#now();
    // Step 1: record the serial and the certificate about to be signed, and move the order to
    // processing. Of two concurrent finalizes, only one passes the compare-and-set.
    await this.#store.transaction(async (tx) => {
      const o = await tx.getOrder(orderId);
      if (!o || o.accountId !== account.id) throw this.#notFound('order');
      const fresh = await this.#refreshOrder(tx, o);
      if (fresh.status !== 'ready') throw this.#orderNotReady(fresh);
      // RFC 9773 §5: of two orders replacing one certificate, only the first finalized one may.
      if (replaced) {
        const by = await tx.getCertificateReplacing(replaced.id);
        if (by) throw new AcmeProblem('alreadyReplaced', `the certificate this order replaces was already replaced (by certificate ${by.serial})`);
      }
      if (!(await tx.updateOrder(orderId, { status: 'processing' }, ['ready']))) throw this.#orderNotReady(fresh);
      const cert: CertificateRecord = {
        id: certId,
        serial: plan.serial,
        accountId: account.id,
        orderId,
        status: 'pending',
        identifiers: plan.identifiers,
        notBefore: plan.notBefore,
        notAfter: plan.notAfter,
        plan: planToJson(plan),
        der: null,
        chainPem: null,
        issuedAt: null,
        revokedAt: null,
        revocationReason: null,
        createdAt: now,
        profile: profile.name,
        replacesId: replaced?.id ?? null,
        renewalWindow: null,
      };
      await tx.createCertificate(cert);
    });
    this.#log.info({ account: account.id, order: orderId, serial: plan.serial }, 'issuance recorded, signing');
    // Steps 2 and 3: sign, then store the certificate and make the order valid.
    const signed = await this.#signAndStore(certId, orderId, plan);
    this.#observer?.certificateIssued(profile.name);
    return signed;
  }

  /**
   * CAA is checked at validation; names validated longer ago than caaRecheckAfterHours are checked
   * again before issuance, so that a CAA record published since then is honoured.
   */
  async #recheckCaa(account: AccountRecord, order: OrderRecord): Promise<void> {
    if (!this.#validator.checkCaa) return;
    const cutoff = this.#now().getTime() - this.#cfg.caaRecheckAfterHours * HOUR;
    const problems: AcmeProblem[] = [];
    for (const id of order.authzIds) {
      const a = await this.#store.getAuthz(id);
      if (!a || a.identifier.type !== 'dns') continue;
      if (a.validatedAt && a.validatedAt.getTime() > cutoff) continue;
      const method = a.challenges.find((c) => c.status === 'valid')?.type ?? 'http-01';
      const p = await this.#validator.checkCaa({ name: a.identifier.value, wildcard: a.wildcard, accountUri: this.#accountUrl(account.id), method });
      if (p) problems.push(new AcmeProblem('caa', p.detail, { identifier: { type: 'dns', value: (a.wildcard ? '*.' : '') + a.identifier.value } }));
    }
    if (problems.length) {
      throw new AcmeProblem('caa', `CAA forbids issuance for ${problems.length} name(s)`, { subproblems: problems });
    }
  }

  #orderNotReady(o: OrderRecord): AcmeProblem {
    return new AcmeProblem('orderNotReady', `the order is ${o.status}, not ready${o.status === 'pending' ? ': complete its authorizations first' : ''}`, {
      status: 403,
    });
  }

  async #signAndStore(certId: string, orderId: string, plan: IssuancePlan): Promise<OrderRecord> {
    const issued = await this.#issuer.sign(plan);
    return this.#store.transaction(async (tx) => {
      await tx.updateCertificate(
        certId,
        { status: 'issued', der: issued.der, chainPem: issued.chainPem, issuedAt: this.#now() },
        ['pending'],
      );
      await tx.updateOrder(orderId, { status: 'valid', certificateId: certId }, ['processing']);
      const o = await tx.getOrder(orderId);
      if (!o) throw new Error(`order ${orderId} vanished`);
      return o;
    });
  }

  async getCertificate(account: AccountRecord, id: string): Promise<CertificateRecord> {
    const c = await this.#store.getCertificate(id);
    if (!c || c.accountId !== account.id || c.status !== 'issued') throw this.#notFound('certificate');
    return c;
  }

  // ---------------------------------------------------------------- revocation (RFC 8555 §7.6)

  async revoke(auth: RevokeAuth, payload: Record<string, unknown> | null): Promise<void> {
    if (!payload || typeof payload.certificate !== 'string' || !/^[A-Za-z0-9_-]+$/.test(payload.certificate)) {
      throw new AcmeProblem('malformed', 'revokeCert needs a payload with "certificate": base64url DER');
    }
    const reason = payload.reason ?? 0;
    if (typeof reason !== 'number' || !(REVOCATION_REASONS as readonly number[]).includes(reason)) {
      throw new AcmeProblem('badRevocationReason', `revocation reason ${JSON.stringify(reason)} is not allowed (use one of ${REVOCATION_REASONS.join(', ')})`);
    }
    const der = Buffer.from(payload.certificate, 'base64url');
    const parsed = this.#issuer.inspect(der);
    if (!parsed) throw new AcmeProblem('malformed', 'the certificate to revoke does not parse as DER X.509');
    const { serial, spki } = parsed;
    const cert = await this.#store.getCertificateBySerial(serial);
    // Unknown certificates and certificates of other CAs: do not reveal more than "not ours".
    if (!cert || cert.status !== 'issued' || !cert.der || !cert.der.equals(der)) {
      throw new AcmeProblem('unauthorized', 'this CA did not issue this certificate', { status: 403 });
    }
    if (auth.kind === 'certKey') {
      if (!jwkToSpki(auth.jwk).equals(spki)) {
        throw new AcmeProblem('unauthorized', "the request is not signed with the certificate's key");
      }
    } else if (auth.account.id !== cert.accountId) {
      // RFC 8555 §7.6: an account that holds authorizations for all the certificate's names may revoke.
      for (const id of cert.identifiers) {
        const base: Identifier = isWildcard(id) ? { type: 'dns', value: id.value.slice(2) } : id;
        if (!(await this.#store.hasValidAuthz(auth.account.id, base, this.#now()))) {
          throw new AcmeProblem('unauthorized', `this account neither issued the certificate nor holds a valid authorization for ${id.value}`);
        }
      }
    }
    // Compare-and-set: of two concurrent revocations one wins, the other is alreadyRevoked.
    if (!(await this.#store.revokeCertificate(cert.id, this.#now(), reason))) {
      throw new AcmeProblem('alreadyRevoked', 'the certificate is already revoked');
    }
    this.#observer?.certificateRevoked(reason);
    this.#log.info({ serial, reason, by: auth.kind === 'account' ? auth.account.id : 'certificate key' }, 'certificate revoked');
    if (this.#onRevoked) {
      await this.#onRevoked(serial).catch((e: unknown) => this.#log.error({ err: e, serial }, 'updating revocation status (CRL) after a revocation failed; the schedule will retry'));
    }
  }

  /**
   * Revocation by the CA's operator (the management API, after its own authorization): by serial
   * (hex, without leading zeros), with an RFC 5280 reason. Returns when it was revoked.
   */
  async revokeAsOperator(serial: string, reason: number, by: string): Promise<{ revokedAt: Date; certificateId: string }> {
    if (!(REVOCATION_REASONS as readonly number[]).includes(reason)) {
      throw new AcmeProblem('badRevocationReason', `revocation reason ${reason} is not allowed (use one of ${REVOCATION_REASONS.join(', ')})`);
    }
    const cert = await this.#store.getCertificateBySerial(serial);
    if (!cert || cert.status !== 'issued') throw new AcmeProblem('malformed', `this CA issued no certificate with serial ${serial}`, { status: 404 });
    const revokedAt = this.#now();
    if (!(await this.#store.revokeCertificate(cert.id, revokedAt, reason))) {
      throw new AcmeProblem('alreadyRevoked', 'the certificate is already revoked');
    }
    this.#log.info({ serial, reason, by }, 'certificate revoked by the operator');
    if (this.#onRevoked) {
      await this.#onRevoked(serial).catch((e: unknown) => this.#log.error({ err: e, serial }, 'updating revocation status (CRL) after a revocation failed; the schedule will retry'));
    }
    return { revokedAt, certificateId: cert.id };
  }

  // ---------------------------------------------------------------- start-up and shutdown

  /**
   * Finishes what a crash interrupted: signs certificates that were recorded but not stored (the
   * plan is the same, so the certificate is the one the client asked for), and resumes validations.
   */
  async recover(opts: { olderThanMs?: number } = {}): Promise<{ certificates: number; validations: number }> {
    // At start-up everything pending is stale; the periodic sweep only takes what another request
    // (here or on another replica) is not still working on.
    const cutoff = this.#now().getTime() - (opts.olderThanMs ?? 0);
    let certificates = 0;
    for (const c of await this.#store.listPendingCertificates(10_000)) {
      if (c.createdAt.getTime() > cutoff) continue;
      try {
        await this.#signAndStore(c.id, c.orderId, planFromJson(c.plan as StoredPlan));
        this.#observer?.certificateIssued(c.profile ?? this.#cfg.profiles.default.name);
        certificates++;
      } catch (e) {
        this.#log.error({ err: e, serial: c.serial, order: c.orderId }, 'finishing a recorded issuance failed; will retry');
      }
    }
    const pending = (await this.#store.listProcessingChallenges(10_000)).filter(
      (ch) => (ch.requestedAt?.getTime() ?? 0) <= cutoff && !this.#running.has(ch.id),
    );
    for (const ch of pending) this.#enqueue(ch.id);
    if (certificates || pending.length) {
      this.#log.warn({ certificates, validations: pending.length }, 'recovered work interrupted by a previous stop');
    }
    return { certificates, validations: pending.length };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.length = 0;
    await this.validationsIdle();
  }
}
