/**
 * The DNS provider registry: every provider Anvil ships, each a factory with a zod schema for its
 * configuration and lego-compatible environment variable names, so that a lego user's
 * environment (RFC2136_NAMESERVER=..., EXEC_PATH=...) works unchanged with `anvil issue --dns NAME`.
 *
 * Adding a provider is one import and one entry in providers().
 */
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { DnsProviderError, type DnsProvider } from './provider.js';
import { execFactory } from './providers/exec.js';
import { httpReqFactory } from './providers/httpreq.js';
import { rfc2136Factory } from './providers/rfc2136.js';
import { acmeDnsProvider } from './providers/acme-dns.js';

export interface DnsProviderFactory<C> {
  /** Registry name, lower case, as lego spells it: "rfc2136", "exec", ... */
  name: string;
  /** One line for `--help` and docs. */
  description: string;
  /** Validates the merged configuration; errors name the field. */
  schema: z.ZodType<C>;
  /**
   * lego-compatible env var -> config field. Each variable may also be given as NAME_FILE, the
   * path of a file holding the value (lego does the same), which is how secrets stay out of the
   * environment.
   */
  env: Record<string, string>;
  /**
   * Optional conversions of raw env strings, keyed by env var (e.g. lego's seconds to the
   * field's milliseconds). Without one, the raw string goes to the schema, which coerces it.
   */
  envParse?: Record<string, (raw: string) => unknown>;
  /** Builds the provider from a validated configuration; may check the outside world (files, ...). */
  create(config: C): DnsProvider | Promise<DnsProvider>;
}

/**
 * Every provider, in `--help` order. A function rather than a constant so that provider modules
 * can import helpers (parseSeconds) from this module whatever the import order: the factories
 * are only read at call time, never while the modules are still being evaluated.
 */
// Each factory has its own config type; `any` only erases it for this list (zod schemas are
// invariant, so no narrower type holds them all). createDnsProvider validates before create().
function providers(): DnsProviderFactory<any>[] {
  return [rfc2136Factory, execFactory, httpReqFactory, acmeDnsProvider];
}

export function listDnsProviders(): DnsProviderFactory<unknown>[] {
  return providers();
}

/**
 * lego-style durations: "10" (seconds, lego's usual unit), "1.5", or Go-like "500ms", "10s",
 * "2m". Returns milliseconds, or the raw string (which the schema then rejects, naming the field).
 */
export function parseSeconds(raw: string): unknown {
  // A function declaration: hoisted, so usable by provider modules during the import cycle.
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!m) return raw;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * unit);
}

async function valuesFromEnv(factory: DnsProviderFactory<unknown>, env: NodeJS.ProcessEnv): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(factory.env)) {
    const direct = env[name];
    const file = env[`${name}_FILE`];
    let raw: string | undefined;
    if (direct !== undefined && direct !== '' && file !== undefined && file !== '') {
      throw new DnsProviderError(factory.name, 'DNS_PROVIDER_CONFIG', `set ${name} or ${name}_FILE, not both`);
    }
    if (file !== undefined && file !== '') {
      try {
        // One trailing newline is what editors and `echo` add; the value is the rest.
        raw = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
      } catch (e) {
        throw new DnsProviderError(factory.name, 'DNS_PROVIDER_CONFIG', `${name}_FILE: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    } else if (direct !== undefined && direct !== '') {
      raw = direct;
    }
    if (raw === undefined) continue;
    const parse = factory.envParse?.[name];
    out[field] = parse ? parse(raw) : raw;
  }
  return out;
}

/**
 * Merges a JSON config object (e.g. from --dns-config FILE) over values from env vars (lego
 * names; each also as NAME_FILE = path to a file holding it), validates with the provider's zod
 * schema (errors name the field and start with the provider name, as DnsProviderError code
 * DNS_PROVIDER_CONFIG), returns the provider.
 */
export async function createDnsProvider(name: string, config: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): Promise<DnsProvider> {
  const factory = listDnsProviders().find((f) => f.name === name.toLowerCase());
  if (!factory) {
    throw new DnsProviderError(name, 'DNS_PROVIDER_CONFIG', `unknown DNS provider; known providers: ${listDnsProviders().map((f) => f.name).join(', ')}`);
  }
  const merged = { ...(await valuesFromEnv(factory, env)), ...config };
  const parsed = factory.schema.safeParse(merged);
  if (!parsed.success) {
    const fieldToEnv = new Map(Object.entries(factory.env).map(([v, f]) => [f, v]));
    // Rule 9: name the field (and the env var that feeds it). zod's messages never quote the
    // input, so secrets stay out of them.
    const problems = parsed.error.issues.map((i) => {
      const field = i.path.join('.');
      const envName = fieldToEnv.get(String(i.path[0] ?? ''));
      return field ? `${field}${envName ? ` (${envName})` : ''}: ${i.message}` : i.message;
    });
    throw new DnsProviderError(factory.name, 'DNS_PROVIDER_CONFIG', `invalid configuration: ${problems.join('; ')}`);
  }
  return await factory.create(parsed.data);
}
