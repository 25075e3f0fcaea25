/**
 * The audit log: every change made through the management API or the CLI's management commands,
 * append-only and hash-chained (docs/dashboard.md, "Audit log").
 *
 * Entry n holds hash_n = SHA-256 of the JSON array [seq, at, actor, action, target, detail,
 * hash_{n-1}], with hash_0 sixty-four zeros. Changing, removing, reordering or inserting an entry
 * breaks the chain at that point, and `verify` says where. Cutting entries off the end leaves a
 * valid shorter chain: that is caught by comparing with a head recorded elsewhere
 * (`anvil audit head`, then `anvil audit verify --expect-head SEQ:HASH`).
 */
import { createHash } from 'node:crypto';
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

export function entryHash(e: { seq: number; at: number; actor: string; action: string; target: string; detail: string; prevHash: string }): string {
  return createHash('sha256').update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.target, e.detail, e.prevHash])).digest('hex');
}

export function actorText(a: Actor): string {
  return a.kind === 'cli' ? `cli:${a.name}` : `token:${a.name}`;
}

export class AuditLog {
  constructor(private readonly db: Kysely<Schema>) {}

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
          const hash = entryHash(e);
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
    for (let after = 0; ; ) {
      const rows = await this.db.selectFrom('mgmt_audit').selectAll().where('seq', '>', after).orderBy('seq').limit(1000).execute();
      if (rows.length === 0) break;
      for (const r of rows) {
        const seq = Number(r.seq);
        entries++;
        if (seq !== expectedSeq) note(seq, seq > expectedSeq ? `entries ${expectedSeq}..${seq - 1} are missing` : `sequence number ${seq} is out of order (expected ${expectedSeq})`);
        if (r.prev_hash !== prev) note(seq, 'its link to the previous entry does not match (an entry before it was changed, removed or inserted)');
        const computed = entryHash({ seq, at: Number(r.at), actor: r.actor, action: r.action, target: r.target, detail: r.detail, prevHash: r.prev_hash });
        if (computed !== r.hash) note(seq, 'its content does not match its hash (the entry was changed)');
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
