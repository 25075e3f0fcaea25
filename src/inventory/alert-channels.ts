/**
 * Where inventory alerts go (docs/alerts.md): a JSON webhook (versioned schema, optional
 * HMAC-SHA256 signature), a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat), and
 * e-mail over SMTP (nodemailer). This is the network edge of the alerts, as DNS providers are for
 * dns-01: src/inventory/alerts.ts decides what to send and never touches a socket.
 *
 * Contract of an AlertChannel:
 * - `send` delivers one message (a digest of one or more notifications) or throws an
 *   AlertDeliveryError whose `permanent` says whether trying again soon can help (a 5xx, a refused
 *   connection, a timeout, an SMTP 4xx: no; a 4xx, a redirect, an SMTP 5xx, a certificate that
 *   does not verify: yes). Either way the caller keeps the notifications and tries again at its
 *   next run; `permanent` only stops the retries within a run.
 * - Every network call ends within `timeoutMs` (connect, TLS, the answer), and a whole `send`
 *   within a small multiple of it. A `send` given an aborted `signal` stops at once with an
 *   ALERT_TIMEOUT (the caller's time is up: its lease on the notifications ends); what was sent
 *   so far may still arrive, which delivery at least once allows.
 * - Error messages and `target` never hold a secret: not the webhook secret, not a header value,
 *   not a Slack URL's path (which is its token), not the SMTP password.
 * - Strings from certificates (names, subjects, locations) are untrusted: they cannot mention
 *   people in Slack/Mattermost, inject markup, or add e-mail headers.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent, type Dispatcher } from 'undici';
import { channelNames, type AlertChannelConfig, type AlertsConfig, type SlackChannelConfig, type SmtpChannelConfig, type WebhookChannelConfig } from './alert-config.js';

/** The version of the JSON webhook's payload; bumped only for changes a receiver could trip on. */
export const WEBHOOK_SCHEMA = 'anvil.inventory.alerts/v1';

export type NotificationType = 'opened' | 'reminder' | 'resolved' | 'test';
export type ReminderReason = 'stage' | 'escalated' | 'repeat';

/** One notification as every channel receives it (and the JSON webhook sends it, field for field). */
export interface AlertNotification {
  /** Stable across retries: a receiver that sees an id twice has seen the same notification. */
  id: string;
  type: NotificationType;
  /** Reminders: a new expiry stage, a higher severity, or the repeat interval. Else null. */
  reason: ReminderReason | null;
  createdAt: string;
  alert: {
    /** One alert per problem: "expiry:<fingerprint>", "<check>:<fingerprint>" or "<check>:<fingerprint>:<installation id>". */
    key: string;
    check: string;
    severity: 'critical' | 'warning' | 'notice';
    /** Expiry: "30d", "14d", ... or "expired" ("open" before the first stage); else the highest severity announced. */
    stage: string;
    message: string;
    openedAt: string;
    resolvedAt: string | null;
  };
  certificate: {
    fingerprint: string;
    names: string[];
    subject: string;
    issuer: string;
    serial: string;
    notBefore: string;
    notAfter: string;
  } | null;
  /** The place the problem is about (a chain or name error at an endpoint, a missing file), if any. */
  installation: { id: string; kind: string; location: string; sni: string | null } | null;
  /** Where the certificate is deployed (at most 10 places). */
  deployedAt: string[];
}

export interface AlertMessage {
  /** The digest's id (X-Anvil-Delivery), the same for every attempt of one delivery. */
  id: string;
  /** Which Anvil sends it (alerts.source, else the host name). */
  source: string;
  sentAt: Date;
  notifications: AlertNotification[];
}

export type AlertErrorCode = 'ALERT_REJECTED' | 'ALERT_FAILED' | 'ALERT_TIMEOUT' | 'ALERT_CONFIG';

