/**
 * The alert channels (src/inventory/alert-channels.ts) against real receivers on 127.0.0.1: a JSON
 * webhook receiver that checks the HMAC signature, a Slack-compatible receiver, and a real SMTP
 * server (smtp-server) requiring STARTTLS (or implicit TLS) with a test certificate and AUTH
 * PLAIN/LOGIN. Failures are classified (retry soon or not), and never carry a secret.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeHeader, startHttpReceiver, startSmtpServer, verifySignature, type HttpReceiver, type SmtpReceiver } from '../../test/helpers/alert-receivers.js';
import { AlertsConfigSchema } from './alert-config.js';
import { AlertConfigError, AlertDeliveryError, createChannels, WEBHOOK_SCHEMA, type AlertChannel, type AlertMessage, type AlertNotification } from './alert-channels.js';
import { testCa, testLeaf } from './test-certs.js';

const SECRET = 'whsec-0123456789abcdef0123456789abcdef';
const TOKEN = 'Bearer t0ken-that-must-not-leak';

function notification(o: Partial<AlertNotification> = {}): AlertNotification {
  return {
    id: '3f1c1a56-0d6e-4a53-9a4c-1b1c2e0f0a01',
    type: 'opened',
    reason: null,
    createdAt: '2026-03-01T00:00:00.000Z',
    alert: { key: `expiry:${'ab'.repeat(32)}`, check: 'expiring', severity: 'warning', stage: '14d', message: 'expires in 13 days (2026-03-14T00:00:00.000Z)', openedAt: '2026-02-15T00:00:00.000Z', resolvedAt: null },
    certificate: { fingerprint: 'ab'.repeat(32), names: ['www.example.test', 'example.test'], subject: 'CN=www.example.test', issuer: 'CN=Test Root', serial: '01ab', notBefore: '2025-12-14T00:00:00.000Z', notAfter: '2026-03-14T00:00:00.000Z' },
    installation: null,
    deployedAt: ['/etc/ssl/www.pem', '127.0.0.1:443 (SNI www.example.test)'],
    ...o,
  };
}

const resolved = notification({
  id: '3f1c1a56-0d6e-4a53-9a4c-1b1c2e0f0a02',
  type: 'resolved',
  alert: { key: `chain-invalid:${'cd'.repeat(32)}:0123`, check: 'chain-invalid', severity: 'critical', stage: 'critical', message: `renewed by ${'ef'.repeat(8)}`, openedAt: '2026-02-20T00:00:00.000Z', resolvedAt: '2026-03-01T00:00:00.000Z' },
  certificate: { fingerprint: 'cd'.repeat(32), names: ['api.example.test'], subject: '', issuer: 'CN=Test Root', serial: '02', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-04-01T00:00:00.000Z' },
  installation: { id: '0123', kind: 'endpoint', location: '192.0.2.7:443', sni: 'api.example.test' },
});

function message(ns: AlertNotification[]): AlertMessage {
  return { id: 'b7e0f7a4-5d0e-4d8a-a0d4-6d8d2a8e9c11', source: 'anvil-test', sentAt: new Date('2026-03-01T00:00:05.000Z'), notifications: ns };
}

async function channels(raw: unknown): Promise<AlertChannel[]> {
  return createChannels(AlertsConfigSchema.parse(raw));
}

async function rejection(p: Promise<unknown>): Promise<AlertDeliveryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof AlertDeliveryError, `an AlertDeliveryError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the delivery to fail');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-alert-channels-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the alerts config', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['a webhook URL that is not http(s)', { channels: [{ type: 'webhook', url: 'ftp://example.test/x' }] }, /channels\.0\.url|http:\/\/ or https:\/\//],
    ['a webhook URL that is not a URL', { channels: [{ type: 'webhook', url: 'example.test' }] }, /expected an http:\/\/ or https:\/\/ URL/],
    ['credentials in a URL', { channels: [{ type: 'slack', url: 'https://u:p@hooks.example.test/x' }] }, /must not hold credentials/],
    ['a short secret', { channels: [{ type: 'webhook', url: 'https://a.test/', secret: 'short' }] }, /at least 16 characters/],
    ['secret and secretFile', { channels: [{ type: 'webhook', url: 'https://a.test/', secret: SECRET, secretFile: '/x' }] }, /not both/],
    ['a header Anvil sets', { channels: [{ type: 'webhook', url: 'https://a.test/', headers: { 'X-Anvil-Signature': 'x' } }] }, /set by Anvil/],
    ['a header value with a line break', { channels: [{ type: 'webhook', url: 'https://a.test/', headers: { 'X-Team': 'a\r\nBcc: x' } }] }, /line breaks/],
    ['an SMTP user without a password', { channels: [{ type: 'smtp', host: 'mail.test', user: 'u', from: 'a@b.test', to: ['c@d.test'] }] }, /needs password or passwordFile/],
    ['a recipient with a display name', { channels: [{ type: 'smtp', host: 'mail.test', from: 'a@b.test', to: ['Ops <ops@d.test>'] }] }, /e-mail address/],
    ['no recipient', { channels: [{ type: 'smtp', host: 'mail.test', from: 'a@b.test', to: [] }] }, /to/],
    ['two channels with one name', { channels: [{ type: 'slack', url: 'https://a.test/1' }, { type: 'slack', name: 'slack', url: 'https://a.test/2' }] }, /already named "slack"/],
    ['an unknown field', { channels: [{ type: 'slack', url: 'https://a.test/1', channel: '#ops' }] }, /channel/],
    ['an unknown type', { channels: [{ type: 'pager', url: 'https://a.test/1' }] }, /type/],
  ];
  for (const [name, raw, re] of bad) {
    test(`refuses ${name}`, () => {
      const r = AlertsConfigSchema.safeParse(raw);
      assert.equal(r.success, false);
      assert.match(r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'), re);
    });
  }
  test('defaults: every 5 minutes, warnings and up, 30/14/7/3/1-day stages, repeated daily', () => {
    const c = AlertsConfigSchema.parse({ reminderDays: [1, 7, 30] });
    assert.deepEqual({ i: c.intervalSeconds, m: c.minSeverity, r: c.repeatHours, d: c.reminderDays, ch: c.channels }, { i: 300, m: 'warning', r: 24, d: [30, 7, 1], ch: [] });
    const d = AlertsConfigSchema.parse({});
    assert.deepEqual(d.reminderDays, [30, 14, 7, 3, 1]);
  });
  test('printed (config-check, logs) without its secrets, in a form that still validates', async () => {
    const { inspect } = await import('node:util');
    const c = AlertsConfigSchema.parse({
      channels: [
        { type: 'webhook', url: 'https://hooks.example.test/anvil?token=QUERYTOKEN', secret: SECRET, headers: { Authorization: TOKEN } },
        { type: 'slack', url: 'https://hooks.slack.test/services/T0/B0/SLACKTOKEN' },
        { type: 'smtp', host: 'mail.test', user: 'u', password: 'SMTPPASSWORD', from: 'a@b.test', to: ['c@d.test'] },
      ],
    });
    for (const printed of [JSON.stringify(c), inspect(c, { depth: 5 })]) {
      for (const secret of ['QUERYTOKEN', SECRET, 't0ken-that-must-not-leak', 'SLACKTOKEN', 'SMTPPASSWORD']) assert.ok(!printed.includes(secret), `${secret} in ${printed}`);
    }
    const shown = JSON.parse(JSON.stringify(c)) as { channels: Array<Record<string, unknown>> };
    assert.equal(shown.channels[0]!.url, 'https://hooks.example.test/anvil?redacted');
    assert.equal(shown.channels[1]!.url, 'https://hooks.slack.test/redacted');
    assert.equal(AlertsConfigSchema.safeParse(shown).success, true, 'the --workers primary hands the config over as JSON');
    // The object itself keeps the real values for the channels.
    assert.equal(c.channels[0]!.type === 'webhook' && c.channels[0]!.secret, SECRET);
  });

  test('a secret file that cannot be read is a config error naming the channel', async () => {
    await assert.rejects(channels({ channels: [{ type: 'webhook', name: 'ops', url: 'https://a.test/', secretFile: path.join(dir, 'nope') }] }), (e: unknown) => {
      assert.ok(e instanceof AlertConfigError);
      assert.equal(e.code, 'ALERT_CONFIG');
      assert.match(e.message, /alerts channel "ops": cannot read secretFile .*nope: ENOENT/);
      return true;
    });
  });
});

describe('the JSON webhook', () => {
  let rx: HttpReceiver;
  before(async () => {
    rx = await startHttpReceiver();
  });
  after(() => rx.close());

  test('POSTs the versioned payload, signed with HMAC-SHA256 over the timestamp and the body', async () => {
    const secretFile = path.join(dir, 'webhook.secret');
    await writeFile(secretFile, `${SECRET}\n`, { mode: 0o600 });
    const [ch] = await channels({ channels: [{ type: 'webhook', url: `${rx.base}/hooks/anvil?team=ops`, secretFile, headers: { Authorization: TOKEN } }] });
    try {
      assert.equal(ch!.name, 'webhook');
      assert.equal(ch!.target, rx.base);
      rx.requests.length = 0;
      await ch!.send(message([notification(), resolved]));
      assert.equal(rx.requests.length, 1);
      const req = rx.requests[0]!;
      assert.equal(req.method, 'POST');
      assert.equal(req.path, '/hooks/anvil?team=ops');
      assert.equal(req.headers['content-type'], 'application/json');
      assert.equal(req.headers.authorization, TOKEN);
      assert.equal(req.headers['x-anvil-event'], 'inventory.alerts');
      assert.equal(req.headers['x-anvil-delivery'], 'b7e0f7a4-5d0e-4d8a-a0d4-6d8d2a8e9c11');
      assert.ok(verifySignature(SECRET, req.headers, req.body), 'the signature verifies with the secret');
      assert.ok(!verifySignature('another-secret-of-enough-length', req.headers, req.body), 'and not with another');
      assert.ok(!verifySignature(SECRET, req.headers, req.body.replace('"warning"', '"notice"')), 'nor over a changed body');
      const payload = JSON.parse(req.body) as Record<string, unknown>;
      assert.deepEqual(payload, {
        schema: WEBHOOK_SCHEMA,
        id: 'b7e0f7a4-5d0e-4d8a-a0d4-6d8d2a8e9c11',
        sentAt: '2026-03-01T00:00:05.000Z',
        source: 'anvil-test',
        summary: { opened: 1, reminder: 0, resolved: 1, test: 0 },
        notifications: [notification(), resolved],
      });
    } finally {
      await ch!.close();
    }
  });

  test('without a secret: no signature headers', async () => {
    const [ch] = await channels({ channels: [{ type: 'webhook', url: `${rx.base}/plain` }] });
    rx.requests.length = 0;
    await ch!.send(message([notification()]));
    await ch!.close();
    assert.equal(rx.requests[0]?.headers['x-anvil-signature'], undefined);
    assert.equal(rx.requests[0]?.headers['x-anvil-timestamp'], undefined);
  });

  test('a 5xx or 429 may be retried (with its Retry-After), a 4xx or a redirect is permanent, and no secret shows', async () => {
    const [ch] = await channels({ channels: [{ type: 'webhook', url: `${rx.base}/secret-path-token`, secret: SECRET, headers: { Authorization: TOKEN } }] });
    try {
      // The receiver echoes what it got: the error must still not show the token, the secret or the path.
      const answers: Array<[number, Record<string, string>, { code: string; permanent: boolean; retryAfterMs?: number }, RegExp]> = [
        [503, { 'retry-after': '2' }, { code: 'ALERT_FAILED', permanent: false, retryAfterMs: 2000 }, /answered 503/],
        [429, {}, { code: 'ALERT_FAILED', permanent: false }, /answered 429/],
        [401, {}, { code: 'ALERT_REJECTED', permanent: true }, /answered 401 \(check the credentials/],
        [404, {}, { code: 'ALERT_REJECTED', permanent: true }, /answered 404 \(the URL is wrong/],
        [302, { location: 'https://elsewhere.test/' }, { code: 'ALERT_REJECTED', permanent: true }, /redirects are not followed/],
      ];
      for (const [status, headers, want, re] of answers) {
        rx.respond = (r) => ({ status, headers, body: `echo: ${r.headers.authorization} ${r.path} ${SECRET}` });
        const e = await rejection(ch!.send(message([notification()])));
        assert.deepEqual({ code: e.code, permanent: e.permanent, ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}) }, want, `answer ${status}`);
        assert.match(e.message, re);
        assert.match(e.message, /^webhook: POST http:\/\/127\.0\.0\.1:\d+: /);
        for (const secret of [TOKEN, 't0ken-that-must-not-leak', SECRET, 'secret-path-token']) assert.ok(!e.message.includes(secret), `${status}: "${e.message}" shows a secret`);
      }
    } finally {
      rx.respond = () => ({ status: 200, body: 'ok' });
      await ch!.close();
    }
  });

  test('a receiver that does not answer times out; a closed port is refused; both may be retried', async () => {
    const [slow] = await createChannels(AlertsConfigSchema.parse({ timeoutMs: 300, channels: [{ type: 'webhook', url: `${rx.base}/slow` }] }));
    rx.respond = () => 'hang';
    const t = Date.now();
    const e = await rejection(slow!.send(message([notification()])));
    rx.respond = () => ({ status: 200, body: 'ok' });
    await slow!.close();
    assert.equal(e.code, 'ALERT_TIMEOUT');
    assert.equal(e.permanent, false);
    assert.ok(Date.now() - t < 5000, 'bounded by the timeout');

    const closed = await startHttpReceiver();
    const url = `${closed.base}/x`;
    await closed.close();
    const [gone] = await channels({ channels: [{ type: 'webhook', url }] });
    const refused = await rejection(gone!.send(message([notification()])));
    await gone!.close();
    assert.equal(refused.code, 'ALERT_FAILED');
    assert.equal(refused.permanent, false);
    assert.match(refused.message, /ECONNREFUSED/);
  });
});

describe('the Slack-compatible webhook', () => {
  let rx: HttpReceiver;
  before(async () => {
    rx = await startHttpReceiver();
  });
  after(() => rx.close());

  test('posts text (all of it, for Mattermost and Rocket.Chat) and blocks (Slack), one section per notification', async () => {
    const [ch] = await channels({ channels: [{ type: 'slack', url: `${rx.base}/services/T000/B000/XXXXSECRET` }] });
    rx.requests.length = 0;
    await ch!.send(message([notification(), resolved]));
    await ch!.close();
    assert.equal(ch!.target, rx.base);
    const req = rx.requests[0]!;
    assert.equal(req.path, '/services/T000/B000/XXXXSECRET');
    assert.equal(req.headers['content-type'], 'application/json');
    const body = JSON.parse(req.body) as { text: string; blocks: Array<{ type: string; text?: { type: string; text: string }; elements?: unknown[] }> };
    assert.deepEqual(Object.keys(body).sort(), ['blocks', 'text']);
    const lines = body.text.split('\n');
    assert.equal(lines[0], 'Anvil certificate alerts (anvil-test): 1 opened, 1 resolved');
    assert.equal(lines[1], ':large_orange_circle: *OPENED* warning `www.example.test (+1)`: `expires in 13 days (2026-03-14T00:00:00.000Z)` · `abababababababab`');
    assert.equal(lines[2], ':white_check_mark: *RESOLVED* critical `api.example.test`: `renewed by efefefefefefefef` at `192.0.2.7:443 (SNI api.example.test)` · `cdcdcdcdcdcdcdcd`');
    assert.deepEqual(body.blocks.map((b) => b.type), ['header', 'section', 'section', 'context']);
    assert.equal(body.blocks[0]!.text!.type, 'plain_text');
    assert.equal(body.blocks[1]!.text!.type, 'mrkdwn');
    assert.equal(body.blocks[1]!.text!.text, lines[1]);
  });

  test('names from certificates cannot mention anyone or break out of their code span', async () => {
    const [ch] = await channels({ channels: [{ type: 'slack', url: `${rx.base}/hook` }] });
    rx.requests.length = 0;
    const evil = notification({ certificate: { ...notification().certificate!, names: ['<!channel> @here `boom` <https://evil.test|click>\nline'] } });
    await ch!.send(message([evil]));
    await ch!.close();
    const { text } = JSON.parse(rx.requests[0]!.body) as { text: string };
    const line = text.split('\n')[1]!;
    assert.ok(!text.includes('<!channel>'));
    assert.ok(!text.includes('<https://evil.test'));
    assert.equal(text.split('\n').length, 2, 'no line break gets through');
    assert.match(line, /`&lt;!channel&gt; @here 'boom' &lt;https:\/\/evil\.test\|click&gt; line`/);
  });

  test('a wrong hook (404 no_service) is permanent, and the error shows only the origin', async () => {
    const [ch] = await channels({ channels: [{ type: 'slack', name: 'ops-slack', url: `${rx.base}/services/T1/B1/TOKEN123456` }] });
    rx.respond = (r) => ({ status: 404, body: `no_service ${r.path}` });
    const e = await rejection(ch!.send(message([notification()])));
    rx.respond = () => ({ status: 200, body: 'ok' });
    await ch!.close();
    assert.equal(e.code, 'ALERT_REJECTED');
    assert.equal(e.permanent, true);
    assert.match(e.message, /^ops-slack: POST http:\/\/127\.0\.0\.1:\d+: answered 404/);
    assert.ok(!e.message.includes('TOKEN123456'), e.message);
  });
});

describe('e-mail over SMTP (a real SMTP server requiring TLS and AUTH)', { timeout: 60_000 }, () => {
  let smtp: SmtpReceiver;
  let smtps: SmtpReceiver;
  let plain: SmtpReceiver;
  let caFile: string;
  let passwordFile: string;
  const USER = 'anvil-alerts';
  const PASSWORD = 'smtp-pa55word-never-logged';
  before(async () => {
    const ca = await testCa('SMTP Test Root');
    const leaf = await testLeaf({ ca, names: ['localhost'], ips: ['127.0.0.1'] });
    caFile = path.join(dir, 'smtp-ca.pem');
    await writeFile(caFile, ca.cert.toString('pem'));
    passwordFile = path.join(dir, 'smtp.password');
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    smtp = await startSmtpServer({ user: USER, password: PASSWORD, key: leaf.keyPem, cert: leaf.pem });
    smtps = await startSmtpServer({ user: USER, password: PASSWORD, key: leaf.keyPem, cert: leaf.pem, secure: true });
    plain = await startSmtpServer({ user: USER, password: PASSWORD, key: leaf.keyPem, cert: leaf.pem, noStartTls: true });
  });
  after(async () => {
    await smtp?.close();
    await smtps?.close();
    await plain?.close();
  });

  const smtpChannel = (o: Record<string, unknown>) => ({ type: 'smtp', host: '127.0.0.1', port: smtp.port, user: USER, passwordFile, caFile, from: 'anvil@alerts.test', to: ['ops@alerts.test', 'oncall@alerts.test'], ...o });

  test('STARTTLS, AUTH, the envelope, a subject and a plain-text body with every notification', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({})] });
    assert.equal(ch!.target, `smtp://127.0.0.1:${smtp.port} to 2 recipient(s)`);
    await ch!.send(message([notification(), resolved]));
    await ch!.close();
    assert.equal(smtp.messages.length, 1);
    const m = smtp.messages[0]!;
    assert.equal(m.secure, true, 'upgraded with STARTTLS before anything was sent');
    assert.equal(m.user, USER);
    assert.equal(m.from, 'anvil@alerts.test');
    assert.deepEqual(m.to, ['ops@alerts.test', 'oncall@alerts.test']);
    assert.equal(decodeHeader(m.headers.get('subject') ?? ''), '[Anvil] 2 certificate alerts: 1 opened, 1 resolved');
    assert.equal(m.headers.get('from'), 'anvil@alerts.test');
    assert.equal(m.headers.get('to'), 'ops@alerts.test, oncall@alerts.test');
    assert.equal(m.headers.get('auto-submitted'), 'auto-generated');
    assert.equal(m.headers.get('x-anvil-delivery'), 'b7e0f7a4-5d0e-4d8a-a0d4-6d8d2a8e9c11');
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(m.text, /^Anvil certificate alerts from anvil-test, 2026-03-01T00:00:05\.000Z: 1 opened, 1 resolved\n/);
    assert.ok(m.text.includes('[OPENED] warning www.example.test (+1): expires in 13 days (2026-03-14T00:00:00.000Z)\n'), m.text);
    assert.ok(m.text.includes(`  certificate  ${'ab'.repeat(32)}\n`));
    assert.ok(m.text.includes('  names        www.example.test, example.test\n'));
    assert.ok(m.text.includes('  deployed at  /etc/ssl/www.pem, 127.0.0.1:443 (SNI www.example.test)\n'));
    assert.ok(m.text.includes('[RESOLVED] critical api.example.test: renewed by efefefefefefefef\n'));
    assert.ok(m.text.includes('  at           192.0.2.7:443 (SNI api.example.test)\n'));
    assert.ok(m.text.includes(`  alert        expiry:${'ab'.repeat(32)}  (notification 3f1c1a56-0d6e-4a53-9a4c-1b1c2e0f0a01)\n`));
    assert.ok(!m.raw.includes(PASSWORD));
  });

  test('one notification: its title is the subject', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({ to: ['ops@alerts.test'], subjectPrefix: '[PKI]' })] });
    const before = smtp.messages.length;
    await ch!.send(message([notification()]));
    await ch!.close();
    assert.equal(decodeHeader(smtp.messages[before]!.headers.get('subject') ?? ''), '[PKI] [OPENED] warning www.example.test (+1): expires in 13 days (2026-03-14T00:00:00.000Z)');
  });

  test('implicit TLS (SMTPS) with the password given inline', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({ port: smtps.port, secure: true, passwordFile: undefined, password: PASSWORD })] });
    await ch!.send(message([notification()]));
    await ch!.close();
    assert.equal(smtps.messages.length, 1);
    assert.equal(smtps.messages[0]!.secure, true);
    assert.deepEqual(smtps.messages[0]!.to, ['ops@alerts.test', 'oncall@alerts.test']);
  });

  test('a wrong password is refused (535), permanent, and the password shows nowhere', async () => {
    const wrong = 'wrong-pa55word-also-secret';
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({ passwordFile: undefined, password: wrong })] });
    const e = await rejection(ch!.send(message([notification()])));
    await ch!.close();
    assert.equal(e.code, 'ALERT_REJECTED');
    assert.equal(e.permanent, true);
    assert.match(e.message, /authentication failed \(check user and password\)/);
    assert.ok(!e.message.includes(wrong));
    assert.ok(!e.message.includes(Buffer.from(`\0${USER}\0${wrong}`).toString('base64')));
    assert.ok(smtp.failedLogins.includes(USER));
  });

  test('without the private CA, the server\'s certificate does not verify: permanent, and caFile is named', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({ caFile: undefined })] });
    const before = smtp.messages.length;
    const e = await rejection(ch!.send(message([notification()])));
    await ch!.close();
    assert.equal(e.permanent, true);
    assert.match(e.message, /certificate does not verify \(set caFile/);
    assert.equal(smtp.messages.length, before);
  });

  test('requireTLS: a server without STARTTLS gets no credentials and no message', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({ port: plain.port })] });
    const e = await rejection(ch!.send(message([notification()])));
    await ch!.close();
    assert.equal(e.permanent, true);
    assert.match(e.message, /STARTTLS/);
    assert.equal(plain.messages.length, 0);
    assert.deepEqual(plain.failedLogins, []);
  });

  test('a temporary refusal (451) may be retried; a closed port is a connection failure', async () => {
    const [ch] = await channels({ timeoutMs: 5000, channels: [smtpChannel({})] });
    smtp.dataError = { code: 451, message: 'Try again later' };
    const e = await rejection(ch!.send(message([notification()])));
    smtp.dataError = null;
    await ch!.close();
    assert.equal(e.code, 'ALERT_FAILED');
    assert.equal(e.permanent, false);
    assert.match(e.message, /451/);

    const rx = await startHttpReceiver();
    const port = Number(new URL(rx.base).port);
    await rx.close();
    const [gone] = await channels({ timeoutMs: 2000, channels: [smtpChannel({ port })] });
    const refused = await rejection(gone!.send(message([notification()])));
    assert.equal(refused.permanent, false);
    assert.match(refused.message, /ECONNREFUSED|ECONNECTION/);
  });
});
