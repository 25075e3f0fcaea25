/** The acme-dns compatible API of `anvil dns`, and its store, over real HTTP on loopback. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSqliteDnsStore } from '../../storage/dns-store.js';
import { addressInCidrs, parseCidr } from './cidr.js';
import { hashPassword, verifyPassword } from './credentials.js';
import { dig, startTestDnsServer, txtValue, ZONE, type TestDnsServer } from './testing.js';

interface Creds {
  username: string;
  password: string;
  fulldomain: string;
  subdomain: string;
  allowfrom: string[];
}

async function post(base: string, p: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const auth = (c: Creds) => ({ 'X-Api-User': c.username, 'X-Api-Key': c.password });

describe('acme-dns API', () => {
  let srv: TestDnsServer;
  before(async () => {
    srv = await startTestDnsServer();
  });
  after(async () => srv?.cleanup());

  test('POST /register answers 201 with acme-dns\'s fields: UUIDs, a 40-character password, the full domain', async () => {
    const r = await post(srv.apiUrl, '/register', '');
    assert.equal(r.status, 201);
    assert.deepEqual(Object.keys(r.body).sort(), ['allowfrom', 'fulldomain', 'password', 'subdomain', 'username']);
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    assert.match(r.body.username, uuid);
    assert.match(r.body.subdomain, uuid);
    assert.match(r.body.password, /^[A-Za-z0-9_-]{40}$/);
    assert.equal(r.body.fulldomain, `${r.body.subdomain}.${ZONE}`);
    assert.deepEqual(r.body.allowfrom, []);
  });

  test('the password is stored only as an scrypt hash', async () => {
    const c = (await post(srv.apiUrl, '/register', {})).body as Creds;
    const reg = await srv.store.getRegistration(c.username);
    assert.ok(reg);
    assert.ok(!reg.passwordHash.includes(c.password));
    assert.match(reg.passwordHash, /^scrypt\$16384\$8\$1\$/);
    assert.equal(await verifyPassword(c.password, reg.passwordHash), true);
    assert.equal(await verifyPassword(`${c.password.slice(0, -1)}x`, reg.passwordHash), c.password.endsWith('x'));
  });

  test('POST /update sets the TXT value, which dig sees; the two newest values are kept', async () => {
    const c = (await post(srv.apiUrl, '/register', {})).body as Creds;
    for (const v of ['a', 'b', 'c']) {
      const r = await post(srv.apiUrl, '/update', { subdomain: c.subdomain, txt: txtValue(v) }, auth(c));
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { txt: txtValue(v) });
    }
    assert.deepEqual(await srv.store.getTxt(c.subdomain), [txtValue('c'), txtValue('b')]);
    const d = await dig(srv.dns.port, c.fulldomain, 'TXT');
    assert.deepEqual(d.answer.map((l) => /"([^"]+)"$/.exec(l)?.[1]).sort(), [txtValue('b'), txtValue('c')]);
  });

  test('setting a value that is already there keeps the other one', async () => {
    const c = (await post(srv.apiUrl, '/register', {})).body as Creds;
    for (const v of ['a', 'b', 'a', 'a']) await post(srv.apiUrl, '/update', { subdomain: c.subdomain, txt: txtValue(v) }, auth(c));
    assert.deepEqual(await srv.store.getTxt(c.subdomain), [txtValue('a'), txtValue('b')]);
  });

  test('concurrent updates keep exactly the two newest values', async () => {
    const c = (await post(srv.apiUrl, '/register', {})).body as Creds;
    const values = ['d', 'e', 'f', 'g', 'h', 'i'].map(txtValue);
    await Promise.all(values.map((v, i) => srv.store.putTxt(c.subdomain, v, new Date(1000 + i))));
    const got = await srv.store.getTxt(c.subdomain);
    assert.equal(got?.length, 2);
    // Updates are serialised in the order they were issued.
    assert.deepEqual(got, [values[5], values[4]]);
  });

  test('refusals: wrong key, unknown user, malformed credentials, another registration\'s subdomain are 401 "forbidden"', async () => {
    const a = (await post(srv.apiUrl, '/register', {})).body as Creds;
    const b = (await post(srv.apiUrl, '/register', {})).body as Creds;
    const txt = txtValue('z');
    const cases: Array<[string, Record<string, string>, unknown]> = [
      ['wrong key', { 'X-Api-User': a.username, 'X-Api-Key': b.password }, { subdomain: a.subdomain, txt }],
      ['unknown user', { 'X-Api-User': '00000000-0000-4000-8000-000000000000', 'X-Api-Key': a.password }, { subdomain: a.subdomain, txt }],
      ['no credentials', {}, { subdomain: a.subdomain, txt }],
      ['short key', { 'X-Api-User': a.username, 'X-Api-Key': a.password.slice(1) }, { subdomain: a.subdomain, txt }],
      ['another registration\'s subdomain', auth(a), { subdomain: b.subdomain, txt }],
      ['body that is not JSON', auth(a), '{"subdomain":'],
    ];
    for (const [name, headers, body] of cases) {
      const r = await post(srv.apiUrl, '/update', body, headers);
      assert.equal(r.status, 401, name);
      assert.deepEqual(r.body, { error: 'forbidden' }, name);
    }
    assert.deepEqual(await srv.store.getTxt(b.subdomain), []);
    assert.deepEqual(await srv.store.getTxt(a.subdomain), []);
  });

  test('a bad TXT value is 400 "bad_txt", a malformed subdomain 400 "bad_subdomain"', async () => {
    const c = (await post(srv.apiUrl, '/register', {})).body as Creds;
    for (const txt of ['short', `${txtValue('a')}a`, `${txtValue('a').slice(1)}=`, `${txtValue('a').slice(1)}/`, 42, null]) {
      const r = await post(srv.apiUrl, '/update', { subdomain: c.subdomain, txt }, auth(c));
      assert.equal(r.status, 400, String(txt));
      assert.deepEqual(r.body, { error: 'bad_txt' });
    }
    const r = await post(srv.apiUrl, '/update', { subdomain: 'bad..sub', txt: txtValue('a') }, auth(c));
    assert.equal(r.status, 400);
    assert.deepEqual(r.body, { error: 'bad_subdomain' });
  });

  test('allowfrom: updates only from the registered networks; malformed CIDRs are refused at registration', async () => {
    const bad = await post(srv.apiUrl, '/register', { allowfrom: ['10.0.0.0/33'] });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body, { error: 'invalid_allowfrom_cidr' });
    assert.equal((await post(srv.apiUrl, '/register', '{"allowfrom": ')).body.error, 'malformed_json_payload');
    const elsewhere = (await post(srv.apiUrl, '/register', { allowfrom: ['192.0.2.0/24'] })).body as Creds;
    assert.deepEqual(elsewhere.allowfrom, ['192.0.2.0/24']);
    const r1 = await post(srv.apiUrl, '/update', { subdomain: elsewhere.subdomain, txt: txtValue('q') }, auth(elsewhere));
    assert.equal(r1.status, 401);
    assert.deepEqual(r1.body, { error: 'forbidden' });
    const here = (await post(srv.apiUrl, '/register', { allowfrom: ['192.0.2.0/24', '127.0.0.0/8'] })).body as Creds;
    const r2 = await post(srv.apiUrl, '/update', { subdomain: here.subdomain, txt: txtValue('q') }, auth(here));
    assert.equal(r2.status, 200);
  });

  test('GET /health is 200; unknown paths 404; wrong methods 405; large bodies 413', async () => {
    assert.equal((await fetch(`${srv.apiUrl}/health`)).status, 200);
    assert.equal((await fetch(`${srv.apiUrl}/nope`)).status, 404);
    assert.equal((await fetch(`${srv.apiUrl}/register`)).status, 405);
    const big = await post(srv.apiUrl, '/register', { allowfrom: [], pad: 'x'.repeat(20_000) });
    assert.equal(big.status, 413);
  });
});

describe('registration restrictions', () => {
  test('"closed": POST /register is 403 registration_closed, while updates keep working', async () => {
    const srv = await startTestDnsServer({ registration: { mode: 'closed' } });
    try {
      const r = await post(srv.apiUrl, '/register', {});
      assert.equal(r.status, 403);
      assert.deepEqual(r.body, { error: 'registration_closed' });
      const c = await srv.registry.register([]);
      const u = await post(srv.apiUrl, '/update', { subdomain: c.subdomain, txt: txtValue('w') }, auth(c));
      assert.equal(u.status, 200);
    } finally {
      await srv.cleanup();
    }
  });

  test('registration.allowFrom: only listed networks may register', async () => {
    const srv = await startTestDnsServer({ registration: { allowFrom: ['192.0.2.0/24'] } });
    try {
      const r = await post(srv.apiUrl, '/register', {});
      assert.equal(r.status, 403);
      assert.deepEqual(r.body, { error: 'forbidden' });
    } finally {
      await srv.cleanup();
    }
    const ok = await startTestDnsServer({ registration: { allowFrom: ['127.0.0.1/32', '::1/128'] } });
    try {
      assert.equal((await post(ok.apiUrl, '/register', {})).status, 201);
    } finally {
      await ok.cleanup();
    }
  });
});

describe('dns store and helpers', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dns-store-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('registrations and TXT values survive reopening; the file is 0600', async () => {
    const file = path.join(dir, 'dns.db');
    const s1 = await openSqliteDnsStore(file);
    await s1.createRegistration({ username: 'u1', passwordHash: await hashPassword('p'.repeat(40)), subdomain: 's1', allowFrom: ['10.0.0.0/8'], createdAt: new Date(5) });
    await s1.putTxt('s1', txtValue('a'), new Date(6));
    assert.equal(await s1.putTxt('missing', txtValue('a'), new Date(6)), false);
    await s1.close();
    const s2 = await openSqliteDnsStore(file);
    const reg = await s2.getRegistration('u1');
    assert.deepEqual({ ...reg, passwordHash: undefined }, { username: 'u1', passwordHash: undefined, subdomain: 's1', allowFrom: ['10.0.0.0/8'], createdAt: new Date(5) });
    assert.deepEqual(await s2.getTxt('s1'), [txtValue('a')]);
    assert.equal(await s2.getTxt('missing'), null);
    assert.equal(await s2.getRegistration('nobody'), null);
    assert.equal(await s2.countRegistrations(), 1);
    await assert.rejects(s2.createRegistration({ username: 'u2', passwordHash: 'x', subdomain: 's1', allowFrom: [], createdAt: new Date() }));
    await s2.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  test('CIDR parsing and matching', () => {
    assert.ok(parseCidr('192.0.2.0/24'));
    assert.ok(parseCidr('[2001:db8::]/32'));
    for (const bad of ['192.0.2.1', '192.0.2.0/33', '2001:db8::/129', 'x/8', '']) assert.equal(parseCidr(bad), null, bad);
    assert.ok(addressInCidrs('::ffff:127.0.0.1', ['127.0.0.0/8']));
    assert.ok(addressInCidrs('2001:db8::5', ['2001:db8::/32']));
    assert.ok(!addressInCidrs('192.0.3.1', ['192.0.2.0/24']));
    assert.ok(!addressInCidrs('not an ip', ['0.0.0.0/0']));
    assert.ok(net.isIP('127.0.0.1'));
  });
});
