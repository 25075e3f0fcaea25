/**
 * SECURITY.md, "The client (C)": one test (or group) per row that other test files do not already
 * prove. A small node:http fake ACME server stands in for a CA that misbehaves in ways anvil server
 * never would (foreign origins, bad tokens, odd certificates, statuses going backwards).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import type { DnsProvider, TxtRecord } from '../dns/provider.js';
import * as x509 from '../lib/x509.js';
import type { Identifier } from '../protocol/types.js';
import { AcmeApi } from './api.js';
import { AcmeClientError, AcmeProblemError } from './errors.js';
import { obtainCertificate } from './flows/issue.js';
import { issueToLineage } from './flows/lineage.js';
import { AcmeHttp } from './http.js';
import { accountSigner, createCsr, generateAccountKey, generateCertKey, privateKeyPem, spkiOf } from './keys.js';
import { Dns01Solver } from './solvers/dns01.js';
import { WebrootHttp01 } from './solvers/http01.js';
import type { ChallengeInput, Solver } from './solvers/types.js';
import { LineageStore, type LineageConfig } from './store.js';

const isCode = (code: string, re?: RegExp) => (e: unknown) => e instanceof AcmeClientError && e.code === code && (!re || re.test(e.message));
const noSleep = async (): Promise<void> => undefined;

// ---------------------------------------------------------------------------------------------
// Certificates for the fake CA

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

interface FakeCa {
  keys: webcrypto.CryptoKeyPair;
  cert: x509.X509Certificate;
}

async function makeCa(name = 'CN=Fake Root'): Promise<FakeCa> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    signingAlgorithm: EC,
    keys,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  return { keys, cert };
}

async function makeLeaf(ca: FakeCa, spki: Buffer, names: Identifier[]): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: '0a1b2c3d4e5f',
    subject: 'CN=leaf',
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 7 * 86_400_000),
    signingAlgorithm: EC,
    publicKey: spki,
    signingKey: ca.keys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: n.type === 'ip' ? ('ip' as const) : ('dns' as const), value: n.value })))],
  });
}

function csrSpki(der: Buffer): Buffer {
  return Buffer.from(new x509.Pkcs10CertificateRequest(der).publicKey.rawData);
}

// ---------------------------------------------------------------------------------------------
// A fake ACME server

interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** JSON body. */
  body?: unknown;
  /** Raw body (PEM), sent as application/pem-certificate-chain. */
  text?: string;
}
type Handler = (payload: Record<string, unknown> | null) => Reply | Promise<Reply>;

const problem = (status: number, type: string, detail = type, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'content-type': 'application/problem+json', ...headers },
  body: { type: `urn:ietf:params:acme:error:${type}`, detail },
});

class FakeAcme {
  readonly server: http.Server;
  base = '';
  /** Every request, as "METHOD /path". */
  readonly log: string[] = [];
  readonly handlers = new Map<string, Handler>();
  directory: Record<string, string> = {};
  #n = 0;

  constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void this.#answer(req, Buffer.concat(chunks).toString('utf8')).then(
          (r) => {
            const headers: Record<string, string> = { 'replay-nonce': `nonce-${++this.#n}`, ...(r.headers ?? {}) };
            if (r.text !== undefined) res.writeHead(r.status ?? 200, { 'content-type': 'application/pem-certificate-chain', ...headers }).end(r.text);
            else if (r.body !== undefined) res.writeHead(r.status ?? 200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(r.body));
            else res.writeHead(r.status ?? 200, headers).end();
          },
          (e: Error) => res.writeHead(500).end(e.message),
        );
      });
    });
  }

  async #answer(req: http.IncomingMessage, raw: string): Promise<Reply> {
    const p = (req.url ?? '/').split('?')[0]!;
    this.log.push(`${req.method} ${p}`);
    if (p === '/dir') return { body: this.directory };
    if (p === '/nonce') return {};
    if (req.method !== 'POST') return { status: 405 };
    let payload: Record<string, unknown> | null = null;
    const jws = JSON.parse(raw) as { payload: string };
    if (jws.payload) payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const h = this.handlers.get(p);
    return h ? h(payload) : problem(404, 'malformed', `no ${p}`);
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.directory = { newNonce: this.url('/nonce'), newAccount: this.url('/acct'), newOrder: this.url('/new-order'), revokeCert: this.url('/revoke'), keyChange: this.url('/key-change') };
    return this;
  }

  url(p: string): string {
    return `${this.base}${p}`;
  }

  posts(p: string): number {
    return this.log.filter((l) => l === `POST ${p}`).length;
  }

  reset(): void {
    this.log.length = 0;
    this.handlers.clear();
    this.directory = { newNonce: this.url('/nonce'), newAccount: this.url('/acct'), newOrder: this.url('/new-order'), revokeCert: this.url('/revoke'), keyChange: this.url('/key-change') };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

interface FlowState {
  authz: 'pending' | 'valid' | 'invalid';
  order: 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
  csr?: Buffer;
  challenges: Array<Record<string, unknown>>;
}

/**
 * A well-behaved RFC 8555 flow for one identifier: order -> authz/1 -> chall/1 -> finalize/1 ->
 * cert/1. `chain` makes the PEM for the CSR; tests override single handlers to misbehave.
 */
function standardFlow(f: FakeAcme, identifier: Identifier, chain: (csrDer: Buffer) => Promise<string>, token = 'T'.repeat(43)): FlowState {
  const st: FlowState = {
    authz: 'pending',
    order: 'pending',
    challenges: [{ type: 'http-01', url: f.url('/chall/1'), status: 'pending', token }, { type: 'dns-01', url: f.url('/chall/2'), status: 'pending', token }],
  };
  const order = () => ({
    status: st.order,
    identifiers: [identifier],
    authorizations: [f.url('/authz/1')],
    finalize: f.url('/finalize/1'),
    ...(st.order === 'valid' ? { certificate: f.url('/cert/1') } : {}),
  });
  f.handlers.set('/acct', () => ({ status: 201, headers: { location: f.url('/acct/1') }, body: { status: 'valid' } }));
  f.handlers.set('/new-order', () => ({ status: 201, headers: { location: f.url('/order/1') }, body: order() }));
  f.handlers.set('/authz/1', () => ({ body: { status: st.authz, identifier, challenges: st.challenges } }));
  const respond = () => {
    st.authz = 'valid';
    st.order = 'ready';
    return { body: { ...st.challenges[0], status: 'processing' } };
  };
  f.handlers.set('/chall/1', respond);
  f.handlers.set('/chall/2', respond);
  f.handlers.set('/order/1', () => ({ body: order() }));
  f.handlers.set('/finalize/1', (p) => {
    st.csr = Buffer.from(String(p?.csr), 'base64url');
    st.order = 'valid';
    return { body: order() };
  });
  f.handlers.set('/cert/1', async () => ({ text: await chain(st.csr!) }));
  return st;
}

/** A solver that records what it is asked and answers nothing. */
function recordingSolver(type: 'http-01' | 'dns-01' | 'tls-alpn-01' = 'http-01'): Solver & { calls: string[] } {
  const calls: string[] = [];
  return {
    type,
    calls,
    async present(ch: ChallengeInput) {
      calls.push(`present ${ch.type} ${ch.token}`);
    },
    async cleanup(ch: ChallengeInput) {
      calls.push(`cleanup ${ch.type} ${ch.token}`);
    },
  };
}

class RecordingProvider implements DnsProvider {
  readonly name = 'recording';
  readonly calls: string[] = [];
  async createTxtRecord(r: TxtRecord): Promise<void> {
    this.calls.push(`create ${r.fqdn} ${r.value}`);
  }
  async deleteTxtRecord(r: TxtRecord): Promise<void> {
    this.calls.push(`delete ${r.fqdn} ${r.value}`);
  }
}

// ---------------------------------------------------------------------------------------------

const NAME: Identifier = { type: 'dns', value: 'www.example.test' };

describe('SECURITY.md client rows, against a fake ACME server', () => {
  let fake: FakeAcme;
  let other: FakeAcme;
  let ca: FakeCa;
  let root: string;
  let http: AcmeHttp;
  let api: AcmeApi;

  before(async () => {
    fake = await new FakeAcme().start();
    // Another origin (another port of the same host): it must never hear from the client.
    other = await new FakeAcme().start();
    ca = await makeCa();
    root = await mkdtemp(path.join(os.tmpdir(), 'anvil-client-security-'));
  });
  after(async () => {
    await fake.stop();
    await other.stop();
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    fake.reset();
    other.reset();
    http = new AcmeHttp(fake.url('/dir'), { allowInsecure: true, sleep: noSleep, maxRetryWaitMs: 1500 });
    api = new AcmeApi(http, accountSigner(await generateAccountKey('ES256')), noSleep);
    api.useAccount(fake.url('/acct/1'));
  });
  afterEach(async () => {
    await http.close();
    assert.deepEqual(other.log, [], 'nothing was sent to the other origin');
  });

  const goodChain = async (csr: Buffer): Promise<string> => `${(await makeLeaf(ca, csrSpki(csr), [NAME])).toString('pem')}\n${ca.cert.toString('pem')}\n`;

  async function csrFor(ids: Identifier[]) {
    const key = await generateCertKey('ecdsa-p256');
    return { der: await createCsr(key, ids), spki: spkiOf(key) };
  }

  // --- challenge tokens --------------------------------------------------------------------

  describe('challenge token that is not base64url, shorter than 22 characters, or contains `/`, `..`, `%`: refused before any file or DNS record is written', () => {
    const BAD_TOKENS = [
      'short-token-21-chars-', // 21 characters
      '../../../../../../etc/cron.d/evil',
      'aaaaaaaaaaaa/bbbbbbbbbbbbbbbbb',
      'aaaaaaaaaaaa..bbbbbbbbbbbbbbbbb',
      'aaaaaaaaaaaa%2e%2e%2fbbbbbbbbbbbbb',
      'aaaaaaaaaaaa%bbbbbbbbbbbbbbbbbbbbb',
      'aaaaaaaaaaaa+bbbbbbbbbbbbbbbbb/=', // base64, not base64url
      'aaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbb',
      'aaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbb',
      'aaaaaaaaaaaa\\bbbbbbbbbbbbbbbbbbbbb',
      '',
    ];

    test('WebrootHttp01 through obtainCertificate: no file under the webroot, the CA is never told to validate', async () => {
      for (const token of BAD_TOKENS) {
        fake.reset();
        standardFlow(fake, NAME, goodChain, token);
        const docroot = await mkdtemp(path.join(root, 'www-'));
        const csr = await csrFor([NAME]);
        await assert.rejects(
          obtainCertificate(api, { identifiers: [NAME], solvers: [new WebrootHttp01(docroot)], csrDer: csr.der, keySpki: csr.spki }),
          isCode('BAD_RESPONSE', /unsafe challenge token/),
          JSON.stringify(token),
        );
        assert.deepEqual(await readdir(docroot), [], `nothing written for ${JSON.stringify(token)}`);
        assert.equal(fake.posts('/chall/1'), 0);
        await rm(docroot, { recursive: true, force: true });
      }
    });

    test('WebrootHttp01 called directly (defence in depth): no file anywhere under or beside the webroot', async () => {
      const base = await mkdtemp(path.join(root, 'direct-'));
      const docroot = path.join(base, 'www');
      for (const token of BAD_TOKENS) {
        const w = new WebrootHttp01(docroot);
        await assert.rejects(w.present({ identifier: NAME, wildcard: false, type: 'http-01', token, keyAuthorization: `${token}.x` }), isCode('BAD_RESPONSE'), JSON.stringify(token));
      }
      assert.deepEqual(await readdir(base), [], 'not even the webroot was created');
    });

    test('Dns01Solver through obtainCertificate and directly: the DNS provider is never called', async () => {
      const provider = new RecordingProvider();
      for (const token of BAD_TOKENS) {
        fake.reset();
        standardFlow(fake, NAME, goodChain, token);
        const solver = new Dns01Solver(provider, { resolvers: ['127.0.0.1:9'], skipPropagationCheck: true, followCname: false, authoritative: { 'example.test': ['127.0.0.1:9'] } });
        const csr = await csrFor([NAME]);
        await assert.rejects(
          obtainCertificate(api, { identifiers: [NAME], solvers: [solver], csrDer: csr.der, keySpki: csr.spki }),
          isCode('BAD_RESPONSE', /unsafe challenge token/),
          JSON.stringify(token),
        );
        await assert.rejects(solver.present({ identifier: NAME, wildcard: false, type: 'dns-01', token, keyAuthorization: `${token}.x` }), isCode('BAD_RESPONSE'), JSON.stringify(token));
        assert.equal(fake.posts('/chall/2'), 0);
      }
      assert.deepEqual(provider.calls, []);
    });
  });

  // --- strings from the server and shells --------------------------------------------------

  test('any string from the server never reaches a shell, eval or a template: the client code has no way to run one', async () => {
    // Programs are started in exactly one client module, hooks.ts (hooks and the nginx installer's
    // commands, argument vectors from the user's own config), with spawn and shell: false; its
    // tests prove metacharacters pass verbatim. The exec DNS provider is proven in
    // test/contract/dns-providers.test.ts ("passes shell metacharacters verbatim: no shell anywhere").
    const RUNNER = 'hooks.ts';
    const srcRoot = path.dirname(fileURLToPath(import.meta.url));
    const files: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) files.push(p);
      }
    };
    await walk(srcRoot);
    files.push(path.join(srcRoot, '..', 'cli', 'client-commands.ts'));
    assert.ok(files.length > 10);
    for (const f of files) {
      const text = await readFile(f, 'utf8');
      const rel = path.relative(srcRoot, f);
      if (rel === RUNNER) {
        // Only spawn, never exec/execSync (a shell string) nor shell: true.
        assert.match(text, /import \{ spawn \} from 'node:child_process'/);
        assert.doesNotMatch(text, /\bexec(Sync)?\s*\(|spawnSync|shell\s*:\s*true|node:vm|\beval\s*\(|new Function\s*\(/, rel);
        assert.match(text, /shell: false/, rel);
        continue;
      }
      assert.doesNotMatch(text, /child_process|node:vm|\beval\s*\(|new Function\s*\(|shell\s*:\s*true/, rel);
    }
  });

  // --- certificate responses ---------------------------------------------------------------

  describe('certificate response containing anything but CERTIFICATE blocks; leaf whose key or names differ from the CSR; chain that does not verify: not installed, an error that says why', () => {
    let store: LineageStore;
    let n = 0;
    const PLACEHOLDER = `-----BEGIN CERTIFICATE-----\n${Buffer.from('previous version').toString('base64')}\n-----END CERTIFICATE-----\n`;

    async function attempt(chain: (csr: Buffer) => Promise<string>, re: RegExp): Promise<void> {
      const name = `bad-cert-${++n}`;
      store = new LineageStore(path.join(root, `store-${name}`));
      await store.save(name, PLACEHOLDER, '-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n');
      fake.reset();
      standardFlow(fake, NAME, chain);
      await assert.rejects(issueToLineage({ api, store, config: lineageConfig(name), solvers: [recordingSolver()] }), isCode('BAD_RESPONSE', re));
      assert.equal(fake.posts('/cert/1'), 1, 'the certificate was downloaded');
      const cur = await store.current(name);
      assert.equal(cur!.version, 1, 'the previous version stays live');
      assert.equal(await readFile(cur!.cert, 'utf8'), PLACEHOLDER);
      assert.deepEqual(await store.versions(name), [1], 'nothing of the refused certificate was archived');
      assert.equal(await store.readConfig(name), null, 'no renewal config was written');
    }

    test('a PRIVATE KEY block after the certificates', async () => {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      await attempt(async (csr) => `${await goodChain(csr)}${key}`, /something other than CERTIFICATE blocks/);
    });

    test('a PRIVATE KEY block first', async () => {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      await attempt(async (csr) => `${key}${await goodChain(csr)}`, /something other than CERTIFICATE blocks/);
    });

    test('a PRIVATE KEY block nested inside a CERTIFICATE block', async () => {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      await attempt(async (csr) => {
        const [leaf, rest] = (await goodChain(csr)).split(/(?<=-----END CERTIFICATE-----\n)/);
        return `${leaf!.replace('-----END CERTIFICATE-----', `${key}-----END CERTIFICATE-----`)}${rest ?? ''}`;
      }, /something other than CERTIFICATE blocks/);
    });

    test('a PRIVATE KEY block that never ends', async () => {
      await attempt(async (csr) => `${await goodChain(csr)}-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n`, /something other than CERTIFICATE blocks/);
    });

    for (const label of ['TRUSTED CERTIFICATE', 'X509 CRL', 'EC PARAMETERS', 'CERTIFICATE REQUEST', 'RSA PRIVATE KEY']) {
      test(`a ${label} block`, async () => {
        const block = `-----BEGIN ${label}-----\n${Buffer.from('x'.repeat(48)).toString('base64')}\n-----END ${label}-----\n`;
        await attempt(async (csr) => `${await goodChain(csr)}${block}`, /something other than CERTIFICATE blocks/);
      });
    }

    test('no certificate at all', async () => {
      await attempt(async () => 'hello\n', /sent no certificate/);
    });

    test('a leaf with other names than the CSR', async () => {
      await attempt(async (csr) => `${(await makeLeaf(ca, csrSpki(csr), [NAME, { type: 'dns', value: 'evil.example.test' }])).toString('pem')}\n${ca.cert.toString('pem')}\n`, /names .*evil\.example\.test.* instead of/);
    });

    test('a leaf with fewer names than the CSR', async () => {
      await attempt(async (csr) => `${(await makeLeaf(ca, csrSpki(csr), [{ type: 'dns', value: 'example.test' }])).toString('pem')}\n${ca.cert.toString('pem')}\n`, /instead of/);
    });

    test('a leaf with another key than the CSR', async () => {
      const otherKey = spkiOf(await generateCertKey('ecdsa-p256'));
      await attempt(async () => `${(await makeLeaf(ca, otherKey, [NAME])).toString('pem')}\n${ca.cert.toString('pem')}\n`, /does not carry the key of the CSR/);
    });

    test('a chain whose signature does not verify (issuer of the same name, another key)', async () => {
      const impostor = await makeCa('CN=Fake Root');
      await attempt(async (csr) => `${(await makeLeaf(ca, csrSpki(csr), [NAME])).toString('pem')}\n${impostor.cert.toString('pem')}\n`, /not signed by/);
    });

    test('control: the same flow with a good chain is installed as version 2', async () => {
      const name = 'good-cert';
      store = new LineageStore(path.join(root, `store-${name}`));
      await store.save(name, PLACEHOLDER, null);
      standardFlow(fake, NAME, goodChain);
      const r = await issueToLineage({ api, store, config: lineageConfig(name), solvers: [recordingSolver()] });
      assert.equal(r.files.version, 2);
      assert.equal((await store.current(name))!.version, 2);
    });
  });

  // --- retries -----------------------------------------------------------------------------

  describe('badNonce loops, 429, 5xx, absurd Retry-After: bounded retries with capped backoff, a clear message', () => {
    test('a 5xx that never ends: the default 5 attempts, backoff doubling but capped, then a message naming the attempts and the last problem', async () => {
      const waits: number[] = [];
      const h = new AcmeHttp(fake.url('/dir'), { allowInsecure: true, sleep: async (ms) => void waits.push(ms), maxRetryWaitMs: 3000 });
      fake.handlers.set('/acct', () => problem(503, 'serverInternal', 'database on fire'));
      try {
        await assert.rejects(
          h.post(fake.url('/acct'), {}, api.signer, null),
          isCode('RETRIES_EXHAUSTED', /gave up after 5 attempts.*serverInternal: database on fire/),
        );
      } finally {
        await h.close();
      }
      assert.equal(fake.posts('/acct'), 5);
      assert.deepEqual(waits, [1000, 2000, 3000, 3000]);
    });

    test('429 with an absurd Retry-After (an HTTP-date a year away) is not waited out: the caller hears of it at once', async () => {
      const waits: number[] = [];
      const h = new AcmeHttp(fake.url('/dir'), { allowInsecure: true, sleep: async (ms) => void waits.push(ms), maxRetryWaitMs: 5000, maxAttempts: 3 });
      // An HTTP-date a year away is as absurd as a big number.
      fake.handlers.set('/acct', () => problem(429, 'rateLimited', 'slow down', { 'retry-after': new Date(Date.now() + 365 * 86_400_000).toUTCString() }));
      try {
        await assert.rejects(h.post(fake.url('/acct'), {}, api.signer, null), (e: unknown) => e instanceof AcmeProblemError && e.type === 'rateLimited' && e.retryAfter! > 86_400);
      } finally {
        await h.close();
      }
      assert.deepEqual(waits, [], 'never waited');
      assert.equal(fake.posts('/acct'), 1);
    });

    test('an endless badNonce loop on the default settings stops after 5 attempts with a clear message', async () => {
      const h = new AcmeHttp(fake.url('/dir'), { allowInsecure: true, sleep: async () => assert.fail('badNonce is retried at once') });
      fake.handlers.set('/acct', () => problem(400, 'badNonce', 'stale nonce'));
      try {
        await assert.rejects(h.post(fake.url('/acct'), {}, api.signer, null), isCode('RETRIES_EXHAUSTED', /gave up after 5 attempts.*badNonce/));
      } finally {
        await h.close();
      }
      assert.equal(fake.posts('/acct'), 5);
    });

    test('an absurd Retry-After while polling an authorization or an order is capped (10 s)', async () => {
      const waits: number[] = [];
      const a = new AcmeApi(http, api.signer, async (ms) => void waits.push(ms));
      a.useAccount(fake.url('/acct/1'));
      let polls = 0;
      fake.handlers.set('/authz/1', () => ({ headers: { 'retry-after': '999999999' }, body: { status: ++polls < 3 ? 'pending' : 'valid', identifier: NAME, challenges: [] } }));
      assert.equal((await a.waitAuthorization(fake.url('/authz/1'), 600_000)).status, 'valid');
      assert.deepEqual(waits, [10_000, 10_000]);
    });
  });

  // --- origins -----------------------------------------------------------------------------

  describe('resource URLs on another origin than the directory\'s: refused', () => {
    for (const k of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange']) {
      test(`a directory whose ${k} points at another origin`, async () => {
        fake.directory[k] = other.url(`/${k}`);
        await assert.rejects(http.directory(), isCode('CROSS_ORIGIN', /another origin/));
      });
    }

    test('a directory whose newNonce has the same host and port but another scheme', async () => {
      fake.directory.newNonce = fake.url('/nonce').replace('http:', 'https:');
      await assert.rejects(http.directory(), isCode('CROSS_ORIGIN'));
    });

    for (const field of ['authorizations', 'finalize', 'certificate'] as const) {
      test(`an order whose ${field} URL is on another origin`, async () => {
        const st = standardFlow(fake, NAME, goodChain);
        st.order = 'valid';
        const order = {
          status: 'valid',
          identifiers: [NAME],
          authorizations: [field === 'authorizations' ? other.url('/authz/1') : fake.url('/authz/1')],
          finalize: field === 'finalize' ? other.url('/finalize/1') : fake.url('/finalize/1'),
          certificate: field === 'certificate' ? other.url('/cert/1') : fake.url('/cert/1'),
        };
        fake.handlers.set('/new-order', () => ({ status: 201, headers: { location: fake.url('/order/1') }, body: order }));
        await assert.rejects(api.newOrder([NAME]), isCode('CROSS_ORIGIN'));
      });
    }

    test('an order Location on another origin', async () => {
      standardFlow(fake, NAME, goodChain);
      fake.handlers.set('/new-order', () => ({ status: 201, headers: { location: other.url('/order/1') }, body: { status: 'pending', identifiers: [NAME], authorizations: [], finalize: fake.url('/f') } }));
      await assert.rejects(api.newOrder([NAME]), isCode('CROSS_ORIGIN'));
    });

    test('a challenge URL on another origin: the CA is not told, the other origin never hears of it, and clean-up runs', async () => {
      const st = standardFlow(fake, NAME, goodChain);
      st.challenges = [{ type: 'http-01', url: other.url('/chall/1'), status: 'pending', token: 'T'.repeat(43) }];
      const solver = recordingSolver();
      const csr = await csrFor([NAME]);
      await assert.rejects(obtainCertificate(api, { identifiers: [NAME], solvers: [solver], csrDer: csr.der, keySpki: csr.spki }), isCode('CROSS_ORIGIN'));
      assert.deepEqual(solver.calls, [`present http-01 ${'T'.repeat(43)}`, `cleanup http-01 ${'T'.repeat(43)}`]);
    });
  });

  // --- order and challenge oddities ----------------------------------------------------------

  describe('order `valid` without a certificate URL; status going backwards; unknown challenge types: error / ignored', () => {
    test('an order that goes valid without a certificate URL is an error, and nothing is downloaded', async () => {
      const st = standardFlow(fake, NAME, goodChain);
      fake.handlers.set('/finalize/1', () => {
        st.order = 'valid';
        return { body: { status: 'valid', identifiers: [NAME], authorizations: [fake.url('/authz/1')], finalize: fake.url('/finalize/1') } };
      });
      fake.handlers.set('/order/1', () => ({ body: { status: st.order, identifiers: [NAME], authorizations: [fake.url('/authz/1')], finalize: fake.url('/finalize/1') } }));
      const csr = await csrFor([NAME]);
      await assert.rejects(obtainCertificate(api, { identifiers: [NAME], solvers: [recordingSolver()], csrDer: csr.der, keySpki: csr.spki }), isCode('BAD_RESPONSE', /valid but names no certificate URL/));
      assert.equal(fake.posts('/cert/1'), 0);
    });

    for (const [from, to] of [
      ['ready', 'pending'],
      ['processing', 'ready'],
      ['processing', 'pending'],
      ['valid', 'processing'],
    ] as const) {
      test(`an order whose status goes backwards (${from} -> ${to}) is an error`, async () => {
        let polls = 0;
        fake.handlers.set('/order/1', () => ({
          body: { status: polls++ === 0 ? from : to, identifiers: [NAME], authorizations: [fake.url('/authz/1')], finalize: fake.url('/finalize/1'), certificate: fake.url('/cert/1') },
        }));
        const start = { url: fake.url('/order/1'), body: { status: 'pending', identifiers: [NAME], authorizations: [], finalize: fake.url('/finalize/1') } } as unknown as Parameters<AcmeApi['waitOrder']>[0];
        if (from === 'processing') {
          // One wait sees both statuses.
          await assert.rejects(api.waitOrder(start), isCode('BAD_RESPONSE', new RegExp(`went backwards to ${to}`)));
        } else {
          // A settled status ends the first wait; the flow's next wait (after finalize) sees the step back.
          const first = await api.waitOrder(start);
          assert.equal(first.body.status, from);
          await assert.rejects(api.waitOrder(first), isCode('BAD_RESPONSE', new RegExp(`went backwards to ${to}`)));
        }
        assert.equal(polls, 2);
      });
    }

    test('an order status that is not an RFC 8555 status is an error', async () => {
      fake.handlers.set('/order/1', () => ({ body: { status: 'issued', identifiers: [NAME], authorizations: [], finalize: fake.url('/finalize/1') } }));
      await assert.rejects(api.getOrder(fake.url('/order/1')), isCode('BAD_RESPONSE', /not an RFC 8555 order/));
    });

    test('in the whole flow, an order that goes back from valid to pending after finalize stops the issuance before any download', async () => {
      standardFlow(fake, NAME, goodChain);
      let polls = 0;
      fake.handlers.set('/order/1', () => ({ body: { status: polls++ === 0 ? 'ready' : 'pending', identifiers: [NAME], authorizations: [fake.url('/authz/1')], finalize: fake.url('/finalize/1') } }));
      fake.handlers.set('/new-order', () => ({ status: 201, headers: { location: fake.url('/order/1') }, body: { status: 'pending', identifiers: [NAME], authorizations: [fake.url('/authz/1')], finalize: fake.url('/finalize/1') } }));
      const csr = await csrFor([NAME]);
      await assert.rejects(obtainCertificate(api, { identifiers: [NAME], solvers: [recordingSolver()], csrDer: csr.der, keySpki: csr.spki }), isCode('BAD_RESPONSE', /went backwards/));
      assert.equal(fake.posts('/cert/1'), 0);
    });

    test('unknown challenge types are ignored: never presented, never answered, their tokens never checked or used', async () => {
      const st = standardFlow(fake, NAME, goodChain);
      const good = 'G'.repeat(43);
      st.challenges = [
        { type: 'evil-01', url: fake.url('/chall/evil'), status: 'pending', token: '../../../etc/passwd' },
        { type: 'HTTP-01', url: fake.url('/chall/evil'), status: 'pending', token: '%2e%2e' },
        { type: 'http-01 ', url: fake.url('/chall/evil'), status: 'pending', token: '' },
        { type: 'onion-csr-01', url: other.url('/chall/x'), status: 'pending', nonce: 'x' },
        { type: 'http-01', url: fake.url('/chall/1'), status: 'pending', token: good },
      ];
      fake.handlers.set('/chall/evil', () => assert.fail('an unknown challenge was answered'));
      const solver = recordingSolver();
      const csr = await csrFor([NAME]);
      const r = await obtainCertificate(api, { identifiers: [NAME], solvers: [solver], csrDer: csr.der, keySpki: csr.spki });
      assert.equal(r.order.body.status, 'valid');
      assert.deepEqual(solver.calls, [`present http-01 ${good}`, `cleanup http-01 ${good}`]);
      assert.equal(fake.posts('/chall/evil'), 0);
      assert.equal(fake.posts('/chall/1'), 1);
    });

    test('only unknown challenge types: a clear error, nothing presented', async () => {
      const st = standardFlow(fake, NAME, goodChain);
      st.challenges = [{ type: 'evil-01', url: fake.url('/chall/1'), status: 'pending', token: 'T'.repeat(43) }];
      const solver = recordingSolver();
      const csr = await csrFor([NAME]);
      await assert.rejects(obtainCertificate(api, { identifiers: [NAME], solvers: [solver], csrDer: csr.der, keySpki: csr.spki }), /no configured solver fits .*evil-01/);
      assert.deepEqual(solver.calls, []);
      assert.equal(fake.posts('/chall/1'), 0);
    });
  });

  // --- account key as certificate key --------------------------------------------------------

  describe('account key reused as certificate key: refused', () => {
    test('a CSR made from the account key (the `csr` option): refused before any request to the CA, lock released', async () => {
      const accountKey = await generateAccountKey('ES256');
      const a = new AcmeApi(http, accountSigner(accountKey), noSleep);
      a.useAccount(fake.url('/acct/1'));
      standardFlow(fake, NAME, goodChain);
      const store = new LineageStore(path.join(root, 'store-acct-csr'));
      const csr = { der: await createCsr(accountKey, [NAME]), identifiers: [NAME], spki: spkiOf(accountKey) };
      await assert.rejects(
        issueToLineage({ api: a, store, config: { ...lineageConfig('acct-csr'), keyType: null }, solvers: [recordingSolver()], csr }),
        isCode('BAD_INPUT', /certificate key is the account key/),
      );
      assert.deepEqual(fake.log, [], 'the CA heard nothing');
      assert.equal(await store.current('acct-csr'), null);
      await (await store.lock('acct-csr'))();
    });

    test('reuseKey with the account key as the live key: refused before any request to the CA, the live version untouched', async () => {
      const accountKey = await generateAccountKey('ES256');
      const a = new AcmeApi(http, accountSigner(accountKey), noSleep);
      a.useAccount(fake.url('/acct/1'));
      standardFlow(fake, NAME, goodChain);
      const store = new LineageStore(path.join(root, 'store-acct-reuse'));
      // A live version whose key is (somehow) the account key, e.g. a user copied key.pem over privkey.pem.
      const prevCsr = await createCsr(accountKey, [NAME]);
      await store.save('acct-reuse', await goodChain(prevCsr), privateKeyPem(accountKey));
      await assert.rejects(
        issueToLineage({ api: a, store, config: { ...lineageConfig('acct-reuse'), reuseKey: true }, solvers: [recordingSolver()] }),
        isCode('BAD_INPUT', /certificate key is the account key/),
      );
      assert.deepEqual(fake.log, [], 'the CA heard nothing');
      assert.equal((await store.current('acct-reuse'))!.version, 1);
      await assert.rejects(stat(path.join(store.root, 'locks', 'acct-reuse.lock')), 'the lock was released');
    });

    test('the same key in another encoding (SEC1 instead of PKCS#8) is still the account key', async () => {
      const accountKey = await generateAccountKey('ES384');
      const a = new AcmeApi(http, accountSigner(accountKey), noSleep);
      a.useAccount(fake.url('/acct/1'));
      const store = new LineageStore(path.join(root, 'store-acct-sec1'));
      const prevCsr = await createCsr(accountKey, [NAME]);
      await store.save('acct-sec1', await goodChain(prevCsr), accountKey.export({ type: 'sec1', format: 'pem' }).toString());
      await assert.rejects(
        issueToLineage({ api: a, store, config: { ...lineageConfig('acct-sec1'), reuseKey: true }, solvers: [recordingSolver()] }),
        isCode('BAD_INPUT', /certificate key is the account key/),
      );
      assert.deepEqual(fake.log, []);
    });
  });

  function lineageConfig(name: string): Omit<LineageConfig, 'version' | 'createdAt' | 'updatedAt'> {
    return { name, server: fake.url('/dir'), account: 'default', identifiers: [NAME], keyType: 'ecdsa-p256', reuseKey: false, solver: { type: 'http' } };
  }
});
