/**
 * The storage contract. The authority is the only caller that changes state, and it does so through
 * one `transaction` per ACME request. Implementations: SQLite (embedded default) and, later,
 * PostgreSQL; both must pass test/contract/store.test.ts.
 *
 * Contract, for every implementation:
 * - "Not found" is `null` (never an exception).
 * - `update*` methods with `expect` are compare-and-set: they change the row only if its current
 *   status is one of `expect`, and return whether they did. This is what makes two concurrent
 *   finalizes, or a validation racing a deactivation, come out with one winner.
 * - Dates are stored with millisecond precision and come back as Date objects.
 * - JSON-valued fields (jwk, identifiers, error, contact...) round-trip structurally.
 * - Inside `transaction`, all calls see one consistent state and either all commit or none do.
 *   Nested transactions are not supported.
 */
import type { JWK } from 'jose';
import type { ProblemDocument } from '../protocol/problems.js';
import type {
  AccountStatus,
  AuthorizationStatus,
  ChallengeStatus,
  ChallengeType,
  Identifier,
  OrderStatus,
} from '../protocol/types.js';

export interface AccountRecord {
  id: string;
  status: AccountStatus;
  jwk: JWK;
  /** RFC 7638 SHA-256 thumbprint of `jwk`, base64url. Unique across accounts. */
  thumbprint: string;
  contact: string[];
  termsOfServiceAgreed: boolean;
  /** The EAB key id bound at creation, if any. */
  eabKid: string | null;
  createdAt: Date;
}

export interface OrderRecord {
  id: string;
  accountId: string;
  status: OrderStatus;
  expires: Date;
  identifiers: Identifier[];
  notBefore: Date | null;
  notAfter: Date | null;
  error: ProblemDocument | null;
  /** Authorization ids, in the order of `identifiers`. */
  authzIds: string[];
  certificateId: string | null;
  createdAt: Date;
  /** The profile asked for in newOrder (draft-ietf-acme-profiles); null: the CA's default. */
  profile: string | null;
  /** RFC 9773 §5: the certID of the certificate this order replaces, if any (as the client sent it, checked). */
  replaces: string | null;
}

export interface ChallengeRecord {
  id: string;
  authzId: string;
  type: ChallengeType;
  token: string;
  status: ChallengeStatus;
  validated: Date | null;
  error: ProblemDocument | null;
  /** What the validator saw (JSON), for operators. */
  validationRecords: unknown[] | null;
  /** When the validation was asked for (processing since). */
  requestedAt: Date | null;
}

export interface AuthzRecord {
  id: string;
  accountId: string;
  /** For a wildcard order, the identifier without "*." and `wildcard` true (RFC 8555 §7.1.4). */
  identifier: Identifier;
  wildcard: boolean;
  status: AuthorizationStatus;
  expires: Date;
  createdAt: Date;
  /** When it became valid (authorization reuse measures age from here). */
  validatedAt: Date | null;
  challenges: ChallengeRecord[];
}

export type CertificateStatus = 'pending' | 'issued';

export interface CertificateRecord {
  id: string;
  /** Hex, lower case. Unique across all certificates ever recorded. */
  serial: string;
  accountId: string;
  /** Unique: one certificate per order. */
  orderId: string;
  /** 'pending': recorded, about to be signed. 'issued': `der` and `chainPem` are set. */
  status: CertificateStatus;
  identifiers: Identifier[];
  notBefore: Date;
  notAfter: Date;
  /** The full issuance plan as JSON (issuance/types.ts IssuancePlan, spki as base64). */
  plan: unknown;
  der: Buffer | null;
  chainPem: string | null;
  issuedAt: Date | null;
  revokedAt: Date | null;
  revocationReason: number | null;
  createdAt: Date;
  /** The profile it was issued under (null: issued before profiles existed). */
  profile: string | null;
  /** The certificate it replaces (from the order's "replaces"). */
  replacesId: string | null;
  /** An operator's renewal window (anvil ca renew-early), overriding the computed one; null: none. */
  renewalWindow: { start: Date; end: Date } | null;
}

/** A position in listCertificateChanges. */
export interface CertificateChangeCursor {
  at: Date;
  id: string;
}

/** What listCertificateChanges returns of a certificate. */
export interface CertificateChange {
  id: string;
  der: Buffer;
  profile: string | null;
  revokedAt: Date | null;
  revocationReason: number | null;
  /** issuedAt or revokedAt, as asked. */
  at: Date;
}

