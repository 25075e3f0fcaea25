/**
 * Issue #3: a server that misbehaves on purpose (config `testing`, after Pebble's
 * PEBBLE_WFE_NONCEREJECT and PEBBLE_AUTHZREUSE), and proof that Anvil's client completes anyway.
 * The faults draw from a seeded random source, so what the server does is reproducible; set
 * CHAOS_SEED to drive the client run with another seed.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { AcmeApi } from '../../src/client/api.js';
import { AcmeClientError, AcmeProblemError } from '../../src/client/errors.js';
import { obtainCertificate } from '../../src/client/flows/issue.js';
import { AcmeHttp, type HttpOptions } from '../../src/client/http.js';
import { StandaloneHttp01 } from '../../src/client/solvers/http01.js';
import { createLogger } from '../../src/lib/logger.js';
import type { Random } from '../../src/lib/random.js';
import type { Identifier } from '../../src/protocol/types.js';
import { chance } from '../../src/server/authority/testing-faults.js';
import { ConfigError, parseServerConfig } from '../../src/server/config.js';
import type { RunningServer } from '../../src/server/main.js';
import type { Validator } from '../../src/server/validation/types.js';
import { FakeDns } from '../helpers/fake-dns.js';
import { readyOrder, makeCsr, waitFor } from '../helpers/flow.js';
import { FakeValidator, startTestServer } from '../helpers/in-process.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { assertProblem } from '../helpers/problems.js';
import { RawAcme } from '../helpers/raw-acme.js';

/** A deterministic Random: SHA-256 of (seed, counter). Two instances with one seed agree. */
function seededRandom(seed: string): Random {
  let n = 0;
  return {
    bytes(len: number): Buffer {
      const out = Buffer.alloc(len);
      for (let off = 0; off < len; off += 32) createHash('sha256').update(`${seed}/${n++}`).digest().copy(out, off);
      return out;
    },
  };
}

interface ChaosServer {
  srv: RunningServer;
  validator: FakeValidator;
  /** JSON log records, when started with `log`. */
  records: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function startChaos(
  extra: Record<string, unknown>,
  opts: { seed: string; validator?: Validator | 'real'; log?: boolean },
): Promise<ChaosServer> {
  const records: Array<Record<string, unknown>> = [];
  const logger = opts.log
    ? createLogger({ level: 'info', destination: { write: (s: string) => void records.push(JSON.parse(s) as Record<string, unknown>) } })
    : undefined;
  const ts = await startTestServer(extra, {
    testingRandom: seededRandom(opts.seed),
    ...(logger ? { logger } : {}),
    ...(opts.validator === 'real' ? { realValidation: true } : opts.validator ? { validator: opts.validator } : {}),
  });
  return { srv: ts.srv, validator: ts.validator, records, stop: () => ts.stop() };
}

function newSigner() {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey: k.privateKey, jwk: k.publicKey.export({ format: 'jwk' }) as JWK, alg: 'ES256' as const };
}

const dns = (value: string): Identifier => ({ type: 'dns', value });

describe('the testing config section', () => {
  test('is absent by default, and strict like the rest of the config', () => {
    assert.equal(parseServerConfig({}).testing, undefined);
    const t = parseServerConfig({ testing: {} }).testing;
    assert.deepEqual(t, { nonceRejectPercent: 0, serverErrorPercent: 0 });
    for (const bad of [{ nonceRejectPercent: 101 }, { serverErrorPercent: -1 }, { authzReusePercent: '50' }, { nonceReject: 10 }]) {
      assert.throws(() => parseServerConfig({ testing: bad }), (e: unknown) => e instanceof ConfigError && /^  testing[.:]/m.test(e.message), JSON.stringify(bad));
    }
  });

  test('authorization reuse by chance needs acme.authzReuseDays', () => {
    assert.throws(
      () => parseServerConfig({ acme: { authzReuseDays: 0 }, testing: { authzReusePercent: 50 } }),
      (e: unknown) => e instanceof ConfigError && /testing\.authzReusePercent: needs acme\.authzReuseDays/.test(e.message),
    );
  });

  test('the server warns loudly at start-up when any fault is on', async () => {
    const quiet = await startChaos({ testing: {} }, { seed: 'warn0', log: true });
    await quiet.stop();
    assert.ok(!quiet.records.some((r) => /TEST-ONLY FAULTS/.test(String(r.msg))));
    const loud = await startChaos({ testing: { nonceRejectPercent: 5 } }, { seed: 'warn1', log: true });
    await loud.stop();
    const w = loud.records.find((r) => /TEST-ONLY FAULTS ARE ON/.test(String(r.msg)));
    assert.ok(w, 'a start-up warning');
    assert.equal(w.level, 40);
    assert.match(String(w.msg), /never use this configuration in production/i);
  });
});

