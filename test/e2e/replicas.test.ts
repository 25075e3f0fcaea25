/**
 * Issue 5: several `anvil server` replicas on one PostgreSQL behind a real load balancer (nginx,
 * round-robin, TLS at the balancer, started by the test). What must hold across replicas: a nonce
 * issued by one is accepted by another exactly once; a challenge answered at one replica is
 * validated and seen at the other; the per-account open-order limit counts orders made at both;
 * certbot and lego get certificates through the balancer, and both replicas served them.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { makeCsr } from '../helpers/flow.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { startNginxBalancer, type Nginx } from '../helpers/nginx.js';
import { verifyChain } from '../helpers/openssl.js';
import { startHttp01Responder, type Http01Responder } from '../helpers/http01-responder.js';
import { freePort } from '../helpers/ports.js';
import { createDatabase, dropDatabases, pgSkip } from '../helpers/postgres.js';
import { RawAcme, type Response } from '../helpers/raw-acme.js';
import { missingTools, runTool } from '../helpers/run.js';

const skip = pgSkip || missingTools('nginx', 'certbot', 'lego', 'openssl', 'curl', 'named');

describe('replicas on one PostgreSQL behind nginx', { timeout: 300_000, skip }, () => {
  let dir: string;
  let balancer: (Nginx & { certPem: string }) | undefined;
  const replicas: StartedAnvil[] = [];
  let base: string;
  let bundle: string;
  let httpPort: number;
  let ports: number[] = [];
  let rootPem: string;
  let bind: Bind | undefined;
  /** The test's own http-01 responder (certbot and lego bring their own later). */
  let responder: Http01Responder | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-replicas-'));
    const dataDir = path.join(dir, 'data');
    // One CA for all replicas, made before any starts.
    const init = await runTool(process.execPath, [ANVIL_BIN, 'ca', 'init', '--data-dir', dataDir]);
    assert.equal(init.code, 0, init.out);
    rootPem = path.join(dataDir, 'ca', 'root.pem');
    const url = await createDatabase();
    // Names under anvil.test resolve to 127.0.0.1 (certbot refuses IP addresses).
    bind = await startBind();
    httpPort = await freePort();
    ports = [await freePort(), await freePort()];
    const front = await freePort();
    base = `https://127.0.0.1:${front}`;
    for (const port of ports) {
      replicas.push(
        await startAnvil({
          dataDir,
          listen: { host: '127.0.0.1', port },
          tls: { enabled: false },
          baseUrl: base,
          storage: { type: 'postgres', url },
          acme: { maxPendingOrdersPerAccount: 4, authzReuseDays: 0 },
          validation: { resolvers: [bind.addr], httpPort, addressPolicy: { allowLoopback: true } },
        }),
      );
    }
    balancer = await startNginxBalancer(path.join(dir, 'nginx'), ports.map((p) => `127.0.0.1:${p}`), front);
    // Clients trust Anvil's root (for what it issues) and the balancer's own certificate.
    bundle = path.join(dir, 'trust.pem');
    await writeFile(bundle, `${await readFile(rootPem, 'utf8')}\n${balancer.certPem}`);
  });
  after(async () => {
    await responder?.close();
    await balancer?.stop();
    for (const r of replicas) await r.cleanup();
    await bind?.stop();
    await dropDatabases();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Replica i's own address: CA URLs all name the balancer (`base`); tests reach replicas directly. */
  const origin = (i: number) => `http://127.0.0.1:${ports[i]}`;

  async function nonceFrom(i: number): Promise<string> {
    const r = await fetch(`${origin(i)}/acme/new-nonce`, { method: 'HEAD' });
    return r.headers.get('replay-nonce')!;
  }
  /** A signed POST for `url` (a CA URL), sent to replica `i`, with a nonce from replica `from`. */
  async function post(acme: RawAcme, i: number, url: string, o: { payload?: unknown; useJwk?: boolean; nonce?: string; from?: number } = {}): Promise<Response> {
    const nonce = o.nonce ?? (await nonceFrom(o.from ?? i));
    const jws = await acme.jws(url, { nonce, ...(o.payload !== undefined ? { payload: o.payload } : {}), ...(o.useJwk ? { useJwk: true } : {}) });
    return acme.send(url.replace(base, origin(i)), JSON.stringify(jws));
  }
  async function account(): Promise<RawAcme> {
    const acme = new RawAcme(`${base}/directory`);
    acme.directory = (await (await fetch(`${origin(0)}/directory`)).json()) as Record<string, string>;
    const r = await post(acme, 0, acme.directory.newAccount!, { useJwk: true, payload: { termsOfServiceAgreed: true } });
    assert.equal(r.status, 201, r.text);
    acme.kid = r.headers.get('location');
    return acme;
  }

  test('set-up: the replicas answer on their own ports and through the balancer', async () => {
    for (let i = 0; i < replicas.length; i++) assert.equal((await fetch(`${origin(i)}/directory`)).status, 200);
    const d = await runTool('curl', ['-sf', '--cacert', bundle, `${base}/directory`]);
    assert.equal(d.code, 0, d.out);
    assert.equal(JSON.parse(d.stdout).newOrder, `${base}/acme/new-order`);
    responder = await startHttp01Responder(httpPort);
  });

  test('a nonce issued by one replica is accepted by the other exactly once', async () => {
    const acme = new RawAcme(`${base}/directory`);
    acme.directory = (await (await fetch(`${origin(0)}/directory`)).json()) as Record<string, string>;
    const nonce = await nonceFrom(0);
    const first = await post(acme, 1, acme.directory.newAccount!, { useJwk: true, payload: { termsOfServiceAgreed: true }, nonce });
    assert.equal(first.status, 201, first.text);
    for (const i of [0, 1]) {
      const again = await post(acme, i, acme.directory.newAccount!, { useJwk: true, payload: { termsOfServiceAgreed: true }, nonce });
      assert.equal(again.status, 400, again.text);
      assert.equal(again.body.type, 'urn:ietf:params:acme:error:badNonce');
    }
  });

  test('a challenge answered at one replica is validated, and the order finalized, across both', async () => {
    const acme = await account();
    const o = await post(acme, 0, acme.directory.newOrder!, { payload: { identifiers: [{ type: 'ip', value: '127.0.0.1' }] } });
    assert.equal(o.status, 201, o.text);
    const orderUrl = o.headers.get('location')!;
    const authz = await post(acme, 1, o.body.authorizations[0]);
    const ch = (authz.body.challenges as Array<{ type: string; url: string; token: string }>).find((c) => c.type === 'http-01')!;
    responder!.set(ch.token, `${ch.token}.${acme.thumbprint()}`);
    assert.equal((await post(acme, 1, ch.url, { payload: {} })).status, 200);
    let status = '';
    for (let k = 0; k < 100 && status !== 'valid'; k++) {
      status = (await post(acme, k % 2, o.body.authorizations[0])).body.status;
      if (status === 'invalid') assert.fail('validation failed');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 'valid');
    const csr = await makeCsr(['127.0.0.1']);
    const f = await post(acme, 0, o.body.finalize, { payload: { csr: csr.der.toString('base64url') } });
    assert.equal(f.status, 200, f.text);
    let order = f.body;
    for (let k = 0; k < 100 && order.status !== 'valid'; k++) order = (await post(acme, k % 2, orderUrl)).body;
    const cert = await post(acme, 1, order.certificate);
    assert.equal(cert.status, 200);
    assert.equal(new X509Certificate(cert.text.split(/(?<=-----END CERTIFICATE-----)/)[0]!).subjectAltName, 'IP Address:127.0.0.1');
  });

  test('the open-order limit counts the orders made at both replicas', async () => {
    const acme = await account();
    for (let k = 0; k < 4; k++) {
      const r = await post(acme, k % 2, acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: `limit${k}.anvil.test` }] } });
      assert.equal(r.status, 201, r.text);
    }
    for (const i of [0, 1]) {
      const r = await post(acme, i, acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'one-too-many.anvil.test' }] } });
      assert.equal(r.status, 429, r.text);
      assert.equal(r.body.type, 'urn:ietf:params:acme:error:rateLimited');
      assert.ok(r.headers.get('retry-after'));
    }
  });

  test('certbot and lego get certificates through the balancer, served by both replicas', async () => {
    await responder!.close();
    responder = undefined;
    const before = replicas.map((r) => (r.stderr().match(/new-order/g) ?? []).length);
    const cb = path.join(dir, 'certbot');
    const c = await runTool(
      'certbot',
      ['certonly', '--standalone', '--http-01-port', String(httpPort), '--http-01-address', '127.0.0.1', '-d', 'replica-certbot.anvil.test', '--agree-tos', '-m', 'ops@anvil.test',
        '--config-dir', `${cb}/config`, '--work-dir', `${cb}/work`, '--logs-dir', `${cb}/logs`, '--non-interactive', '--server', `${base}/directory`],
      { REQUESTS_CA_BUNDLE: bundle },
    );
    assert.equal(c.code, 0, c.out);
    const certbotChain = await readFile(`${cb}/config/live/replica-certbot.anvil.test/fullchain.pem`, 'utf8');
    assert.deepEqual(await verifyChain(certbotChain, rootPem), ['DNS:replica-certbot.anvil.test']);
    const lg = path.join(dir, 'lego');
    for (let k = 0; k < 2; k++) {
      const l = await runTool(
        'lego',
        ['--server', `${base}/directory`, '--accept-tos', '--email', 'ops@anvil.test', '--path', lg, '--domains', 'replica-lego.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, k === 0 ? 'run' : 'renew', ...(k === 0 ? [] : ['--days', '3650', '--no-random-sleep'])],
        { LEGO_CA_CERTIFICATES: bundle },
      );
      assert.equal(l.code, 0, l.out);
    }
    const legoChain = await readFile(path.join(lg, 'certificates', 'replica-lego.anvil.test.crt'), 'utf8');
    assert.deepEqual(await verifyChain(legoChain, rootPem), ['DNS:replica-lego.anvil.test']);
    const after = replicas.map((r) => (r.stderr().match(/new-order/g) ?? []).length);
    assert.ok(after.every((n, i) => n > before[i]!), `both replicas took new orders: ${before} -> ${after}`);
  });
});
