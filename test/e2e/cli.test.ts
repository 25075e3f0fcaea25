/** The `anvil` program as a user runs it: CA management, EAB keys (used by lego), config errors. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, startAnvil } from '../helpers/anvil-process.js';
import { startBind, type Bind } from '../helpers/bind.js';
import { verifyChain } from '../helpers/openssl.js';
import { freePort } from '../helpers/ports.js';
import { runTool, missingTools } from '../helpers/run.js';

const anvil = (args: string[]) => runTool(process.execPath, [ANVIL_BIN, ...args], {}, 60_000);

describe('anvil CLI', { timeout: 180_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-cli-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('ca init creates a P-384 CA with private keys, and refuses to overwrite it', async () => {
    const d = path.join(dir, 'ca384');
    const r = await anvil(['ca', 'init', '--data-dir', d, '--key-algorithm', 'ecdsa-p384', '--root-name', 'Lab Root', '--organization', 'Lab']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /CN=Lab Root/);
    assert.equal((await stat(path.join(d, 'ca', 'root.key'))).mode & 0o777, 0o600);
    const before = await readFile(path.join(d, 'ca', 'intermediate.key'));
    const again = await anvil(['ca', 'init', '--data-dir', d]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists.*refusing/);
    assert.deepEqual(await readFile(path.join(d, 'ca', 'intermediate.key')), before);
    const show = await anvil(['ca', 'show', '--data-dir', d, '--json']);
    assert.equal(show.code, 0, show.stderr);
    const j = JSON.parse(show.stdout);
    assert.equal(j.root.keyAlgorithm, 'ecdsa-p384');
    assert.match(j.intermediate.sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test('ca show without a CA says how to make one', async () => {
    const r = await anvil(['ca', 'show', '--data-dir', path.join(dir, 'empty')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /anvil ca init/);
  });

  test('a bad key algorithm and a bad config field are named, exit code 2', async () => {
    const r = await anvil(['ca', 'init', '--data-dir', path.join(dir, 'bad'), '--key-algorithm', 'dsa-1024']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /ca\.keyAlgorithm/);
    const cfg = path.join(dir, 'bad.json');
    await writeFile(cfg, JSON.stringify({ validation: { httpPort: 'eighty' }, listn: {} }));
    const s = await anvil(['server', '--config', cfg]);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /validation\.httpPort/);
    assert.match(s.stderr, /listn/);
    await writeFile(cfg, '{ not json');
    const t = await anvil(['config-check', cfg]);
    assert.equal(t.code, 2);
    assert.match(t.stderr, /not valid JSON/);
  });

  describe('external account binding with lego', { skip: missingTools('lego', 'named', 'dig') }, () => {
    let bind: Bind;
    before(async () => {
      bind = await startBind();
    });
    after(async () => bind?.stop());

    test('a key from `anvil eab create` registers one account and no second one', async () => {
      const httpPort = await freePort();
      const a = await startAnvil({ acme: { externalAccountRequired: true }, validation: { resolvers: [bind.addr], httpPort } });
      try {
        const e = await anvil(['eab', 'create', '--config', a.configFile, '--comment', 'team lab', '--json']);
        assert.equal(e.code, 0, e.stderr);
        const { kid, hmacKey } = JSON.parse(e.stdout) as { kid: string; hmacKey: string };
        const lego = (p: string, extra: string[]) =>
          runTool(
            'lego',
            ['--server', a.directoryUrl, '--accept-tos', '--email', 'ops@anvil.test', '--path', p, ...extra, '--domains', 'eab.anvil.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run'],
            a.trustEnv,
            60_000,
          );
        const none = await lego(path.join(dir, 'lego0'), []);
        assert.notEqual(none.code, 0);
        assert.match(none.out, /External Account Binding|externalAccountRequired/);
        const ok = await lego(path.join(dir, 'lego1'), ['--eab', '--kid', kid, '--hmac', hmacKey]);
        assert.equal(ok.code, 0, ok.out);
        const chain = await readFile(path.join(dir, 'lego1', 'certificates', 'eab.anvil.test.crt'), 'utf8');
        assert.deepEqual(await verifyChain(chain, a.rootPem), ['DNS:eab.anvil.test']);
        const second = await lego(path.join(dir, 'lego2'), ['--eab', '--kid', kid, '--hmac', hmacKey]);
        assert.notEqual(second.code, 0, 'a used key does not register a second account');
        const list = await anvil(['eab', 'list', '--config', a.configFile]);
        assert.match(list.stdout, new RegExp(`${kid}\\s+uses 1/1.*"team lab"`));
        assert.ok(!list.stdout.includes(hmacKey), 'HMAC keys are never listed');
      } finally {
        await a.cleanup();
      }
    });
  });
});