export class AlertDeliveryError extends Error {
  constructor(
    readonly code: AlertErrorCode,
    message: string,
    /** Trying again within the run will not help (the next run still tries). */
    readonly permanent: boolean,
    /** A Retry-After the receiver asked for. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'AlertDeliveryError';
  }
}

export interface AlertChannel {
  readonly name: string;
  readonly type: AlertChannelConfig['type'];
  /** Where it sends, without secrets ("https://hooks.slack.com", "smtp://mail.example.com:587 → 2 recipients"). */
  readonly target: string;
  /** At most this many notifications per message; a longer digest is split. */
  readonly maxPerMessage: number;
  /** Delivers, or throws an AlertDeliveryError. */
  send(message: AlertMessage, options?: SendOptions): Promise<SendOutcome>;
  close(): Promise<void>;
}

export interface SendOptions {
  /** Aborted when the caller can wait no longer (the end of its lease): the send stops with ALERT_TIMEOUT. */
  signal?: AbortSignal;
}

/** The error a send stopped by its caller's signal throws. */
function abortedError(what: string, signal: AbortSignal): AlertDeliveryError {
  const why = signal.reason instanceof Error && signal.reason.name !== 'AbortError' ? signal.reason.message : 'the caller stopped it';
  return new AlertDeliveryError('ALERT_TIMEOUT', `${what}: stopped: ${why}`, false);
}

/** A delivery that arrived, with what the operator should still know (recipients an SMTP server refused). */
export interface SendOutcome {
  warning?: string;
}

export interface ChannelDeps {
  /** Outbound HTTP (STYLE.md rule 6), for tests; default: one undici Agent per channel with the timeouts. */
  dispatcher?: Dispatcher;
  /** Reads secretFile / passwordFile / caFile; default node:fs. */
  readFile?: (path: string) => Promise<string>;
}

/** A failure to build channels (a secret file that cannot be read): the operator must fix the config. */
export class AlertConfigError extends Error {
  readonly code = 'ALERT_CONFIG';
}

/** Reads secret and CA files and builds every configured channel. */
export async function createChannels(config: Pick<AlertsConfig, 'channels' | 'timeoutMs'>, deps: ChannelDeps = {}): Promise<AlertChannel[]> {
  const read = deps.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const names = channelNames(config.channels);
  const out: AlertChannel[] = [];
  const fileOf = async (name: string, what: string, p: string, firstLine: boolean) => {
    let text: string;
    try {
      text = await read(p);
    } catch (e) {
      throw new AlertConfigError(`alerts channel "${name}": cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const v = firstLine ? (text.split(/\r?\n/)[0] ?? '').trim() : text;
    if (!v) throw new AlertConfigError(`alerts channel "${name}": ${what} ${p} is empty`);
    return v;
  };
  try {
    for (const [i, c] of config.channels.entries()) {
      const name = names[i]!;
      if (c.type === 'webhook') {
        const secret = c.secret ?? (c.secretFile ? await fileOf(name, 'secretFile', c.secretFile, true) : undefined);
        out.push(new WebhookChannel(name, c, secret, config.timeoutMs, deps.dispatcher));
      } else if (c.type === 'slack') {
        out.push(new SlackChannel(name, c, config.timeoutMs, deps.dispatcher));
      } else {
        const password = c.password ?? (c.passwordFile ? await fileOf(name, 'passwordFile', c.passwordFile, true) : undefined);
        const ca = c.caFile ? await fileOf(name, 'caFile', c.caFile, false) : undefined;
        if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new AlertConfigError(`alerts channel "${name}": caFile ${c.caFile} holds no PEM certificate`);
        out.push(new SmtpChannel(name, c, password, ca, config.timeoutMs));
      }
    }
  } catch (e) {
    await Promise.all(out.map((c) => c.close().catch(() => {})));
    throw e;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Formatting shared by the channels

const SUMMARY_ORDER: NotificationType[] = ['opened', 'reminder', 'resolved', 'test'];

export function summaryOf(ns: readonly AlertNotification[]): Record<NotificationType, number> {
  const s: Record<NotificationType, number> = { opened: 0, reminder: 0, resolved: 0, test: 0 };
  for (const n of ns) s[n.type]++;
  return s;
}

function summaryText(ns: readonly AlertNotification[]): string {
  const s = summaryOf(ns);
  return SUMMARY_ORDER.filter((t) => s[t] > 0)
    .map((t) => `${s[t]} ${t}`)
    .join(', ');
}

/** Control characters (line breaks included) out of an untrusted string, and a length cap. */
export function clean(s: string, max = 300): string {
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** What the notification is about, for a title: the first name, else the subject, else the key. */
function subjectOf(n: AlertNotification): string {
  if (!n.certificate) return n.type === 'test' ? 'test' : n.alert.key;
  const c = n.certificate;
  const first = c.names[0] ?? c.subject ?? '';
  const more = c.names.length > 1 ? ` (+${c.names.length - 1})` : '';
  return first ? `${first}${more}` : c.fingerprint.slice(0, 16);
}

function label(n: AlertNotification): string {
  if (n.type === 'reminder') return n.reason === 'repeat' ? 'STILL OPEN' : n.reason === 'escalated' ? 'ESCALATED' : 'REMINDER';
  return n.type.toUpperCase();
}

/** A one-line title: "[OPENED] warning www.example.com: expires in 13 days (...)". */
export function titleOf(n: AlertNotification): string {
  return clean(`[${label(n)}] ${n.type === 'test' ? '' : `${n.alert.severity} `}${subjectOf(n)}: ${n.alert.message}`, 400);
}

/** The plain-text body of a message (e-mail, and the readable part of the others). */
export function plainText(m: AlertMessage): string {
  const lines = [`Anvil certificate alerts from ${clean(m.source, 100)}, ${m.sentAt.toISOString()}: ${summaryText(m.notifications)}`, ''];
  for (const n of m.notifications) {
    lines.push(titleOf(n));
    if (n.type === 'test') {
      lines.push('  a test message from `anvil inventory alerts --test`: this channel works.', '');
      continue;
    }
    lines.push(`  check        ${n.alert.check} (${n.alert.severity}, stage ${n.alert.stage})`);
    if (n.certificate) {
      const c = n.certificate;
      lines.push(`  certificate  ${c.fingerprint}`);
      if (c.names.length) lines.push(`  names        ${clean(c.names.slice(0, 20).join(', '), 1000)}${c.names.length > 20 ? `, and ${c.names.length - 20} more` : ''}`);
      if (c.subject) lines.push(`  subject      ${clean(c.subject)}`);
      lines.push(`  issuer       ${clean(c.issuer)}`);
      lines.push(`  valid        ${c.notBefore} to ${c.notAfter}`);
    }
    if (n.installation) lines.push(`  at           ${clean(n.installation.location)}${n.installation.sni ? ` (SNI ${clean(n.installation.sni)})` : ''}`);
    if (n.deployedAt.length) lines.push(`  deployed at  ${clean(n.deployedAt.join(', '), 1000)}`);
    lines.push(`  opened       ${n.alert.openedAt}${n.alert.resolvedAt ? `, resolved ${n.alert.resolvedAt}` : ''}`);
    lines.push(`  alert        ${n.alert.key}  (notification ${n.id})`, '');
  }
  lines.push('Sent by Anvil (docs/alerts.md): an alert is announced once, reminded at its stages, and resolved once.');
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// HTTP: the JSON webhook and the Slack-compatible one

/** Enough of an error answer to quote; the rest is not read. */
const MAX_ANSWER_BYTES = 16 * 1024;
const MAX_RETRY_AFTER_MS = 3_600_000;

function originOf(url: string): string {
  return new URL(url).origin;
}

abstract class HttpChannel implements AlertChannel {
  abstract readonly type: 'webhook' | 'slack';
  abstract readonly maxPerMessage: number;
  readonly target: string;
  readonly #url: URL;
  readonly #dispatcher: Dispatcher;
  readonly #owns: boolean;
  /** Strings that must never appear in an error message. */
  protected readonly secrets: string[] = [];

  constructor(
    readonly name: string,
    url: string,
    protected readonly timeoutMs: number,
    dispatcher: Dispatcher | undefined,
  ) {
    this.#url = new URL(url);
    this.target = originOf(url);
    // The path of a Slack URL is its token; any query may hold one too.
    if (this.#url.pathname.length > 1) this.secrets.push(this.#url.pathname);
    if (this.#url.search) this.secrets.push(this.#url.search);
    this.#owns = !dispatcher;
    this.#dispatcher = dispatcher ?? new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  abstract send(message: AlertMessage, options?: SendOptions): Promise<SendOutcome>;

  async close(): Promise<void> {
    if (this.#owns) await this.#dispatcher.close();
  }

  protected redact(s: string): string {
    let out = s;
    for (const x of this.secrets) if (x.length >= 4) out = out.split(x).join('[redacted]');
    return out;
  }

  /** POSTs a JSON body; returns on 2xx, throws an AlertDeliveryError otherwise. */
  protected async post(body: string, headers: Record<string, string>, caller?: AbortSignal): Promise<SendOutcome> {
    const what = `${this.name}: POST ${this.target}`;
    if (caller?.aborted) throw abortedError(what, caller);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = caller ? AbortSignal.any([timeout, caller]) : timeout;
    let res: Dispatcher.ResponseData;
    try {
      // Dispatcher.request never follows redirects: a 3xx is reported below.
      res = await this.#dispatcher.request({
        origin: this.#url.origin,
        path: `${this.#url.pathname}${this.#url.search}`,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': 'anvil-alerts/1' },
        body,
        signal,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (caller?.aborted) throw abortedError(what, caller);
      if (signal.aborted || (e as Error).name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
        throw new AlertDeliveryError('ALERT_TIMEOUT', `${what}: no answer within ${this.timeoutMs} ms`, false);
      }
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const detail = code && code !== 'UND_ERR_SOCKET' ? code : (cause?.code ?? cause?.message ?? (e as Error).message);
      throw new AlertDeliveryError('ALERT_FAILED', this.redact(`${what}: ${detail}`), isCertificateError(detail));
    }
    const answer = await readCapped(res);
    if (caller?.aborted) throw abortedError(what, caller);
    const status = res.statusCode;
    if (status >= 200 && status < 300) return {};
    const snippet = clean(this.redact(answer), 200);
    const tail = snippet ? `: ${snippet}` : '';
    if (status >= 300 && status < 400) throw new AlertDeliveryError('ALERT_REJECTED', `${what}: answered ${status} (a redirect); redirects are not followed: configure the final URL`, true);
    if (status === 408 || status === 429 || status >= 500) {
      throw new AlertDeliveryError('ALERT_FAILED', `${what}: answered ${status}${tail}`, false, retryAfterOf(res.headers['retry-after']));
    }
    const hint = status === 401 || status === 403 ? ' (check the credentials: headers, secret, or the webhook URL)' : status === 404 || status === 410 ? ' (the URL is wrong, or the webhook was removed)' : '';
    throw new AlertDeliveryError('ALERT_REJECTED', `${what}: answered ${status}${hint}${tail}`, true);
  }
}

function isCertificateError(s: string): boolean {
  return /CERT|certificate|self.signed|unable to verify|ERR_TLS/i.test(s);
}

function retryAfterOf(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const s = Number(v);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(v) - Date.now();
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

async function readCapped(res: Dispatcher.ResponseData): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res.body) {
      const b = c as Buffer;
      chunks.push(b.subarray(0, MAX_ANSWER_BYTES - size));
      size += b.length;
      if (size >= MAX_ANSWER_BYTES) {
        res.body.destroy();
        break;
      }
    }
  } catch {
    // A body cut short still leaves a status to report.
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The JSON webhook's body (docs/alerts.md, "Payload"). */
export function webhookPayload(m: AlertMessage): Record<string, unknown> {
  return {
    schema: WEBHOOK_SCHEMA,
    id: m.id,
    sentAt: m.sentAt.toISOString(),
    source: m.source,
    summary: summaryOf(m.notifications),
    notifications: m.notifications,
  };
}

/**
 * The signature a receiver checks: hex HMAC-SHA256 over "<timestamp>.<body>" with the shared
 * secret, sent as `X-Anvil-Signature: v1=<hex>` with `X-Anvil-Timestamp: <unix seconds>`.
 */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

class WebhookChannel extends HttpChannel {
  readonly type = 'webhook' as const;
  readonly maxPerMessage = 100;
  readonly #secret: string | undefined;
  readonly #headers: Record<string, string>;

  constructor(name: string, c: WebhookChannelConfig, secret: string | undefined, timeoutMs: number, dispatcher?: Dispatcher) {
    super(name, c.url, timeoutMs, dispatcher);
    this.#secret = secret;
    this.#headers = { ...c.headers };
    if (secret) this.secrets.push(secret);
    for (const v of Object.values(c.headers)) this.secrets.push(v);
  }

  async send(m: AlertMessage, o: SendOptions = {}): Promise<SendOutcome> {
    const body = JSON.stringify(webhookPayload(m));
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = { ...this.#headers, 'x-anvil-event': 'inventory.alerts', 'x-anvil-delivery': m.id };
    if (this.#secret) {
      headers['x-anvil-timestamp'] = String(timestamp);
      headers['x-anvil-signature'] = signWebhook(this.#secret, timestamp, body);
    }
    return this.post(body, headers, o.signal);
  }
}

/**
 * Slack's escaping (&, <, >: what makes `<!channel>` and links) and a code span (what keeps
 * Mattermost's `@channel` and markdown out), for a string from a certificate.
 */
export function slackCode(s: string, max = 200): string {
  const t = slackEscape(s.replaceAll('`', "'"), max);
  return t ? `\`${t}\`` : '';
}

/** Slack's three escapes, for text that is not in a code span. */
export function slackEscape(s: string, max = 200): string {
  return clean(s, max).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

const SLACK_ICON: Record<string, string> = { critical: ':red_circle:', warning: ':large_orange_circle:', notice: ':large_blue_circle:' };

function slackLine(n: AlertNotification): string {
  if (n.type === 'test') return `:white_check_mark: *TEST* a test message from \`anvil inventory alerts --test\`: this channel works.`;
  const icon = n.type === 'resolved' ? ':white_check_mark:' : (SLACK_ICON[n.alert.severity] ?? '');
  const where = n.installation ? ` at ${slackCode(n.installation.location + (n.installation.sni ? ` (SNI ${n.installation.sni})` : ''))}` : '';
  const fp = n.certificate ? ` · ${slackCode(n.certificate.fingerprint.slice(0, 16), 16)}` : '';
  return `${icon} *${label(n)}* ${n.alert.severity} ${slackCode(subjectOf(n))}: ${slackCode(n.alert.message, 300)}${where}${fp}`;
}

/** The incoming-webhook body: `text` (all of it, for Mattermost, Rocket.Chat and notifications) and Slack's `blocks`. */
export function slackPayload(m: AlertMessage): { text: string; blocks: unknown[] } {
  const head = `Anvil certificate alerts (${clean(m.source, 100)}): ${summaryText(m.notifications)}`;
  const lines = m.notifications.map(slackLine);
  return {
    text: [slackEscape(head), ...lines].join('\n'),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clean(head, 150), emoji: true } },
      ...lines.map((l) => ({ type: 'section', text: { type: 'mrkdwn', text: l.slice(0, 2900) } })),
      { type: 'context', elements: [{ type: 'mrkdwn', text: `Sent ${m.sentAt.toISOString()} · anvil inventory alerts` }] },
    ],
  };
}

class SlackChannel extends HttpChannel {
  readonly type = 'slack' as const;
  /** Slack takes 50 blocks a message: a header, 20 sections and a context stay well within. */
  readonly maxPerMessage = 20;

  constructor(name: string, c: SlackChannelConfig, timeoutMs: number, dispatcher?: Dispatcher) {
    super(name, c.url, timeoutMs, dispatcher);
  }

  async send(m: AlertMessage, o: SendOptions = {}): Promise<SendOutcome> {
    return this.post(JSON.stringify(slackPayload(m)), {}, o.signal);
  }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/** The subject of an e-mail: the notification's title, or a count for a digest. */
export function mailSubject(prefix: string, m: AlertMessage): string {
  const ns = m.notifications;
  const body = ns.length === 1 ? titleOf(ns[0]!) : `${ns.length} certificate alerts: ${summaryText(ns)}`;
  return clean(`${prefix ? `${prefix} ` : ''}${body}`, 200);
}

class SmtpChannel implements AlertChannel {
  readonly type = 'smtp' as const;
  readonly maxPerMessage = 200;
  readonly target: string;
  readonly #c: SmtpChannelConfig;
  readonly #port: number;
  readonly #password: string | undefined;
  readonly #ca: string | undefined;

  constructor(
    readonly name: string,
    c: SmtpChannelConfig,
    password: string | undefined,
    ca: string | undefined,
    readonly timeoutMs: number,
  ) {
    this.#c = c;
    this.#port = c.port ?? (c.secure ? 465 : 587);
    this.#password = password;
    this.#ca = ca;
    const host = c.host.includes(':') ? `[${c.host}]` : c.host;
    this.target = `smtp${c.secure ? 's' : ''}://${host}:${this.#port} to ${c.to.length} recipient(s)`;
  }

  #redact(s: string): string {
    const p = this.#password;
    // Shorter ones would blank out letters of ordinary words; nobody's SMTP password is that short.
    if (!p || p.length < 4) return s;
    let out = s;
    for (const x of [p, Buffer.from(p).toString('base64'), Buffer.from(`\0${this.#c.user}\0${p}`).toString('base64')]) out = out.split(x).join('[redacted]');
    return out;
  }

  async send(m: AlertMessage, o: SendOptions = {}): Promise<SendOutcome> {
    const what = `${this.name}: ${this.target}`;
    if (o.signal?.aborted) throw abortedError(what, o.signal);
    const nodemailer = (await import('nodemailer')).default;
    const c = this.#c;
    const transport = nodemailer.createTransport({
      host: c.host,
      port: this.#port,
      secure: c.secure,
      requireTLS: !c.secure && c.requireTLS,
      ...(c.user ? { auth: { user: c.user, pass: this.#password ?? '' } } : {}),
      tls: { rejectUnauthorized: c.verifyCertificate, minVersion: 'TLSv1.2', ...(this.#ca ? { ca: this.#ca } : {}) },
      connectionTimeout: this.timeoutMs,
      greetingTimeout: this.timeoutMs,
      socketTimeout: this.timeoutMs,
      dnsTimeout: this.timeoutMs,
      disableFileAccess: true,
      disableUrlAccess: true,
      logger: false,
      debug: false,
    });
    // The per-step timeouts bound each wait; this bounds the whole conversation, and the caller's
    // signal may end it sooner (transport.close() in the finally drops the connection).
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const overall = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AlertDeliveryError('ALERT_TIMEOUT', `${what}: the SMTP conversation took more than ${this.timeoutMs * 4} ms`, false)), this.timeoutMs * 4);
      const signal = o.signal;
      if (signal) {
        onAbort = () => reject(abortedError(what, signal));
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    try {
      const info = await Promise.race([
        transport.sendMail({
          from: c.from,
          to: c.to,
          subject: mailSubject(c.subjectPrefix, m),
          text: plainText(m),
          headers: { 'X-Anvil-Delivery': m.id, 'Auto-Submitted': 'auto-generated' },
        }),
        overall,
      ]);
      const rejected = (info.rejected as Array<string | { address: string }>).map((r) => (typeof r === 'string' ? r : r.address));
      // The others have it: sending again would repeat it to them. Delivered, with a warning.
      if (rejected.length) return { warning: `${this.name}: ${this.target}: the server refused ${rejected.length} recipient(s): ${rejected.join(', ')}; the others received it` };
      return {};
    } catch (e) {
      if (e instanceof AlertDeliveryError) throw e;
      throw this.#classify(e as Error & { code?: string; responseCode?: number; command?: string });
    } finally {
      clearTimeout(timer);
      if (onAbort) o.signal?.removeEventListener('abort', onAbort);
      transport.close();
    }
  }

  #classify(e: Error & { code?: string; responseCode?: number; command?: string }): AlertDeliveryError {
    const what = `${this.name}: ${this.target}`;
    const msg = clean(this.#redact(e.message), 300);
    const rc = e.responseCode;
    if (e.code === 'ETIMEDOUT') return new AlertDeliveryError('ALERT_TIMEOUT', `${what}: ${msg}`, false);
    if (e.code === 'EAUTH') return new AlertDeliveryError('ALERT_REJECTED', `${what}: authentication failed (check user and password): ${msg}`, rc === undefined || rc >= 500);
    if (isCertificateError(msg)) return new AlertDeliveryError('ALERT_REJECTED', `${what}: the server's certificate does not verify (set caFile for a private CA): ${msg}`, true);
    if (e.code === 'ETLS' || /STARTTLS/i.test(msg)) return new AlertDeliveryError('ALERT_REJECTED', `${what}: ${msg} (with requireTLS the server must offer STARTTLS; nothing was sent)`, true);
    if (rc !== undefined) return new AlertDeliveryError(rc >= 500 ? 'ALERT_REJECTED' : 'ALERT_FAILED', `${what}: ${e.command ? `${e.command}: ` : ''}${msg}`, rc >= 500);
    return new AlertDeliveryError('ALERT_FAILED', `${what}: ${e.code ? `${e.code}: ` : ''}${msg}`, false);
  }

  async close(): Promise<void> {}
}

/** A message id: random, for X-Anvil-Delivery. */
export function newMessageId(): string {
  return randomUUID();
}