describe('the faults really happen', () => {
  test('valid nonces are refused with badNonce at the configured rate, exactly as the random source says', async () => {
    const cs = await startChaos({ testing: { nonceRejectPercent: 40 } }, { seed: 'nonces' });
    try {
      const twin = seededRandom('nonces');
      const acme = await new RawAcme(cs.srv.directoryUrl).init();
      const expected: boolean[] = [];
      const seen: boolean[] = [];
      for (let i = 0; i < 40; i++) {
        expected.push(chance(twin, 40));
        // newAccount with one key: created once, then the same account again.
        const nonce = await acme.nonce();
        const jws = await acme.jws(acme.directory.newAccount!, { useJwk: true, nonce, payload: { termsOfServiceAgreed: true } });
        const r = await acme.send(acme.directory.newAccount!, JSON.stringify(jws));
        if (r.status === 400) {
          assertProblem(r, 400, 'badNonce');
          assert.match(r.body.detail, /on purpose/);
          // The refused nonce was consumed all the same: sending it again is an ordinary badNonce
          // (which draws nothing, so the twin stays in step).
          const again = await acme.send(acme.directory.newAccount!, JSON.stringify(jws));
          assertProblem(again, 400, 'badNonce');
          assert.match(again.body.detail, /already used/);
        } else {
          assert.ok(r.status === 201 || r.status === 200, r.text);
        }
        seen.push(r.status === 400);
      }
      assert.deepEqual(seen, expected);
      const refused = seen.filter(Boolean).length;
      assert.ok(refused >= 8 && refused <= 24, `${refused} of 40 refused at 40 %`);
    } finally {
      await cs.stop();
    }
  });

  test('serverErrorPercent: a POST is answered 503 serverInternal with Retry-After before anything changes', async () => {
    const cs = await startChaos({ testing: { serverErrorPercent: 100 } }, { seed: '503' });
    try {
      const acme = await new RawAcme(cs.srv.directoryUrl).init(); // GET is never failed
      const nonce = await acme.nonce(); // nor HEAD
      const r = await acme.post(acme.directory.newAccount!, { useJwk: true, nonce, payload: { termsOfServiceAgreed: true } });
      assertProblem(r, 503, 'serverInternal');
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal(await cs.srv.store.getAccountByThumbprint(acme.thumbprint()), null, 'no account was created');
      assert.equal(await cs.srv.store.useNonce(nonce, new Date(Date.now() + 60_000)), true, 'the nonce was not used');
    } finally {
      await cs.stop();
    }
  });

  test('authzReusePercent 100: pending and valid authorizations are shared between orders', async () => {
    const cs = await startChaos({ testing: { authzReusePercent: 100 } }, { seed: 'reuse100' });
    try {
      const acme = await new RawAcme(cs.srv.directoryUrl).init();
      await acme.register();
      const newOrder = async (ids: Identifier[]) => {
        const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: ids } });
        assert.equal(r.status, 201, r.text);
        return { url: r.headers.get('location')!, body: r.body };
      };
      const o1 = await newOrder([dns('shared.example.com')]);
      const o2 = await newOrder([dns('shared.example.com'), dns('other.example.com')]);
      assert.equal(o2.body.status, 'pending');
      assert.ok(o2.body.authorizations.includes(o1.body.authorizations[0]), 'the pending authorization is reused');
      // Validating it once serves both orders.
      const az = await acme.post(o1.body.authorizations[0], { payload: null });
      const ch = az.body.challenges.find((c: { type: string }) => c.type === 'http-01');
      await acme.post(ch.url, { payload: {} });
      await waitFor(acme, o1.url, (b) => b.status === 'ready');
      const rest = await readyOrder(acme, [dns('shared.example.com'), dns('other.example.com')]);
      assert.equal(rest.order.status, 'ready');
      const p2 = await waitFor(acme, o2.url, (b) => b.status !== 'pending');
      assert.equal(p2.status, 'ready', 'the second order became ready through the shared authorizations');
      // Valid ones are reused: ready at once.
      const o3 = await newOrder([dns('other.example.com'), dns('shared.example.com')]);
      assert.equal(o3.body.status, 'ready');
      assert.deepEqual([...o3.body.authorizations].sort(), [...p2.authorizations].sort());
    } finally {
      await cs.stop();
    }
  });

  test('authzReusePercent 50: reuse follows the random source; 0 never reuses', async () => {
    const cs = await startChaos({ testing: { authzReusePercent: 50 } }, { seed: 'reuse50' });
    const off = await startChaos({ testing: { authzReusePercent: 0 } }, { seed: 'reuse0' });
    try {
      const acme = await new RawAcme(cs.srv.directoryUrl).init();
      await acme.register();
      const twin = seededRandom('reuse50');
      // The first order draws too (nothing to reuse yet).
      const expected = [chance(twin, 50)];
      await readyOrder(acme, [dns('half.example.com')]);
      const seen: boolean[] = [];
      for (let i = 0; i < 12; i++) {
        expected.push(chance(twin, 50));
        const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [dns('half.example.com')] } });
        assert.equal(r.status, 201, r.text);
        seen.push(r.body.status === 'ready');
        if (r.body.status !== 'ready') {
          // Leave no pending authorization behind for the next draw to pick up.
          await acme.post(r.body.authorizations[0], { payload: { status: 'deactivated' } });
        }
      }
      assert.deepEqual(seen, expected.slice(1));
      assert.ok(seen.includes(true) && seen.includes(false));

      const b = await new RawAcme(off.srv.directoryUrl).init();
      await b.register();
      const first = await readyOrder(b, [dns('never.example.com')]);
      assert.equal(first.order.status, 'ready');
      const r = await b.post(b.directory.newOrder!, { payload: { identifiers: [dns('never.example.com')] } });
      assert.equal(r.body.status, 'pending');
      assert.notDeepEqual(r.body.authorizations, first.order.authorizations);
    } finally {
      await cs.stop();
      await off.stop();
    }
  });
});

