/**
 * StoreTx over kysely, written in dialect-neutral kysely so that SQLite and PostgreSQL share it.
 * Compare-and-set updates are `UPDATE ... WHERE id = ? AND status IN (...)` plus the row count.
 * Every check-and-change is one statement (useNonce's INSERT ... ON CONFLICT DO NOTHING,
 * useEabKey's UPDATE ... WHERE uses < max_uses, putCrl's UPDATE ... WHERE number = ?), so it stays
 * atomic where transactions run
 * concurrently: under PostgreSQL's READ COMMITTED a second writer waits for the row, then evaluates
 * its WHERE again on the committed row, and changes nothing.
 */
import { sql, type IsolationLevel, type Kysely, type Transaction } from 'kysely';
import type { JWK } from 'jose';
import type { ProblemDocument } from '../protocol/problems.js';
import type { Identifier } from '../protocol/types.js';
import type { Database } from './schema.js';
import type {
  AccountRecord,
  AuthzRecord,
  CertificateChange,
  CertificateChangeCursor,
  CertificateRecord,
  CertificateSelector,
  ChallengeRecord,
  CrlRecord,
  EabKeyRecord,
  OrderRecord,
  Page,
  RevokedEntry,
  Store,
  StoreTx,
  TransactionOptions,
} from './store.js';

type Db = Kysely<Database> | Transaction<Database>;

const ms = (d: Date | null | undefined): number | null => (d ? d.getTime() : null);
const date = (n: number | bigint | null | undefined): Date | null => (n === null || n === undefined ? null : new Date(Number(n)));
const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));
const parse = <T>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));

function changed(r: { numUpdatedRows?: bigint } | undefined): boolean {
  return (r?.numUpdatedRows ?? 0n) > 0n;
}

type IdTable = 'accounts' | 'orders' | 'authzs' | 'challenges' | 'certificates';

/** A statement's text and its parameters, for a dialect's direct path (SQLite, PostgreSQL). */
export interface RawStatement {
  text: string;
  params: unknown[];
}

/**
 * The INSERT that KyselyStoreTx.sqlInsert makes, as text: `placeholder(n)` writes the n-th
 * parameter (1-based: `?` for SQLite, `$n` for PostgreSQL). Null when the rows do not all set the
 * same columns (kysely then writes them). Table and column names come from Anvil's code, never
 * from input.
 */
export function insertStatement(table: string, rows: ReadonlyArray<Record<string, unknown>>, placeholder: (n: number) => string): RawStatement | null {
  const shape = (r: Record<string, unknown>) => Object.keys(r).filter((c) => r[c] !== undefined);
  const cols = shape(rows[0] ?? {});
  if (!rows.length || rows.some((r) => shape(r).join() !== cols.join())) return null;
  let n = 0;
  const tuples = rows.map(() => `(${cols.map(() => placeholder(++n)).join(', ')})`);
  return {
    text: `insert into "${table}" (${cols.map((c) => `"${c}"`).join(', ')}) values ${tuples.join(', ')}`,
    params: rows.flatMap((r) => cols.map((c) => r[c])),
  };
}

/** The UPDATE that KyselyStoreTx.sqlUpdateById makes, as text (see insertStatement); null when it sets nothing. */
export function updateByIdStatement(
  table: string,
  set: Record<string, unknown>,
  id: string,
  expect: readonly string[] | undefined,
  placeholder: (n: number) => string,
): RawStatement | null {
  const cols = Object.keys(set).filter((c) => set[c] !== undefined);
  if (!cols.length) return null;
  let n = 0;
  const assignments = cols.map((c) => `"${c}" = ${placeholder(++n)}`).join(', ');
  const where = `"id" = ${placeholder(++n)}${expect?.length ? ` and "status" in (${expect.map(() => placeholder(++n)).join(', ')})` : ''}`;
  return { text: `update "${table}" set ${assignments} where ${where}`, params: [...cols.map((c) => set[c]), id, ...(expect ?? [])] };
}

/** How a dialect runs statements of fixed text on its own, skipping kysely (KyselyStoreTx.direct). */
export interface DirectStatements {
  /** The n-th parameter's placeholder, 1-based: `?` for SQLite, `$n` for PostgreSQL. */
  placeholder(n: number): string;
  /** Runs the statement; resolves to the number of rows it changed. */
  run(st: RawStatement): Promise<number>;
}

export class KyselyStoreTx implements StoreTx {
  constructor(protected readonly db: Db) {}

  /**
   * A dialect's way to run inserts and id-keyed updates as fixed SQL text (the SQL kysely would
   * write for them), skipping kysely's query building; unset: kysely runs them.
   */
  protected get direct(): DirectStatements | undefined {
    return undefined;
  }

  /** INSERT of whole rows (one statement); through `direct` when the dialect has it. */
  protected async sqlInsert<T extends keyof Database & string>(table: T, rows: Array<Database[T]>): Promise<void> {
    if (!rows.length) return;
    const st = this.direct && insertStatement(table, rows as unknown as Array<Record<string, unknown>>, this.direct.placeholder);
    if (st) await this.direct!.run(st);
    else await this.db.insertInto(table).values(rows as never).execute();
  }

