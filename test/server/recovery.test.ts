/**
 * Crash recovery, deterministically: the process "dies" after the issuance was recorded and before
 * the certificate was stored. A new authority on the same database finishes the order with the
 * recorded serial, and the client's next poll gets the certificate.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { systemClock } from '../../src/lib/clock.js';
import { silentLogger } from '../../src/lib/logger.js';
import { cryptoRandom } from '../../src/lib/random.js';
import { jwkThumbprint } from '../../src/protocol/jws.js';
import { Authority, type AuthorityConfig, type Issuer } from '../../src/server/authority/authority.js';
import { initCa, loadCa } from '../../src/server/issuance/ca.js';
import { Profiles } from '../../src/server/issuance/profiles.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { JWK } from 'jose';
import { makeCsr } from '../helpers/flow.js';
import { FakeValidator } from '../helpers/in-process.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-recover-'));
  await initCa(path.join(dir, 'ca'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const config: AuthorityConfig = {
  externalAccountRequired: false,
  authzReuseDays: 30,
  validAuthzLifetimeDays: 30,
  pendingAuthzLifetimeHours: 168,
  orderLifetimeHours: 168,
  maxIdentifiersPerOrder: 100,
  maxPendingOrdersPerAccount: 300,
  ordersPageSize: 100,
  nonceLifetimeSeconds: 3600,
  maxContacts: 10,
  identifierPolicy: { deniedDomains: [], allowIp: true, allowWildcard: true },
  profiles: new Profiles({ lifetimeDays: 90, clientAuth: false, profiles: {}, defaultProfile: 'classic' }),
  renewalInfoRetryAfterSeconds: 21600,
  validationConcurrency: 4,
  caaRecheckAfterHours: 8,
};

test('an issuance interrupted between recording and storing is finished at the next start, same serial', async () => {
  const dbFile = path.join(dir, 'anvil.db');
  const ca = await loadCa(path.join(dir, 'ca'));
  let crash = true;
  let signedPlans = 0;
  const crashingIssuer: Issuer = {
    checkCsr: (d, o) => ca.checkCsr(d, o),
    plan: (i) => ca.plan(i),
    inspect: (d) => ca.inspect(d),
    authorityKeyId: ca.authorityKeyId,
    async sign(plan) {
      signedPlans++;
      const issued = await ca.sign(plan);
      if (crash) throw new Error('simulated crash after signing, before storing');
      return issued;
    },
  };
  const deps = { clock: systemClock, random: cryptoRandom, logger: silentLogger(), config };
  const store1 = await openSqliteStore(dbFile);
  const a1 = new Authority({ ...deps, store: store1, issuer: crashingIssuer, validator: new FakeValidator() });

  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = k.publicKey.export({ format: 'jwk' }) as JWK;
  const { account } = await a1.newAccount({ jwk, payload: { termsOfServiceAgreed: true }, verifyEab: async () => 'x' });
  assert.ok(await jwkThumbprint(jwk));
  let order = await a1.newOrder(account, { identifiers: [{ type: 'dns', value: 'crash.example.com' }] });
  const az = await a1.getAuthz(account, order.authzIds[0]!);
  await a1.respondChallenge(account, az.challenges[0]!.id);
  await a1.validationsIdle();
  order = await a1.getOrder(account, order.id);
  assert.equal(order.status, 'ready');

  const csr = await makeCsr(['crash.example.com']);
  await assert.rejects(a1.finalize(account, order.id, { csr: csr.der.toString('base64url') }), /simulated crash/);
  const stuck = await a1.getOrder(account, order.id);
  assert.equal(stuck.status, 'processing');
  const [pending] = await store1.listPendingCertificates(10);
  assert.ok(pending, 'the certificate about to be signed was recorded first');
  await a1.close();
  await store1.close();

  // "Restart": a new process on the same database.
  crash = false;
  const store2 = await openSqliteStore(dbFile);
  const a2 = new Authority({ ...deps, store: store2, issuer: crashingIssuer, validator: new FakeValidator() });
  const r = await a2.recover();
  assert.equal(r.certificates, 1);
  const done = await a2.getOrder(account, order.id);
  assert.equal(done.status, 'valid');
  const cert = await a2.getCertificate(account, done.certificateId!);
  assert.equal(cert.serial, pending.serial, 'the recorded serial is the one issued');
  assert.equal(ca.inspect(cert.der!)?.serial, pending.serial);
  assert.equal(signedPlans, 2);
  assert.equal(await store2.countCertificates(), 1, 'one certificate for the order, not two');
  await a2.close();
  await store2.close();
});