describe('the client gives up cleanly when the server never stops failing', () => {
  test('nonceRejectPercent 100: RETRIES_EXHAUSTED after the bounded attempts', async () => {
    const cs = await startChaos({ testing: { nonceRejectPercent: 100 } }, { seed: 'all-nonces', log: true });
    const http = new AcmeHttp(cs.srv.directoryUrl, { allowInsecure: true });
    try {
      const api = new AcmeApi(http, newSigner());
      await assert.rejects(api.register({ termsOfServiceAgreed: true }), (e: unknown) => {
        assert.ok(e instanceof AcmeClientError);
        assert.equal(e.code, 'RETRIES_EXHAUSTED');
        assert.match(e.message, /gave up after 5 attempts/);
        assert.ok(e.cause instanceof AcmeProblemError && e.cause.type === 'badNonce');
        return true;
      });
      const posts = cs.records.filter((r) => r.msg === 'request' && r.method === 'POST');
      assert.equal(posts.length, 5, 'five attempts, then no more');
      assert.ok(posts.every((r) => r.status === 400));
    } finally {
      await http.close();
      await cs.stop();
    }
  });

  test('serverErrorPercent 100: each Retry-After is honoured, then RETRIES_EXHAUSTED', async () => {
    const cs = await startChaos({ testing: { serverErrorPercent: 100 } }, { seed: 'all-503' });
    const waits: number[] = [];
    const http = new AcmeHttp(cs.srv.directoryUrl, { allowInsecure: true, sleep: async (ms) => void waits.push(ms) });
    try {
      const api = new AcmeApi(http, newSigner());
      await assert.rejects(
        api.register({ termsOfServiceAgreed: true }),
        (e: unknown) => e instanceof AcmeClientError && e.code === 'RETRIES_EXHAUSTED' && e.cause instanceof AcmeProblemError && e.cause.status === 503,
      );
      assert.deepEqual(waits, [1000, 1000, 1000, 1000]);
    } finally {
      await http.close();
      await cs.stop();
    }
  });
});