  /** UPDATE `table` SET `set` WHERE id = `id` [AND status IN `expect`]; true if a row changed. */
  protected async sqlUpdateById<T extends IdTable>(table: T, set: Partial<Database[T]>, id: string, expect?: readonly string[]): Promise<boolean> {
    const st = this.direct && updateByIdStatement(table, set as Record<string, unknown>, id, expect, this.direct.placeholder);
    if (st) return (await this.direct!.run(st)) > 0;
    let q = this.db.updateTable(table as IdTable).set(set as never).where('id', '=', id);
    if (expect?.length) q = q.where('status', 'in', expect as never);
    return changed(await q.executeTakeFirst());
  }

  // ------------------------------------------------------------ nonces
  async useNonce(value: string, expires: Date): Promise<boolean> {
    const r = await this.db
      .insertInto('used_nonces')
      .values({ value, expires: expires.getTime() })
      .onConflict((oc) => oc.column('value').doNothing())
      .executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async purgeExpired(now: Date): Promise<number> {
    const r = await this.db.deleteFrom('used_nonces').where('expires', '<=', now.getTime()).executeTakeFirst();
    return Number(r.numDeletedRows ?? 0n);
  }

  async serverSecret(name: string, fresh: () => Buffer): Promise<Buffer> {
    await this.db
      .insertInto('server_secrets')
      .values({ name, value: fresh(), created_at: Date.now() })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db.selectFrom('server_secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
    return Buffer.from(row.value);
  }

  // ------------------------------------------------------------ accounts
  protected mapAccount(r: Database['accounts']): AccountRecord {
    return {
      id: r.id,
      status: r.status as AccountRecord['status'],
      jwk: JSON.parse(r.jwk) as JWK,
      thumbprint: r.thumbprint,
      contact: JSON.parse(r.contact) as string[],
      termsOfServiceAgreed: Boolean(r.tos_agreed),
      eabKid: r.eab_kid,
      createdAt: date(r.created_at)!,
    };
  }

  async createAccount(a: AccountRecord): Promise<void> {
    await this.sqlInsert('accounts', [
      {
        id: a.id,
        status: a.status,
        jwk: JSON.stringify(a.jwk),
        thumbprint: a.thumbprint,
        contact: JSON.stringify(a.contact),
        tos_agreed: a.termsOfServiceAgreed ? 1 : 0,
        eab_kid: a.eabKid,
        created_at: a.createdAt.getTime(),
      },
    ]);
  }

  async getAccount(id: string): Promise<AccountRecord | null> {
    const r = await this.db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.mapAccount(r) : null;
  }

  async getAccountByThumbprint(thumbprint: string): Promise<AccountRecord | null> {
    const r = await this.db.selectFrom('accounts').selectAll().where('thumbprint', '=', thumbprint).executeTakeFirst();
    return r ? this.mapAccount(r) : null;
  }

  async updateAccount(
    id: string,
    patch: Partial<Pick<AccountRecord, 'status' | 'contact' | 'jwk' | 'thumbprint' | 'termsOfServiceAgreed'>>,
    expect?: AccountRecord['status'][],
  ): Promise<boolean> {
    const set: Partial<Database['accounts']> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.contact !== undefined) set.contact = JSON.stringify(patch.contact);
    if (patch.jwk !== undefined) set.jwk = JSON.stringify(patch.jwk);
    if (patch.thumbprint !== undefined) set.thumbprint = patch.thumbprint;
    if (patch.termsOfServiceAgreed !== undefined) set.tos_agreed = patch.termsOfServiceAgreed ? 1 : 0;
    if (Object.keys(set).length === 0) return (await this.getAccount(id)) !== null;
    return this.sqlUpdateById('accounts', set, id, expect);
  }

  // ------------------------------------------------------------ orders
  /** The authorization ids of an order, in order. */
  protected async loadOrderAuthzIds(orderId: string): Promise<string[]> {
    const links = await this.db.selectFrom('order_authzs').select('authz_id').where('order_id', '=', orderId).orderBy('position').execute();
    return links.map((l) => l.authz_id);
  }

  /** `authzIds`: when the caller read them with the row (one round trip instead of two). */
  protected async mapOrder(r: Database['orders'], prefetched?: string[]): Promise<OrderRecord> {
    const authzIds = prefetched ?? (await this.loadOrderAuthzIds(r.id));
    return {
      id: r.id,
      accountId: r.account_id,
      status: r.status as OrderRecord['status'],
      expires: date(r.expires)!,
      identifiers: JSON.parse(r.identifiers) as Identifier[],
      notBefore: date(r.not_before),
      notAfter: date(r.not_after),
      error: parse<ProblemDocument>(r.error),
      authzIds,
      certificateId: r.certificate_id,
      createdAt: date(r.created_at)!,
      profile: r.profile,
      replaces: r.replaces,
    };
  }

  async createOrder(o: OrderRecord): Promise<void> {
    await this.sqlInsert('orders', [
      {
        id: o.id,
        account_id: o.accountId,
        status: o.status,
        expires: o.expires.getTime(),
        identifiers: JSON.stringify(o.identifiers),
        not_before: ms(o.notBefore),
        not_after: ms(o.notAfter),
        error: json(o.error),
        certificate_id: o.certificateId,
        created_at: o.createdAt.getTime(),
        profile: o.profile,
        replaces: o.replaces,
      },
    ]);
    if (o.authzIds.length) {
      await this.sqlInsert(
        'order_authzs',
        o.authzIds.map((authz_id, position) => ({ order_id: o.id, authz_id, position })),
      );
    }
  }

  async getOrder(id: string): Promise<OrderRecord | null> {
    const r = await this.db.selectFrom('orders').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.mapOrder(r) : null;
  }

  async updateOrder(
    id: string,
    patch: Partial<Pick<OrderRecord, 'status' | 'error' | 'certificateId'>>,
    expect?: OrderRecord['status'][],
  ): Promise<boolean> {
    const set: Partial<Database['orders']> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.error !== undefined) set.error = json(patch.error);
    if (patch.certificateId !== undefined) set.certificate_id = patch.certificateId;
    return this.sqlUpdateById('orders', set, id, expect);
  }

