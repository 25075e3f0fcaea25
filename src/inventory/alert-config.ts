/**
 * The `alerts` section of the server config (docs/alerts.md): how often the inventory's problems
 * are evaluated, from which severity on, the reminder stages for expiry, the repeat interval for
 * other critical problems, and the channels (JSON webhook, Slack-compatible webhook, SMTP).
 *
 * Kept apart from src/server/config.ts so that the alert modules and their tests use the same
 * schema without the rest of the server's; config.ts embeds it. Every field is optional with a
 * safe default: without channels, nothing runs.
 */
import { z } from 'zod';

export const SEVERITIES = ['notice', 'warning', 'critical'] as const;

/** http(s) only, no credentials in the URL (they would end up in logs and `config-check`). */
function alertUrl(example: string) {
  return z.string().superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, e.g. ${example}` });
      return;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, not ${u.protocol}//` });
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'must not hold credentials (user:password@); send them as a header (headers.Authorization) instead' });
    if (u.hash) ctx.addIssue({ code: 'custom', message: 'must not have a #fragment' });
  });
}

/** An address as SMTP's envelope takes it: no display name, no spaces, commas or line breaks. */
const mailbox = z.string().regex(/^[^\s@<>()",;:\\]+@[^\s@<>()",;:\\]+$/, 'expected an e-mail address such as alerts@example.com (no display name)');

/** Header names a channel owns: a configured header may not override them. */
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'user-agent', 'transfer-encoding', 'connection', 'x-anvil-signature', 'x-anvil-timestamp', 'x-anvil-delivery', 'x-anvil-event']);

const channelName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'channel names are lower-case letters, digits, ".", "_" and "-" (at most 64)')
  .optional();

export const WebhookChannelSchema = z
  .object({
    type: z.literal('webhook'),
    /** Stable identity of the channel (what is still to be delivered to it is kept under it). Default: "webhook", or "webhook-2", ... */
    name: channelName,
    url: alertUrl('https://alerts.example.com/anvil'),
    /** HMAC-SHA256 key for the X-Anvil-Signature header. At least 16 characters; prefer secretFile. */
    secret: z.string().min(16, 'use at least 16 characters (32 random bytes, e.g. `openssl rand -hex 32`)').optional(),
    /** A file holding the secret (its first line). */
    secretFile: z.string().min(1).optional(),
    /** Extra headers, e.g. {"Authorization": "Bearer ..."}. Never logged. */
    headers: z
      .record(
        z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'not a valid header name'),
        z.string().regex(/^[^\r\n\0]*$/, 'header values cannot hold line breaks'),
      )
      .default({})
      .superRefine((h, ctx) => {
        for (const k of Object.keys(h)) if (RESERVED_HEADERS.has(k.toLowerCase())) ctx.addIssue({ code: 'custom', path: [k], message: `${k} is set by Anvil and cannot be configured` });
      }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.secret && c.secretFile) ctx.addIssue({ code: 'custom', path: ['secretFile'], message: 'give secret or secretFile, not both' });
  });

export const SlackChannelSchema = z
  .object({
    type: z.literal('slack'),
    name: channelName,
    /** An incoming-webhook URL (Slack, Mattermost, Rocket.Chat). It is a secret: never logged, only its origin. */
    url: alertUrl('https://hooks.slack.com/services/T000/B000/XXXX'),
  })
  .strict();

export const SmtpChannelSchema = z
  .object({
    type: z.literal('smtp'),
    name: channelName,
    host: z.string().min(1),
    /** Default: 465 with `secure`, else 587. */
    port: z.number().int().min(1).max(65535).optional(),
    /** TLS from the first byte (SMTPS, usually port 465). */
    secure: z.boolean().default(false),
    /** Without `secure`: refuse to send unless the server offers STARTTLS. Default true; false only for a relay on the same host. */
    requireTLS: z.boolean().default(true),
    user: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    /** A file holding the password (its first line). */
    passwordFile: z.string().min(1).optional(),
    from: mailbox,
    to: z.array(mailbox).min(1).max(100),
    /** PEM roots to verify the server's certificate with (a private SMTP server), instead of the system's. */
    caFile: z.string().min(1).optional(),
    /** Check the server's certificate (default). false is for tests only: use caFile for a private CA. */
    verifyCertificate: z.boolean().default(true),
    subjectPrefix: z.string().regex(/^[^\r\n]*$/).max(100).default('[Anvil]'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.password && c.passwordFile) ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'give password or passwordFile, not both' });
    if (c.user && !c.password && !c.passwordFile) ctx.addIssue({ code: 'custom', path: ['user'], message: 'needs password or passwordFile' });
    if (!c.user && (c.password || c.passwordFile)) ctx.addIssue({ code: 'custom', path: ['user'], message: 'a password needs the user it belongs to' });
  });

