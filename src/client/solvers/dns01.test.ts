/**
 * The dns-01 solver against real BIND 9 instances: CNAME delegation, waiting for every
 * authoritative server, several values at one name, and a full issuance through anvil server's
 * real dns-01 validator. The provider here publishes through nsupdate (test/helpers/bind.ts).
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import type { JWK } from 'jose';
import { startBind, type Bind } from '../../../test/helpers/bind.js';
import { makeCsr } from '../../../test/helpers/flow.js';
import { startTestServer } from '../../../test/helpers/in-process.js';
import { missingTools, runTool } from '../../../test/helpers/run.js';
import type { DnsProvider, TxtRecord } from '../../dns/provider.js';
import { FakeClock } from '../../lib/clock.js';
import { dns01Value } from '../../server/validation/dns01.js';
import { AcmeApi } from '../api.js';
import { AcmeClientError } from '../errors.js';
import { obtainCertificate } from '../flows/issue.js';
import { AcmeHttp } from '../http.js';
import { Dns01Solver, dns01Domain, dns01TxtValue } from './dns01.js';
import type { ChallengeInput } from './types.js';

function challenge(name: string, wildcard = false, type: 'dns' | 'ip' = 'dns'): ChallengeInput {
  const token = randomBytes(24).toString('base64url');
  return { identifier: { type, value: name }, wildcard, type: 'dns-01', token, keyAuthorization: `${token}.thumbprint-of-the-account-key` };
}

function isCode(code: string) {
  return (e: unknown) => e instanceof AcmeClientError && e.code === code;
}

/** A provider that records its calls and writes nothing: for cases that must not reach DNS. */
class MemoryProvider implements DnsProvider {
  readonly name = 'memory';
  readonly calls: string[] = [];
  async createTxtRecord(r: TxtRecord): Promise<void> {
    this.calls.push(`create ${r.fqdn} ${r.value}`);
  }
  async deleteTxtRecord(r: TxtRecord): Promise<void> {
    this.calls.push(`delete ${r.fqdn} ${r.value}`);
  }
}

/**
 * Publishes through RFC 2136 updates (nsupdate) to one or more BIND instances; an instance can be
 * updated only after a delay, or never, to play a lagging secondary.
 */
class NsupdateProvider implements DnsProvider {
  readonly name = 'test-nsupdate';
  readonly created: TxtRecord[] = [];
  readonly deleted: TxtRecord[] = [];
  /** Settles when the delayed updates are done. */
  late: Promise<void> = Promise.resolve();
  /** When the last delayed update was sent (the server may serve it before nsupdate returns). */
  lateSentAt = 0;
  constructor(private readonly targets: Array<{ bind: Bind; delayMs?: number; never?: boolean }>) {}

  async createTxtRecord(r: TxtRecord): Promise<void> {
    this.created.push(r);
    const line = [`update add ${r.fqdn}. 5 TXT "${r.value}"`];
    const late: Array<Promise<void>> = [];
    for (const t of this.targets) {
      if (t.never) continue;
      if (!t.delayMs) await t.bind.nsupdate(line);
      else
        late.push(
          new Promise<void>((res) => setTimeout(res, t.delayMs)).then(async () => {
            this.lateSentAt = Date.now();
            await t.bind.nsupdate(line);
          }),
        );
    }
    this.late = Promise.all(late).then(() => undefined);
  }

  async deleteTxtRecord(r: TxtRecord): Promise<void> {
    this.deleted.push(r);
    for (const t of this.targets) await t.bind.nsupdate([`update delete ${r.fqdn}. TXT "${r.value}"`]);
  }
}

test('the TXT value is base64url(SHA-256(key authorization)), as the server computes it', () => {
  const ka = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI';
  assert.equal(dns01TxtValue(ka), dns01Value(ka));
  assert.equal(dns01TxtValue(ka).length, 43);
});

