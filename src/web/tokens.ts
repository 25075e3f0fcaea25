/**
 * Management API tokens (docs/dashboard.md): a name, a role, and a secret shown once. Only the
 * secret's SHA-256 is stored, so a copy of the database does not let anyone in.
 *
 * Roles, each including the ones before it:
 * - viewer: reads the inventory, the CA's accounts, orders and revocations;
 * - operator: also revokes certificates;
 * - admin: also manages EAB keys and tokens, and reads the audit log.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database as Schema, MgmtTokensTable } from '../storage/schema.js';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface TokenInfo {
  id: string;
  name: string;
  role: Role;
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** Who made a request or a change: a token's name and role, or the command line. */
export interface Actor {
  kind: 'token' | 'cli';
  name: string;
  role: Role;
  tokenId?: string;
}

/** A token: "anvil_" and 43 characters of base64url (256 bits). */
const TOKEN_RE = /^anvil_[A-Za-z0-9_-]{43}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const ID_RE = /^[0-9a-f]{16}$/;

export class TokenError extends Error {
  constructor(
    message: string,
    readonly code: 'BAD_NAME' | 'BAD_ROLE' | 'NAME_TAKEN' | 'NOT_FOUND',
  ) {
    super(message);
  }
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** How often a token's last use is written (a dashboard polls; one write a minute is enough). */
const LAST_USED_RESOLUTION_MS = 60_000;

export class TokenStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Creates a token; the secret is returned here and never again. */
  async create(opts: { name: string; role: Role; createdBy: string; expiresAt?: Date | null }, now: Date): Promise<{ token: string; info: TokenInfo }> {
    if (!NAME_RE.test(opts.name)) throw new TokenError('a token name is 1 to 64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit', 'BAD_NAME');
    if (ID_RE.test(opts.name)) throw new TokenError('a token name may not look like a token id (16 hex digits)', 'BAD_NAME');
    if (!(ROLES as readonly string[]).includes(opts.role)) throw new TokenError(`role must be one of ${ROLES.join(', ')}`, 'BAD_ROLE');
    const token = `anvil_${randomBytes(32).toString('base64url')}`;
    const row: MgmtTokensTable = {
      id: randomBytes(8).toString('hex'),
      name: opts.name,
      role: opts.role,
      token_sha256: sha256(token),
      created_at: now.getTime(),
      created_by: opts.createdBy,
      expires_at: opts.expiresAt ? opts.expiresAt.getTime() : null,
      last_used_at: null,
      revoked_at: null,
    };
    const inserted = await this.db
      .insertInto('mgmt_tokens')
      .values(row)
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) throw new TokenError(`a token named "${opts.name}" exists already (names stay taken after a revocation, for the audit log)`, 'NAME_TAKEN');
    return { token, info: mapToken(row) };
  }

  /** The token's holder, or null: unknown, malformed, revoked or expired. */
  async authenticate(token: string, now: Date): Promise<TokenInfo | null> {
    if (!TOKEN_RE.test(token)) return null;
    const row = await this.db.selectFrom('mgmt_tokens').selectAll().where('token_sha256', '=', sha256(token)).executeTakeFirst();
    if (!row || row.revoked_at !== null) return null;
    const t = now.getTime();
    if (row.expires_at !== null && Number(row.expires_at) <= t) return null;
    if (row.last_used_at === null || t - Number(row.last_used_at) >= LAST_USED_RESOLUTION_MS) {
      await this.db.updateTable('mgmt_tokens').set({ last_used_at: t }).where('id', '=', row.id).execute();
      row.last_used_at = t;
    }
    return mapToken(row);
  }

  async list(): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('mgmt_tokens').selectAll().orderBy('created_at').orderBy('name').execute();
    return rows.map(mapToken);
  }

  /**
   * Revokes a token by id or name; returns it, with `changed` false when it was revoked already
   * (revoking twice is harmless), or throws NOT_FOUND.
   */
  async revoke(idOrName: string, now: Date): Promise<TokenInfo & { changed: boolean }> {
    const row = await this.db
      .selectFrom('mgmt_tokens')
      .selectAll()
      .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
      .executeTakeFirst();
    if (!row) throw new TokenError(`no token with the id or name "${idOrName}"`, 'NOT_FOUND');
    let changed = false;
    if (row.revoked_at === null) {
      const r = await this.db.updateTable('mgmt_tokens').set({ revoked_at: now.getTime() }).where('id', '=', row.id).where('revoked_at', 'is', null).executeTakeFirst();
      changed = Number(r.numUpdatedRows) > 0;
      row.revoked_at = now.getTime();
    }
    return { ...mapToken(row), changed };
  }
}

function mapToken(r: MgmtTokensTable): TokenInfo {
  const d = (n: number | null) => (n === null ? null : new Date(Number(n)));
  return {
    id: r.id,
    name: r.name,
    role: r.role as Role,
    createdAt: new Date(Number(r.created_at)),
    createdBy: r.created_by,
    expiresAt: d(r.expires_at),
    lastUsedAt: d(r.last_used_at),
    revokedAt: d(r.revoked_at),
  };
}
