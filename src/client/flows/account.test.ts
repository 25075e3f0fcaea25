/** Accounts in the client's store against anvil server: registration rules, reuse, rollover that survives a crash. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../../../test/helpers/in-process.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import { AcmeHttp } from '../http.js';
import { accountSigner, generateAccountKey, privateKeyPem } from '../keys.js';
import { AccountStore } from '../store.js';
import { openAccount, rolloverAccount } from './account.js';

describe('openAccount and rolloverAccount', () => {
  let ts: TestServer;
  let root: string;
  let http: AcmeHttp;
  before(async () => {
    ts = await startTestServer({ acme: { termsOfService: 'https://ca.example/terms' } });
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-acct-'));
    http = new AcmeHttp(ts.directoryUrl, { allowInsecure: true });
  });
  after(async () => {
    await http.close();
    await ts.stop();
    await rm(root, { recursive: true, force: true });
  });

  test('a CA with terms of service needs agreement; nothing is registered without it', async () => {
    const store = new AccountStore(path.join(root, 'tos'));
    await assert.rejects(
      openAccount({ store, http, create: {} }),
      (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT' && /terms of service.*--agree-tos/.test(e.message),
    );
    assert.deepEqual(await store.list(), []);
  });

  test('without `create`, a missing account says how to make one', async () => {
    await assert.rejects(openAccount({ store: new AccountStore(path.join(root, 'none')), http }), /anvil account register/);
  });

  for (const alg of ['ES256', 'ES384', 'RS256', 'EdDSA'] as const) {
    test(`registers with an ${alg} key once, then reuses the stored account`, async () => {
      const store = new AccountStore(path.join(root, alg));
      const first = await openAccount({ store, http, name: 'ops', create: { agreeTos: true, contact: ['mailto:ops@example.com'], alg } });
      assert.equal(first.created, true);
      assert.equal(first.account.alg, alg);
      const second = await openAccount({ store, http, name: 'ops', create: { agreeTos: true } });
      assert.equal(second.created, false);
      assert.equal(second.account.url, first.account.url);
      assert.equal((await second.api.find()).url, first.account.url);
    });
  }

  test('a rollover interrupted after the CA accepted it is finished on the next open', async () => {
    const store = new AccountStore(path.join(root, 'crash'));
    const { api, account } = await openAccount({ store, http, create: { agreeTos: true } });
    // The CA accepted the new key, then the process died before key.next.pem was promoted.
    const next = await generateAccountKey('ES256');
    await store.stageNextKey(account.directoryUrl, account.name, privateKeyPem(next));
    await api.rollover(accountSigner(next));
    const reopened = await openAccount({ store, http });
    assert.deepEqual(reopened.api.signer.jwk, accountSigner(next).jwk);
    assert.equal((await reopened.api.find()).url, account.url);
    assert.equal((await store.load(account.directoryUrl, account.name)).nextKeyPem, null);
  });

  test('a rollover interrupted before the CA heard of it keeps the old key', async () => {
    const store = new AccountStore(path.join(root, 'early'));
    const { account, api } = await openAccount({ store, http, create: { agreeTos: true } });
    await store.stageNextKey(account.directoryUrl, account.name, privateKeyPem(await generateAccountKey('ES256')));
    const reopened = await openAccount({ store, http });
    assert.deepEqual(reopened.api.signer.jwk, api.signer.jwk);
    assert.equal((await store.load(account.directoryUrl, account.name)).nextKeyPem, null);
  });

  test('rolloverAccount: the new key is stored and the old key no longer finds the account', async () => {
    const store = new AccountStore(path.join(root, 'roll'));
    const { api, account } = await openAccount({ store, http, create: { agreeTos: true } });
    const oldSigner = api.signer;
    const updated = await rolloverAccount({ store, api, account, alg: 'ES384' });
    assert.equal(updated.alg, 'ES384');
    const reopened = await openAccount({ store, http });
    assert.equal(reopened.api.signer.alg, 'ES384');
    assert.equal((await reopened.api.find()).url, account.url);
    const { AcmeApi } = await import('../api.js');
    await assert.rejects(new AcmeApi(http, oldSigner).find(), (e: unknown) => e instanceof AcmeProblemError && e.type === 'accountDoesNotExist');
  });
});