test('unsafe identifiers and tokens are refused before any record is written', async () => {
  const p = new MemoryProvider();
  const solver = new Dns01Solver(p, { resolvers: ['127.0.0.1:9'] });
  const bad = ['', 'a b.anvil.test', 'a\n.anvil.test', 'a\u0000.test', 'a..b.test', 'a.test.', `${'x'.repeat(64)}.test`, `${'a.'.repeat(119)}test`, 'é.test', '*.*.anvil.test', 'a/b.test', '"quoted".test'];
  for (const name of bad) {
    await assert.rejects(solver.present(challenge(name)), isCode('BAD_RESPONSE'), JSON.stringify(name));
  }
  await assert.rejects(solver.present(challenge('127.0.0.1', false, 'ip')), isCode('BAD_RESPONSE'));
  await assert.rejects(solver.present({ ...challenge('ok.anvil.test'), token: '../../etc/passwd' }), isCode('BAD_RESPONSE'));
  assert.deepEqual(p.calls, []);
  // Clean-up after a refused present is quiet: nothing was written.
  await solver.cleanup(challenge('a b.anvil.test'));
  assert.deepEqual(p.calls, []);
  // A wildcard authorization's name is the base name; a leftover "*." is tolerated.
  assert.equal(dns01Domain({ identifier: { type: 'dns', value: '*.Example.COM' } }), 'example.com');
  assert.equal(dns01Domain({ identifier: { type: 'dns', value: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(45)}` } }).length, 237);
  assert.throws(() => dns01Domain({ identifier: { type: 'dns', value: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(46)}` } }), isCode('BAD_RESPONSE'));
});

