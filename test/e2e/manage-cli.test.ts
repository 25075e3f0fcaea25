/**
 * `anvil token`, `anvil audit` and `anvil dashboard` from the built CLI: tokens created, listed
 * and revoked (each change audited), bad input refused with exit code 2, the audit chain verified
 * and tampering with the database detected (exit 1), and the standalone dashboard serving the API
 * over the same data directory.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ANVIL_BIN, exited } from '../helpers/anvil-process.js';
import { freePort } from '../helpers/ports.js';
import { runTool } from '../helpers/run.js';

describe('anvil token, anvil audit, anvil dashboard', { timeout: 120_000 }, () => {
  let dir: string;
  let data: string;
  let admin: string;
  const anvil = (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, ...args, '--data-dir', data], {}, 60_000);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-manage-e2e-'));
    data = path.join(dir, 'data');
    const ca = await anvil('ca', 'init');
    assert.equal(ca.code, 0, ca.out);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('tokens: created once with their secret, listed without it, refused with a message for bad input, revoked', async () => {
    const made = await anvil('token', 'create', '--name', 'alice', '--role', 'admin', '--json');
    assert.equal(made.code, 0, made.out);
    const j = JSON.parse(made.stdout) as { token: string; name: string; role: string };
    assert.match(j.token, /^anvil_[A-Za-z0-9_-]{43}$/);
    assert.equal(j.role, 'admin');
    admin = j.token;
    const text = await anvil('token', 'create', '--name', 'bob', '--role', 'viewer', '--expires-days', '7');
    assert.equal(text.code, 0, text.out);
    assert.match(text.stdout, /shown this once/);

    const list = await anvil('token', 'list');
    assert.equal(list.code, 0);
    assert.match(list.stdout, /alice\s+admin\s+active/);
    assert.match(list.stdout, /bob\s+viewer\s+active .* expires /);
    assert.equal(list.out.includes(admin), false, 'the secret is never listed');

    const badRole = await anvil('token', 'create', '--name', 'carol', '--role', 'root');
    assert.equal(badRole.code, 2);
    assert.match(badRole.stderr, /--role must be one of viewer, operator, admin/);
    const dup = await anvil('token', 'create', '--name', 'alice', '--role', 'viewer');
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /exists already/);
    const badDays = await anvil('token', 'create', '--name', 'dave', '--role', 'viewer', '--expires-days', 'soon');
    assert.notEqual(badDays.code, 0);
    assert.match(badDays.stderr, /number of days/);

    const rev = await anvil('token', 'revoke', 'bob');
    assert.equal(rev.code, 0, rev.out);
    assert.match((await anvil('token', 'list')).stdout, /bob\s+viewer\s+revoked/);
    const unknown = await anvil('token', 'revoke', 'nobody');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no token with the id or name "nobody"/);
  });

  test('anvil dashboard serves the API and the page over the same data; it does not sign revocations', async () => {
    const port = await freePort();
    const proc: ChildProcess = spawn(process.execPath, [ANVIL_BIN, 'dashboard', '--listen', `127.0.0.1:${port}`, '--data-dir', data], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('anvil dashboard: http://') && Date.now() < deadline && proc.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, new RegExp(`anvil dashboard: http://127\\.0\\.0\\.1:${port}/dashboard/`), out);
      const base = `http://127.0.0.1:${port}`;
      const me = await fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${admin}` } });
      assert.equal(me.status, 200);
      assert.deepEqual(await me.json(), { name: 'alice', role: 'admin', ca: true, canRevoke: false });
      assert.equal((await fetch(`${base}/api/v1/me`)).status, 401);
      const page = await fetch(`${base}/dashboard/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<script type="module" src="app\.js"><\/script>/);
      const r = await fetch(`${base}/api/v1/ca/revocations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ serial: 'abcd', reason: 0 }),
      });
      assert.equal(r.status, 409);
      assert.match(((await r.json()) as { detail: string }).detail, /anvil server/);
      const eab = await fetch(`${base}/api/v1/ca/eab-keys`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{"comment":"from the dashboard"}' });
      assert.equal(eab.status, 201);
    } finally {
      proc.kill('SIGTERM');
      await exited(proc);
    }
    const bad = await anvil('dashboard', '--listen', 'nowhere');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--listen is host:port/);
  });

  test('anvil audit: every change listed; verify passes, then detects an edited entry (exit 1) and entries cut off the end', async () => {
    const list = await anvil('audit', 'list');
    assert.equal(list.code, 0, list.out);
    // Newest first: the dashboard's EAB key, then the CLI's token changes.
    const actions = list.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[3]);
    assert.deepEqual(actions, ['eab.create', 'token.revoke', 'token.create', 'token.create']);
    assert.match(list.stdout, /cli:\S+\s+token\.create\s+token:alice/);
    assert.match(list.stdout, /token:alice\s+eab\.create/);

    const ok = await anvil('audit', 'verify');
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.stdout, /audit log intact: 4 entries, head 4:[0-9a-f]{64}/);
    const head = (await anvil('audit', 'head')).stdout.trim();
    assert.match(head, /^4:[0-9a-f]{64}$/);

    const db = new Database(path.join(data, 'inventory.db'));
    try {
      db.prepare("UPDATE mgmt_audit SET target = 'token:mallory' WHERE seq = 1").run();
    } finally {
      db.close();
    }
    const broken = await anvil('audit', 'verify');
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /AUDIT LOG BROKEN/);
    assert.match(broken.stdout, /entry 1: its content does not match its hash/);

    const db2 = new Database(path.join(data, 'inventory.db'));
    try {
      db2.prepare("UPDATE mgmt_audit SET target = 'token:alice' WHERE seq = 1").run();
      assert.equal((await anvil('audit', 'verify')).code, 0, 'restored: intact again');
      db2.prepare('DELETE FROM mgmt_audit WHERE seq = 4').run();
    } finally {
      db2.close();
    }
    assert.equal((await anvil('audit', 'verify')).code, 0, 'a log cut at its end is a valid shorter chain on its own');
    const cut = await anvil('audit', 'verify', '--expect-head', head);
    assert.equal(cut.code, 1);
    assert.match(cut.stdout, /entry 4: the recorded head 4 is not in the log \(3 entries\): entries were cut off the end/);
    const badHead = await anvil('audit', 'verify', '--expect-head', 'latest');
    assert.notEqual(badHead.code, 0);
    assert.match(badHead.stderr, /SEQ:HASH/);
  });
});
