/**
 * dehydrated, uacme and acme-tiny (Debian) and the npm package acme-client against a running
 * `anvil server`, with a real BIND 9 for names and dns-01.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import acme from 'acme-client';
import { startAnvil, REPO, type StartedAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { runTool, missingTools } from '../helpers/run.js';
import { startWebroot, type Webroot } from '../helpers/webroot.js';

const exec = runTool;

describe('more clients', { timeout: 300_000, skip: missingTools('dehydrated', 'uacme', 'acme-tiny', 'named', 'nsupdate', 'dig', 'openssl') }, () => {
  let bind: Bind;
  let anvil: StartedAnvil;
  let plain: StartedAnvil;
  let webroot: Webroot;
  let dir: string;
  let tlsPort: number;

  before(async () => {
    bind = await startBind();
    webroot = await startWebroot(await freePort());
    tlsPort = await freePort();
    const validation = { resolvers: [bind.addr], httpPort: webroot.port, tlsPort, addressPolicy: { allowLoopback: true } };
    anvil = await startAnvil({ validation });
    // uacme links libcurl-gnutls, which takes no CA bundle from the environment: it talks to a
    // second server in plain-HTTP mode (the reverse-proxy mode), which this also exercises.
    const port = await freePort();
    plain = await startAnvil({ validation, listen: { host: '127.0.0.1', port }, tls: { enabled: false }, baseUrl: `http://127.0.0.1:${port}` });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-clients-'));
  });
  after(async () => {
    await anvil?.cleanup();
    await plain?.cleanup();
    await webroot?.stop();
    await bind?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('dehydrated gets a certificate with http-01 (webroot)', async () => {
    const base = path.join(dir, 'dehydrated');
    await mkdir(base, { recursive: true });
    const config = path.join(base, 'config');
    await writeFile(
      config,
      [`CA="${anvil.directoryUrl}"`, 'CHALLENGETYPE="http-01"', `WELLKNOWN="${webroot.dir}"`, `BASEDIR="${base}"`, 'CONTACT_EMAIL="ops@anvil.test"', 'KEY_ALGO=prime256v1', ''].join('\n'),
    );
    const reg = await exec('dehydrated', ['--register', '--accept-terms', '-f', config], anvil.trustEnv);
    assert.equal(reg.code, 0, reg.out);
    const r = await exec('dehydrated', ['-c', '-d', 'dehydrated.anvil.test', '-f', config], anvil.trustEnv);
    assert.equal(r.code, 0, r.out);
    const chain = await readFile(path.join(base, 'certs', 'dehydrated.anvil.test', 'fullchain.pem'), 'utf8');
    assert.deepEqual(await verifyChain(chain, anvil.rootPem), ['DNS:dehydrated.anvil.test']);
  });

  test('uacme gets a certificate with http-01 through its hook', async () => {
    const conf = path.join(dir, 'uacme');
    const env = { ANVIL_TEST_WEBROOT: webroot.dir };
    const n = await exec('uacme', ['-a', plain.directoryUrl, '-c', conf, '-y', 'new', 'ops@anvil.test'], env);
    assert.equal(n.code, 0, n.out);
    const r = await exec('uacme', ['-a', plain.directoryUrl, '-c', conf, '-t', 'EC', '-h', path.join(REPO, 'test/e2e/hooks/uacme-hook.sh'), 'issue', 'uacme.anvil.test', 'www.uacme.anvil.test'], env);
    assert.equal(r.code, 0, r.out);
    const chain = await readFile(path.join(conf, 'uacme.anvil.test', 'cert.pem'), 'utf8');
    assert.deepEqual(await verifyChain(chain, plain.rootPem), ['DNS:uacme.anvil.test', 'DNS:www.uacme.anvil.test']);
  });

  test('acme-tiny gets a certificate with http-01', async () => {
    const d = path.join(dir, 'tiny');
    await mkdir(d, { recursive: true });
    await exec('openssl', ['genrsa', '-out', path.join(d, 'account.key'), '2048'], {});
    await exec('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(d, 'domain.key'), '-subj', '/CN=tiny.anvil.test', '-out', path.join(d, 'domain.csr')], {});
    const r = await exec(
      'acme-tiny',
      ['--account-key', path.join(d, 'account.key'), '--csr', path.join(d, 'domain.csr'), '--acme-dir', webroot.dir, '--directory-url', anvil.directoryUrl, '--disable-check'],
      anvil.trustEnv,
    );
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(await verifyChain(r.stdout, anvil.rootPem), ['DNS:tiny.anvil.test']);
  });

  describe('acme-client (npm)', () => {
    let root: string;
    before(async () => {
      root = await readFile(anvil.rootPem, 'utf8');
      acme.axios.defaults.httpsAgent = new https.Agent({ ca: root });
    });

    async function client(key?: Buffer) {
      return new acme.Client({ directoryUrl: anvil.directoryUrl, accountKey: key ?? (await acme.crypto.createPrivateEcdsaKey()) });
    }

    test('http-01, dns-01 and tls-alpn-01, then revocation', async () => {
      const c = await client();
      await c.createAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@anvil.test'] });
      const alpn = new Map<string, { key: Buffer; cert: Buffer }>();
      const alpnServer = tls.createServer({
        ALPNProtocols: ['acme-tls/1'],
        SNICallback: (name, cb) => {
          const e = alpn.get(name);
          cb(null, e ? tls.createSecureContext({ key: e.key, cert: e.cert }) : undefined);
        },
      });
      await new Promise<void>((r) => alpnServer.listen(tlsPort, '127.0.0.1', r));
      try {
        for (const [name, type] of [
          ['ac-http.anvil.test', 'http-01'],
          ['ac-dns.anvil.test', 'dns-01'],
          ['ac-tls.anvil.test', 'tls-alpn-01'],
        ] as const) {
          const [key, csr] = await acme.crypto.createCsr({ commonName: name });
          const cert = await c.auto({
            csr,
            termsOfServiceAgreed: true,
            challengePriority: [type],
            skipChallengeVerification: true,
            challengeCreateFn: async (authz, ch, keyAuthorization) => {
              const host = authz.identifier.value;
              if (ch.type === 'http-01') await writeFile(path.join(webroot.dir, ch.token), keyAuthorization);
              else if (ch.type === 'dns-01') await bind.nsupdate([`update add _acme-challenge.${host}. 5 TXT "${keyAuthorization}"`]);
              else {
                const [k, crt] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
                alpn.set(host, { key: k, cert: crt });
              }
            },
            challengeRemoveFn: async (authz, ch, keyAuthorization) => {
              if (ch.type === 'http-01') await rm(path.join(webroot.dir, ch.token), { force: true });
              else if (ch.type === 'dns-01') await bind.nsupdate([`update delete _acme-challenge.${authz.identifier.value}. TXT "${keyAuthorization}"`]);
              else alpn.delete(authz.identifier.value);
            },
          });
          assert.deepEqual(await verifyChain(cert, root), [`DNS:${name}`], type);
          void key;
          if (type === 'tls-alpn-01') {
            await c.revokeCertificate(cert, { reason: 1 });
            await assert.rejects(c.revokeCertificate(cert), /already revoked|alreadyRevoked/i);
          }
        }
      } finally {
        await new Promise((r) => alpnServer.close(r));
      }
      assert.deepEqual(await readdir(webroot.dir), [], 'challenge files cleaned up');
    });

    test('rolls the account key over (RFC 8555 §7.3.5)', async () => {
      const oldKey = await acme.crypto.createPrivateEcdsaKey();
      const c = await client(oldKey);
      await c.createAccount({ termsOfServiceAgreed: true });
      const url = c.getAccountUrl();
      const newKey = await acme.crypto.createPrivateEcdsaKey('P-384');
      await c.updateAccountKey(newKey);
      const withNew = await client(newKey);
      await withNew.createAccount({ onlyReturnExisting: true });
      assert.equal(withNew.getAccountUrl(), url);
      const withOld = await client(oldKey);
      await assert.rejects(withOld.createAccount({ onlyReturnExisting: true }), /accountDoesNotExist|No account/i);
    });
  });
});
