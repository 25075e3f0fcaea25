/**
 * `anvil issue`, `anvil account`, `anvil certs` and `anvil revoke` as a user runs them, against a
 * running `anvil server` with a real BIND 9 for names: every http-01/tls-alpn-01 solver, every key
 * type, a CSR the user brings, EAB, key rollover, revocation, and the errors a user meets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { missingTools, runTool, type RunResult } from '../helpers/run.js';

const run = promisify(execFile);

describe('anvil client CLI', { timeout: 300_000, skip: missingTools('named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let dir: string;
  let store: string;
  let httpPort: number;
  let tlsPort: number;

  before(async () => {
    bind = await startBind();
    httpPort = await freePort();
    tlsPort = await freePort();
    anvil = await startAnvil({
      acme: { termsOfService: 'https://anvil.test/terms' },
      issuance: { allowEd25519: true },
      validation: { resolvers: [bind.addr], httpPort, tlsPort, addressPolicy: { allowLoopback: true } },
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-client-cli-'));
    store = path.join(dir, 'store');
  });
  after(async () => {
    await anvil?.cleanup();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** `anvil <args>` against the test CA, with the test store. */
  function cli(args: string[], opts: { store?: string; env?: Record<string, string>; server?: boolean } = {}): Promise<RunResult> {
    const base = opts.server === false ? [] : ['--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem, '--store', opts.store ?? store];
    return runTool(process.execPath, [ANVIL_BIN, ...args, ...base], opts.env ?? {}, 120_000);
  }
  const httpArgs = () => ['--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1'];

  async function live(name: string, s = store): Promise<{ chain: string; leaf: X509Certificate }> {
    const chain = await readFile(path.join(s, 'live', name, 'fullchain.pem'), 'utf8');
    return { chain, leaf: new X509Certificate(chain) };
  }

  test('issue with the built-in http-01 server: a lineage, keys 0600, a chain openssl verifies', async () => {
    const r = await cli(['issue', '-d', 'cli-http.anvil.test', '-d', 'www.cli-http.anvil.test', ...httpArgs(), '--agree-tos', '-m', 'ops@anvil.test']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /saved as cli-http\.anvil\.test \(version 1\)/);
    const { chain } = await live('cli-http.anvil.test');
    assert.deepEqual(await verifyChain(chain, anvil.rootPem), ['DNS:cli-http.anvil.test', 'DNS:www.cli-http.anvil.test']);
    assert.equal((await stat(path.join(store, 'live/cli-http.anvil.test/privkey.pem'))).mode & 0o777, 0o600);
    assert.ok((await lstat(path.join(store, 'live/cli-http.anvil.test'))).isSymbolicLink());
    assert.match(await readFile(path.join(store, 'live/cli-http.anvil.test/privkey.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
    const cfg = JSON.parse(await readFile(path.join(store, 'renewal/cli-http.anvil.test.json'), 'utf8'));
    assert.equal(cfg.server, anvil.directoryUrl);
    assert.equal(cfg.solver.type, 'http');
    assert.equal(cfg.keyType, 'ecdsa-p256');
  });

  test('a certificate that is not due is kept; --force gets version 2; --reuse-key keeps the key', async () => {
    const again = await cli(['issue', '-d', 'cli-http.anvil.test', '-d', 'www.cli-http.anvil.test', ...httpArgs()]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.stdout, /not yet due; nothing done/);
    const before = await readFile(path.join(store, 'live/cli-http.anvil.test/privkey.pem'), 'utf8');
    const forced = await cli(['issue', '-d', 'cli-http.anvil.test', '-d', 'www.cli-http.anvil.test', ...httpArgs(), '--force', '--reuse-key', '--json']);
    assert.equal(forced.code, 0, forced.out);
    const j = JSON.parse(forced.stdout);
    assert.equal(j.version, 2);
    assert.equal(await readFile(path.join(store, 'live/cli-http.anvil.test/privkey.pem'), 'utf8'), before, 'the key was reused');
    const fresh = await cli(['issue', '-d', 'cli-http.anvil.test', '-d', 'www.cli-http.anvil.test', ...httpArgs(), '--force', '--json']);
    assert.equal(JSON.parse(fresh.stdout).version, 3);
    assert.notEqual(await readFile(path.join(store, 'live/cli-http.anvil.test/privkey.pem'), 'utf8'), before, 'a new key by default');
    assert.deepEqual((await readdir(path.join(store, 'archive/cli-http.anvil.test'))).filter((f) => f.startsWith('cert')).sort(), ['cert1.pem', 'cert2.pem', 'cert3.pem']);
  });

  test('issue with --webroot, served by a separate web server; the challenge file is removed', async () => {
    const docroot = path.join(dir, 'www');
    await mkdir(docroot);
    const web = http.createServer((req, res) => {
      readFile(path.join(docroot, path.normalize(decodeURIComponent(req.url ?? '/')))).then(
        (b) => res.end(b),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => web.listen(httpPort, '127.0.0.1', r));
    try {
      const r = await cli(['issue', '-d', 'cli-webroot.anvil.test', '--webroot', docroot]);
      assert.equal(r.code, 0, r.out);
      assert.deepEqual(await verifyChain((await live('cli-webroot.anvil.test')).chain, anvil.rootPem), ['DNS:cli-webroot.anvil.test']);
      assert.deepEqual(await readdir(path.join(docroot, '.well-known/acme-challenge')), []);
    } finally {
      web.closeAllConnections();
      await new Promise((r) => web.close(r));
    }
  });

  test('issue with the tls-alpn-01 listener, for a DNS name and an IP address', async () => {
    const r = await cli(['issue', '-d', 'cli-tls.anvil.test', '-d', '127.0.0.1', '--tls-alpn', '--tls-port', String(tlsPort), '--tls-address', '127.0.0.1']);
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(await verifyChain((await live('cli-tls.anvil.test')).chain, anvil.rootPem), ['DNS:cli-tls.anvil.test', 'IP Address:127.0.0.1']);
  });

  for (const keyType of ['ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519']) {
    test(`issue with a ${keyType} certificate key`, async () => {
      const name = `cli-${keyType}.anvil.test`;
      const r = await cli(['issue', '-d', name, ...httpArgs(), '--key-type', keyType]);
      assert.equal(r.code, 0, r.out);
      const { chain, leaf } = await live(name);
      await verifyChain(chain, anvil.rootPem);
      const d = leaf.publicKey.asymmetricKeyDetails ?? {};
      const got = leaf.publicKey.asymmetricKeyType === 'ec' ? `ecdsa-${d.namedCurve === 'secp384r1' ? 'p384' : d.namedCurve}` : leaf.publicKey.asymmetricKeyType === 'rsa' ? `rsa-${d.modulusLength}` : leaf.publicKey.asymmetricKeyType;
      assert.equal(got, keyType);
    });
  }

  test('issue with a CSR the user brings: names from the CSR, no key stored', async () => {
    const key = path.join(dir, 'csr-key.pem');
    const csr = path.join(dir, 'req.pem');
    await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', '/CN=cli-csr.anvil.test', '-addext', 'subjectAltName=DNS:cli-csr.anvil.test', '-out', csr]);
    const r = await cli(['issue', '--csr', csr, ...httpArgs()]);
    assert.equal(r.code, 0, r.out);
    const { chain, leaf } = await live('cli-csr.anvil.test');
    await verifyChain(chain, anvil.rootPem);
    const { stdout: pub } = await run('openssl', ['pkey', '-in', key, '-pubout']);
    assert.equal(leaf.publicKey.export({ type: 'spki', format: 'pem' }).toString(), pub);
    await assert.rejects(stat(path.join(store, 'live/cli-csr.anvil.test/privkey.pem')));
    const mismatch = await cli(['issue', '--csr', csr, '-d', 'other.anvil.test', ...httpArgs()]);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /differ from the CSR/);
  });

  test('certs list and show describe the lineages', async () => {
    const list = await cli(['certs', 'list', '--store', store], { server: false });
    assert.equal(list.code, 0, list.out);
    assert.match(list.stdout, /^NAME\s+EXPIRES\s+KEY\s+NAMES/);
    assert.match(list.stdout, /cli-http\.anvil\.test\s+\d{4}-\d\d-\d\d \(\d+ d\)\s+ecdsa-p256\s+cli-http\.anvil\.test,www\.cli-http\.anvil\.test/);
    const json = JSON.parse((await cli(['certs', 'list', '--store', store, '--json'], { server: false })).stdout) as Array<{ name: string; keyType: string; version: number }>;
    assert.equal(json.find((l) => l.name === 'cli-rsa-4096.anvil.test')?.keyType, 'rsa-4096');
    assert.equal(json.find((l) => l.name === 'cli-http.anvil.test')?.version, 3);
    const show = await cli(['certs', 'show', 'cli-csr.anvil.test', '--store', store], { server: false });
    assert.match(show.stdout, /not stored: CSR brought by the user/);
    const missing = await cli(['certs', 'show', 'nope', '--store', store], { server: false });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /anvil certs list/);
  });

  test('account show, update, rollover: the new key works and the old one no longer does', async () => {
    const show = await cli(['account', 'show', '--json']);
    assert.equal(show.code, 0, show.out);
    const acc = JSON.parse(show.stdout);
    assert.equal(acc.status, 'valid');
    assert.deepEqual(acc.contact, ['mailto:ops@anvil.test']);
    const upd = await cli(['account', 'update', '-m', 'pki@anvil.test']);
    assert.equal(upd.code, 0, upd.out);
    assert.deepEqual(JSON.parse((await cli(['account', 'show', '--json'])).stdout).contact, ['mailto:pki@anvil.test']);
    const keyDir = (await readdir(path.join(store, 'accounts')))[0]!;
    const keyFile = path.join(store, 'accounts', keyDir, 'default', 'key.pem');
    const oldKey = await readFile(keyFile, 'utf8');
    const roll = await cli(['account', 'rollover', '--key-type', 'ES384']);
    assert.equal(roll.code, 0, roll.out);
    assert.notEqual(await readFile(keyFile, 'utf8'), oldKey);
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const after = await cli(['issue', '-d', 'cli-after-rollover.anvil.test', ...httpArgs()]);
    assert.equal(after.code, 0, after.out);
    // The old key is no longer an account key at the CA: a store holding it cannot find the account.
    const oldStore = path.join(dir, 'old-store');
    await mkdir(path.join(oldStore, 'accounts', keyDir, 'default'), { recursive: true, mode: 0o700 });
    await run('cp', [path.join(store, 'accounts', keyDir, 'default', 'account.json'), path.join(oldStore, 'accounts', keyDir, 'default')]);
    await writeFile(path.join(oldStore, 'accounts', keyDir, 'default', 'key.pem'), oldKey, { mode: 0o600 });
    const stale = await cli(['account', 'show'], { store: oldStore });
    assert.equal(stale.code, 3, stale.out);
  });

  test('revoke a lineage by name; revoking it again is alreadyRevoked (exit 3)', async () => {
    const r = await cli(['revoke', 'cli-webroot.anvil.test', '--reason', 'superseded']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /Revoked certificate/);
    const again = await cli(['revoke', 'cli-webroot.anvil.test']);
    assert.equal(again.code, 3, again.out);
    assert.match(again.stderr, /alreadyRevoked/);
  });

  test('revoke a certificate file signed by its own key, without an account', async () => {
    const r = await cli(['revoke', '--cert', path.join(store, 'live/cli-tls.anvil.test/cert.pem'), '--key', path.join(store, 'live/cli-tls.anvil.test/privkey.pem'), '--reason', 'keyCompromise'], {
      store: path.join(dir, 'empty-store'),
    });
    assert.equal(r.code, 0, r.out);
  });

  test('account deactivate needs --yes, then the account is gone and its files are set aside', async () => {
    const s = path.join(dir, 'deact-store');
    assert.equal((await cli(['account', 'register', '--agree-tos'], { store: s })).code, 0);
    const no = await cli(['account', 'deactivate'], { store: s });
    assert.equal(no.code, 2);
    assert.match(no.stderr, /--yes/);
    const yes = await cli(['account', 'deactivate', '--yes'], { store: s });
    assert.equal(yes.code, 0, yes.out);
    const issueAfter = await cli(['issue', '-d', 'x.anvil.test', ...httpArgs()], { store: s });
    assert.equal(issueAfter.code, 2, 'a new account needs --agree-tos again');
  });

  describe('errors a user meets', () => {
    const cases: Array<[string, string[], number, RegExp]> = [
      ['no challenge method', ['issue', '-d', 'x.anvil.test'], 2, /--http, --webroot DIR, --tls-alpn or --dns/],
      ['two challenge methods', ['issue', '-d', 'x.anvil.test', '--http', '--tls-alpn'], 2, /choose one of/],
      ['no names', ['issue', '--http'], 2, /-d NAME/],
      ['a bad name', ['issue', '-d', 'bad_name..anvil.test', '--http'], 2, /bad_name/],
      ['a wildcard without dns-01', ['issue', '-d', '*.anvil.test', '--http'], 2, /dns-01/],
      ['an unknown key type', ['issue', '-d', 'x.anvil.test', '--http', '--key-type', 'dsa'], 2, /--key-type dsa: use one of/],
      ['terms of service not agreed', ['issue', '-d', 'x.anvil.test', ...['--http', '--http-port', '1']], 2, /--agree-tos/],
      ['an unknown DNS provider', ['issue', '-d', 'x.anvil.test', '--dns', 'nosuch'], 2, /nosuch/],
      ['an unknown flag', ['issue', '-d', 'x.anvil.test', '--htp'], 2, /unknown option '--htp'/],
      ['a bad port', ['issue', '-d', 'x.anvil.test', '--http', '--http-port', '80000'], 2, /port number/],
    ];
    for (const [what, args, code, msg] of cases) {
      test(`${what}: exit ${code} and a message that says what to do`, async () => {
        const r = await cli(args, { store: path.join(dir, 'fresh-store') });
        assert.equal(r.code, code, r.out);
        assert.match(r.stderr, msg);
      });
    }

    test('a plain-http directory is refused', async () => {
      const r = await runTool(process.execPath, [ANVIL_BIN, 'issue', '-d', 'x.anvil.test', '--http', '--server', 'http://acme.example.net/directory', '--store', path.join(dir, 'fresh-store')]);
      assert.equal(r.code, 2, r.out);
      assert.match(r.stderr, /not https/);
    });

    test('a name the CA cannot validate: exit 4, and nothing is installed', async () => {
      // Nothing listens on this port for the validator.
      const r = await cli(['issue', '-d', 'cli-fail.anvil.test', '--http', '--http-port', String(await freePort()), '--http-address', '127.0.0.1']);
      assert.equal(r.code, 4, r.out);
      assert.match(r.stderr, /validation of cli-fail\.anvil\.test failed/);
      await assert.rejects(stat(path.join(store, 'live/cli-fail.anvil.test')));
    });

    test('a CA that cannot be reached: exit 5', async () => {
      const r = await runTool(process.execPath, [ANVIL_BIN, 'account', 'register', '--agree-tos', '--server', `https://127.0.0.1:${await freePort()}/directory`, '--store', path.join(dir, 'fresh-store')]);
      assert.equal(r.code, 5, r.out);
    });
  });
});

describe('anvil client CLI with External Account Binding', { timeout: 120_000, skip: missingTools('named', 'dig') }, () => {
  test('a CA that requires EAB: refused without it (exit 2), registered with the key from `anvil eab create`', async () => {
    const bind = await startBind();
    const httpPort = await freePort();
    const a = await startAnvil({ acme: { externalAccountRequired: true }, validation: { resolvers: [bind.addr], httpPort, addressPolicy: { allowLoopback: true } } });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-client-eab-'));
    try {
      const e = await runTool(process.execPath, [ANVIL_BIN, 'eab', 'create', '--config', a.configFile, '--json']);
      const { kid, hmacKey } = JSON.parse(e.stdout) as { kid: string; hmacKey: string };
      const base = ['issue', '-d', 'cli-eab.anvil.test', '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1', '--server', a.directoryUrl, '--ca-bundle', a.rootPem, '--store', dir];
      const none = await runTool(process.execPath, [ANVIL_BIN, ...base]);
      assert.equal(none.code, 2, none.out);
      assert.match(none.stderr, /--eab-kid and --eab-hmac-key/);
      // The HMAC key comes from the environment, so it is not in the process list.
      const ok = await runTool(process.execPath, [ANVIL_BIN, ...base, '--eab-kid', kid], { ANVIL_EAB_HMAC_KEY: hmacKey });
      assert.equal(ok.code, 0, ok.out);
      const acc = (await readdir(path.join(dir, 'accounts')))[0]!;
      assert.equal(JSON.parse(await readFile(path.join(dir, 'accounts', acc, 'default', 'account.json'), 'utf8')).eabKid, kid);
      assert.ok(!(await readFile(path.join(dir, 'accounts', acc, 'default', 'account.json'), 'utf8')).includes(hmacKey), 'the HMAC key is not stored');
    } finally {
      await a.cleanup();
      await bind.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
