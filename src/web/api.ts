/**
 * The management API (docs/openapi.json, docs/dashboard.md) and the dashboard's files, as a
 * fastify plugin: `anvil server` mounts it beside ACME, `anvil dashboard` serves it alone.
 *
 * Every request but the login and the OpenAPI description is authenticated by an API token
 * (`Authorization: Bearer anvil_...`, or the dashboard's HttpOnly cookie holding it) and
 * authorized by its role; every change is written to the audit log before it is answered.
 * Errors are RFC 9457 problem documents.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../lib/logger.js';
import { AcmeProblem } from '../protocol/problems.js';
import type { Authority } from '../server/authority/authority.js';
import type { Store } from '../storage/store.js';
import type { Health } from '../inventory/checks.js';
import { checkCertificate, healthOf, LEVELS } from '../inventory/checks.js';
import type { EstateView } from '../inventory/estate-view.js';
import type { AssessedCertificate } from '../inventory/inventory.js';
import { assessedJson, certificateFactsJson } from '../inventory/report.js';
import type { CertificateSource, InventoryStore } from '../inventory/store.js';
import { AuditLog } from './audit.js';
import { ROLES, roleAtLeast, TokenError, TokenStore, type Actor, type Role } from './tokens.js';

export const API_PREFIX = '/api/v1';
export const DASHBOARD_PREFIX = '/dashboard';
const COOKIE = 'anvil_token';

/** The repository's (or the installed package's) root: web/ and docs/openapi.json live there. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ManagementDeps {
  inventory: InventoryStore;
  view: EstateView;
  /** The CA's store and authority; absent when only the inventory is served. */
  ca?: { store: Store; authority?: Authority };
  logger: Logger;
  now: () => Date;
  /** Marks the session cookie Secure (the listener is HTTPS). */
  secureCookie: boolean;
  /** The audit log's HMAC key (src/web/audit.ts loadAuditKey). */
  auditKey: Buffer;
}

export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

const SOURCES: readonly CertificateSource[] = ['ca', 'lineage', 'network', 'file', 'import'];
const REASONS = [0, 1, 3, 4, 5, 9];

declare module 'fastify' {
  interface FastifyRequest {
    actor?: Actor;
  }
}

function problemJson(status: number, title: string, detail: string) {
  return { type: 'about:blank', title, status, detail };
}

function intParam(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n < min || n > max) throw new ApiProblem(400, 'Bad request', `${name} must be a whole number from ${min} to ${max}`);
  return n;
}

/** A certificate in a list: the facts every view shows, whether it is revoked, and how many places serve it. */
function summaryJson(a: AssessedCertificate) {
  const c = a.certificate;
  return {
    ...certificateFactsJson(a),
    key: { type: c.keyType, bits: c.keyBits },
    revoked: c.revoked !== null,
    deployed: a.installations.filter((i) => i.status === 'present').length,
  };
}

