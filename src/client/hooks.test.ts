/** Hooks: the environment they get, how they are run (no shell, deadlines), and command-line parsing. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AcmeClientError } from './errors.js';
import { hookEnv, parseHookCommand, runHooks, runProgram, type HookContext } from './hooks.js';

const files = { version: 3, cert: '/s/live/a/cert.pem', chain: '/s/live/a/chain.pem', fullchain: '/s/live/a/fullchain.pem', privkey: '/s/live/a/privkey.pem' };
const ctx = (over: Partial<HookContext> = {}): HookContext => ({
  lineage: 'a.example',
  identifiers: [
    { type: 'dns', value: 'a.example' },
    { type: 'dns', value: 'www.a.example' },
  ],
  server: 'https://ca.example/directory',
  liveDir: '/s/live/a.example',
  files,
  serial: '0A1B',
  notAfter: new Date('2030-01-02T03:04:05Z'),
  event: 'deploy',
  ...over,
});

describe('hookEnv', () => {
  test('a deploy hook gets the paths, names, serial and expiry, and certbot-compatible variables', () => {
    assert.deepEqual(hookEnv(ctx()), {
      ANVIL_EVENT: 'deploy',
      ANVIL_LINEAGE: 'a.example',
      ANVIL_DOMAINS: 'a.example www.a.example',
      ANVIL_SERVER: 'https://ca.example/directory',
      ANVIL_LIVE_DIR: '/s/live/a.example',
      ANVIL_CERT: files.cert,
      ANVIL_CHAIN: files.chain,
      ANVIL_FULLCHAIN: files.fullchain,
      ANVIL_KEY: files.privkey,
      ANVIL_VERSION: '3',
      ANVIL_SERIAL: '0A1B',
      ANVIL_NOT_AFTER: '2030-01-02T03:04:05.000Z',
      RENEWED_LINEAGE: '/s/live/a.example',
      RENEWED_DOMAINS: 'a.example www.a.example',
    });
  });

  test('a pre hook without files gets no file variables and no certbot variables', () => {
    const env = hookEnv(ctx({ event: 'pre', files: null, serial: undefined, notAfter: undefined }));
    assert.deepEqual(Object.keys(env).sort(), ['ANVIL_DOMAINS', 'ANVIL_EVENT', 'ANVIL_LINEAGE', 'ANVIL_LIVE_DIR', 'ANVIL_SERVER']);
  });

  test('a lineage from a CSR has no ANVIL_KEY', () => {
    assert.equal(hookEnv(ctx({ files: { ...files, privkey: null } })).ANVIL_KEY, undefined);
  });

  test('a failure hook gets ANVIL_ERROR, without NUL bytes and bounded in length', () => {
    const env = hookEnv(ctx({ event: 'failure', error: `bad\0thing ${'x'.repeat(20_000)}` }));
    assert.ok(env.ANVIL_ERROR!.startsWith('badthing x'));
    assert.ok(env.ANVIL_ERROR!.length < 9000);
    assert.equal(hookEnv(ctx({ event: 'post' })).ANVIL_ERROR, undefined);
    assert.equal(hookEnv(ctx({ event: 'post' })).RENEWED_LINEAGE, undefined);
  });
});

describe('parseHookCommand', () => {
  const cases: Array<[string, string[]]> = [
    ['systemctl reload nginx', ['systemctl', 'reload', 'nginx']],
    ['  a   b\tc \n', ['a', 'b', 'c']],
    [`/usr/local/bin/deploy 'a b' "c d"`, ['/usr/local/bin/deploy', 'a b', 'c d']],
    [`x 'it''s'`, ['x', 'its']],
    [`x "say \\"hi\\" \\\\ \\n"`, ['x', 'say "hi" \\ \\n']],
    [`x a\\ b`, ['x', 'a b']],
    [`x ''`, ['x', '']],
    [`x '$HOME' "$HOME" \\$HOME`, ['x', '$HOME', '$HOME', '$HOME']],
    [`x '*.pem' ~/a`, ['x', '*.pem', '~/a']],
    [`sh -c 'cp "$ANVIL_FULLCHAIN" /etc/app/ | true; echo done'`, ['sh', '-c', 'cp "$ANVIL_FULLCHAIN" /etc/app/ | true; echo done']],
    [`x pre"mid"'post'`, ['x', 'premidpost']],
  ];
  for (const [input, want] of cases) {
    test(`${JSON.stringify(input)} is ${JSON.stringify(want)}`, () => assert.deepEqual(parseHookCommand(input), want));
  }

  const bad: Array<[string, RegExp]> = [
    [`x 'open`, /single quote is not closed/],
    [`x "open`, /double quote is not closed/],
    [`x \\`, /ends with a backslash/],
    ['   ', /empty/],
    ['systemctl reload nginx && echo ok', /"&" is shell syntax/],
    ['x | y', /"\|" is shell syntax/],
    ['x; rm -rf /', /";" is shell syntax/],
    ['echo $ANVIL_LINEAGE', /"\$" is shell syntax/],
    ['echo `id`', /shell syntax/],
    ['x > out', /shell syntax/],
  ];
  for (const [input, re] of bad) {
    test(`${JSON.stringify(input)} is refused with BAD_INPUT`, () => {
      assert.throws(() => parseHookCommand(input), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT' && re.test(e.message));
    });
  }
});

describe('runHooks', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-hooks-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));
  const node = process.execPath;

  test('hooks run in order, without a shell, with the process environment plus the hook variables', async () => {
    const out = path.join(dir, 'env.json');
    const script = `require('fs').appendFileSync(${JSON.stringify(out)}, JSON.stringify({arg: process.argv[1], lineage: process.env.ANVIL_LINEAGE, mine: process.env.MINE, fullchain: process.env.ANVIL_FULLCHAIN}) + '\\n')`;
    // A shell would expand $HOME and run the command substitution: the hook must see them verbatim.
    await runHooks(
      [
        [node, '-e', script, 'first $HOME $(id)'],
        [node, '-e', script, 'second'],
      ],
      ctx(),
      { env: { ...process.env, MINE: 'kept' } },
    );
    const lines = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines, [
      { arg: 'first $HOME $(id)', lineage: 'a.example', mine: 'kept', fullchain: files.fullchain },
      { arg: 'second', lineage: 'a.example', mine: 'kept', fullchain: files.fullchain },
    ]);
  });

  test('a non-zero exit is a HOOK error naming the hook, its exit code and its last stderr lines', async () => {
    const err = await runHooks([[node, '-e', 'console.error("line one"); console.error("cannot reload: no such unit"); process.exit(3)']], ctx()).catch((e: unknown) => e);
    assert.ok(err instanceof AcmeClientError);
    assert.equal(err.code, 'HOOK');
    assert.match(err.message, /a\.example: deploy hook ".*node.*" exited with code 3/);
    assert.match(err.message, /cannot reload: no such unit/);
  });

  test('output is passed on line by line', async () => {
    const lines: string[] = [];
    await runHooks([[node, '-e', 'console.log("one"); console.error("two")']], ctx(), { onOutput: (l) => lines.push(l) });
    assert.deepEqual(lines.sort(), [`[deploy hook ${node}] one`, `[deploy hook ${node}] two`]);
  });

  test('a program that does not exist is a HOOK error', async () => {
    await assert.rejects(runHooks([['/nonexistent/anvil-hook']], ctx()), (e: unknown) => e instanceof AcmeClientError && e.code === 'HOOK' && /cannot be started/.test(e.message));
  });

  test('a hook past its deadline is killed with its process group', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    // The hook starts a grandchild that would outlive it; both must go.
    const script = `const c = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {stdio: 'ignore'}); require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid)); setInterval(() => {}, 1000)`;
    const t0 = Date.now();
    const err = await runHooks([[node, '-e', script]], ctx(), { timeoutMs: 1500 }).catch((e: unknown) => e);
    assert.ok(err instanceof AcmeClientError && err.code === 'HOOK', String(err));
    assert.match(err.message, /timed out after 2 s/);
    assert.ok(Date.now() - t0 < 8000);
    const pid = Number(await readFile(pidFile, 'utf8'));
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((r) => setTimeout(r, 100));
      } catch {
        alive = false;
      }
    }
    assert.equal(alive, false, 'the grandchild was killed too');
  });

  test('a hook that leaves a background process holding its output still finishes', async () => {
    const t0 = Date.now();
    const pidFile = path.join(dir, 'daemon.pid');
    const script = `const c = require('child_process').spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)'], {stdio: 'inherit', detached: true}); c.unref(); require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid))`;
    try {
      await runHooks([[node, '-e', script]], ctx());
      assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    } finally {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone already */
        }
      }
    }
  });

  test('a failing pre hook stops the others; failing deploy hooks all run and are all named', async () => {
    const mark = path.join(dir, 'ran');
    const touch = [node, '-e', `require('fs').appendFileSync(${JSON.stringify(mark)}, 'x')`];
    const fail = [node, '-e', 'process.exit(1)'];
    await assert.rejects(runHooks([fail, touch], ctx({ event: 'pre' })), /pre hook/);
    await assert.rejects(readFile(mark));
    const err = (await runHooks([fail, touch, [node, '-e', 'process.exit(2)']], ctx()).then(
      () => assert.fail('no error'),
      (e: unknown) => e,
    )) as Error;
    assert.equal(await readFile(mark, 'utf8'), 'x');
    assert.match(err.message, /2 deploy hooks failed/);
    assert.match(err.message, /code 1[\s\S]*code 2/);
  });

  test('no hooks is nothing to do', async () => {
    await runHooks(undefined, ctx());
    await runHooks([], ctx());
  });

  test('runProgram keeps only the last lines of a chatty program', async () => {
    const r = await runProgram([node, '-e', 'for (let i = 0; i < 1000; i++) console.log(i)'], { keepLines: 3 });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, ['997', '998', '999']);
  });
});