  async listOrders(accountId: string, cursor: string | null, limit: number): Promise<Page<string>> {
    let q = this.db
      .selectFrom('orders')
      .select(['id', 'created_at'])
      .where('account_id', '=', accountId)
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit + 1);
    if (cursor) {
      // The cursor is the (created_at, id) of the last entry of the previous page.
      let at: number;
      let lastId: string;
      try {
        const [a, b] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [number, string];
        if (typeof a !== 'number' || typeof b !== 'string') throw new Error('bad cursor');
        at = a;
        lastId = b;
      } catch {
        return { items: [], next: null };
      }
      q = q.where((eb) => eb.or([eb('created_at', '>', at), eb.and([eb('created_at', '=', at), eb('id', '>', lastId)])]));
    }
    const rows = await q.execute();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    const next = rows.length > limit && last ? Buffer.from(JSON.stringify([Number(last.created_at), last.id])).toString('base64url') : null;
    return { items: page.map((r) => r.id), next };
  }

  async countOpenOrders(accountId: string, now: Date): Promise<number> {
    const r = await this.db
      .selectFrom('orders')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account_id', '=', accountId)
      .where('status', 'in', ['pending', 'ready'])
      .where('expires', '>', now.getTime())
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async ordersForAuthz(authzId: string): Promise<OrderRecord[]> {
    const rows = await this.db
      .selectFrom('orders')
      .innerJoin('order_authzs', 'order_authzs.order_id', 'orders.id')
      .selectAll('orders')
      .where('order_authzs.authz_id', '=', authzId)
      .execute();
    return Promise.all(rows.map((r) => this.mapOrder(r)));
  }

  // ------------------------------------------------------------ authorizations and challenges
  protected mapChallenge(r: Database['challenges']): ChallengeRecord {
    return {
      id: r.id,
      authzId: r.authz_id,
      type: r.type as ChallengeRecord['type'],
      token: r.token,
      status: r.status as ChallengeRecord['status'],
      validated: date(r.validated),
      error: parse<ProblemDocument>(r.error),
      validationRecords: parse<unknown[]>(r.validation_records),
      requestedAt: date(r.requested_at),
    };
  }

  /** The challenge rows of an authorization, in order. */
  protected async loadChallengeRows(authzId: string): Promise<Array<Database['challenges']>> {
    return this.db.selectFrom('challenges').selectAll().where('authz_id', '=', authzId).orderBy('position').execute();
  }

  /** `challengeRows`: when the caller read them with the row, in order (one round trip instead of two). */
  protected async mapAuthz(r: Database['authzs'], challengeRows?: Array<Database['challenges']>): Promise<AuthzRecord> {
    const ch = challengeRows ?? (await this.loadChallengeRows(r.id));
    return {
      id: r.id,
      accountId: r.account_id,
      identifier: { type: r.identifier_type as Identifier['type'], value: r.identifier_value },
      wildcard: Boolean(r.wildcard),
      status: r.status as AuthzRecord['status'],
      expires: date(r.expires)!,
      createdAt: date(r.created_at)!,
      validatedAt: date(r.validated_at),
      challenges: ch.map((c) => this.mapChallenge(c)),
    };
  }

  async createAuthz(a: AuthzRecord): Promise<void> {
    await this.sqlInsert('authzs', [
      {
        id: a.id,
        account_id: a.accountId,
        identifier_type: a.identifier.type,
        identifier_value: a.identifier.value,
        wildcard: a.wildcard ? 1 : 0,
        status: a.status,
        expires: a.expires.getTime(),
        created_at: a.createdAt.getTime(),
        validated_at: ms(a.validatedAt),
      },
    ]);
    if (a.challenges.length) {
      await this.sqlInsert(
        'challenges',
        a.challenges.map((c, position) => ({
          id: c.id,
          authz_id: a.id,
          type: c.type,
          token: c.token,
          status: c.status,
          validated: ms(c.validated),
          error: json(c.error),
          validation_records: json(c.validationRecords),
          requested_at: ms(c.requestedAt),
          position,
        })),
      );
    }
  }

  async getAuthz(id: string): Promise<AuthzRecord | null> {
    const r = await this.db.selectFrom('authzs').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.mapAuthz(r) : null;
  }

  async findReusableAuthz(
    accountId: string,
    identifier: Identifier,
    wildcard: boolean,
    validatedAfter: Date,
    expiresAfter: Date,
  ): Promise<AuthzRecord | null> {
    const r = await this.db
      .selectFrom('authzs')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('identifier_type', '=', identifier.type)
      .where('identifier_value', '=', identifier.value)
      .where('status', '=', 'valid')
      .where('wildcard', '=', wildcard ? 1 : 0)
      .where('validated_at', '>=', validatedAfter.getTime())
      .where('expires', '>', expiresAfter.getTime())
      .orderBy('validated_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r ? this.mapAuthz(r) : null;
  }

  async hasValidAuthz(accountId: string, identifier: Identifier, now: Date): Promise<boolean> {
    const r = await this.db
      .selectFrom('authzs')
      .select('id')
      .where('account_id', '=', accountId)
      .where('identifier_type', '=', identifier.type)
      .where('identifier_value', '=', identifier.value)
      .where('status', '=', 'valid')
      .where('expires', '>', now.getTime())
      .limit(1)
      .executeTakeFirst();
    return r !== undefined;
  }

  async updateAuthz(
    id: string,
    patch: Partial<Pick<AuthzRecord, 'status' | 'expires' | 'validatedAt'>>,
    expect?: AuthzRecord['status'][],
  ): Promise<boolean> {
    const set: Partial<Database['authzs']> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.expires !== undefined) set.expires = patch.expires.getTime();
    if (patch.validatedAt !== undefined) set.validated_at = ms(patch.validatedAt);
    return this.sqlUpdateById('authzs', set, id, expect);
  }

  async updateAccountAuthzs(accountId: string, from: AuthzRecord['status'][], to: AuthzRecord['status']): Promise<number> {
    const r = await this.db.updateTable('authzs').set({ status: to }).where('account_id', '=', accountId).where('status', 'in', from).executeTakeFirst();
    return Number(r.numUpdatedRows ?? 0n);
  }

  async getChallenge(id: string): Promise<ChallengeRecord | null> {
    const r = await this.db.selectFrom('challenges').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.mapChallenge(r) : null;
  }

  async updateChallenge(
    id: string,
    patch: Partial<Pick<ChallengeRecord, 'status' | 'validated' | 'error' | 'validationRecords' | 'requestedAt'>>,
    expect?: ChallengeRecord['status'][],
  ): Promise<boolean> {
    const set: Partial<Database['challenges']> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.validated !== undefined) set.validated = ms(patch.validated);
    if (patch.error !== undefined) set.error = json(patch.error);
    if (patch.validationRecords !== undefined) set.validation_records = json(patch.validationRecords);
    if (patch.requestedAt !== undefined) set.requested_at = ms(patch.requestedAt);
    return this.sqlUpdateById('challenges', set, id, expect);
  }

  async listProcessingChallenges(limit: number): Promise<ChallengeRecord[]> {
    const rows = await this.db
      .selectFrom('challenges')
      .selectAll()
      .where('status', '=', 'processing')
      .orderBy('requested_at')
      .limit(limit)
      .execute();
    return rows.map((r) => this.mapChallenge(r));
  }

  // ------------------------------------------------------------ certificates
  protected mapCertificate(r: Database['certificates']): CertificateRecord {
    return {
      id: r.id,
      serial: r.serial,
      accountId: r.account_id,
      orderId: r.order_id,
      status: r.status as CertificateRecord['status'],
      identifiers: JSON.parse(r.identifiers) as Identifier[],
      notBefore: date(r.not_before)!,
      notAfter: date(r.not_after)!,
      plan: JSON.parse(r.plan) as unknown,
      der: r.der ? Buffer.from(r.der) : null,
      chainPem: r.chain_pem,
      issuedAt: date(r.issued_at),
      revokedAt: date(r.revoked_at),
      revocationReason: r.revocation_reason,
      createdAt: date(r.created_at)!,
      profile: r.profile,
      replacesId: r.replaces_id,
      renewalWindow: r.ari_start !== null && r.ari_end !== null ? { start: date(r.ari_start)!, end: date(r.ari_end)! } : null,
    };
  }

  async createCertificate(c: CertificateRecord): Promise<void> {
    await this.sqlInsert('certificates', [
      {
        id: c.id,
        serial: c.serial,
        account_id: c.accountId,
        order_id: c.orderId,
        status: c.status,
        identifiers: JSON.stringify(c.identifiers),
        not_before: c.notBefore.getTime(),
        not_after: c.notAfter.getTime(),
        plan: JSON.stringify(c.plan),
        der: c.der,
        chain_pem: c.chainPem,
        issued_at: ms(c.issuedAt),
        revoked_at: ms(c.revokedAt),
        revocation_reason: c.revocationReason,
        created_at: c.createdAt.getTime(),
        profile: c.profile,
        replaces_id: c.replacesId,
        ari_start: ms(c.renewalWindow?.start),
        ari_end: ms(c.renewalWindow?.end),
      },
    ]);
  }

  async getCertificate(id: string): Promise<CertificateRecord | null> {
    const r = await this.db.selectFrom('certificates').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.mapCertificate(r) : null;
  }

  async getCertificateBySerial(serial: string): Promise<CertificateRecord | null> {
    const r = await this.db.selectFrom('certificates').selectAll().where('serial', '=', serial).executeTakeFirst();
    return r ? this.mapCertificate(r) : null;
  }

  async updateCertificate(
    id: string,
    patch: Partial<Pick<CertificateRecord, 'status' | 'der' | 'chainPem' | 'issuedAt' | 'revokedAt' | 'revocationReason'>>,
    expect?: CertificateRecord['status'][],
  ): Promise<boolean> {
    const set: Partial<Database['certificates']> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.der !== undefined) set.der = patch.der;
    if (patch.chainPem !== undefined) set.chain_pem = patch.chainPem;
    if (patch.issuedAt !== undefined) set.issued_at = ms(patch.issuedAt);
    if (patch.revokedAt !== undefined) set.revoked_at = ms(patch.revokedAt);
    if (patch.revocationReason !== undefined) set.revocation_reason = patch.revocationReason;
    return this.sqlUpdateById('certificates', set, id, expect);
  }

  async revokeCertificate(id: string, revokedAt: Date, reason: number): Promise<boolean> {
    const r = await this.db
      .updateTable('certificates')
      .set({ revoked_at: revokedAt.getTime(), revocation_reason: reason })
      .where('id', '=', id)
      .where('status', '=', 'issued')
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async listPendingCertificates(limit: number): Promise<CertificateRecord[]> {
    const rows = await this.db
      .selectFrom('certificates')
      .selectAll()
      .where('status', '=', 'pending')
      .orderBy('created_at')
      .limit(limit)
      .execute();
    return rows.map((r) => this.mapCertificate(r));
  }

  async countCertificates(): Promise<number> {
    const r = await this.db.selectFrom('certificates').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async getCertificateReplacing(id: string): Promise<CertificateRecord | null> {
    const r = await this.db.selectFrom('certificates').selectAll().where('replaces_id', '=', id).orderBy('created_at').executeTakeFirst();
    return r ? this.mapCertificate(r) : null;
  }

  async setRenewalWindow(selector: CertificateSelector, window: { start: Date; end: Date }, now: Date): Promise<number> {
    let q = this.db
      .updateTable('certificates')
      .set({ ari_start: window.start.getTime(), ari_end: window.end.getTime() })
      .where('status', '=', 'issued')
      .where('revoked_at', 'is', null)
      .where('not_after', '>', now.getTime());
    if ('serials' in selector) {
      if (selector.serials.length === 0) return 0;
      q = q.where('serial', 'in', selector.serials);
    } else if ('issuedBefore' in selector) {
      q = q.where('issued_at', '<', selector.issuedBefore.getTime());
    }
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows ?? 0n);
  }

  async listCertificateChanges(kind: 'issued' | 'revoked', after: CertificateChangeCursor | null, limit: number): Promise<CertificateChange[]> {
    const col = kind === 'issued' ? 'issued_at' : 'revoked_at';
    let q = this.db
      .selectFrom('certificates')
      .select(['id', 'der', 'profile', 'revoked_at', 'revocation_reason', 'issued_at'])
      // Issued means signed: the finalize sets status, der and issued_at together. No filter on
      // status, which made SQLite pick its index (status, created_at) and sort the whole table.
      .where('der', 'is not', null)
      .where(col, 'is not', null);
    if (after) {
      const t = after.at.getTime();
      // A row value comparison, which SQLite and PostgreSQL answer from the (time, id) index;
      // "time > t or (time = t and id > x)" made SQLite scan the table.
      q = q.where((eb) => eb(eb.refTuple(col, 'id'), '>', eb.tuple(t, after.id)));
    }
    const rows = await q.orderBy(col).orderBy('id').limit(limit).execute();
    return rows.map((r) => ({
        id: r.id,
        der: Buffer.from(r.der!),
        profile: r.profile ?? null,
        revokedAt: date(r.revoked_at),
        revocationReason: r.revocation_reason ?? null,
        at: date(kind === 'issued' ? r.issued_at : r.revoked_at)!,
      }));
  }

  async listRevoked(notAfterAfter: Date, limit: number): Promise<RevokedEntry[]> {
    const rows = await this.db
      .selectFrom('certificates')
      .select(['serial', 'revoked_at', 'revocation_reason', 'not_after'])
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', notAfterAfter.getTime())
      .orderBy('revoked_at')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ serial: r.serial, revokedAt: date(r.revoked_at)!, reason: r.revocation_reason ?? 0, notAfter: date(r.not_after)! }));
  }

  async getCrl(issuer: string): Promise<CrlRecord | null> {
    const r = await this.db.selectFrom('crls').selectAll().where('issuer', '=', issuer).executeTakeFirst();
    if (!r) return null;
    return { issuer: r.issuer, number: Number(r.number), thisUpdate: date(r.this_update)!, nextUpdate: date(r.next_update)!, der: Buffer.from(r.der) };
  }

  async putCrl(crl: CrlRecord, expectNumber: number | null): Promise<boolean> {
    const values = { number: crl.number, this_update: crl.thisUpdate.getTime(), next_update: crl.nextUpdate.getTime(), der: crl.der };
    if (expectNumber === null) {
      // Insert if absent; a concurrent insert of the same issuer loses on the primary key.
      const r = await this.db
        .insertInto('crls')
        .values({ issuer: crl.issuer, ...values })
        .onConflict((oc) => oc.column('issuer').doNothing())
        .executeTakeFirst();
      return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
    }
    const r = await this.db.updateTable('crls').set(values).where('issuer', '=', crl.issuer).where('number', '=', expectNumber).executeTakeFirst();
    return changed(r);
  }

  // ------------------------------------------------------------ EAB
  async #eab(r: Database['eab_keys']): Promise<EabKeyRecord> {
    const uses = await this.db.selectFrom('eab_uses').select('account_id').where('kid', '=', r.kid).orderBy('used_at').execute();
    return {
      kid: r.kid,
      hmacKey: r.hmac_key,
      maxUses: r.max_uses,
      uses: r.uses,
      accountIds: uses.map((u) => u.account_id),
      createdAt: date(r.created_at)!,
      expiresAt: date(r.expires_at),
      comment: r.comment,
    };
  }

  async createEabKey(k: EabKeyRecord): Promise<void> {
    await this.db
      .insertInto('eab_keys')
      .values({
        kid: k.kid,
        hmac_key: k.hmacKey,
        max_uses: k.maxUses,
        uses: k.uses,
        created_at: k.createdAt.getTime(),
        expires_at: ms(k.expiresAt),
        comment: k.comment,
      })
      .execute();
  }

  async getEabKey(kid: string): Promise<EabKeyRecord | null> {
    const r = await this.db.selectFrom('eab_keys').selectAll().where('kid', '=', kid).executeTakeFirst();
    return r ? this.#eab(r) : null;
  }

  async useEabKey(kid: string, accountId: string): Promise<boolean> {
    const now = Date.now();
    const r = await this.db
      .updateTable('eab_keys')
      .set((eb) => ({ uses: eb('uses', '+', 1) }))
      .where('kid', '=', kid)
      .whereRef('uses', '<', 'max_uses')
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .executeTakeFirst();
    if (!changed(r)) return false;
    await this.db.insertInto('eab_uses').values({ kid, account_id: accountId, used_at: now }).execute();
    return true;
  }

  async listEabKeys(): Promise<EabKeyRecord[]> {
    const rows = await this.db.selectFrom('eab_keys').selectAll().orderBy('created_at').execute();
    return Promise.all(rows.map((r) => this.#eab(r)));
  }

  async disableEabKey(kid: string, now: Date): Promise<boolean> {
    const t = now.getTime();
    const r = await this.db
      .updateTable('eab_keys')
      .set({ expires_at: t })
      .where('kid', '=', kid)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', t)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async listAccountsNewest(before: string | null, limit: number): Promise<Page<AccountRecord>> {
    const rows = await newestFirst(this.db.selectFrom('accounts').selectAll(), 'created_at', before, limit).execute();
    return pageOf(rows, limit, 'created_at', (r) => this.mapAccount(r));
  }

  async listOrdersNewest(before: string | null, limit: number): Promise<Page<OrderRecord>> {
    const rows = await newestFirst(this.db.selectFrom('orders').selectAll(), 'created_at', before, limit).execute();
    const page = pageOf(rows, limit, 'created_at', (r) => r);
    return { items: await Promise.all(page.items.map((r) => this.mapOrder(r))), next: page.next };
  }

  async listRevocationsNewest(before: string | null, limit: number): Promise<Page<CertificateRecord>> {
    const rows = await newestFirst(this.db.selectFrom('certificates').selectAll().where('revoked_at', 'is not', null), 'revoked_at', before, limit).execute();
    return pageOf(rows, limit, 'revoked_at', (r) => ({ ...this.mapCertificate(r), der: null }));
  }
}

/** A "newest first" cursor: the (time, id) of the last row of the previous page, base64url JSON. */
function decodeCursor(cursor: string | null): [number, string] | null | 'bad' {
  if (!cursor) return null;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && Number.isSafeInteger(v[0]) && typeof v[1] === 'string' && v[1].length <= 200) return [v[0] as number, v[1]];
  } catch {
    /* below */
  }
  return 'bad';
}

