/**
 * The audit log: every change made through the management API or the CLI's management commands,
 * append-only and hash-chained (docs/dashboard.md, "Audit log").
 *
 * Entry n holds hash_n = HMAC-SHA256(key, JSON array [seq, at, actor, action, target, detail,
 * hash_{n-1}]), with hash_0 sixty-four zeros. The key is a file beside the CA's keys
 * (<dataDir>/ca/audit.key, 0600), not in the database: whoever can write to the database but not
 * read that file cannot change, remove, reorder or insert an entry and compute hashes that verify.
 * `verify` says where the chain breaks. Cutting entries off the end leaves a valid shorter chain:
 * that is caught by comparing with a head recorded elsewhere (`anvil audit head`, then
 * `anvil audit verify --expect-head SEQ:HASH`).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Kysely } from 'kysely';
import type { Database as Schema, MgmtAuditTable } from '../storage/schema.js';
import type { Actor } from './tokens.js';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEntry {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  head: { seq: number; hash: string } | null;
  /** Where the chain breaks, first problems first (at most 20). */
  problems: Array<{ seq: number; problem: string }>;
}

export function entryHash(key: Buffer, e: { seq: number; at: number; actor: string; action: string; target: string; detail: string; prevHash: string }): string {
  return createHmac('sha256', key).update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.target, e.detail, e.prevHash])).digest('hex');
}

/** Where the key is: beside the CA's keys, so that replicas, which share the CA directory, share it. */
export function auditKeyPath(caDir: string): string {
  return path.join(caDir, 'audit.key');
}

/**
 * Reads the audit key (32 random bytes, base64url), creating it 0600 when it is missing and
 * `create` is set. Of processes creating it at once, one writes it and the others read it.
 */
export async function loadAuditKey(file: string, opts: { create: boolean }): Promise<Buffer> {
  const read = async () => {
    const text = (await readFile(file, 'utf8')).trim();
    const key = Buffer.from(text, 'base64url');
    if (key.length < 32) throw new Error(`${file} is not an audit key (expected 32 bytes, base64url)`);
    return key;
  };
  try {
    return await read();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`no audit key at ${file}: it is made when anvil server starts or the first change is audited`);
      throw e;
    }
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    const h = await open(file, 'wx', 0o600);
    try {
      await h.writeFile(`${randomBytes(32).toString('base64url')}\n`);
      await h.sync();
    } finally {
      await h.close();
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process made it meanwhile: wait until it is written.
    for (let i = 0; i < 50; i++) {
      try {
        return await read();
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  return read();
}

export function actorText(a: Actor): string {
  return a.kind === 'cli' ? `cli:${a.name}` : `token:${a.name}`;
}

export class AuditLog {
  constructor(
    private readonly db: Kysely<Schema>,
    /** null: reading only (list, head); append and verify need the key. */
    private readonly key: Buffer | null,
  ) {}

  #key(): Buffer {
    if (!this.key) throw new Error('the audit key is needed to append to the audit log or verify it');
    return this.key;
  }

  /**
   * Appends an entry after the current head. Two writers at once (replicas, the CLI) both read the
   * same head; the second insert then fails on the sequence number and is tried again on the new head.
   */
  async append(actor: Actor, action: string, target: string, detail: Record<string, unknown>, now: Date): Promise<AuditEntry> {
    const detailText = JSON.stringify(detail);
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        return await this.db.transaction().execute(async (tx) => {
          const head = await tx.selectFrom('mgmt_audit').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
          const e = {
            seq: head ? Number(head.seq) + 1 : 1,
            at: now.getTime(),
            actor: actorText(actor),
            action,
            target,
            detail: detailText,
            prevHash: head?.hash ?? GENESIS_HASH,
          };
          const hash = entryHash(this.#key(), e);
          await tx.insertInto('mgmt_audit').values({ seq: e.seq, at: e.at, actor: e.actor, action, target, detail: detailText, prev_hash: e.prevHash, hash }).execute();
          return { ...e, at: now, detail, hash };
        });
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (attempt + 1)));
      }
    }
    throw lastError;
  }

  /** Newest first; `before`: a seq, for the next page. */
  async list(opts: { before?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    let q = this.db.selectFrom('mgmt_audit').selectAll().orderBy('seq', 'desc').limit(Math.min(opts.limit ?? 100, 1000));
    if (opts.before !== undefined) q = q.where('seq', '<', opts.before);
    return (await q.execute()).map(mapEntry);
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    const r = await this.db.selectFrom('mgmt_audit').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return r ? { seq: Number(r.seq), hash: r.hash } : null;
  }

  /**
   * Walks the whole chain from entry 1. `expectHead`: an earlier head (seq and hash) that must still
   * be in the chain, which catches entries cut off the end since it was recorded.
   */
  async verify(opts: { expectHead?: { seq: number; hash: string } } = {}): Promise<VerifyResult> {
    const problems: VerifyResult['problems'] = [];
    const note = (seq: number, problem: string) => {
      if (problems.length < 20) problems.push({ seq, problem });
    };
    let expectedSeq = 1;
    let prev = GENESIS_HASH;
    let entries = 0;
    let head: VerifyResult['head'] = null;
    let anchorSeen = false;
    // From the lowest sequence number there is, whatever it is (a forged entry 0 or -1 included).
    for (let after: number | null = null; ; ) {
      let q = this.db.selectFrom('mgmt_audit').selectAll().orderBy('seq').limit(1000);
      if (after !== null) q = q.where('seq', '>', after);
      const rows = await q.execute();
      if (rows.length === 0) break;
      for (const r of rows) {
        const seq = Number(r.seq);
        entries++;
        if (seq !== expectedSeq) note(seq, seq > expectedSeq ? `entries ${expectedSeq}..${seq - 1} are missing` : `sequence number ${seq} is not in the chain (expected ${expectedSeq})`);
        if (r.prev_hash !== prev) note(seq, 'its link to the previous entry does not match (an entry before it was changed, removed or inserted)');
        const computed = entryHash(this.#key(), { seq, at: Number(r.at), actor: r.actor, action: r.action, target: r.target, detail: r.detail, prevHash: r.prev_hash });
        if (computed !== r.hash) note(seq, 'its content does not match its hash (the entry was changed, or written with another key)');
        if (opts.expectHead && seq === opts.expectHead.seq) {
          anchorSeen = true;
          if (r.hash !== opts.expectHead.hash) note(seq, 'its hash is not the recorded head (the log was rewritten from here or before)');
        }
        prev = r.hash;
        expectedSeq = seq + 1;
        head = { seq, hash: r.hash };
      }
      after = Number(rows[rows.length - 1]!.seq);
    }
    if (opts.expectHead && !anchorSeen) {
      note(opts.expectHead.seq, `the recorded head ${opts.expectHead.seq} is not in the log (${entries} entries): entries were cut off the end`);
    }
    return { ok: problems.length === 0, entries, head, problems };
  }
}

function mapEntry(r: MgmtAuditTable): AuditEntry {
  return {
    seq: Number(r.seq),
    at: new Date(Number(r.at)),
    actor: r.actor,
    action: r.action,
    target: r.target,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
