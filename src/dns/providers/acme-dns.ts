/**
 * The `acme-dns` DNS provider: sets TXT records through an acme-dns compatible API (joohoi/acme-dns,
 * or `anvil dns`). Each domain has its own registration (username, password, subdomain), kept in
 * a JSON file (lego's and goacmedns's layout: `{"<domain>": {"username", "password", "fulldomain",
 * "subdomain", "allowfrom"}}`), written atomically with mode 0600.
 *
 * The first time a domain is seen the provider registers it, saves the registration and fails with
 * DNS_PROVIDER_CNAME_REQUIRED naming the CNAME the operator must create
 * (`_acme-challenge.<domain>` -> `<fulldomain>`), as lego does: the update only counts once that
 * CNAME exists. acme-dns has no delete: deleteTxtRecord is a no-op, and the server keeps the two
 * newest values per name, so a wildcard and its base name validate together.
 *
 * Environment (lego's names): ACME_DNS_API_BASE, ACME_DNS_STORAGE_PATH, ACME_DNS_ALLOWLIST.
 */
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../provider.js';
import type { DnsProviderFactory } from '../registry.js';

const NAME = 'acme-dns';

function isLoopbackHost(h: string): boolean {
  const host = h.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
}

export const AcmeDnsConfigSchema = z
  .object({
    /** Base URL of the acme-dns API, e.g. https://auth.example.com (plain http only to loopback). */
    apiBase: z
      .url({ protocol: /^https?$/ })
      .refine((u) => {
        const p = new URL(u);
        return p.protocol === 'https:' || isLoopbackHost(p.hostname);
      }, 'must be https (plain http is allowed only to localhost)'),
    /** JSON file of per-domain registrations (created 0600). */
    storagePath: z.string().min(1),
    /** CIDRs sent as "allowfrom" with new registrations: only these addresses may update. */
    allowFrom: z.array(z.string().min(1)).optional(),
    timeoutMs: z.number().int().min(100).max(300_000).default(30_000),
    /** Responses larger than this are refused. */
    maxResponseBytes: z.number().int().min(1024).max(1024 * 1024).default(64 * 1024),
  })
  .strict();

export type AcmeDnsConfig = z.input<typeof AcmeDnsConfigSchema>;

/** One stored registration (acme-dns's field names). */
export interface AcmeDnsAccount {
  username: string;
  password: string;
  fulldomain: string;
  subdomain: string;
  allowfrom: string[];
}

const AccountSchema = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  fulldomain: z.string().min(1),
  subdomain: z.string().min(1),
  allowfrom: z.array(z.string()).default([]),
});

const norm = (s: string) => s.toLowerCase().replace(/\.$/, '');

export class AcmeDnsProvider implements DnsProvider {
  readonly name = NAME;
  readonly #c: z.output<typeof AcmeDnsConfigSchema>;
  readonly #dispatcher: Dispatcher;
  /** Serialises look-up, registration and saving, so that a wildcard and its base name never register twice. */
  #lock: Promise<unknown> = Promise.resolve();

