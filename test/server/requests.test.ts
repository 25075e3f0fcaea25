/**
 * SECURITY.md "Requests and signatures": every row, against a running server, asserting the
 * problem type and the HTTP status.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { FlattenedSign, type JWK } from 'jose';
import { FakeClock } from '../../src/lib/clock.js';
import { issue } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { assertProblem, ERR } from '../helpers/problems.js';
import { newKey, RawAcme } from '../helpers/raw-acme.js';


describe('requests and signatures', () => {
  let ts: TestServer;
  let acme: RawAcme;

  before(async () => {
    ts = await startTestServer();
    acme = await new RawAcme(ts.directoryUrl).init();
    const r = await acme.register({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.com'] });
    assert.equal(r.status, 201);
  });
  after(async () => ts.stop());

  test('the directory lists every resource and the meta fields', async () => {
    const d = acme.directory as any;
    for (const k of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange']) assert.match(d[k], /^http:\/\/127\.0\.0\.1:\d+\/acme\//);
    assert.equal(d.meta.externalAccountRequired, false);
  });

  test('newNonce answers HEAD with 200 and GET with 204, never cached', async () => {
    const h = await fetch(acme.directory.newNonce!, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get('cache-control'), 'no-store');
    assert.ok(h.headers.get('replay-nonce'));
    const g = await fetch(acme.directory.newNonce!);
    assert.equal(g.status, 204);
    assert.equal(g.headers.get('cache-control'), 'no-store');
    assert.match(g.headers.get('link') ?? '', /rel="index"/);
  });

  test('a content type other than application/jose+json is 415 malformed', async () => {
    const jws = await acme.jws(acme.directory.newOrder!, { payload: { identifiers: [] } });
    assertProblem(await acme.send(acme.directory.newOrder!, JSON.stringify(jws), 'application/json'), 415, 'malformed');
  });

  test('GET on order, authorization, challenge and certificate URLs is 405', async () => {
    const { order, certUrl } = await issue(acme, ['get.example.com']);
    const authz = order.authorizations[0];
    const a = await acme.post(authz, { payload: null });
    for (const u of [certUrl, authz, a.body.challenges[0].url, acme.kid!]) {
      const r = await fetch(u);
      assert.equal(r.status, 405, u);
      assert.equal(r.headers.get('allow'), 'POST');
    }
  });

  const badBodies: Array<[string, (url: string) => Promise<string>]> = [
    ['a body that is not JSON', async () => '{not json'],
    ['a compact JWS', async (u) => acme.compact(u)],
    ['a truncated JWS', async (u) => JSON.stringify({ ...(await acme.jws(u, { payload: {} })), signature: undefined })],
    ['a "signatures" array', async (u) => {
      const j = await acme.jws(u, { payload: {} });
      return JSON.stringify({ payload: j.payload, signatures: [{ protected: j.protected, signature: j.signature }] });
    }],
    ['an unprotected header', async (u) => JSON.stringify({ ...(await acme.jws(u, { payload: {} })), header: { kid: 'x' } })],
    ['an empty signature', async (u) => JSON.stringify({ ...(await acme.jws(u, { payload: {} })), signature: '' })],
    ['a JSON array', async () => '[]'],
  ];
  for (const [name, body] of badBodies) {
    test(`${name} is 400 malformed`, async () => {
      const u = acme.directory.newOrder!;
      assertProblem(await acme.send(u, await body(u)), 400, 'malformed');
    });
  }

  test('a body larger than the cap is refused before parsing', async () => {
    const big = JSON.stringify({ protected: 'x', payload: 'a'.repeat(70 * 1024), signature: 'x' });
    const r = await acme.send(acme.directory.newOrder!, big);
    assertProblem(r, 413, 'malformed');
  });

  for (const alg of ['none', 'HS256', 'PS999']) {
    test(`alg ${alg} is badSignatureAlgorithm with the algorithms list`, async () => {
      const r = await acme.post(acme.directory.newOrder!, {
        payload: {},
        tamper: (j) => {
          const h = JSON.parse(Buffer.from(String(j.protected), 'base64url').toString());
          h.alg = alg;
          return { ...j, protected: Buffer.from(JSON.stringify(h)).toString('base64url') };
        },
      });
      assertProblem(r, 400, 'badSignatureAlgorithm');
      assert.ok(Array.isArray(r.body.algorithms) && r.body.algorithms.includes('ES256'));
    });
  }

  test('an alg that does not fit the key is malformed', async () => {
    const r = await acme.post(acme.directory.newOrder!, {
      payload: {},
      tamper: (j) => {
        const h = JSON.parse(Buffer.from(String(j.protected), 'base64url').toString());
        h.alg = 'RS256';
        return { ...j, protected: Buffer.from(JSON.stringify(h)).toString('base64url') };
      },
    });
    assertProblem(r, 400, 'malformed');
  });

  test('a JWK "alg" different from the header alg is malformed', async () => {
    const k = newKey();
    const key = { ...k, jwk: { ...k.jwk, alg: 'ES384' } };
    const r = await acme.post(acme.directory.newAccount!, { key, useJwk: true, payload: { termsOfServiceAgreed: true } });
    assertProblem(r, 400, 'malformed');
  });

  test('both jwk and kid is malformed', async () => {
    const r = await acme.post(acme.directory.newOrder!, { payload: {}, extraHeader: { jwk: acme.key.jwk } });
    assertProblem(r, 400, 'malformed');
  });

  test('kid on newAccount is malformed', async () => {
    assertProblem(await acme.post(acme.directory.newAccount!, { payload: {} }), 400, 'malformed');
  });

  test('jwk where an account is required is malformed', async () => {
    const r = await acme.post(acme.directory.newOrder!, { useJwk: true, payload: { identifiers: [{ type: 'dns', value: 'a.example.com' }] } });
    assertProblem(r, 400, 'malformed');
  });

  for (const [name, nonce] of [
    ['a missing nonce', null],
    ['a malformed nonce', '!!!'],
    ['an unknown nonce', 'AAAAAAAAAAAAAAAAAAAAAA'],
  ] as const) {
    test(`${name} is badNonce with a fresh Replay-Nonce`, async () => {
      assertProblem(await acme.post(acme.directory.newOrder!, { nonce, payload: {} }), 400, 'badNonce');
    });
  }

  test('a used nonce is badNonce', async () => {
    const nonce = await acme.nonce();
    const first = await acme.post(acme.kid!, { nonce, payload: null });
    assert.equal(first.status, 200);
    assertProblem(await acme.post(acme.kid!, { nonce, payload: null }), 400, 'badNonce');
  });

  test('an expired nonce is badNonce; a forged or altered one is badNonce', async () => {
    const clock = new FakeClock(Date.now());
    const short = await startTestServer({ acme: { nonceLifetimeSeconds: 10 } }, { clock });
    try {
      const a = await new RawAcme(short.directoryUrl).init();
      await a.register();
      const expired = await a.nonce();
      clock.advance(11_000);
      assertProblem(await a.post(a.kid!, { nonce: expired, payload: null }), 400, 'badNonce');
      // Same shape, another MAC: one changed character in the MAC part, and one in the expiry.
      const good = await a.nonce();
      const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      assertProblem(await a.post(a.kid!, { nonce: flip(good, 30), payload: null }), 400, 'badNonce');
      assertProblem(await a.post(a.kid!, { nonce: flip(good, 2), payload: null }), 400, 'badNonce');
      assert.equal((await a.post(a.kid!, { nonce: good, payload: null })).status, 200, 'the unaltered nonce still works once');
    } finally {
      await short.stop();
    }
  });

  test('of two racing requests with one nonce, exactly one succeeds', async () => {
    const nonce = await acme.nonce();
    const [a, b] = await Promise.all([acme.post(acme.kid!, { nonce, payload: null }), acme.post(acme.kid!, { nonce, payload: null })]);
    const statuses = [a.status, b.status].sort();
    assert.deepEqual(statuses, [200, 400]);
    const loser = a.status === 400 ? a : b;
    assert.equal(loser.body.type, `${ERR}badNonce`);
  });

  test('a missing url is 401 unauthorized', async () => {
    assertProblem(await acme.post(acme.kid!, { url: null, payload: null }), 401, 'unauthorized');
  });

  test('a url different from the request URL is 401 unauthorized', async () => {
    assertProblem(await acme.post(acme.kid!, { url: acme.directory.newOrder!, payload: null }), 401, 'unauthorized');
  });

  test('a signature that does not verify is malformed', async () => {
    const r = await acme.post(acme.kid!, {
      payload: null,
      tamper: (j) => {
        const sig = Buffer.from(String(j.signature), 'base64url');
        sig[5] = sig[5]! ^ 0xff;
        return { ...j, signature: sig.toString('base64url') };
      },
    });
    assertProblem(r, 400, 'malformed');
  });

  test('a signature by another key than the account key is malformed', async () => {
    assertProblem(await acme.post(acme.kid!, { key: newKey(), payload: null }), 400, 'malformed');
  });

  test('an unknown kid is accountDoesNotExist', async () => {
    const base = acme.kid!.replace(/[^/]+$/, '');
    assertProblem(await acme.post(acme.directory.newOrder!, { kid: `${base}nosuchaccount`, payload: {} }), 400, 'accountDoesNotExist');
  });

  test('a deactivated account is 401 unauthorized', async () => {
    const other = await new RawAcme(ts.directoryUrl).init();
    await other.register();
    const pending = await other.post(other.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'gone.example.com' }] } });
    const d = await other.post(other.kid!, { payload: { status: 'deactivated' } });
    assert.equal(d.status, 200);
    assert.equal(d.body.status, 'deactivated');
    assertProblem(await other.post(other.kid!, { payload: null }), 401, 'unauthorized');
    // RFC 8555 §7.3.6: its pending work is cancelled.
    const az = await ts.srv.store.getAuthz(pending.body.authorizations[0].split('/').pop());
    assert.equal(az?.status, 'deactivated');
    // Registering the same key again does not bring the account back.
    assertProblem(await other.post(other.directory.newAccount!, { useJwk: true, payload: {} }), 401, 'unauthorized');
  });

  test('POST-as-GET with a non-empty payload is malformed', async () => {
    const { url } = await (async () => {
      const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'pag.example.com' }] } });
      return { url: r.headers.get('location')! };
    })();
    assertProblem(await acme.post(url, { payload: {} }), 400, 'malformed');
  });

  test('a payload of the wrong shape is malformed', async () => {
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: { identifiers: 'example.com' } }), 400, 'malformed');
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: '"a string"' }), 400, 'malformed');
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: 'not json' }), 400, 'malformed');
  });

  const badKeys: Array<[string, () => JWK]> = [
    ['an RSA key under 2048 bits', () => newKey('rsa1024').jwk],
    ['an RSA exponent other than 65537', () => ({ ...newKey('rsa2048').jwk, e: 'Aw' })],
    ['an EC point not on the curve', () => {
      const j = newKey().jwk;
      const x = Buffer.from(j.x!, 'base64url');
      x[31] = x[31]! ^ 1;
      return { ...j, x: x.toString('base64url') };
    }],
    ['an unsupported curve', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ format: 'jwk' }) as JWK],
  ];
  for (const [name, jwk] of badKeys) {
    test(`an account key with ${name} is badPublicKey`, async () => {
      const k = newKey();
      // Sign with a valid key but present the bad JWK: the key check must come first.
      const r = await acme.post(acme.directory.newAccount!, { key: k, payload: {}, kid: null, extraHeader: { jwk: jwk() } });
      assertProblem(r, 400, 'badPublicKey');
    });
  }

  test('newAccount with a known key returns the existing account, no duplicate', async () => {
    const r = await acme.post(acme.directory.newAccount!, { useJwk: true, payload: { termsOfServiceAgreed: true } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('location'), acme.kid);
    const only = await acme.post(acme.directory.newAccount!, { useJwk: true, payload: { onlyReturnExisting: true } });
    assert.equal(only.status, 200);
    assert.equal(only.headers.get('location'), acme.kid);
  });

  test('onlyReturnExisting with an unknown key is accountDoesNotExist', async () => {
    const r = await acme.post(acme.directory.newAccount!, { key: newKey(), useJwk: true, payload: { onlyReturnExisting: true } });
    assertProblem(r, 400, 'accountDoesNotExist');
  });

  test('contacts are validated', async () => {
    const cases: Array<[unknown, string]> = [
      [['tel:+1555'], 'unsupportedContact'],
      [['mailto:not-an-address'], 'invalidContact'],
      [['mailto:a@example.com?subject=x'], 'invalidContact'],
      [['mailto:a@example.com,b@example.com'], 'invalidContact'],
      ['mailto:a@example.com', 'malformed'],
    ];
    for (const [contact, type] of cases) {
      const r = await acme.post(acme.directory.newAccount!, { key: newKey(), useJwk: true, payload: { contact } });
      assertProblem(r, 400, type);
    }
    const u = await acme.post(acme.kid!, { payload: { contact: ['mailto:new@example.com'] } });
    assert.equal(u.status, 200);
    assert.deepEqual(u.body.contact, ['mailto:new@example.com']);
  });

  test('the account orders list is paginated with Link rel="next"', async () => {
    const small = await startTestServer({ acme: { ordersPageSize: 2 } });
    try {
      const a = await new RawAcme(small.directoryUrl).init();
      await a.register();
      const made: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await a.post(a.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: `o${i}.example.com` }] } });
        made.push(r.headers.get('location')!);
      }
      const acct = await a.post(a.kid!, { payload: null });
      let next: string | null = acct.body.orders;
      const seen: string[] = [];
      let pages = 0;
      while (next && pages < 10) {
        const r = await a.post(next, { payload: null });
        assert.equal(r.status, 200);
        seen.push(...r.body.orders);
        const m = /<([^>]+)>;rel="next"/.exec(r.headers.get('link') ?? '');
        next = m ? m[1]! : null;
        pages++;
      }
      assert.equal(pages, 3);
      assert.deepEqual(seen, made);
    } finally {
      await small.stop();
    }
  });

  test('keyChange rolls the account key over', async () => {
    const a = await new RawAcme(ts.directoryUrl).init();
    await a.register();
    const newK = newKey('ec384');
    const inner = async (payload: unknown, key = newK, url = a.directory.keyChange!) =>
      new FlattenedSign(new TextEncoder().encode(JSON.stringify(payload)))
        .setProtectedHeader({ alg: key.alg, jwk: key.jwk, url } as never)
        .sign(key.privateKey);

    // Wrong oldKey.
    let r = await a.post(a.directory.keyChange!, { payload: await inner({ account: a.kid, oldKey: newKey().jwk }) });
    assertProblem(r, 400, 'malformed');
    // Inner JWS with another url.
    r = await a.post(a.directory.keyChange!, { payload: await inner({ account: a.kid, oldKey: a.key.jwk }, newK, a.directory.newOrder!) });
    assertProblem(r, 400, 'malformed');
    // Inner JWS whose signature does not verify.
    const bad = await inner({ account: a.kid, oldKey: a.key.jwk });
    r = await a.post(a.directory.keyChange!, { payload: { ...bad, signature: bad.signature.slice(0, -4) + 'AAAA' } });
    assertProblem(r, 400, 'malformed');
    // A new key that another account holds: 409 with that account's Location.
    r = await a.post(a.directory.keyChange!, { payload: await inner({ account: a.kid, oldKey: a.key.jwk }, acme.key) });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.headers.get('location'), acme.kid);
    // The real thing.
    r = await a.post(a.directory.keyChange!, { payload: await inner({ account: a.kid, oldKey: a.key.jwk }) });
    assert.equal(r.status, 200, r.text);
    assertProblem(await a.post(a.kid!, { payload: null }), 400, 'malformed');
    const oldKey = a.key;
    a.key = newK;
    const ok = await a.post(a.kid!, { payload: null });
    assert.equal(ok.status, 200);
    const gone = await a.post(a.directory.newAccount!, { key: oldKey, useJwk: true, payload: { onlyReturnExisting: true } });
    assertProblem(gone, 400, 'accountDoesNotExist');
  });

  test("another account's order, authorization, challenge and certificate are 404", async () => {
    const { order, certUrl, url } = await (async () => {
      const x = await issue(acme, ['mine.example.com']);
      return { ...x, url: x.order.finalize.replace(/\/finalize$/, '') };
    })();
    const authz = order.authorizations[0];
    const a = await acme.post(authz, { payload: null });
    const intruder = await new RawAcme(ts.directoryUrl).init();
    await intruder.register();
    for (const u of [url, authz, a.body.challenges[0].url, certUrl]) {
      const r = await intruder.post(u, { payload: null });
      assertProblem(r, 404, 'malformed');
      assert.ok(!r.text.includes('mine.example.com'), 'never its contents');
    }
    assertProblem(await intruder.post(acme.kid!, { payload: null }), 403, 'unauthorized');
  });

  test('ids are unguessable (128 random bits)', async () => {
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'id.example.com' }] } });
    const id = r.headers.get('location')!.split('/').pop()!;
    assert.ok(Buffer.from(id, 'base64url').length >= 16);
  });
});