export const AlertChannelSchema = z.discriminatedUnion('type', [WebhookChannelSchema, SlackChannelSchema, SmtpChannelSchema]);

export const AlertsConfigSchema = z
  .object({
    /** Every this many seconds the server evaluates the inventory and sends what is due; 0: never (run `anvil inventory alerts` from cron instead). */
    intervalSeconds: z.number().int().min(0).max(86_400).default(300),
    /** Problems below this severity are not alerted on; one that drops below it is resolved. */
    minSeverity: z.enum(SEVERITIES).default('warning'),
    /**
     * Expiry reminders: one per stage, at this many days before notAfter, scaled down for
     * certificates living less than 90 days (by lifetime / 90 days, as the checks scale theirs).
     */
    reminderDays: z
      .array(z.number().positive().max(3650))
      .min(1)
      .max(20)
      .default([30, 14, 7, 3, 1])
      .refine((a) => new Set(a).size === a.length, 'the stages must differ')
      .transform((a) => [...a].sort((x, y) => y - x)),
    /** Critical problems with no further stage ahead are reminded of this often; 0: never. */
    repeatHours: z.number().min(0).max(24 * 365).default(24),
    /** Every network call of a channel (connect, TLS, answer) must finish within this. */
    timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    /** Names this Anvil in messages (several servers alerting to one place). Default: the host name. */
    source: z.string().min(1).max(100).regex(/^[^\r\n]*$/).optional(),
    channels: z.array(AlertChannelSchema).max(20).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    for (const [i, name] of channelNames(c.channels).entries()) {
      if (seen.has(name)) ctx.addIssue({ code: 'custom', path: ['channels', i, 'name'], message: `another channel is already named "${name}"` });
      seen.add(name);
    }
  })
  .transform(printedWithoutSecrets);

/**
 * The section as JSON.stringify (`anvil config-check`, logs) and util.inspect show it: no secret,
 * no header value, no Slack URL path (its token), no query. The values shown still validate, so
 * a config that went through JSON (the --workers primary hands it to its workers) still parses;
 * the object itself keeps the real values for the channels.
 */
function printedWithoutSecrets<T extends { channels: Array<Record<string, unknown>> }>(c: T): T {
  const url = (u: string, keepPath: boolean) => {
    const x = new URL(u);
    return `${x.origin}${keepPath ? x.pathname : '/redacted'}${x.search ? '?redacted' : ''}`;
  };
  const shown = () => ({
    ...c,
    channels: c.channels.map((ch) => {
      const out: Record<string, unknown> = { ...ch };
      if (typeof ch.url === 'string') out.url = url(ch.url, ch.type === 'webhook');
      if (ch.secret) out.secret = '[redacted secret]';
      if (ch.password) out.password = '[redacted]';
      if (ch.headers && typeof ch.headers === 'object') out.headers = Object.fromEntries(Object.keys(ch.headers).map((k) => [k, '[redacted]']));
      return out;
    }),
  });
  Object.defineProperty(c, 'toJSON', { value: shown, enumerable: false });
  Object.defineProperty(c, Symbol.for('nodejs.util.inspect.custom'), { value: shown, enumerable: false });
  return c;
}

export type AlertsConfig = z.output<typeof AlertsConfigSchema>;
export type AlertChannelConfig = z.output<typeof AlertChannelSchema>;
export type WebhookChannelConfig = z.output<typeof WebhookChannelSchema>;
export type SlackChannelConfig = z.output<typeof SlackChannelSchema>;
export type SmtpChannelConfig = z.output<typeof SmtpChannelSchema>;

/** Each channel's name: its own, or its type numbered among the unnamed of that type ("webhook", "webhook-2", ...). */
export function channelNames(channels: ReadonlyArray<{ type: string; name?: string | undefined }>): string[] {
  const count = new Map<string, number>();
  return channels.map((c) => {
    if (c.name) return c.name;
    const n = (count.get(c.type) ?? 0) + 1;
    count.set(c.type, n);
    return n === 1 ? c.type : `${c.type}-${n}`;
  });
}

/** The defaults, for callers without a config file. */
export function parseAlertsConfig(raw: unknown): AlertsConfig {
  return AlertsConfigSchema.parse(raw ?? {});
}
