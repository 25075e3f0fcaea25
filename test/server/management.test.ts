/**
 * The management API (src/web/api.ts) on a real in-process anvil server: tokens and roles (every
 * refusal), the inventory views over certificates the CA issued, a revocation by an operator that
 * the CA's OCSP responder then reports, EAB keys and tokens managed by an admin, the session
 * cookie with its CSRF header, bad input as problem documents, the audit log with every change
 * (and tampering with it detected), and the OpenAPI description matching the routes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { inventoryLocationOf, openInventory } from '../../src/inventory/inventory.js';
import { syncFromCa } from '../../src/inventory/sources.js';
import type { InventoryStore } from '../../src/inventory/store.js';
import * as x509 from '../../src/lib/x509.js';
import { AuditLog, auditKeyPath, entryHash, loadAuditKey } from '../../src/web/audit.js';
import { TokenStore } from '../../src/web/tokens.js';
import { issue } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { RawAcme } from '../helpers/raw-acme.js';

const run = promisify(execFile);

function leafOf(chain: string): string {
  return `${chain.split('-----END CERTIFICATE-----')[0]}-----END CERTIFICATE-----\n`;
}

describe('management API', () => {
  let t: TestServer;
  let inv: InventoryStore;
  let base: string;
  const tok: Record<'viewer' | 'operator' | 'admin', string> = { viewer: '', operator: '', admin: '' };
  let leafA: string;
  let fpA: string;
  let fpB: string;

  async function call(method: string, p: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${p}`, { method, headers, ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}) });
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, text, headers: res.headers };
  }

  before(async () => {
    t = await startTestServer();
    base = t.srv.baseUrl;
    const acme = await new RawAcme(t.directoryUrl).init();
    await acme.register();
    leafA = leafOf((await issue(acme, ['alpha.example.com', 'www.alpha.example.com'])).chain);
    await issue(acme, ['beta.example.net']);
    inv = await openInventory(inventoryLocationOf({ type: 'sqlite' }, t.dataDir));
    await syncFromCa(inv, t.srv.store, new Date());
    const tokens = new TokenStore(inv.db);
    for (const role of ['viewer', 'operator', 'admin'] as const) tok[role] = (await tokens.create({ name: `${role}-1`, role, createdBy: 'test' }, new Date())).token;
  });
  after(async () => {
    await inv?.close();
    await t?.stop();
  });

  test('without a token, or with a wrong, malformed or revoked one, every API call is 401 with a problem document', async () => {
    const none = await call('GET', '/api/v1/summary');
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('content-type'), 'application/problem+json');
    assert.match(none.json.detail, /anvil token create/);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="anvil"');
    assert.equal((await call('GET', '/api/v1/certificates', { token: `anvil_${'A'.repeat(43)}` })).status, 401);
    assert.equal((await call('GET', '/api/v1/certificates', { token: 'not-a-token' })).status, 401);
    const tokens = new TokenStore(inv.db);
    const temp = await tokens.create({ name: 'temp', role: 'admin', createdBy: 'test' }, new Date());
    assert.equal((await call('GET', '/api/v1/me', { token: temp.token })).status, 200);
    await tokens.revoke('temp', new Date());
    assert.equal((await call('GET', '/api/v1/me', { token: temp.token })).status, 401);
    const expired = await tokens.create({ name: 'expired', role: 'admin', createdBy: 'test', expiresAt: new Date(Date.now() - 1000) }, new Date());
    assert.equal((await call('GET', '/api/v1/me', { token: expired.token })).status, 401);
  });

  test('a viewer reads the summary, the list (searched and filtered), a certificate with its history, the timeline and the forecast', async () => {
    const me = await call('GET', '/api/v1/me', { token: tok.viewer });
    assert.deepEqual(me.json, { name: 'viewer-1', role: 'viewer', ca: true, canRevoke: false });
    const s = await call('GET', '/api/v1/summary', { token: tok.viewer });
    assert.equal(s.status, 200);
    assert.equal(s.json.leaves, 2);
    assert.equal(s.json.bySource.ca, 2);
    assert.equal(s.json.soonest.length, 2);
    const all = await call('GET', '/api/v1/certificates', { token: tok.viewer });
    assert.equal(all.json.total, 2);
    const found = await call('GET', '/api/v1/certificates?q=ALPHA.example', { token: tok.viewer });
    assert.equal(found.json.total, 1);
    assert.deepEqual(found.json.items[0].names, ['alpha.example.com', 'www.alpha.example.com']);
    fpA = found.json.items[0].fingerprint;
    fpB = all.json.items.find((i: any) => i.fingerprint !== fpA).fingerprint;
    assert.equal((await call('GET', '/api/v1/certificates?health=critical', { token: tok.viewer })).json.total, 0);
    assert.equal((await call('GET', '/api/v1/certificates?source=file', { token: tok.viewer })).json.total, 0);
    const paged = await call('GET', '/api/v1/certificates?limit=1', { token: tok.viewer });
    assert.equal(paged.json.items.length, 1);
    assert.equal(paged.json.next, '1');
    const second = await call('GET', `/api/v1/certificates?limit=1&cursor=${paged.json.next}`, { token: tok.viewer });
    assert.equal(second.json.next, null);
    assert.notEqual(second.json.items[0].fingerprint, paged.json.items[0].fingerprint);
    const d = await call('GET', `/api/v1/certificates/${fpA}`, { token: tok.viewer });
    assert.equal(d.status, 200);
    assert.equal(d.json.source, 'ca');
    assert.match(d.json.pem, /^-----BEGIN CERTIFICATE-----\n/);
    assert.equal(new x509.X509Certificate(d.json.pem).serialNumber, new x509.X509Certificate(leafA).serialNumber);
    assert.deepEqual(
      d.json.events.map((e: any) => e.type),
      ['issued'],
    );
    const tl = await call('GET', '/api/v1/timeline?days=28&bucket=7', { token: tok.viewer });
    assert.equal(tl.json.buckets.length, 4);
    // 90-day certificates: neither expires within four weeks.
    assert.equal(tl.json.buckets.reduce((n: number, b: any) => n + b.total, 0), 0);
    const tl2 = await call('GET', '/api/v1/timeline?days=364&bucket=7', { token: tok.viewer });
    assert.equal(tl2.json.buckets.reduce((n: number, b: any) => n + b.total, 0), 2);
    const f = await call('GET', '/api/v1/forecast?days=120', { token: tok.viewer });
    assert.equal(f.json.current.length, 120);
    assert.equal(f.json.certificates, 2);
    assert.equal(f.json.current.reduce((a: number, b: number) => a + b, 0), 2);
    const accounts = await call('GET', '/api/v1/ca/accounts', { token: tok.viewer });
    assert.equal(accounts.json.items.length, 1);
    const orders = await call('GET', '/api/v1/ca/orders?limit=1', { token: tok.viewer });
    assert.equal(orders.json.items.length, 1);
    assert.ok(orders.json.next);
    const orders2 = await call('GET', `/api/v1/ca/orders?limit=1&cursor=${orders.json.next}`, { token: tok.viewer });
    assert.equal(orders2.json.items.length, 1);
    assert.notEqual(orders2.json.items[0].id, orders.json.items[0].id);
    assert.equal(orders2.json.next, null);
  });

  test('bad input is a 400 problem that says what to fix; unknown things are 404', async () => {
    const v = { token: tok.viewer };
    for (const [p, re] of [
      ['/api/v1/certificates?limit=abc', /limit must be a whole number/],
      ['/api/v1/certificates?limit=100000', /limit must be a whole number from 1 to 500/],
      ['/api/v1/certificates?health=bad', /health must be one of/],
      ['/api/v1/certificates?sort=evil', /sort must be/],
      ['/api/v1/certificates/xyz', /64 hex digits/],
      ['/api/v1/timeline?days=-1', /days must be/],
      ['/api/v1/ca/orders?cursor=%27or%201=1', /cursor/],
    ] as const) {
      const r = await call('GET', p, v);
      assert.equal(r.status, 400, p);
      assert.match(r.json.detail, re, p);
    }
    assert.equal((await call('GET', `/api/v1/certificates/${'0'.repeat(64)}`, v)).status, 404);
    assert.equal((await call('GET', '/api/v1/nothing', v)).status, 404);
    // A cursor this server did not make is an empty page, not an error or a full table.
    const junk = await call('GET', `/api/v1/ca/orders?cursor=${Buffer.from('[1,2]').toString('base64url')}`, v);
    assert.deepEqual(junk.json, { items: [], next: null });
    const op = { token: tok.operator };
    assert.equal((await call('POST', '/api/v1/ca/revocations', { ...op, body: '{not json' })).status, 400);
    assert.equal((await call('POST', '/api/v1/ca/revocations', { ...op, body: '[]' })).status, 400);
    const ct = await fetch(`${base}/api/v1/ca/revocations`, { method: 'POST', headers: { authorization: `Bearer ${tok.operator}`, 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(ct.status, 415);
    const reason = await call('POST', '/api/v1/ca/revocations', { ...op, body: { fingerprint: fpA, reason: 2 } });
    assert.equal(reason.status, 400);
    assert.match(reason.json.detail, /reason must be one of/);
    const unknown = await call('POST', '/api/v1/ca/revocations', { ...op, body: { serial: 'abcdef' } });
    assert.equal(unknown.status, 404);
    for (const p of ['/api/v1/ca/revocations', '/api/v1/tokens']) {
      const empty = await fetch(`${base}${p}`, { method: 'POST', headers: { authorization: `Bearer ${tok.admin}` } });
      assert.equal(empty.status, 400, `${p} without a body`);
    }
    assert.equal((await call('GET', '/api/v1/certificates?q=a&q=b', v)).status, 400);
  });

  test('a certificate found elsewhere that carries the serial of one this CA issued is not a way to revoke ours', async () => {
    const serialA = new x509.X509Certificate(leafA).serialNumber;
    const dir = path.join(t.dataDir, 'rogue');
    await run('mkdir', ['-p', dir]);
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=alpha.example.com', '-set_serial', `0x${serialA}`, '-days', '30', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'rogue.pem')]);
    const rogue = Buffer.from(new x509.X509Certificate(await readFile(path.join(dir, 'rogue.pem'), 'utf8')).rawData);
    const { fingerprint } = await inv.recordCertificate(rogue, 'network', new Date());
    const r = await call('POST', '/api/v1/ca/revocations', { token: tok.operator, body: { fingerprint, reason: 1 } });
    assert.equal(r.status, 404);
    assert.match(r.json.detail, /carries the serial of one of ours/);
    assert.equal((await t.srv.store.getCertificateBySerial(serialA.toLowerCase().replace(/^0+/, '')))!.revokedAt, null);
  });

  test('a viewer may not revoke; an operator may, once; the CA then answers revoked by OCSP and the change is audited', async () => {
    const refused = await call('POST', '/api/v1/ca/revocations', { token: tok.viewer, body: { fingerprint: fpA, reason: 1 } });
    assert.equal(refused.status, 403);
    assert.match(refused.json.detail, /operator role/);
    assert.equal((await t.srv.store.listRevocationsNewest(null, 10)).items.length, 0);

    const ok = await call('POST', '/api/v1/ca/revocations', { token: tok.operator, body: { fingerprint: fpA, reason: 1 } });
    assert.equal(ok.status, 201, ok.text);
    const serial = new x509.X509Certificate(leafA).serialNumber.toLowerCase().replace(/^0+/, '');
    assert.equal(ok.json.serial, serial);
    const again = await call('POST', '/api/v1/ca/revocations', { token: tok.operator, body: { serial, reason: 1 } });
    assert.equal(again.status, 409);

    const listed = await call('GET', '/api/v1/ca/revocations', { token: tok.viewer });
    assert.equal(listed.json.items.length, 1);
    assert.equal(listed.json.items[0].serial, serial);
    assert.equal(listed.json.items[0].reason, 1);
    // The CA's own OCSP responder now says revoked (openssl asks it).
    const dir = path.join(t.dataDir, 'ocsp-check');
    await run('mkdir', ['-p', dir]);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, 'leaf.pem'), leafA);
    const issuerDer = Buffer.from(await (await fetch(`${base}/ca/intermediate.der`)).arrayBuffer());
    await writeFile(path.join(dir, 'issuer.pem'), new x509.X509Certificate(issuerDer).toString('pem'));
    await writeFile(path.join(dir, 'root.pem'), await (await fetch(`${base}/ca/root.pem`)).text());
    const o = await run('openssl', ['ocsp', '-issuer', 'issuer.pem', '-cert', 'leaf.pem', '-url', `${base}/ocsp`, '-CAfile', 'root.pem'], { cwd: dir }).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout?: string; stderr?: string }) => `${e.stdout}${e.stderr}`,
    );
    assert.match(o, /leaf\.pem: revoked/);
    assert.match(o, /Reason: keyCompromise/);

    const audit = await new AuditLog(inv.db, null).list();
    const entry = audit.find((e) => e.action === 'certificate.revoke');
    assert.ok(entry, 'the revocation is in the audit log');
    assert.equal(entry.actor, 'token:operator-1');
    assert.equal(entry.target, `serial:${serial}`);
    // The inventory knows at once (not at the next sync): listed as revoked.
    const d = await call('GET', '/api/v1/certificates?q=alpha', { token: tok.viewer });
    assert.equal(d.json.items.length, 1);
    assert.equal(d.json.items[0].revoked, true);
    assert.equal(d.json.items[0].health.level, 'fair', 'revoked, but deployed nowhere the inventory knows of: a notice');
    assert.ok(d.json.items[0].health.findings.some((f: any) => f.check === 'revoked'));
    const events = (await call('GET', `/api/v1/certificates/${fpA}`, { token: tok.viewer })).json.events.map((e: any) => e.type);
    assert.deepEqual(events, ['issued', 'revoked']);
  });

  test('EAB keys and tokens are for admins; an EAB key is shown once, works for newAccount, and can be disabled', async () => {
    assert.equal((await call('GET', '/api/v1/ca/eab-keys', { token: tok.operator })).status, 403);
    assert.equal((await call('POST', '/api/v1/tokens', { token: tok.operator, body: { name: 'x', role: 'admin' } })).status, 403);
    assert.equal((await call('GET', '/api/v1/audit', { token: tok.viewer })).status, 403);
    const made = await call('POST', '/api/v1/ca/eab-keys', { token: tok.admin, body: { uses: 1, comment: 'team A' } });
    assert.equal(made.status, 201);
    assert.match(made.json.kid, /^kid-/);
    assert.match(made.json.hmacKey, /^[A-Za-z0-9_-]{43}$/);
    const listed = await call('GET', '/api/v1/ca/eab-keys', { token: tok.admin });
    const k = listed.json.items.find((i: any) => i.kid === made.json.kid);
    assert.equal(k.active, true);
    assert.equal(k.comment, 'team A');
    assert.equal(JSON.stringify(listed.json).includes(made.json.hmacKey), false, 'the HMAC key is never listed');
    assert.equal((await call('DELETE', `/api/v1/ca/eab-keys/${made.json.kid}`, { token: tok.admin })).status, 204);
    assert.equal((await call('DELETE', `/api/v1/ca/eab-keys/${made.json.kid}`, { token: tok.admin })).status, 404);
    assert.equal((await call('GET', '/api/v1/ca/eab-keys', { token: tok.admin })).json.items.find((i: any) => i.kid === made.json.kid).active, false);
    assert.equal((await t.srv.store.getEabKey(made.json.kid))!.expiresAt!.getTime() <= Date.now(), true);

    const nt = await call('POST', '/api/v1/tokens', { token: tok.admin, body: { name: 'ci-bot', role: 'viewer', expiresDays: 30 } });
    assert.equal(nt.status, 201);
    assert.equal((await call('GET', '/api/v1/me', { token: nt.json.token })).json.role, 'viewer');
    const dup = await call('POST', '/api/v1/tokens', { token: tok.admin, body: { name: 'ci-bot', role: 'viewer' } });
    assert.equal(dup.status, 409);
    const bad = await call('POST', '/api/v1/tokens', { token: tok.admin, body: { name: 'x y', role: 'viewer' } });
    assert.equal(bad.status, 400);
    const list = await call('GET', '/api/v1/tokens', { token: tok.admin });
    assert.equal(JSON.stringify(list.json).includes(nt.json.token), false, 'tokens are never listed');
    assert.equal((await call('DELETE', `/api/v1/tokens/${nt.json.id}`, { token: tok.admin })).status, 204);
    assert.equal((await call('GET', '/api/v1/me', { token: nt.json.token })).status, 401);
    // Nowhere in the database is the secret itself.
    const rows = await inv.db.selectFrom('mgmt_tokens').selectAll().execute();
    assert.equal(JSON.stringify(rows).includes(nt.json.token.slice(6)), false);
  });

  test('the dashboard session: a cookie from POST /session, HttpOnly and SameSite=Strict; changes with it need X-Anvil-CSRF', async () => {
    const bad = await call('POST', '/api/v1/session', { body: { token: 'anvil_nope' } });
    assert.equal(bad.status, 401);
    const s = await call('POST', '/api/v1/session', { body: { token: tok.operator } });
    assert.equal(s.status, 200);
    const cookie = s.headers.get('set-cookie')!;
    assert.match(cookie, /^anvil_token=anvil_[^;]+; Path=\/api\/v1; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    const c = cookie.split(';')[0]!;
    assert.equal((await call('GET', '/api/v1/me', { headers: { cookie: c } })).json.name, 'operator-1');
    const noCsrf = await call('POST', '/api/v1/ca/revocations', { headers: { cookie: c }, body: { fingerprint: fpB, reason: 4 } });
    assert.equal(noCsrf.status, 403);
    assert.match(noCsrf.json.detail, /X-Anvil-CSRF/);
    const withCsrf = await call('POST', '/api/v1/ca/revocations', { headers: { cookie: c, 'x-anvil-csrf': '1' }, body: { fingerprint: fpB, reason: 4 } });
    assert.equal(withCsrf.status, 201, withCsrf.text);
    const out = await call('DELETE', '/api/v1/session', { headers: { cookie: c } });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie')!, /Max-Age=0/);
  });

  test('the dashboard is served with a strict Content-Security-Policy; the API description lists every route', async () => {
    const r = await fetch(`${base}/dashboard/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    assert.equal((await fetch(`${base}/dashboard/..%2fpackage.json`)).status, 404);
    const doc = JSON.parse(await readFile(path.resolve('docs/openapi.json'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
    const served = await call('GET', '/api/v1/openapi.json');
    assert.equal(served.status, 200);
    assert.deepEqual(served.json, doc);
    const documented = new Set<string>();
    for (const [p, ops] of Object.entries(doc.paths)) for (const m of Object.keys(ops)) if (m !== 'parameters') documented.add(`${m.toUpperCase()} /api/v1${p.replace(/\{(\w+)\}/g, ':$1')}`);
    // Every documented operation is served...
    for (const op of documented) {
      const [method, url] = op.split(' ') as [string, string];
      assert.ok(t.srv.app.hasRoute({ method: method as 'GET', url }), `documented but not served: ${op}`);
    }
    // ...and every route the plugin registers is documented.
    const src = await readFile(path.resolve('src/web/api.ts'), 'utf8');
    for (const m of src.matchAll(/api\.(get|post|delete|put|patch)\('([^']+)'/g)) {
      const op = `${m[1]!.toUpperCase()} /api/v1${m[2]}`;
      assert.ok(documented.has(op), `served but not documented in docs/openapi.json: ${op}`);
    }
  });

  test('every change is in the audit log, whose chain verifies; changing, deleting or reordering an entry is detected', async () => {
    const key = await loadAuditKey(auditKeyPath(t.srv.caDir), { create: false });
    const log = new AuditLog(inv.db, key);
    const before = await log.verify();
    assert.equal(before.ok, true, JSON.stringify(before.problems));
    const actions = (await log.list()).map((e) => e.action).reverse();
    assert.deepEqual(actions, ['certificate.revoke', 'eab.create', 'eab.disable', 'token.create', 'token.revoke', 'certificate.revoke']);
    const viaApi = await call('GET', '/api/v1/audit/verify', { token: tok.admin });
    assert.equal(viaApi.json.ok, true);
    assert.equal(viaApi.json.entries, 6);
    const head = before.head!;

    const snapshot = await inv.db.selectFrom('mgmt_audit').selectAll().orderBy('seq').execute();
    const restore = async () => {
      await sql`DELETE FROM mgmt_audit`.execute(inv.db);
      for (const r of snapshot) await inv.db.insertInto('mgmt_audit').values(r).execute();
      assert.equal((await log.verify()).ok, true);
    };

    // Changed content.
    await sql`UPDATE mgmt_audit SET detail = '{"reason":0}' WHERE seq = 1`.execute(inv.db);
    let r = await log.verify();
    assert.equal(r.ok, false);
    assert.deepEqual(r.problems[0], { seq: 1, problem: 'its content does not match its hash (the entry was changed, or written with another key)' });
    await restore();

    // An entry removed from the middle, the rest renumbered and every hash after it recomputed:
    // without the key (kept outside the database) the recomputed hashes do not verify.
    const guessed = Buffer.alloc(32);
    await sql`DELETE FROM mgmt_audit WHERE seq = 2`.execute(inv.db);
    let prev = snapshot[0]!.hash;
    for (const row of snapshot.slice(2)) {
      const seq = Number(row.seq) - 1;
      const hash = entryHash(guessed, { seq, at: Number(row.at), actor: row.actor, action: row.action, target: row.target, detail: row.detail, prevHash: prev });
      await sql`UPDATE mgmt_audit SET seq = ${seq}, prev_hash = ${prev}, hash = ${hash} WHERE seq = ${Number(row.seq)}`.execute(inv.db);
      prev = hash;
    }
    r = await log.verify();
    assert.equal(r.ok, false);
    assert.equal(r.problems[0]!.seq, 2);
    assert.match(r.problems[0]!.problem, /does not match its hash/);
    await restore();

    // Deleted in the middle, left as it was.
    await sql`DELETE FROM mgmt_audit WHERE seq = 3`.execute(inv.db);
    r = await log.verify();
    assert.equal(r.ok, false);
    assert.match(r.problems[0]!.problem, /entries 3\.\.3 are missing/);
    await restore();

    // Two entries swapped.
    await sql`UPDATE mgmt_audit SET seq = -1 WHERE seq = 2`.execute(inv.db);
    await sql`UPDATE mgmt_audit SET seq = 2 WHERE seq = 3`.execute(inv.db);
    await sql`UPDATE mgmt_audit SET seq = 3 WHERE seq = -1`.execute(inv.db);
    r = await log.verify();
    assert.equal(r.ok, false);
    assert.equal(r.problems[0]!.seq, 2);
    await restore();

    // An entry slipped in before the first.
    await inv.db.insertInto('mgmt_audit').values({ ...snapshot[0]!, seq: 0, action: 'certificate.revoke', target: 'serial:ff' }).execute();
    r = await log.verify();
    assert.equal(r.ok, false);
    assert.equal(r.problems[0]!.seq, 0);
    await restore();

    // Cut off the end: a shorter chain verifies on its own, but not against the recorded head.
    await sql`DELETE FROM mgmt_audit WHERE seq = ${head.seq}`.execute(inv.db);
    r = await log.verify({ expectHead: head });
    assert.ok(r.problems.some((p) => /cut off the end/.test(p.problem)));
  });
});