/* eslint-disable @typescript-eslint/no-explicit-any -- one helper over three tables' query builders */
function newestFirst<Q extends { where: any; orderBy: any; limit: any }>(q: Q, col: string, before: string | null, limit: number): Q {
  const c = decodeCursor(before);
  let out = q.orderBy(col, 'desc').orderBy('id', 'desc').limit(limit + 1) as Q;
  // A cursor this store did not make is an empty page.
  if (c === 'bad') return out.where(sql<boolean>`1 = 0`) as Q;
  if (c) {
    const [at, id] = c;
    out = out.where((eb: any) => eb.or([eb(col, '<', at), eb.and([eb(col, '=', at), eb('id', '<', id)])])) as Q;
  }
  return out;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function pageOf<R extends { id: string }, T>(rows: R[], limit: number, col: keyof R, map: (r: R) => T): Page<T> {
  const more = rows.length > limit;
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items: items.map(map), next: more && last ? Buffer.from(JSON.stringify([Number(last[col]), last.id])).toString('base64url') : null };
}

/** How a KyselyStore runs its transactions; the defaults are SQLite's (one attempt). */
export interface KyselyStoreOptions {
  /**
   * Errors after which a transaction is rolled back and `fn` runs again from the start, on a fresh
   * transaction. PostgreSQL runs transactions concurrently: a conflict (a unique key taken by a
   * transaction that committed meanwhile, a deadlock) is resolved by running the loser again, which
   * then sees the winner's rows, the result SQLite's one-writer-at-a-time gives. `fn` must therefore
   * do nothing but store calls and computation (the authority's transactions do just that).
   */
  retryable?: (e: unknown) => boolean;
  /** Attempts in all, for retryable errors (default 3). */
  attempts?: number;
  /** Set on each transaction (PostgreSQL); unset: the database's default (SQLite has one level). */
  isolationLevel?: IsolationLevel;
  /**
   * Group commit (SQLite, one connection): transactions that are ready together run one after the
   * other inside one database transaction, each in a savepoint of its own, and share one commit,
   * hence one fsync; writes outside a transaction join too. Each caller still hears of its
   * transaction only once that commit is on disk, and a transaction that throws is rolled back to
   * its savepoint without touching the others. Isolation is unchanged: they still run one at a time.
   */
  groupCommit?: {
    maxBatch?: number;
    /** How long to wait for another process's write lock before the waiting transactions fail (default 5 s). */
    busyWaitMs?: number;
    /** Runs a statement without results on the connection directly (BEGIN, SAVEPOINT, ...), skipping kysely. */
    exec?: (sql: string) => void;
  };
  /** The StoreTx that transactions get, over their connection (a dialect's faster one). */
  txFor?: (conn: Kysely<Database>) => KyselyStoreTx;
  /**
   * Run TransactionOptions.standalone transactions outside a transaction, on this StoreTx over the
   * pool (PostgreSQL, where BEGIN and COMMIT are two round trips). Unset: they are transactions.
   */
  standalone?: KyselyStoreTx;
}