/** A revoked certificate, as a CRL entry needs it. */
export interface RevokedEntry {
  serial: string;
  revokedAt: Date;
  reason: number;
  notAfter: Date;
}

/** The newest CRL of an issuer. `number` only ever grows. */
export interface CrlRecord {
  issuer: string;
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  der: Buffer;
}

/** Which certificates `setRenewalWindow` changes: by serial, issued before a time, or all. */
export type CertificateSelector = { serials: string[] } | { issuedBefore: Date } | { all: true };

export interface EabKeyRecord {
  kid: string;
  /** base64url HMAC key. */
  hmacKey: string;
  /** How many accounts may bind this key (1 unless configured). */
  maxUses: number;
  uses: number;
  /** The account(s) that used it, newest last. */
  accountIds: string[];
  createdAt: Date;
  expiresAt: Date | null;
  comment: string | null;
}

export interface Page<T> {
  items: T[];
  /** Opaque cursor for the next page, or null at the end. */
  next: string | null;
}

/** The operations available inside (and outside) a transaction. */
export interface StoreTx {
  // Nonces (RFC 8555 §6.5). The server authenticates the nonces it issues by themselves (an HMAC);
  // the store only remembers which were used. useNonce records `value` as used until `expires` and
  // says whether this call was the first: of concurrent calls with one value, exactly one gets true.
  useNonce(value: string, expires: Date): Promise<boolean>;
  /** Forgets used nonces that expired at or before `now` (they are refused by their expiry anyway). */
  purgeExpired(now: Date): Promise<number>;
  /**
   * The secret called `name`, shared by every process on this database; the first caller's
   * `fresh()` value is stored and every caller, concurrent or later, gets that one.
   */
  serverSecret(name: string, fresh: () => Buffer): Promise<Buffer>;

  createAccount(a: AccountRecord): Promise<void>;
  getAccount(id: string): Promise<AccountRecord | null>;
  getAccountByThumbprint(thumbprint: string): Promise<AccountRecord | null>;
  updateAccount(
    id: string,
    patch: Partial<Pick<AccountRecord, 'status' | 'contact' | 'jwk' | 'thumbprint' | 'termsOfServiceAgreed'>>,
    expect?: AccountStatus[],
  ): Promise<boolean>;

  createOrder(o: OrderRecord): Promise<void>;
  getOrder(id: string): Promise<OrderRecord | null>;
  updateOrder(
    id: string,
    patch: Partial<Pick<OrderRecord, 'status' | 'error' | 'certificateId'>>,
    expect?: OrderStatus[],
  ): Promise<boolean>;
  /** An account's orders, oldest first, `limit` per page. */
  listOrders(accountId: string, cursor: string | null, limit: number): Promise<Page<string>>;
  /** Orders of an account that are pending or ready and not yet expired at `now` (rate limit). */
  countOpenOrders(accountId: string, now: Date): Promise<number>;
  /** Orders that include this authorization. */
  ordersForAuthz(authzId: string): Promise<OrderRecord[]>;

  /** Creates the authorization with its challenges. */
  createAuthz(a: AuthzRecord): Promise<void>;
  getAuthz(id: string): Promise<AuthzRecord | null>;
  /**
   * A valid authorization of this account for this identifier (and wildcard flag) that does not
   * expire before `expiresAfter` and was validated at or after `validatedAfter`; the newest one.
   */
  findReusableAuthz(
    accountId: string,
    identifier: Identifier,
    wildcard: boolean,
    validatedAfter: Date,
    expiresAfter: Date,
  ): Promise<AuthzRecord | null>;
  /** Valid, unexpired authorizations of an account for an identifier (any wildcard flag), for revocation. */
  hasValidAuthz(accountId: string, identifier: Identifier, now: Date): Promise<boolean>;
  updateAuthz(
    id: string,
    patch: Partial<Pick<AuthzRecord, 'status' | 'expires' | 'validatedAt'>>,
    expect?: AuthorizationStatus[],
  ): Promise<boolean>;

  /** Moves every authorization of an account in one of `from` to `to` (account deactivation); returns how many. */
  updateAccountAuthzs(accountId: string, from: AuthorizationStatus[], to: AuthorizationStatus): Promise<number>;

  getChallenge(id: string): Promise<ChallengeRecord | null>;
  updateChallenge(
    id: string,
    patch: Partial<Pick<ChallengeRecord, 'status' | 'validated' | 'error' | 'validationRecords' | 'requestedAt'>>,
    expect?: ChallengeStatus[],
  ): Promise<boolean>;
  /** Challenges in 'processing', oldest request first (to resume validations after a restart). */
  listProcessingChallenges(limit: number): Promise<ChallengeRecord[]>;