  constructor(config: AcmeDnsConfig) {
    const parsed = AcmeDnsConfigSchema.safeParse(config);
    if (!parsed.success) {
      const msg = parsed.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`).join('; ');
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `invalid configuration: ${msg}`);
    }
    this.#c = parsed.data;
    this.#dispatcher = new Agent({
      connect: { timeout: this.#c.timeoutMs },
      headersTimeout: this.#c.timeoutMs,
      bodyTimeout: this.#c.timeoutMs,
    });
  }

  async createTxtRecord(r: TxtRecord): Promise<void> {
    const run = this.#lock.then(() => this.#create(r));
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /** acme-dns cannot delete: the server keeps only the two newest values, so old ones go by themselves. */
  async deleteTxtRecord(_r: TxtRecord): Promise<void> {}

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }

  async #create(r: TxtRecord): Promise<void> {
    const accounts = await this.#load();
    const domain = norm(r.domain);
    const fqdn = norm(r.fqdn);
    let account = accounts[domain] ?? Object.values(accounts).find((a) => norm(a.fulldomain) === fqdn);
    if (!account) {
      account = await this.#register();
      accounts[domain] = account;
      await this.#save(accounts);
      throw new DnsProviderError(
        NAME,
        'DNS_PROVIDER_CNAME_REQUIRED',
        `registered ${domain} with ${this.#c.apiBase} (saved in ${this.#c.storagePath}); ` +
          `create the DNS record "_acme-challenge.${domain}. CNAME ${account.fulldomain}." and run again`,
      );
    }
    const res = await this.#post('update', { subdomain: account.subdomain, txt: r.value }, { 'x-api-user': account.username, 'x-api-key': account.password });
    if (res.status !== 200) {
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `updating the TXT record of ${domain} failed: HTTP ${res.status}${errorOf(res.body)}`);
    }
  }

  async #register(): Promise<AcmeDnsAccount> {
    const body = this.#c.allowFrom?.length ? { allowfrom: this.#c.allowFrom } : {};
    const res = await this.#post('register', body, {});
    if (res.status !== 201) {
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `registration at ${this.#c.apiBase} failed: HTTP ${res.status}${errorOf(res.body)}`);
    }
    const a = AccountSchema.safeParse(res.body);
    if (!a.success) throw new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `registration at ${this.#c.apiBase} returned an unexpected answer`);
    return a.data;
  }

  async #post(endpoint: 'register' | 'update', body: unknown, headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
    const base = this.#c.apiBase.endsWith('/') ? this.#c.apiBase : `${this.#c.apiBase}/`;
    const url = new URL(endpoint, base);
    let res: Dispatcher.ResponseData;
    try {
      // undici's request() never follows redirects: a 3xx comes back as a failure.
      res = await request(url, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: { 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'anvil-acme-dns/0.1', ...headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.#c.timeoutMs),
      });
    } catch (e) {
      const err = e as Error & { code?: string };
      const timeout = err.name === 'TimeoutError' || /Timeout/i.test(err.code ?? '') || /timeout/i.test(err.name);
      throw new DnsProviderError(NAME, timeout ? 'DNS_PROVIDER_TIMEOUT' : 'DNS_PROVIDER_FAILED', `${endpoint} request to ${url.origin} failed: ${err.code ?? err.name}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res.body) {
        size += (c as Buffer).length;
        if (size > this.#c.maxResponseBytes) {
          res.body.destroy();
          throw new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `${endpoint} response from ${url.origin} is larger than ${this.#c.maxResponseBytes} bytes`);
        }
        chunks.push(c as Buffer);
      }
    } catch (e) {
      if (e instanceof DnsProviderError) throw e;
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `${endpoint} response from ${url.origin} could not be read: ${(e as Error).name}`);
    }
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      // not JSON: the status decides
    }
    return { status: res.statusCode, body: parsed };
  }

  async #load(): Promise<Record<string, AcmeDnsAccount>> {
    let text: string;
    try {
      text = await readFile(this.#c.storagePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `cannot read ${this.#c.storagePath} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    let raw: unknown;
    try {
      raw = text.trim() ? JSON.parse(text) : {};
    } catch {
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `${this.#c.storagePath} is not valid JSON`);
    }
    const r = z.record(z.string(), AccountSchema).safeParse(raw);
    if (!r.success) throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `${this.#c.storagePath} does not hold acme-dns registrations by domain`);
    return Object.fromEntries(Object.entries(r.data).map(([k, v]) => [norm(k), v]));
  }

  async #save(accounts: Record<string, AcmeDnsAccount>): Promise<void> {
    await mkdir(path.dirname(path.resolve(this.#c.storagePath)), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#c.storagePath, `${JSON.stringify(accounts, null, 2)}\n`, { mode: 0o600 });
  }
}

/** `: forbidden` from an acme-dns error body (a short code, never anything secret). */
function errorOf(body: unknown): string {
  const e = (body as { error?: unknown } | undefined)?.error;
  return typeof e === 'string' && /^[a-z_]{1,40}$/.test(e) ? ` (${e})` : '';
}

export const acmeDnsProvider: DnsProviderFactory<AcmeDnsConfig> = {
  name: NAME,
  description: 'acme-dns API (joohoi/acme-dns or `anvil dns`): registers per domain, then updates TXT through a CNAME',
  schema: AcmeDnsConfigSchema as unknown as z.ZodType<AcmeDnsConfig>,
  env: { ACME_DNS_API_BASE: 'apiBase', ACME_DNS_STORAGE_PATH: 'storagePath', ACME_DNS_ALLOWLIST: 'allowFrom' },
  envParse: { ACME_DNS_ALLOWLIST: (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean) },
  create: (config) => new AcmeDnsProvider(config),
};