/**
 * Members of KyselyStoreTx a group commit leaves alone: StoreTx's reads (get/list/count/find/has/
 * ordersFor) and the protected helpers (map*, load*, sql*, and the `direct` accessor), which run
 * inside the public methods. Every other method writes, and joins a group commit.
 */
const READS = /^(get|list|count|find|has|ordersFor|map|load|sql|direct$)/;

interface Job {
  fn: (tx: StoreTx) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** The busy timeout every Anvil SQLite connection has (src/storage/sqlite.ts). */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY, ..._SNAPSHOT, ..._TIMEOUT). */
const isBusy = (e: unknown): boolean => String((e as { code?: unknown } | null)?.code ?? '').startsWith('SQLITE_BUSY');

/** See KyselyStoreOptions.groupCommit. */
class GroupCommitter {
  readonly #queue: Job[] = [];
  /** Set before #drain starts and cleared in its last synchronous step: no wake-up is lost. */
  #running = false;
  #drained: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(
    private readonly kysely: Kysely<Database>,
    private readonly maxBatch: number,
    private readonly busyWaitMs: number,
    private readonly txFor: (conn: Kysely<Database>) => KyselyStoreTx,
    private readonly exec: ((sql: string) => void) | undefined,
  ) {}

  /** True while a batch holds (or waits for) the connection. */
  get running(): boolean {
    return this.#running;
  }

  #run(conn: Kysely<Database>, statement: string): Promise<unknown> {
    if (this.exec) {
      try {
        this.exec(statement);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return sql.raw(statement).execute(conn);
  }

  run<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('the store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#running) {
        this.#running = true;
        this.#drained = this.#drain();
      }
    });
  }

  /** Refuses new transactions, then resolves when every queued one has settled. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#running) await this.#drained;
  }

  async #drain(): Promise<void> {
    // Another process (anvil server --workers, a CLI command) may hold the write lock. SQLite's own
    // busy handler would sleep on the event loop; instead the lock is tried without waiting and the
    // batch waits here, asynchronously, with the connection free for reads, up to busyWaitMs.
    let delay = 1;
    let deadline = 0;
    try {
      while (this.#queue.length) {
        const r = await this.kysely.connection().execute((conn) => this.#batch(conn));
        if (r === 'done') {
          delay = 1;
          deadline = 0;
          continue;
        }
        deadline ||= Date.now() + this.busyWaitMs;
        if (Date.now() >= deadline) {
          for (const job of this.#queue.splice(0)) job.reject(r.error);
          deadline = 0;
          continue;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 25);
      }
    } catch (e) {
      // No connection (the driver is gone): whoever waits hears of it.
      for (const job of this.#queue.splice(0)) job.reject(e);
    } finally {
      this.#running = false;
    }
  }

  async #batch(conn: Kysely<Database>): Promise<'done' | { error: unknown }> {
    const taken: Job[] = [];
    const settle: Array<() => void> = [];
    // A transaction that failed by itself keeps its own error if the batch then fails too.
    const failed = new Map<Job, unknown>();
    try {
      // No wait inside SQLite (see #drain); its busy timeout stays for everything else.
      await this.#run(conn, 'pragma busy_timeout = 0');
      try {
        await this.#run(conn, 'begin immediate');
      } finally {
        await this.#run(conn, `pragma busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      }
    } catch (e) {
      if (isBusy(e)) return { error: e };
      // The database is unwritable: the waiting transactions fail.
      for (const job of this.#queue.splice(0)) job.reject(e);
      return 'done';
    }
    try {
      for (;;) {
        while (this.#queue.length && taken.length < this.maxBatch) {
          const job = this.#queue.shift()!;
          taken.push(job);
          await this.#run(conn, 'savepoint anvil_gc');
          try {
            const v = await job.fn(this.txFor(conn));
            await this.#run(conn, 'release anvil_gc');
            settle.push(() => job.resolve(v));
          } catch (e) {
            failed.set(job, e);
            await this.#run(conn, 'rollback to anvil_gc');
            await this.#run(conn, 'release anvil_gc');
            settle.push(() => job.reject(e));
          }
        }
        if (taken.length >= this.maxBatch) break;
        // Requests that became ready in this turn of the event loop join before the one commit.
        await new Promise<void>((r) => setImmediate(r));
        if (!this.#queue.length) break;
      }
      await this.#run(conn, 'commit');
    } catch (e) {
      await this.#run(conn, 'rollback').catch(() => {});
      for (const job of taken) job.reject(failed.has(job) ? failed.get(job) : e);
      return 'done';
    }
    for (const s of settle) s();
    return 'done';
  }
}

/** A Store over a kysely instance (any dialect). */
export class KyselyStore extends KyselyStoreTx implements Store {
  readonly #retryable: (e: unknown) => boolean;
  readonly #attempts: number;
  readonly #isolationLevel: IsolationLevel | undefined;
  readonly #group: GroupCommitter | undefined;
  readonly #txFor: (conn: Kysely<Database>) => KyselyStoreTx;
  readonly #standalone: KyselyStoreTx | undefined;

