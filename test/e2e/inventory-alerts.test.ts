/**
 * Issue 6 (inventory alerts): `anvil inventory alerts` as an operator runs it, against an
 * inventory holding a certificate that expires in 10 days, with a JSON webhook receiver, a
 * Slack-compatible receiver and a real SMTP server (STARTTLS with a private CA, AUTH required)
 * on loopback: --dry-run sends nothing, --test reaches every channel, the first run announces the
 * problem once on each, the second run sends nothing, a failed channel is caught up at the next
 * run, two runs at once send once, and after the certificate is replaced a resolved message
 * arrives. Then `anvil server` sends alerts itself (in one process, and from the primary of
 * --workers).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeCertificate } from '../../src/inventory/certificate.js';
import { testCa, testLeaf, type TestCa } from '../../src/inventory/test-certs.js';
import { decodeHeader, startHttpReceiver, startSmtpServer, verifySignature, type HttpReceiver, type SmtpReceiver } from '../helpers/alert-receivers.js';
import { ANVIL_BIN, startAnvil } from '../helpers/anvil-process.js';
import { runTool } from '../helpers/run.js';

const DAY = 86_400_000;
const SECRET = 'e2e-webhook-secret-0123456789abcdef';
const PASSWORD = 'e2e-smtp-password-never-printed';

interface Notification {
  id: string;
  type: string;
  reason: string | null;
  alert: { key: string; check: string; severity: string; stage: string; message: string };
  certificate: { fingerprint: string; names: string[] } | null;
  deployedAt: string[];
}
interface Payload {
  schema: string;
  source: string;
  summary: Record<string, number>;
  notifications: Notification[];
}

describe('anvil inventory alerts (webhook, Slack-compatible, SMTP receivers on loopback)', { timeout: 240_000 }, () => {
  let dir: string;
  let data: string;
  let files: string;
  let configFile: string;
  let ca: TestCa;
  let hook: HttpReceiver;
  let slack: HttpReceiver;
  let smtp: SmtpReceiver;
  let fpOld: string;
  let smtpChannel: Record<string, unknown>;

  const anvil = (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, 'inventory', ...args, '--config', configFile], {}, 60_000);
  const payloads = () => hook.requests.map((r) => JSON.parse(r.body) as Payload);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-alerts-e2e-'));
    data = path.join(dir, 'data');
    files = path.join(dir, 'files');
    await mkdir(files, { recursive: true });
    ca = await testCa('Alerts E2E Root');
    const now = Date.now();
    const old = await testLeaf({ ca, names: ['shop.alerts-e2e.test', 'www.shop.alerts-e2e.test'], notBefore: new Date(now - 80 * DAY), notAfter: new Date(now + 10 * DAY) });
    fpOld = describeCertificate(old.der).fingerprint;
    await writeFile(path.join(files, 'shop.pem'), old.pem);

    hook = await startHttpReceiver();
    slack = await startHttpReceiver();
    const smtpCa = await testCa('SMTP E2E Root');
    const smtpLeaf = await testLeaf({ ca: smtpCa, names: ['localhost'], ips: ['127.0.0.1'] });
    smtp = await startSmtpServer({ user: 'anvil', password: PASSWORD, key: smtpLeaf.keyPem, cert: smtpLeaf.pem });
    await writeFile(path.join(dir, 'smtp-ca.pem'), smtpCa.cert.toString('pem'));
    await writeFile(path.join(dir, 'smtp.password'), `${PASSWORD}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'webhook.secret'), `${SECRET}\n`, { mode: 0o600 });
    smtpChannel = {
      type: 'smtp',
      host: '127.0.0.1',
      port: smtp.port,
      user: 'anvil',
      passwordFile: path.join(dir, 'smtp.password'),
      caFile: path.join(dir, 'smtp-ca.pem'),
      from: 'anvil@alerts-e2e.test',
      to: ['ops@alerts-e2e.test', 'pki@alerts-e2e.test'],
    };
    configFile = path.join(dir, 'anvil.json');
    await writeFile(
      configFile,
      JSON.stringify(
        {
          dataDir: data,
          alerts: {
            source: 'alerts-e2e',
            timeoutMs: 5000,
            channels: [
              { type: 'webhook', url: `${hook.base}/anvil/alerts`, secretFile: path.join(dir, 'webhook.secret') },
              { type: 'slack', url: `${slack.base}/services/T0/B0/SLACKTOKEN` },
              smtpChannel,
            ],
          },
        },
        null,
        2,
      ),
    );
    const scan = await anvil('scan-files', files);
    assert.equal(scan.code, 0, scan.out);
  });

  after(async () => {
    await hook?.close();
    await slack?.close();
    await smtp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('usage errors say what to fix (exit 2)', async () => {
    const bare = path.join(dir, 'bare.json');
    await writeFile(bare, JSON.stringify({ dataDir: data }));
    const none = await runTool(process.execPath, [ANVIL_BIN, 'inventory', 'alerts', '--config', bare]);
    assert.equal(none.code, 2, none.out);
    assert.match(none.stderr, /no alert channels are configured: add "alerts": \{"channels": \[\.\.\.\]\} to the server config .*bare\.json \(docs\/alerts\.md\)/);

    const badUrl = path.join(dir, 'bad.json');
    await writeFile(badUrl, JSON.stringify({ dataDir: data, alerts: { channels: [{ type: 'webhook', url: 'gopher://x.test/' }] } }));
    const bad = await runTool(process.execPath, [ANVIL_BIN, 'inventory', 'alerts', '--config', badUrl]);
    assert.equal(bad.code, 2, bad.out);
    assert.match(bad.stderr, /alerts\.channels\.0\.url: expected an http:\/\/ or https:\/\/ URL, not gopher:\/\//);

    const missing = path.join(dir, 'missing.json');
    await writeFile(missing, JSON.stringify({ dataDir: data, alerts: { channels: [{ type: 'webhook', url: 'https://x.test/', secretFile: path.join(dir, 'nope.secret') }] } }));
    const gone = await runTool(process.execPath, [ANVIL_BIN, 'inventory', 'alerts', '--config', missing]);
    assert.equal(gone.code, 2, gone.out);
    assert.match(gone.stderr, /alerts channel "webhook": cannot read secretFile .*nope\.secret: ENOENT/);

    const both = await anvil('alerts', '--dry-run', '--test');
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--dry-run and --test exclude each other/);
  });

  test('config-check shows the alerts section without its secrets', async () => {
    const r = await runTool(process.execPath, [ANVIL_BIN, 'config-check', configFile]);
    assert.equal(r.code, 0, r.out);
    assert.ok(!r.stdout.includes('SLACKTOKEN'), 'the Slack URL path is its token');
    const shown = JSON.parse(r.stdout) as { alerts: { channels: Array<{ url?: string }> } };
    assert.equal(shown.alerts.channels[1]?.url, `${slack.base}/redacted`);
    assert.equal(shown.alerts.channels[0]?.url, `${hook.base}/anvil/alerts`);
  });

  test('--dry-run says what would be sent, and sends nothing', async () => {
    const r = await anvil('alerts', '--dry-run', '--json');
    assert.equal(r.code, 0, r.out);
    const rep = JSON.parse(r.stdout) as { dryRun: boolean; created: Array<{ type: string; key: string; stage: string }>; plan: Array<{ channel: string; notifications: Notification[] }> };
    assert.equal(rep.dryRun, true);
    assert.deepEqual(rep.created.map((c) => [c.type, c.key, c.stage]), [['opened', `expiry:${fpOld}`, '14d']]);
    assert.deepEqual(rep.plan.map((p) => [p.channel, p.notifications.length]), [['webhook', 1], ['slack', 1], ['smtp', 1]]);
    const text = await anvil('alerts', '--dry-run');
    assert.equal(text.code, 0, text.out);
    assert.match(text.stdout, /^1 problem\(s\) at or above warning, 1 open alert\(s\) \(dry run: nothing sent, nothing changed\)$/m);
    assert.match(text.stdout, /^would be opened\s+warning\s+14d\s+expiry:/m);
    assert.equal(hook.requests.length + slack.requests.length + smtp.messages.length, 0);
  });

  test('--test reaches every channel', async () => {
    const r = await anvil('alerts', '--test');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, new RegExp(`^ok\\s+webhook\\s+${hook.base.replaceAll('.', '\\.')}$`, 'm'));
    assert.match(r.stdout, /^ok\s+slack\s+http:\/\/127\.0\.0\.1:\d+$/m);
    assert.match(r.stdout, /^ok\s+smtp\s+smtp:\/\/127\.0\.0\.1:\d+ to 2 recipient\(s\)$/m);
    assert.deepEqual(payloads().map((p) => p.notifications.map((n) => n.type)), [['test']]);
    assert.ok(verifySignature(SECRET, hook.requests[0]!.headers, hook.requests[0]!.body));
    assert.match(JSON.parse(slack.requests[0]!.body).text as string, /TEST/);
    assert.equal(smtp.messages.length, 1);
    assert.match(decodeHeader(smtp.messages[0]!.headers.get('subject') ?? ''), /^\[Anvil\] \[TEST\] /);
    hook.requests.length = 0;
    slack.requests.length = 0;
    smtp.messages.length = 0;
  });

  test('the first run announces the expiring certificate once on every channel; the second sends nothing', async () => {
    const r = await anvil('alerts');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /^opened\s+warning\s+14d\s+expiry:/m);
    assert.match(r.stdout, /^sent to webhook \(http:\/\/127\.0\.0\.1:\d+\): 1 notification\(s\) in 1 message\(s\)$/m);
    assert.match(r.stdout, /^sent to smtp \(smtp:\/\/127\.0\.0\.1:\d+ to 2 recipient\(s\)\): 1 notification\(s\) in 1 message\(s\)$/m);

    assert.equal(hook.requests.length, 1);
    const req = hook.requests[0]!;
    assert.equal(req.path, '/anvil/alerts');
    assert.ok(verifySignature(SECRET, req.headers, req.body), 'signed with the secret of secretFile');
    const p = payloads()[0]!;
    assert.equal(p.schema, 'anvil.inventory.alerts/v1');
    assert.equal(p.source, 'alerts-e2e');
    assert.deepEqual(p.summary, { opened: 1, reminder: 0, resolved: 0, test: 0 });
    const n = p.notifications[0]!;
    assert.deepEqual([n.type, n.alert.key, n.alert.check, n.alert.severity, n.alert.stage], ['opened', `expiry:${fpOld}`, 'expiring', 'warning', '14d']);
    assert.match(n.alert.message, /^expires in (9|10) days \(/);
    assert.deepEqual(n.certificate?.names, ['shop.alerts-e2e.test', 'www.shop.alerts-e2e.test']);
    assert.deepEqual(n.deployedAt, [path.join(files, 'shop.pem')]);

    assert.equal(slack.requests.length, 1);
    assert.equal(slack.requests[0]!.path, '/services/T0/B0/SLACKTOKEN');
    const s = JSON.parse(slack.requests[0]!.body) as { text: string; blocks: unknown[] };
    assert.match(s.text, /\*OPENED\* warning `shop\.alerts-e2e\.test \(\+1\)`: `expires in/);
    assert.equal(s.blocks.length, 3);

    assert.equal(smtp.messages.length, 1);
    const m = smtp.messages[0]!;
    assert.equal(m.secure, true);
    assert.equal(m.user, 'anvil');
    assert.equal(m.from, 'anvil@alerts-e2e.test');
    assert.deepEqual(m.to, ['ops@alerts-e2e.test', 'pki@alerts-e2e.test']);
    assert.match(decodeHeader(m.headers.get('subject') ?? ''), /^\[Anvil\] \[OPENED\] warning shop\.alerts-e2e\.test \(\+1\): expires in (9|10) days/);
    assert.ok(m.text.includes(`  certificate  ${fpOld}\n`), m.text);
    assert.ok(m.text.includes(`(notification ${n.id})`));

    const again = await anvil('alerts', '--json');
    assert.equal(again.code, 0, again.out);
    const rep = JSON.parse(again.stdout) as { created: unknown[]; deliveries: unknown[]; open: number };
    assert.deepEqual([rep.created, rep.deliveries, rep.open], [[], [], 1]);
    assert.equal(hook.requests.length, 1);
    assert.equal(slack.requests.length, 1);
    assert.equal(smtp.messages.length, 1);
    for (const out of [r.out, again.out]) {
      assert.ok(!out.includes(PASSWORD) && !out.includes(SECRET) && !out.includes('SLACKTOKEN'), 'no secret printed');
    }
  });

  test('two runs at once (two processes, one SQLite inventory) announce a new problem once', async () => {
    const now = Date.now();
    const other = await testLeaf({ ca, names: ['api.alerts-e2e.test'], notBefore: new Date(now - 85 * DAY), notAfter: new Date(now + 5 * DAY) });
    await writeFile(path.join(files, 'api.pem'), other.pem);
    const scan = await anvil('scan-files', files);
    assert.equal(scan.code, 0, scan.out);
    const [a, b] = await Promise.all([anvil('alerts', '--json'), anvil('alerts', '--json')]);
    assert.equal(a.code, 0, a.out);
    assert.equal(b.code, 0, b.out);
    const created = [a, b].flatMap((r) => (JSON.parse(r.stdout) as { created: Array<{ key: string }> }).created);
    const fp = describeCertificate(other.der).fingerprint;
    assert.deepEqual(created.map((c) => c.key), [`expiry:${fp}`]);
    assert.equal(hook.requests.length, 2);
    assert.deepEqual(payloads()[1]!.notifications.map((n) => [n.type, n.alert.key, n.alert.stage, n.alert.severity]), [['opened', `expiry:${fp}`, '7d', 'critical']]);
    assert.equal(slack.requests.length, 2);
    assert.equal(smtp.messages.length, 2);
  });

  test('after the certificate is replaced: resolved, and a channel that was down gets it at the next run', async () => {
    const renewed = await testLeaf({ ca, names: ['shop.alerts-e2e.test', 'www.shop.alerts-e2e.test'], notBefore: new Date(Date.now() - 3_600_000) });
    const fpNew = describeCertificate(renewed.der).fingerprint;
    await writeFile(path.join(files, 'shop.pem'), renewed.pem);
    const scan = await anvil('scan-files', files);
    assert.equal(scan.code, 0, scan.out);

    hook.respond = () => ({ status: 503, body: 'maintenance' });
    const down = await anvil('alerts');
    hook.respond = () => ({ status: 200, body: 'ok' });
    assert.equal(down.code, 1, down.out);
    assert.match(down.stdout, /^resolved\s+warning\s+14d\s+expiry:/m);
    assert.match(down.stdout, /^FAILED webhook \(http:\/\/127\.0\.0\.1:\d+\): webhook: POST http:\/\/127\.0\.0\.1:\d+: answered 503: maintenance$/m);
    assert.match(down.stdout, /^1 notification\(s\) still to deliver: sent at the next run$/m);
    assert.equal(hook.requests.length, 2 + 3, 'tried three times within the run');
    assert.equal(slack.requests.length, 3);
    assert.equal(smtp.messages.length, 3);
    const mail = smtp.messages[2]!;
    assert.match(decodeHeader(mail.headers.get('subject') ?? ''), /^\[Anvil\] \[RESOLVED\] warning shop\.alerts-e2e\.test \(\+1\): renewed by /);
    assert.ok(mail.text.includes(`renewed by ${fpNew.slice(0, 16)} (valid until `), mail.text);

    const up = await anvil('alerts', '--json');
    assert.equal(up.code, 0, up.out);
    const rep = JSON.parse(up.stdout) as { created: unknown[]; deliveries: Array<{ channel: string; ok: boolean; notifications: number }>; pending: number };
    assert.deepEqual(rep.created, []);
    assert.deepEqual(rep.deliveries.map((d) => [d.channel, d.ok, d.notifications]), [['webhook', true, 1]]);
    assert.equal(rep.pending, 0);
    const last = payloads().at(-1)!.notifications;
    assert.deepEqual(last.map((n) => [n.type, n.alert.key]), [['resolved', `expiry:${fpOld}`]]);
    assert.match(last[0]!.alert.message, new RegExp(`^renewed by ${fpNew.slice(0, 16)} \\(valid until `));
    assert.ok(mail.text.includes(`(notification ${last[0]!.id})`), 'the same notification the e-mail carried');
    assert.equal(slack.requests.length, 3, 'Slack had it already');
    assert.equal(smtp.messages.length, 3);

    const quiet = await anvil('alerts', '--json');
    assert.deepEqual((JSON.parse(quiet.stdout) as { deliveries: unknown[] }).deliveries, []);
  });

  for (const workers of [1, 2]) {
    test(`anvil server${workers > 1 ? ` --workers ${workers} (the primary)` : ''} sends alerts every alerts.intervalSeconds`, async () => {
      const rx = await startHttpReceiver();
      const server = await startAnvil({
        workers,
        inventory: { syncSeconds: 0 },
        alerts: { intervalSeconds: 1, source: `server-${workers}`, channels: [{ type: 'webhook', url: `${rx.base}/server`, secret: SECRET }, smtpChannel] },
      });
      try {
        const leaf = await testLeaf({ ca, names: [`server${workers}.alerts-e2e.test`], notBefore: new Date(Date.now() - 85 * DAY), notAfter: new Date(Date.now() + 5 * DAY) });
        const own = path.join(dir, `server-${workers}`);
        await mkdir(own, { recursive: true });
        await writeFile(path.join(own, 'cert.pem'), leaf.pem);
        const before = smtp.messages.length;
        const scan = await runTool(process.execPath, [ANVIL_BIN, 'inventory', 'scan-files', own, '--data-dir', server.dataDir]);
        assert.equal(scan.code, 0, scan.out);
        await rx.waitFor(1, 20_000);
        await smtp.waitFor(before + 1, 20_000);
        const p = JSON.parse(rx.requests[0]!.body) as Payload;
        assert.ok(verifySignature(SECRET, rx.requests[0]!.headers, rx.requests[0]!.body));
        assert.equal(p.source, `server-${workers}`);
        assert.deepEqual(p.notifications.map((n) => [n.type, n.alert.key]), [['opened', `expiry:${describeCertificate(leaf.der).fingerprint}`]]);
        // A few more intervals: nothing more.
        await new Promise((r) => setTimeout(r, 2500));
        assert.equal(rx.requests.length, 1);
        assert.equal(smtp.messages.length, before + 1);
        assert.match(server.stderr(), /inventory alerts sent/);
        for (const secret of [SECRET, PASSWORD]) assert.ok(!server.stderr().includes(secret), 'no secret in the log');
      } finally {
        await server.cleanup();
        await rx.close();
      }
    });
  }
});