async function readStatic(file: string): Promise<Buffer | null> {
  try {
    return await readFile(path.join(PACKAGE_ROOT, file));
  } catch {
    return null;
  }
}

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Registers the management API under /api/v1 and the dashboard under /dashboard/. */
export async function registerManagement(app: FastifyInstance, deps: ManagementDeps): Promise<void> {
  const tokens = new TokenStore(deps.inventory.db);
  const audit = new AuditLog(deps.inventory.db, deps.auditKey);

  /**
   * A change to the CA's database, audited first: the entry is written before the change (a
   * change never stands unaudited, whatever fails), and a failure is audited after it.
   */
  async function audited<T>(req: FastifyRequest, action: string, target: string, detail: Record<string, unknown>, change: () => Promise<T>): Promise<T> {
    await audit.append(req.actor!, action, target, detail, deps.now());
    try {
      return await change();
    } catch (e) {
      const why = e instanceof AcmeProblem || e instanceof ApiProblem ? e.message : 'internal error';
      await audit.append(req.actor!, `${action}.failed`, target, { error: why }, deps.now()).catch((err: unknown) => req.log.error({ err }, 'auditing a failed change failed'));
      throw e;
    }
  }
  const cookie = (req: FastifyRequest, value: string, maxAge: number) =>
    `${COOKIE}=${value}; Path=${API_PREFIX}; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${deps.secureCookie || req.protocol === 'https' ? '; Secure' : ''}`;
  // The estate is read once now, in the background, so that the first page is served at once.
  deps.view.warm();

  await app.register(
    async (api) => {
      api.removeAllContentTypeParsers();
      api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => {
        try {
          const v = body === '' ? {} : (JSON.parse(body as string) as unknown);
          if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
          done(null, v);
        } catch {
          done(new ApiProblem(400, 'Bad request', 'the request body must be a JSON object'), undefined);
        }
      });
      api.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => {
        done(new ApiProblem(415, 'Unsupported media type', 'send application/json'), undefined);
      });

      api.setErrorHandler(async (err: unknown, req, reply) => {
        let status: number;
        let title: string;
        let detail: string;
        if (err instanceof ApiProblem) ({ status, title, detail } = err);
        else if (err instanceof AcmeProblem) {
          status = err.type === 'alreadyRevoked' ? 409 : err.status;
          title = err.type;
          detail = err.detail;
        } else if (err instanceof TokenError) {
          status = err.code === 'NOT_FOUND' ? 404 : err.code === 'NAME_TAKEN' ? 409 : 400;
          title = err.code === 'NOT_FOUND' ? 'Not found' : 'Bad request';
          detail = err.message;
        } else {
          const e = err as { statusCode?: number; code?: string };
          if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') [status, title, detail] = [413, 'Payload too large', 'the request body is larger than 64 KiB'];
          else if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) [status, title, detail] = [e.statusCode, 'Bad request', 'the request is malformed'];
          else {
            req.log.error({ err, reqId: req.id }, 'management API: internal error');
            if (process.env.ANVIL_DEBUG_API) console.error(err);
            [status, title, detail] = [500, 'Internal error', `internal error; the operator can find it under request id ${req.id}`];
          }
        }
        reply.code(status).header('Content-Type', 'application/problem+json').header('Cache-Control', 'no-store');
        return reply.send(Buffer.from(JSON.stringify(problemJson(status, title, detail))));
      });
      api.setNotFoundHandler(async () => {
        throw new ApiProblem(404, 'Not found', 'no such API resource');
      });

      // Who is asking: a bearer token, or the dashboard's cookie. Cookie-authenticated changes must
      // also carry X-Anvil-CSRF (a page of another site cannot add it without a CORS preflight,
      // which this API never grants); the cookie is SameSite=Strict besides.
      const PUBLIC = new Set([`${API_PREFIX}/session`, `${API_PREFIX}/openapi.json`]);
      api.addHook('onRequest', async (req, reply) => {
        reply.header('Cache-Control', 'no-store');
        const route = req.routeOptions.url ?? '';
        if (PUBLIC.has(route)) return;
        const auth = req.headers.authorization;
        let token: string | undefined;
        let viaCookie = false;
        if (auth?.startsWith('Bearer ')) token = auth.slice(7).trim();
        else {
          token = cookieOf(req, COOKIE);
          viaCookie = token !== undefined;
        }
        const who = token ? await tokens.authenticate(token, deps.now()) : null;
        if (!who) {
          reply.header('WWW-Authenticate', 'Bearer realm="anvil"');
          throw new ApiProblem(401, 'Unauthorized', token ? 'the API token is unknown, revoked or expired' : 'an API token is needed: Authorization: Bearer anvil_... (create one with "anvil token create")');
        }
        if (viaCookie && req.method !== 'GET' && req.method !== 'HEAD' && req.headers['x-anvil-csrf'] !== '1') {
          throw new ApiProblem(403, 'Forbidden', 'a change made with the session cookie needs the header X-Anvil-CSRF: 1');
        }
        req.actor = { kind: 'token', name: who.name, role: who.role, tokenId: who.id };
      });

      const need = (role: Role) => async (req: FastifyRequest) => {
        if (!req.actor || !roleAtLeast(req.actor.role, role)) {
          throw new ApiProblem(403, 'Forbidden', `this needs the ${role} role; the token "${req.actor?.name}" has the ${req.actor?.role} role`);
        }
      };
      const caOrFail = () => {
        if (!deps.ca) throw new ApiProblem(404, 'Not found', 'this server has no CA (the dashboard runs over an inventory only)');
        return deps.ca;
      };

      // ------------------------------------------------------------------ session and identity
      api.post('/session', async (req, reply) => {
        const body = (req.body ?? {}) as { token?: unknown };
        if (typeof body.token !== 'string') throw new ApiProblem(400, 'Bad request', 'send {"token": "anvil_..."}');
        const who = await tokens.authenticate(body.token.trim(), deps.now());
        if (!who) throw new ApiProblem(401, 'Unauthorized', 'the API token is unknown, revoked or expired');
        const maxAge = who.expiresAt ? Math.max(0, Math.floor((who.expiresAt.getTime() - deps.now().getTime()) / 1000)) : 8 * 3600;
        reply.header('Set-Cookie', cookie(req, body.token.trim(), Math.min(maxAge, 8 * 3600)));
        return { name: who.name, role: who.role };
      });
      api.delete('/session', async (req, reply) => {
        reply.header('Set-Cookie', cookie(req, '', 0));
        return reply.code(204).send();
      });
      // canRevoke: this token may revoke here (an operator or admin, and anvil server rather than
      // anvil dashboard, which reads the CA's database but has no authority to sign a CRL).
      api.get('/me', async (req) => ({
        name: req.actor!.name,
        role: req.actor!.role,
        ca: deps.ca !== undefined,
        canRevoke: deps.ca?.authority !== undefined && roleAtLeast(req.actor!.role, 'operator'),
      }));
      api.get('/openapi.json', async (_req, reply) => {
        const doc = await readStatic('docs/openapi.json');
        if (!doc) throw new ApiProblem(404, 'Not found', 'docs/openapi.json is not installed');
        return reply.header('Content-Type', 'application/json').send(doc);
      });

      // ------------------------------------------------------------------ inventory
      api.get('/summary', async () => {
        const s = await deps.view.summary();
        return { ...s, at: s.at.toISOString(), soonest: s.soonest.map(summaryJson) };
      });

      api.get('/certificates', async (req) => {
        const q = req.query as Record<string, string | undefined>;
        if (q.health !== undefined && !(LEVELS as readonly string[]).includes(q.health)) throw new ApiProblem(400, 'Bad request', `health must be one of ${LEVELS.join(', ')}`);
        if (q.source !== undefined && !(SOURCES as readonly string[]).includes(q.source)) throw new ApiProblem(400, 'Bad request', `source must be one of ${SOURCES.join(', ')}`);
        if (q.sort !== undefined && !['notAfter', '-notAfter', 'health', 'subject'].includes(q.sort)) throw new ApiProblem(400, 'Bad request', 'sort must be notAfter, -notAfter, health or subject');
        for (const k of ['q', 'health', 'source', 'check', 'sort', 'expiring', 'cursor', 'limit', 'all'] as const) {
          if (q[k] !== undefined && typeof q[k] !== 'string') throw new ApiProblem(400, 'Bad request', `${k} may be given once`);
        }
        if (q.q !== undefined && q.q.length > 200) throw new ApiProblem(400, 'Bad request', 'q is at most 200 characters');
        const page = await deps.view.page({
          ...(q.q ? { q: q.q } : {}),
          ...(q.health ? { health: q.health as Health } : {}),
          ...(q.source ? { source: q.source as CertificateSource } : {}),
          ...(q.check ? { check: q.check } : {}),
          ...(q.expiring !== undefined ? { expiringWithinDays: intParam(q.expiring, 'expiring', 0, 3650, 0) } : {}),
          leavesOnly: q.all !== 'true',
          ...(q.sort ? { sort: q.sort as 'notAfter' } : {}),
          offset: intParam(q.cursor, 'cursor', 0, 10_000_000, 0),
          limit: intParam(q.limit, 'limit', 1, 500, 50),
        });
        return { at: page.at.toISOString(), total: page.total, items: page.items.map(summaryJson), next: page.next === null ? null : String(page.next) };
      });

      api.get('/certificates/:fingerprint', async (req) => {
        const fp = (req.params as { fingerprint: string }).fingerprint.toLowerCase();
        if (!/^[0-9a-f]{64}$/.test(fp)) throw new ApiProblem(400, 'Bad request', 'a certificate is named by its SHA-256 fingerprint, 64 hex digits');
        // The detail is read fresh (with its DER), so a page shows what the inventory holds now.
        const snap = await deps.view.snapshot();
        const c = await deps.inventory.getCertificate(fp);
        if (!c) throw new ApiProblem(404, 'Not found', 'no certificate with this fingerprint in the inventory');
        const assessed = snap.byFingerprint.get(fp);
        const installations = await deps.inventory.listInstallations(fp);
        // Checked now, with its places as they are now (a renewal is known from the snapshot).
        const renewedBy = assessed?.renewedBy ?? null;
        const revoked = c.revoked && { ...c.revoked, source: c.revocationCheck?.source ?? null };
        const base = { certificate: c, installations, renewedBy, health: healthOf(checkCertificate(c, { now: deps.now(), installations, renewedBy, revoked })) };
        const events = await deps.inventory.listEvents({ fingerprint: fp, limit: 500 });
        return {
          ...assessedJson(base),
          pem: `-----BEGIN CERTIFICATE-----\n${c.der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`,
          events: events.map((e) => ({ id: e.id, at: e.at.toISOString(), type: e.type, installationId: e.installationId, detail: e.detail })),
        };
      });

      api.get('/timeline', async (req) => {
        const q = req.query as Record<string, string | undefined>;
        const t = await deps.view.timeline(intParam(q.days, 'days', 1, 730, 90), intParam(q.bucket, 'bucket', 1, 90, 7));
        return { ...t, at: t.at.toISOString(), buckets: t.buckets.map((b) => ({ ...b, start: b.start.toISOString(), end: b.end.toISOString() })) };
      });

      api.get('/forecast', async (req) => {
        const q = req.query as Record<string, string | undefined>;
        const f = await deps.view.forecast(intParam(q.days, 'days', 1, 1095, 365));
        return { ...f, start: f.start.toISOString() };
      });

      // ------------------------------------------------------------------ the CA
      const listOf = async <T>(req: FastifyRequest, fn: (before: string | null, limit: number) => Promise<{ items: T[]; next: string | null }>) => {
        const q = req.query as Record<string, string | undefined>;
        if (q.cursor !== undefined && !/^[A-Za-z0-9_-]{1,400}$/.test(q.cursor)) throw new ApiProblem(400, 'Bad request', 'cursor is the "next" of the previous page');
        return fn(q.cursor ?? null, intParam(q.limit, 'limit', 1, 500, 50));
      };
      api.get('/ca/accounts', async (req) => {
        const p = await listOf(req, (b, l) => caOrFail().store.listAccountsNewest(b, l));
        return { items: p.items.map((a) => ({ id: a.id, status: a.status, contact: a.contact, eabKid: a.eabKid, createdAt: a.createdAt.toISOString() })), next: p.next };
      });
      api.get('/ca/orders', async (req) => {
        const p = await listOf(req, (b, l) => caOrFail().store.listOrdersNewest(b, l));
        return {
          items: p.items.map((o) => ({
            id: o.id,
            accountId: o.accountId,
            status: o.status,
            identifiers: o.identifiers,
            profile: o.profile,
            createdAt: o.createdAt.toISOString(),
            expires: o.expires.toISOString(),
            certificateId: o.certificateId,
          })),
          next: p.next,
        };
      });
      api.get('/ca/revocations', async (req) => {
        const p = await listOf(req, (b, l) => caOrFail().store.listRevocationsNewest(b, l));
        return {
          items: p.items.map((c) => ({
            certificateId: c.id,
            serial: c.serial,
            identifiers: c.identifiers,
            revokedAt: c.revokedAt!.toISOString(),
            reason: c.revocationReason,
            notAfter: c.notAfter?.toISOString() ?? null,
          })),
          next: p.next,
        };
      });
      api.post('/ca/revocations', { preHandler: need('operator') }, async (req, reply) => {
        const ca = caOrFail();
        if (!ca.authority) throw new ApiProblem(409, 'Conflict', 'revocations are made by anvil server, not by anvil dashboard');
        const body = (req.body ?? {}) as { serial?: unknown; fingerprint?: unknown; reason?: unknown };
        const reason = body.reason ?? 0;
        if (typeof reason !== 'number' || !REASONS.includes(reason)) throw new ApiProblem(400, 'Bad request', `reason must be one of ${REASONS.join(', ')} (RFC 5280 CRLReason)`);
        let serial: string;
        let fingerprint: string | null = null;
        if (typeof body.serial === 'string' && /^[0-9a-fA-F:]{1,80}$/.test(body.serial)) serial = body.serial.toLowerCase().replace(/:/g, '').replace(/^0+(?=.)/, '');
        else if (typeof body.fingerprint === 'string' && /^[0-9a-fA-F]{64}$/.test(body.fingerprint)) {
          fingerprint = body.fingerprint.toLowerCase();
          const c = await deps.inventory.getCertificate(fingerprint);
          if (!c) throw new ApiProblem(404, 'Not found', 'no certificate with this fingerprint in the inventory');
          serial = c.serial.toLowerCase().replace(/^0+(?=.)/, '');
        } else throw new ApiProblem(400, 'Bad request', 'name the certificate by "serial" (hex) or "fingerprint" (SHA-256, 64 hex digits)');
        const issued = await ca.store.getCertificateBySerial(serial);
        if (!issued?.der || issued.status !== 'issued') throw new ApiProblem(404, 'Not found', `this CA issued no certificate with serial ${serial}`);
        const issuedFp = createHash('sha256').update(issued.der).digest('hex');
        // The serial is only the CA's name for it: a certificate found elsewhere (a scan, a file)
        // may carry the serial of one this CA issued. Only that very certificate is revoked.
        if (fingerprint !== null && issuedFp !== fingerprint) {
          throw new ApiProblem(404, 'Not found', 'this CA did not issue this certificate (it carries the serial of one of ours)');
        }
        if (issued.revokedAt) throw new ApiProblem(409, 'alreadyRevoked', 'the certificate is already revoked');
        const authority = ca.authority;
        const r = await audited(req, 'certificate.revoke', `serial:${serial}`, { reason, fingerprint: issuedFp }, () => authority.revokeAsOperator(serial, reason, `token:${req.actor!.name}`));
        // The inventory learns it now rather than at the next sync from the CA.
        await deps.inventory
          .recordCertificate(issued.der, 'ca', deps.now(), { revoked: { at: r.revokedAt, reason } })
          .catch((e: unknown) => req.log.warn({ err: e, serial }, 'recording a revocation in the inventory failed; the next sync records it'));
        await deps.view.refresh(issuedFp).catch(() => deps.view.invalidate());
        return reply.code(201).send({ serial, reason, revokedAt: r.revokedAt.toISOString() });
      });

      api.get('/ca/eab-keys', { preHandler: need('admin') }, async () => {
        const now = deps.now().getTime();
        const keys = await caOrFail().store.listEabKeys();
        return {
          items: keys.map((k) => ({
            kid: k.kid,
            maxUses: k.maxUses,
            uses: k.uses,
            accountIds: k.accountIds,
            comment: k.comment,
            createdAt: k.createdAt.toISOString(),
            expiresAt: k.expiresAt?.toISOString() ?? null,
            active: k.uses < k.maxUses && (k.expiresAt === null || k.expiresAt.getTime() > now),
          })),
        };
      });
      api.post('/ca/eab-keys', { preHandler: need('admin') }, async (req, reply) => {
        const body = (req.body ?? {}) as { uses?: unknown; expiresDays?: unknown; comment?: unknown };
        const uses = body.uses ?? 1;
        if (typeof uses !== 'number' || !Number.isInteger(uses) || uses < 1 || uses > 1_000_000) throw new ApiProblem(400, 'Bad request', 'uses must be a whole number from 1 to 1000000');
        if (body.expiresDays !== undefined && (typeof body.expiresDays !== 'number' || !Number.isInteger(body.expiresDays) || body.expiresDays < 1 || body.expiresDays > 3650)) {
          throw new ApiProblem(400, 'Bad request', 'expiresDays must be a whole number from 1 to 3650');
        }
        if (body.comment !== undefined && (typeof body.comment !== 'string' || body.comment.length > 200)) throw new ApiProblem(400, 'Bad request', 'comment is a string of at most 200 characters');
        const now = deps.now();
        const kid = `kid-${randomBytes(12).toString('base64url')}`;
        const hmacKey = randomBytes(32).toString('base64url');
        const expiresAt = typeof body.expiresDays === 'number' ? new Date(now.getTime() + body.expiresDays * 86_400_000) : null;
        const store = caOrFail().store;
        await audited(req, 'eab.create', `eab:${kid}`, { maxUses: uses, expiresAt: expiresAt?.toISOString() ?? null, comment: body.comment ?? null }, () =>
          store.createEabKey({ kid, hmacKey, maxUses: uses, uses: 0, accountIds: [], createdAt: now, expiresAt, comment: (body.comment as string | undefined) ?? null }),
        );
        return reply.code(201).send({ kid, hmacKey, maxUses: uses, expiresAt: expiresAt?.toISOString() ?? null });
      });
      api.delete('/ca/eab-keys/:kid', { preHandler: need('admin') }, async (req, reply) => {
        const kid = (req.params as { kid: string }).kid;
        const store = caOrFail().store;
        const k = await store.getEabKey(kid);
        if (!k || (k.expiresAt && k.expiresAt.getTime() <= deps.now().getTime())) throw new ApiProblem(404, 'Not found', 'no active EAB key with this id');
        await audited(req, 'eab.disable', `eab:${kid}`, {}, async () => {
          if (!(await store.disableEabKey(kid, deps.now()))) throw new ApiProblem(404, 'Not found', 'no active EAB key with this id');
        });
        return reply.code(204).send();
      });

      // ------------------------------------------------------------------ tokens and audit
      api.get('/tokens', { preHandler: need('admin') }, async () => ({ items: (await tokens.list()).map(tokenJson) }));
      api.post('/tokens', { preHandler: need('admin') }, async (req, reply) => {
        const body = (req.body ?? {}) as { name?: unknown; role?: unknown; expiresDays?: unknown };
        if (typeof body.name !== 'string' || typeof body.role !== 'string' || !(ROLES as readonly string[]).includes(body.role)) {
          throw new ApiProblem(400, 'Bad request', `send {"name": "...", "role": "${ROLES.join('" | "')}"}`);
        }
        if (body.expiresDays !== undefined && (typeof body.expiresDays !== 'number' || !Number.isInteger(body.expiresDays) || body.expiresDays < 1 || body.expiresDays > 3650)) {
          throw new ApiProblem(400, 'Bad request', 'expiresDays must be a whole number from 1 to 3650');
        }
        const now = deps.now();
        const expiresAt = typeof body.expiresDays === 'number' ? new Date(now.getTime() + body.expiresDays * 86_400_000) : null;
        const t = await tokens.create({ name: body.name, role: body.role as Role, createdBy: `token:${req.actor!.name}`, expiresAt }, now);
        await audit.append(req.actor!, 'token.create', `token:${t.info.name}`, { id: t.info.id, role: t.info.role, expiresAt: expiresAt?.toISOString() ?? null }, now);
        return reply.code(201).send({ token: t.token, ...tokenJson(t.info) });
      });
      api.delete('/tokens/:id', { preHandler: need('admin') }, async (req, reply) => {
        const t = await tokens.revoke((req.params as { id: string }).id, deps.now());
        if (t.changed) await audit.append(req.actor!, 'token.revoke', `token:${t.name}`, { id: t.id }, deps.now());
        return reply.code(204).send();
      });
      api.get('/audit', { preHandler: need('admin') }, async (req) => {
        const q = req.query as Record<string, string | undefined>;
        const limit = intParam(q.limit, 'limit', 1, 500, 100);
        const before = q.cursor !== undefined ? intParam(q.cursor, 'cursor', 1, Number.MAX_SAFE_INTEGER, 1) : undefined;
        const items = await audit.list({ limit, ...(before !== undefined ? { before } : {}) });
        const last = items[items.length - 1];
        return { items: items.map((e) => ({ ...e, at: e.at.toISOString() })), next: items.length === limit && last && last.seq > 1 ? String(last.seq) : null };
      });
      api.get('/audit/verify', { preHandler: need('admin') }, async () => audit.verify());
    },
    { prefix: API_PREFIX },
  );

  // ------------------------------------------------------------------ the dashboard's files
  await app.register(
    async (web) => {
      const serve = async (file: string, reply: FastifyReply) => {
        const body = await readStatic(path.join('web', file));
        if (!body) throw new AcmeProblem('malformed', 'no such resource', { status: 404 });
        reply
          .header('Content-Type', STATIC_TYPES[path.extname(file)] ?? 'application/octet-stream')
          .header('Cache-Control', 'no-cache')
          .header('X-Content-Type-Options', 'nosniff')
          .header('X-Frame-Options', 'DENY')
          .header('Referrer-Policy', 'no-referrer')
          .header('Content-Security-Policy', "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
        return reply.send(body);
      };
      // Only /dashboard/ (the page's relative links need the slash); /dashboard redirects there.
      web.get('/', { prefixTrailingSlash: 'slash' }, async (_req, reply) => serve('index.html', reply));
      web.get('/:file', async (req, reply) => {
        const file = (req.params as { file: string }).file;
        if (!/^[a-z0-9-]+\.(js|css|svg|html)$/.test(file)) throw new AcmeProblem('malformed', 'no such resource', { status: 404 });
        return serve(file, reply);
      });
    },
    { prefix: DASHBOARD_PREFIX },
  );
  app.get(DASHBOARD_PREFIX, async (_req, reply) => reply.redirect(`${DASHBOARD_PREFIX}/`));
}

function tokenJson(t: Awaited<ReturnType<TokenStore['list']>>[number]) {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    createdAt: t.createdAt.toISOString(),
    createdBy: t.createdBy,
    expiresAt: t.expiresAt?.toISOString() ?? null,
    lastUsedAt: t.lastUsedAt?.toISOString() ?? null,
    revokedAt: t.revokedAt?.toISOString() ?? null,
  };
}

function cookieOf(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim() || undefined;
  }
  return undefined;
}