  /** True while a group commit holds (or waits for) the connection: reads outside it must queue. */
  protected get batchRunning(): boolean {
    return this.#group?.running ?? false;
  }

  constructor(
    private readonly kysely: Kysely<Database>,
    private readonly onClose: () => Promise<void> = async () => {},
    opts: KyselyStoreOptions = {},
  ) {
    super(kysely);
    this.#retryable = opts.retryable ?? (() => false);
    this.#attempts = Math.max(1, opts.attempts ?? 3);
    this.#isolationLevel = opts.isolationLevel;
    this.#txFor = opts.txFor ?? ((conn) => new KyselyStoreTx(conn));
    this.#standalone = opts.standalone;
    if (opts.groupCommit) {
      const group = new GroupCommitter(
        kysely,
        Math.max(1, opts.groupCommit.maxBatch ?? 256),
        opts.groupCommit.busyWaitMs ?? SQLITE_BUSY_TIMEOUT_MS,
        this.#txFor,
        opts.groupCommit.exec,
      );
      this.#group = group;
      // A write outside a transaction is a transaction of one statement: it joins the group too.
      for (const name of Object.getOwnPropertyNames(KyselyStoreTx.prototype)) {
        if (name === 'constructor' || READS.test(name)) continue;
        const m = name as keyof StoreTx;
        Object.defineProperty(this, m, {
          value: (...args: unknown[]) => group.run((tx) => (tx[m] as (...a: unknown[]) => Promise<unknown>)(...args)),
        });
      }
    }
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>, opts?: TransactionOptions): Promise<T> {
    if (this.#group) return this.#group.run(fn);
    if (opts?.standalone && this.#standalone) return fn(this.#standalone);
    for (let attempt = 1; ; attempt++) {
      try {
        const begin = this.#isolationLevel ? this.kysely.transaction().setIsolationLevel(this.#isolationLevel) : this.kysely.transaction();
        return await begin.execute((trx) => fn(this.#txFor(trx)));
      } catch (e) {
        if (attempt >= this.#attempts || !this.#retryable(e)) throw e;
      }
    }
  }

  async close(): Promise<void> {
    await this.#group?.close();
    await this.kysely.destroy();
    await this.onClose();
  }
}