describe('the client completes anyway', { timeout: 180_000 }, () => {
  let cs: ChaosServer;
  let fakeDns: FakeDns;
  let port: number;
  let http: AcmeHttp;
  let api: AcmeApi;
  const waits: number[] = [];
  const created: Array<{ status: string; authorizations: string[] }> = [];

  before(async () => {
    fakeDns = await new FakeDns().start();
    for (const n of ['a', 'b', 'c', 'd', 'e']) fakeDns.a.set(`${n}.chaos.test`, ['127.0.0.1']);
    port = await freePort();
    cs = await startChaos(
      {
        testing: { nonceRejectPercent: 30, authzReusePercent: 50, serverErrorPercent: 10 },
        validation: { resolvers: [fakeDns.addr], httpPort: port, addressPolicy: { allowLoopback: true } },
      },
      { seed: process.env.CHAOS_SEED ?? 'clients', validator: 'real', log: true },
    );
    const opts: HttpOptions = {
      allowInsecure: true,
      // At 40 % failure per attempt, 10 attempts fail together with a chance of 1 in 10,000.
      maxAttempts: 10,
      // Record what the client asked to wait, but do not spend the test's time waiting it out.
      sleep: (ms) => {
        waits.push(ms);
        return new Promise((r) => setTimeout(r, Math.min(ms, 50)));
      },
    };
    http = new AcmeHttp(cs.srv.directoryUrl, opts);
    api = new AcmeApi(http, newSigner());
    // Records what each new order looked like when the server created it.
    const newOrder = api.newOrder.bind(api);
    api.newOrder = async (ids) => {
      const o = await newOrder(ids);
      created.push({ status: o.body.status, authorizations: [...o.body.authorizations] });
      return o;
    };
    await api.register({ termsOfServiceAgreed: true });
  });
  after(async () => {
    await http?.close();
    await cs?.stop();
    await fakeDns?.stop();
  });

  test('ten issuances, names validated before included, each certificate valid for its names', async () => {
    const rootPem = path.join(cs.srv.caDir, 'root.pem');
    const issue = async (short: string[], label: string) => {
      const names = short.map((n) => `${n}.chaos.test`);
      const csr = await makeCsr(names);
      const r = await obtainCertificate(api, {
        identifiers: names.map(dns),
        solvers: [new StandaloneHttp01({ host: '127.0.0.1', port })],
        csrDer: csr.der,
        keySpki: createPublicKey(csr.keyPem).export({ type: 'spki', format: 'der' }),
        timeoutMs: 60_000,
      });
      assert.equal(r.order.body.status, 'valid');
      assert.deepEqual(await verifyChain(r.chainPem, rootPem), names.map((n) => `DNS:${n}`).sort(), label);
    };
    const plan: string[][] = [['a'], ['b', 'c'], ['a'], ['a', 'b'], ['c'], ['d', 'a'], ['e'], ['b'], ['a', 'b', 'c', 'd'], ['e', 'a']];
    for (const [i, short] of plan.entries()) {
      // An order left pending: the next order for the name may get its authorization.
      if (i === 6) await api.newOrder([dns('e.chaos.test')]);
      await issue(short, `issuance ${i + 1}`);
    }
    // Whether an order is ready at once depends on the draws (about 1 run in 15 has none in the
    // ten above); a few more orders for a validated name make one all but certain (bounded).
    for (let i = 0; i < 8 && !created.some((o) => o.status === 'ready'); i++) await issue(['a'], `extra issuance ${i + 1}`);

    // The chaos really happened while the client worked.
    const requests = cs.records.filter((r) => r.msg === 'request' && r.method === 'POST');
    const badNonces = requests.filter((r) => r.status === 400).length;
    const failures = requests.filter((r) => r.status === 503).length;
    assert.ok(badNonces > 0, 'some nonces were refused');
    assert.ok(failures > 0, 'some POSTs failed with 503');
    assert.ok(requests.every((r) => [200, 201, 400, 503].includes(r.status as number)), 'no other errors');
    assert.equal(waits.length, failures, 'one wait per 503');
    assert.ok(waits.every((w) => w === 1000), `Retry-After: 1 honoured (${waits.join(', ')})`);
    // And authorizations were reused: some orders were ready at once, some shared authorizations.
    const seen = new Set<string>();
    let shared = 0;
    for (const o of created) {
      for (const a of o.authorizations) {
        if (seen.has(a)) shared++;
        seen.add(a);
      }
    }
    assert.ok(shared > 0, 'authorizations shared between orders');
    assert.ok(created.some((o) => o.status === 'ready'), 'an order ready at once');
    // eslint-disable-next-line no-console
    console.log(`chaos: ${requests.length} POSTs, ${badNonces} badNonce, ${failures} × 503, ${shared} reused authorizations, ${created.filter((o) => o.status === 'ready').length} of ${created.length} orders ready at once`);
  });
});