  /** Fails (throws) if the serial or the order already has a certificate. */
  createCertificate(c: CertificateRecord): Promise<void>;
  getCertificate(id: string): Promise<CertificateRecord | null>;
  getCertificateBySerial(serial: string): Promise<CertificateRecord | null>;
  updateCertificate(
    id: string,
    patch: Partial<Pick<CertificateRecord, 'status' | 'der' | 'chainPem' | 'issuedAt' | 'revokedAt' | 'revocationReason'>>,
    expect?: CertificateStatus[],
  ): Promise<boolean>;
  /**
   * Revokes an issued certificate that is not revoked yet (compare-and-set): false when it is
   * already revoked (by a concurrent request, too) or not issued.
   */
  revokeCertificate(id: string, revokedAt: Date, reason: number): Promise<boolean>;
  /** Certificates recorded but not yet signed (to finish them after a crash). */
  listPendingCertificates(limit: number): Promise<CertificateRecord[]>;
  /** Serials of every certificate ever recorded, for checks; bounded. */
  countCertificates(): Promise<number>;
  /** An issued or pending certificate whose order replaced certificate `id` (RFC 9773 alreadyReplaced). */
  getCertificateReplacing(id: string): Promise<CertificateRecord | null>;
  /**
   * Sets the operator's renewal window on the selected issued certificates that are not revoked and
   * not expired at `now`; returns how many changed.
   */
  setRenewalWindow(selector: CertificateSelector, window: { start: Date; end: Date }, now: Date): Promise<number>;
  /** Revoked certificates still unexpired at `notAfterAfter` (a CRL's entries), by serial; at most `limit`. */
  listRevoked(notAfterAfter: Date, limit: number): Promise<RevokedEntry[]>;
  /**
   * Issued certificates in the order of their issuance (`kind` 'issued': issuedAt, then id) or of
   * their revocation ('revoked': revokedAt, then id), after `after` (null: from the first), at most
   * `limit`. Each order follows an index. How the inventory follows the CA (src/inventory/sources.ts).
   */
  listCertificateChanges(kind: 'issued' | 'revoked', after: CertificateChangeCursor | null, limit: number): Promise<CertificateChange[]>;

  getCrl(issuer: string): Promise<CrlRecord | null>;
  /**
   * Stores a CRL if the stored one's number is still `expectNumber` (null: none stored yet);
   * returns false when another writer got there first (compare-and-set).
   */
  putCrl(crl: CrlRecord, expectNumber: number | null): Promise<boolean>;

  createEabKey(k: EabKeyRecord): Promise<void>;
  getEabKey(kid: string): Promise<EabKeyRecord | null>;
  /** Atomically binds the key to an account if uses < maxUses; false otherwise. */
  useEabKey(kid: string, accountId: string): Promise<boolean>;
  listEabKeys(): Promise<EabKeyRecord[]>;
  /** Ends an EAB key at `now` (it stays listed, with the accounts that used it); false if unknown or already ended. */
  disableEabKey(kid: string, now: Date): Promise<boolean>;

  // Management views (the dashboard): newest first, a page at a time; `before` is the last page's cursor.
  listAccountsNewest(before: string | null, limit: number): Promise<Page<AccountRecord>>;
  listOrdersNewest(before: string | null, limit: number): Promise<Page<OrderRecord>>;
  /** Revoked certificates, most recently revoked first (without their DER). */
  listRevocationsNewest(before: string | null, limit: number): Promise<Page<CertificateRecord>>;
}

/** How Store.transaction may run `fn`. */
export interface TransactionOptions {
  /**
   * `fn` reads, and each of its writes is a compare-and-set that is right on its own (an update
   * with `expect`), so nothing needs its writes to stand or fall together. A store for which a
   * transaction costs round trips (PostgreSQL: BEGIN and COMMIT) then runs `fn` statement by
   * statement, outside a transaction. Under READ COMMITTED the outcome is the same: a transaction
   * there neither locks what `fn` read nor hides what others commit meanwhile.
   */
  standalone?: boolean;
}

export interface Store extends StoreTx {
  /**
   * Runs `fn` in one transaction; commits if it resolves, rolls back if it throws. An
   * implementation may run `fn` again after a conflict it rolled back (PostgreSQL retries unique
   * violations, deadlocks and serialization failures), so `fn` must only call the store: no other
   * side effects.
   */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>, opts?: TransactionOptions): Promise<T>;
  close(): Promise<void>;
}
