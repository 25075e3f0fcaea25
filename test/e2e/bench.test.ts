/**
 * `anvil bench` against the real `anvil server` (issue 5): a few flows with real http-01
 * validation over loopback; the JSON report's shape, every flow completed, no error. No timing
 * assertions: this is a smoke test of the generator, not a benchmark. Then the usage errors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from '../helpers/anvil-process.js';
import { freePort } from '../helpers/ports.js';
import { runTool } from '../helpers/run.js';

const anvil = (args: string[]) => runTool(process.execPath, [ANVIL_BIN, ...args], {}, 120_000);

describe('anvil bench', { timeout: 180_000 }, () => {
  let server: StartedAnvil;
  let httpPort: number;

  before(async () => {
    httpPort = await freePort();
    server = await startAnvil({ acme: { authzReuseDays: 0 }, log: { level: 'warn' }, validation: { httpPort, addressPolicy: { allowLoopback: true } } });
  });
  after(async () => server?.cleanup());

  test('--count 6 -c 2 --json: six flows complete, each validated for real, and the report has every field', async () => {
    const r = await anvil([
      'bench',
      '--server', server.directoryUrl,
      '--ca-bundle', server.rootPem,
      '--http-port', String(httpPort),
      '--count', '6',
      '-c', '2',
      '--warmup', '1',
      '--server-pid', String(server.proc.pid),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.tool, 'anvil bench');
    assert.equal(j.reportVersion, 1);
    assert.equal(j.directoryUrl, server.directoryUrl);
    assert.equal(j.stoppedBy, 'count');
    assert.equal(j.interrupted, false);
    assert.deepEqual(j.flows, { started: 6, completed: 6, failed: 0, abandoned: 0 });
    assert.deepEqual(j.errors, { total: 0, byKind: {}, samples: {} });
    assert.deepEqual(j.authorizations, { validated: 6, reused: 0, mode: 'validated' });
    assert.equal(j.validationRequests, 6);
    assert.deepEqual(j.options.identifiers, ['127.0.0.1']);
    for (const k of ['p50', 'p90', 'p99', 'max', 'min', 'mean']) assert.equal(typeof j.latencyMs[k], 'number', k);
    assert.ok(j.latencyMs.p50 <= j.latencyMs.max);
    assert.equal(typeof j.flowsPerSecond, 'number');
    // newOrder, authorization, challenge, a poll or more, finalize, download: signed POSTs only.
    assert.ok(j.requests.signedPostsPerFlow >= 6, JSON.stringify(j.requests));
    assert.equal(j.requests.total, j.requests.signedPosts + j.requests.newNonce);
    assert.equal(typeof j.generator.cpuSeconds, 'number');
    assert.ok(j.warmup.completed >= 0);
    if (process.platform === 'linux') {
      assert.equal(j.server.pid, server.proc.pid);
      assert.equal(typeof j.server.cpuMsPerIssuance, 'number');
    }
  });

  test('the text report names the run and its figures', async () => {
    const r = await anvil(['bench', '--server', server.directoryUrl, '--ca-bundle', server.rootPem, '--http-port', String(httpPort), '--count', '2', '--warmup', '0', '--names', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2 name\(s\) per order \(127\.0\.0\.1, 127\.0\.0\.2\)/);
    assert.match(r.stdout, /flows +2 completed, 0 failed/);
    assert.match(r.stdout, /errors +none/);
  });

  const usage: Array<{ name: string; args: string[]; match: RegExp }> = [
    { name: 'no --server', args: ['bench', '--count', '1'], match: /--server/ },
    { name: 'a concurrency of 0', args: ['bench', '--server', 'https://127.0.0.1:1/directory', '-c', '0'], match: /concurrency|clients from 1 to 1024/ },
    { name: 'a count above the hard cap', args: ['bench', '--server', 'https://127.0.0.1:1/directory', '--count', '2000000'], match: /from 1 to 1000000/ },
    { name: 'a duration above the hard cap', args: ['bench', '--server', 'https://127.0.0.1:1/directory', '--duration', '7200'], match: /seconds from 0\.1 to 3600/ },
    { name: 'an unsupported challenge type', args: ['bench', '--server', 'https://127.0.0.1:1/directory', '--challenge', 'dns-01'], match: /http-01/ },
    { name: 'plain http to another host than localhost', args: ['bench', '--server', 'http://ca.example/directory', '--insecure-localhost'], match: /https/ },
    { name: 'a --ca-bundle that is missing', args: ['bench', '--server', 'https://127.0.0.1:1/directory', '--ca-bundle', '/nonexistent/root.pem'], match: /cannot read --ca-bundle/ },
  ];
  for (const u of usage) {
    test(`usage error, exit code 2: ${u.name}`, async () => {
      const r = await anvil(u.args);
      assert.equal(r.code, 2, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, u.match);
    });
  }

  test('a server that is not there: exit code 1 and a message naming the directory', async () => {
    const url = `https://127.0.0.1:${await freePort()}/directory`;
    const r = await anvil(['bench', '--server', url, '--count', '1', '--http-port', String(await freePort())]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot read the ACME directory/);
  });
});