test('with an injected clock, the check polls at the interval until the deadline and names a non-authoritative server', async () => {
  // A server that answers every question with an empty, non-authoritative NOERROR.
  const sock = dgram.createSocket('udp4');
  sock.on('message', (buf, rinfo) => {
    const q = dnsPacket.decode(buf);
    sock.send(dnsPacket.encode({ type: 'response', id: q.id, flags: 0, questions: q.questions, answers: [] }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const addr = `127.0.0.1:${sock.address().port}`;
  try {
    const clock = new FakeClock();
    const sleeps: number[] = [];
    const p = new MemoryProvider();
    const solver = new Dns01Solver(p, {
      authoritative: { 'lab.test': [addr] },
      propagationTimeoutMs: 5_000,
      pollIntervalMs: 2_000,
      clock,
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.advance(ms);
      },
    });
    const ch = challenge('www.lab.test');
    await assert.rejects(solver.present(ch), (e: unknown) => isCode('DNS_PROPAGATION_TIMEOUT')(e) && (e as Error).message.endsWith(`${addr} (${addr} is not authoritative for _acme-challenge.www.lab.test)`));
    assert.deepEqual(sleeps, [2_000, 2_000, 1_000]);
    await solver.cleanup(ch);
    assert.deepEqual(p.calls.map((c) => c.split(' ')[0]), ['create', 'delete']);
  } finally {
    sock.close();
  }
});

describe('Dns01Solver against BIND 9', { skip: missingTools('named', 'nsupdate', 'dig', 'tsig-keygen') }, () => {
  let bind: Bind;
  let bind2: Bind;
  let other: Bind;
  const quick = { pollIntervalMs: 100, propagationTimeoutMs: 10_000, queryTimeoutMs: 1_000 };

  before(async () => {
    [bind, bind2, other] = await Promise.all([startBind(), startBind(), startBind({ zone: 'other.test' })]);
  });
  after(async () => {
    await Promise.all([bind?.stop(), bind2?.stop(), other?.stop()]);
  });

  test('present resolves only once the authoritative server (found through NS) serves the value; cleanup removes only its own', async () => {
    await bind.nsupdate(['update add _acme-challenge.a.anvil.test. 5 TXT "someone-else"']);
    const steps: string[] = [];
    // The provider's write lands 700 ms after it returned: present must wait for it, not trust it.
    const p = new NsupdateProvider([{ bind, delayMs: 700 }]);
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr], nameserverPort: bind.port, onStep: (s) => steps.push(s) });
    const ch = challenge('A.anvil.test');
    await solver.present(ch);
    const resolvedAt = Date.now();
    await p.late;
    assert.ok(p.lateSentAt > 0 && resolvedAt >= p.lateSentAt, 'present resolved after the record was sent to the server');
    assert.deepEqual(p.created, [{ fqdn: '_acme-challenge.a.anvil.test', value: dns01Value(ch.keyAuthorization), domain: 'a.anvil.test', zone: 'anvil.test' }]);
    assert.deepEqual((await bind.dig('_acme-challenge.a.anvil.test', 'TXT')).sort(), [dns01Value(ch.keyAuthorization), 'someone-else'].sort());
    assert.ok(steps.some((s) => s.includes('ns.anvil.test')), steps.join('\n'));
    await solver.cleanup(ch);
    assert.deepEqual(await bind.dig('_acme-challenge.a.anvil.test', 'TXT'), ['someone-else']);
    // Clean-up twice (already gone) does not throw.
    await solver.cleanup(ch);
  });

  test('follows CNAME delegation (a chain of two) and writes at the end of the chain', async () => {
    await bind.nsupdate([
      'update add _acme-challenge.x.anvil.test. 5 CNAME x.delegated.anvil.test.',
      'update add _acme-challenge.y.anvil.test. 5 CNAME hop.y.anvil.test.',
      'update add hop.y.anvil.test. 5 CNAME y.delegated.anvil.test.',
    ]);
    const p = new NsupdateProvider([{ bind }]);
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr], nameserverPort: bind.port });
    const x = challenge('x.anvil.test');
    const y = challenge('y.anvil.test');
    await solver.present(x);
    await solver.present(y);
    assert.deepEqual(
      p.created.map((r) => [r.fqdn, r.domain, r.zone]),
      [
        ['x.delegated.anvil.test', 'x.anvil.test', 'anvil.test'],
        ['y.delegated.anvil.test', 'y.anvil.test', 'anvil.test'],
      ],
    );
    assert.deepEqual(await bind.dig('x.delegated.anvil.test', 'TXT'), [dns01Value(x.keyAuthorization)]);
    // What a validator sees at the original name, through the CNAME.
    assert.ok((await bind.dig('_acme-challenge.y.anvil.test', 'TXT')).includes(dns01Value(y.keyAuthorization)));
    await solver.cleanup(x);
    await solver.cleanup(y);
    assert.deepEqual(await bind.dig('x.delegated.anvil.test', 'TXT'), []);
    assert.deepEqual(await bind.dig('y.delegated.anvil.test', 'TXT'), []);

    // With followCname: false the record goes to the name itself (the provider would fail there).
    const plain = new MemoryProvider();
    await new Dns01Solver(plain, { resolvers: [bind.addr], followCname: false, skipPropagationCheck: true }).present(x);
    assert.deepEqual(plain.calls, [`create _acme-challenge.x.anvil.test ${dns01Value(x.keyAuthorization)}`]);
  });

  test('a CNAME into a zone served by another server, named in `authoritative`', async () => {
    await bind.nsupdate(['update add _acme-challenge.far.anvil.test. 5 CNAME far.other.test.']);
    const p = new NsupdateProvider([{ bind: other }]);
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr], authoritative: { 'other.test': [other.addr] } });
    const ch = challenge('far.anvil.test');
    await solver.present(ch);
    assert.deepEqual(p.created.map((r) => [r.fqdn, r.zone]), [['far.other.test', 'other.test']]);
    assert.deepEqual(await other.dig('far.other.test', 'TXT'), [dns01Value(ch.keyAuthorization)]);
    await solver.cleanup(ch);
    assert.deepEqual(await other.dig('far.other.test', 'TXT'), []);
  });

  test('a CNAME loop is refused with a clear error, before anything is written', async () => {
    await bind.nsupdate(['update add _acme-challenge.loop.anvil.test. 5 CNAME loop2.anvil.test.', 'update add loop2.anvil.test. 5 CNAME _acme-challenge.loop.anvil.test.']);
    const p = new MemoryProvider();
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr] });
    const ch = challenge('loop.anvil.test');
    await assert.rejects(solver.present(ch), (e: unknown) => isCode('DNS_CNAME_CHAIN')(e) && /CNAME loop: _acme-challenge\.loop\.anvil\.test -> loop2\.anvil\.test -> _acme-challenge\.loop\.anvil\.test/.test((e as Error).message));
    await solver.cleanup(ch);
    assert.deepEqual(p.calls, []);
  });

  test('waits for every authoritative server: present resolves only once the lagging one has the record', async () => {
    const steps: string[] = [];
    const p = new NsupdateProvider([{ bind }, { bind: bind2, delayMs: 1_500 }]);
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr], authoritative: { 'anvil.test': [bind.addr, bind2.addr] }, onStep: (s) => steps.push(s) });
    const ch = challenge('two.anvil.test');
    const started = Date.now();
    await solver.present(ch);
    const resolvedAt = Date.now();
    await p.late;
    assert.ok(resolvedAt >= p.lateSentAt && resolvedAt - started >= 1_500, `resolved after ${resolvedAt - started} ms`);
    assert.deepEqual(await bind2.dig('_acme-challenge.two.anvil.test', 'TXT'), [dns01Value(ch.keyAuthorization)]);
    assert.ok(steps.some((s) => s.startsWith('dns-01: still waiting for') && s.includes(bind2.addr) && !s.includes(bind.addr)), steps.join('\n'));
    await solver.cleanup(ch);
    assert.deepEqual(await bind.dig('_acme-challenge.two.anvil.test', 'TXT'), []);
    assert.deepEqual(await bind2.dig('_acme-challenge.two.anvil.test', 'TXT'), []);
  });

  test('the propagation timeout names the server that did not have the record; cleanup after it still works', async () => {
    const p = new NsupdateProvider([{ bind }, { bind: bind2, never: true }]);
    const solver = new Dns01Solver(p, { ...quick, propagationTimeoutMs: 1_500, resolvers: [bind.addr], authoritative: { 'anvil.test': [bind.addr, bind2.addr] } });
    const ch = challenge('lag.anvil.test');
    const started = Date.now();
    await assert.rejects(solver.present(ch), (e: unknown) => {
      assert.ok(isCode('DNS_PROPAGATION_TIMEOUT')(e), String(e));
      const m = (e as Error).message;
      assert.match(m, new RegExp(`1 of 2 authoritative server\\(s\\) of anvil\\.test .*_acme-challenge\\.lag\\.anvil\\.test: ${bind2.addr} \\(no TXT record yet\\)$`));
      assert.ok(!m.includes(`${bind.addr} (`), m);
      return true;
    });
    const took = Date.now() - started;
    assert.ok(took >= 1_500 && took < 6_000, `took ${took} ms`);
    assert.deepEqual(await bind.dig('_acme-challenge.lag.anvil.test', 'TXT'), [dns01Value(ch.keyAuthorization)]);
    await solver.cleanup(ch);
    assert.deepEqual(await bind.dig('_acme-challenge.lag.anvil.test', 'TXT'), []);
    assert.deepEqual(p.deleted.map((r) => r.fqdn), ['_acme-challenge.lag.anvil.test']);
  });

  test('a wildcard and its base name at once: two values at one name, each cleanup removes only its own', async () => {
    const p = new NsupdateProvider([{ bind }]);
    const solver = new Dns01Solver(p, { ...quick, resolvers: [bind.addr], nameserverPort: bind.port });
    const wild = challenge('w.anvil.test', true);
    const base = challenge('w.anvil.test');
    await Promise.all([solver.present(wild), solver.present(base)]);
    const vw = dns01Value(wild.keyAuthorization);
    const vb = dns01Value(base.keyAuthorization);
    assert.deepEqual((await bind.dig('_acme-challenge.w.anvil.test', 'TXT')).sort(), [vw, vb].sort());
    await solver.cleanup(wild);
    assert.deepEqual(await bind.dig('_acme-challenge.w.anvil.test', 'TXT'), [vb]);
    await solver.cleanup(base);
    assert.deepEqual(await bind.dig('_acme-challenge.w.anvil.test', 'TXT'), []);
  });

  test('a TXT set too large for UDP is read over TCP', async () => {
    const filler = Array.from({ length: 40 }, (_, i) => `update add _acme-challenge.big.anvil.test. 5 TXT "${String(i).padStart(2, '0')}${'f'.repeat(41)}"`);
    await bind.nsupdate(filler);
    const udp = await runTool('dig', ['@127.0.0.1', '-p', String(bind.port), '+notcp', '+ignore', '+bufsize=1232', '_acme-challenge.big.anvil.test', 'TXT']);
    assert.match(udp.stdout, /flags:[a-z ]* tc[ ;]/, 'the UDP answer is truncated');
    const p = new NsupdateProvider([{ bind }]);
    const solver = new Dns01Solver(p, { ...quick, propagationTimeoutMs: 3_000, resolvers: [bind.addr], nameserverPort: bind.port });
    const ch = challenge('big.anvil.test');
    await solver.present(ch);
    await solver.cleanup(ch);
    assert.equal((await bind.dig('_acme-challenge.big.anvil.test', 'TXT')).length, 40);
  });

  test('failed lookups are DNS_LOOKUP errors naming the server and the answer', async () => {
    const p = new MemoryProvider();
    // BIND is not authoritative for example.com and does not recurse: REFUSED.
    await assert.rejects(new Dns01Solver(p, { ...quick, resolvers: [bind.addr] }).present(challenge('www.example.com')), (e: unknown) => isCode('DNS_LOOKUP')(e) && (e as Error).message.includes(`${bind.addr}: REFUSED`));
    assert.deepEqual(p.calls, []);
  });

  test('skipPropagationCheck resolves once the provider accepted the record', async () => {
    const p = new MemoryProvider();
    const solver = new Dns01Solver(p, { resolvers: [bind.addr], skipPropagationCheck: true });
    const ch = challenge('skip.anvil.test');
    await solver.present(ch);
    await solver.cleanup(ch);
    const v = dns01Value(ch.keyAuthorization);
    assert.deepEqual(p.calls, [`create _acme-challenge.skip.anvil.test ${v}`, `delete _acme-challenge.skip.anvil.test ${v}`]);
  });

  test('a full issuance for a name and its wildcard through dns-01 with CNAME delegation, validated by anvil server', async () => {
    const ts = await startTestServer({ acme: { authzReuseDays: 0 }, validation: { resolvers: [bind.addr] } }, { realValidation: true });
    try {
      await bind.nsupdate(['update add _acme-challenge.iss.anvil.test. 5 CNAME iss.delegated.anvil.test.']);
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const api = new AcmeApi(new AcmeHttp(ts.directoryUrl, { allowInsecure: true }), { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' });
      await api.register({ termsOfServiceAgreed: true });
      const names = ['iss.anvil.test', '*.iss.anvil.test'];
      const csr = await makeCsr(names);
      const p = new NsupdateProvider([{ bind }]);
      const r = await obtainCertificate(api, {
        identifiers: names.map((value) => ({ type: 'dns' as const, value })),
        solvers: [new Dns01Solver(p, { ...quick, resolvers: [bind.addr], nameserverPort: bind.port })],
        csrDer: csr.der,
        keySpki: createPublicKey(csr.keyPem).export({ type: 'spki', format: 'der' }),
      });
      assert.equal(r.order.body.status, 'valid');
      assert.match(r.leaf.subjectAltName ?? '', /DNS:\*\.iss\.anvil\.test/);
      assert.deepEqual(p.created.map((c) => c.fqdn), ['iss.delegated.anvil.test', 'iss.delegated.anvil.test']);
      assert.equal(new Set(p.created.map((c) => c.value)).size, 2);
      assert.deepEqual(await bind.dig('iss.delegated.anvil.test', 'TXT'), [], 'clean-up removed both values');
    } finally {
      await ts.stop();
    }
  });
});
