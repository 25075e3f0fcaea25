/**
 * `anvil server` configuration: one schema, validated at start-up with errors that name the field,
 * then frozen. Every field is optional with a safe default, so old config files keep working.
 */
import { z } from 'zod';
import { ConfigError, deepFreeze, parseConfig, readConfigFile } from '../lib/config-file.js';
import { redactDatabaseUrl } from '../storage/postgres.js';
import { AlertsConfigSchema } from '../inventory/alert-config.js';

const keyAlgorithm = z.enum(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096']);
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+)(:\d{1,5})?$/, 'expected "host" or "host:port"');

function isPostgresUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}

/**
 * The storage section as JSON.stringify (anvil config-check, pino logs) and util.inspect show it:
 * the URL without its password. The object itself keeps the real URL for openStore.
 */
function printedWithoutPassword<T extends { url: string }>(s: T): T {
  const shown = () => ({ ...s, url: redactDatabaseUrl(s.url) });
  Object.defineProperty(s, 'toJSON', { value: shown, enumerable: false });
  Object.defineProperty(s, Symbol.for('nodejs.util.inspect.custom'), { value: shown, enumerable: false });
  return s;
}

export const ServerConfigSchema = z
  .object({
    /** CA files in <dataDir>/ca, SQLite database at <dataDir>/anvil.db. */
    dataDir: z.string().min(1).default('./data'),
    listen: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(14000),
      })
      .strict()
      .prefault({}),
    tls: z
      .object({
        /** false: plain HTTP, for running behind a TLS-terminating proxy (set baseUrl). */
        enabled: z.boolean().default(true),
        /** Names (DNS or IP) in the listener's certificate, issued by the CA itself at start-up. */
        names: z.array(z.string().min(1)).min(1).default(['localhost', '127.0.0.1', '::1']),
      })
      .strict()
      .prefault({}),
    /** External base URL (scheme://host[:port][/prefix]) when behind a proxy; derived from listen otherwise. */
    baseUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** Trust X-Forwarded-For for logging client addresses (only behind a proxy you control). */
    trustProxy: z.boolean().default(false),
    ca: z
      .object({
        keyAlgorithm: keyAlgorithm.default('ecdsa-p256'),
        rootCommonName: z.string().min(1).max(64).default('Anvil Root CA'),
        intermediateCommonName: z.string().min(1).max(64).default('Anvil Intermediate CA'),
        organization: z.string().min(1).max(64).optional(),
        rootLifetimeDays: z.number().int().min(1).max(36500).default(3650),
        intermediateLifetimeDays: z.number().int().min(1).max(36500).default(1825),
      })
      .strict()
      .prefault({}),
    issuance: z
      .object({
        /** Leaf certificate lifetime. */
        lifetimeDays: z.number().min(0.0007).max(3650).default(90),
        /** notBefore is moved back by this much (at most 60 s) to absorb clock skew. */
        backdateSeconds: z.number().int().min(0).max(60).default(60),
        /** Add the clientAuth EKU to every certificate (for mTLS). */
        clientAuth: z.boolean().default(false),
        /** Accept Ed25519 certificate keys (RFC 8410). Browsers do not; mTLS peers often do. */
        allowEd25519: z.boolean().default(false),
        /**
         * Certificate profiles (draft-ietf-acme-profiles) besides, or redefining, the built-ins
         * classic, tlsserver, shortlived and mtls (src/server/issuance/profiles.ts).
         */
        profiles: z
          .record(
            z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'profile names are lower-case letters, digits, ".", "_" and "-"'),
            z
              .object({
                description: z.string().min(1).max(500),
                lifetimeDays: z.number().min(0.0007).max(3650),
                extendedKeyUsages: z.array(z.enum(['serverAuth', 'clientAuth'])).min(1),
              })
              .strict(),
          )
          .default({}),
        /** The profile of orders that name none. */
        defaultProfile: z.string().min(1).default('classic'),
      })
      .strict()
      .prefault({}),
    acme: z
      .object({
        termsOfService: z.url().optional(),
        website: z.url().optional(),
        caaIdentities: z.array(z.string().min(1)).optional(),
        externalAccountRequired: z.boolean().default(false),
        /** Reuse an account's valid authorization for this long after validation; 0 disables reuse. */
        authzReuseDays: z.number().min(0).max(397).default(30),
        /** A valid authorization expires this long after validation. */
        validAuthzLifetimeDays: z.number().min(0.0007).max(397).default(30),
        pendingAuthzLifetimeHours: z.number().min(0.01).max(24 * 30).default(168),
        orderLifetimeHours: z.number().min(0.01).max(24 * 30).default(168),
        maxIdentifiersPerOrder: z.number().int().min(1).max(1000).default(100),
        /** Open (pending or ready) orders per account before newOrder answers 429. */
        maxPendingOrdersPerAccount: z.number().int().min(1).default(300),
        /** Entries per page of an account's orders list. */
        ordersPageSize: z.number().int().min(1).max(1000).default(100),
        nonceLifetimeSeconds: z.number().int().min(10).max(86400).default(3600),
        maxContacts: z.number().int().min(0).max(100).default(10),
        /** RFC 9773 renewal information: how long clients should wait before asking again. */
        renewalInfo: z
          .object({
            retryAfterSeconds: z.number().int().min(1).max(7 * 86400).default(21600),
            /** Shown to clients as explanationURL (e.g. an incident page after `anvil ca renew-early`). */
            explanationUrl: z.url().optional(),
          })
          .strict()
          .prefault({}),
        /** Maximum request body in bytes; larger bodies are refused before parsing. */
        maxBodyBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
        identifierPolicy: z
          .object({
            /** If set, only names equal to or under one of these suffixes are allowed. */
            allowedDomains: z.array(z.string().min(1)).optional(),
            /** Names equal to or under these suffixes are refused. */
            deniedDomains: z.array(z.string().min(1)).default([]),
            allowIp: z.boolean().default(true),
            allowWildcard: z.boolean().default(true),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    validation: z
      .object({
        resolvers: z.array(hostPort).default([]),
        httpPort: z.number().int().min(1).max(65535).default(80),
        tlsPort: z.number().int().min(1).max(65535).default(443),
        connectTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
        totalTimeoutMs: z.number().int().min(100).max(300_000).default(20_000),
        dnsTimeoutMs: z.number().int().min(100).max(60_000).default(5_000),
        maxRedirects: z.number().int().min(0).max(10).default(10),
        /** CAA checking (RFC 8659/8657) with acme.caaIdentities as this CA's issuer names. */
        caa: z
          .object({
            enabled: z.boolean().default(false),
            /** At finalize, CAA is checked again for names validated longer ago than this. */
            recheckAfterHours: z.number().min(0).max(24 * 30).default(8),
          })
          .strict()
          .prefault({}),
        /** Concurrent validations per server process. */
        concurrency: z.number().int().min(1).max(1000).default(32),
        addressPolicy: z
          .object({
            allowLoopback: z.boolean().default(false),
            allowPrivate: z.boolean().default(false),
            allowLinkLocal: z.boolean().default(false),
            deny: z.array(z.string()).default([]),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Revocation status: CRLs (RFC 5280) and an OCSP responder (RFC 6960), both served by the server. */
    revocation: z
      .object({
        /** Write a CRL distribution point (and, with ocsp.enabled, an OCSP URL) into every certificate. */
        crl: z
          .object({
            enabled: z.boolean().default(true),
            /** nextUpdate is this long after thisUpdate. */
            validityHours: z.number().min(0.1).max(24 * 30).default(24),
            /** The CRL is signed again this often even with no revocation (and on every revocation). */
            refreshMinutes: z.number().min(0.1).max(24 * 60).default(60),
          })
          .strict()
          .prefault({}),
        ocsp: z
          .object({
            enabled: z.boolean().default(true),
            /** nextUpdate of OCSP responses. */
            validityHours: z.number().min(0.1).max(24 * 7).default(24),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Where the CA's state lives: an SQLite file (the default), or PostgreSQL shared by several replicas. */
    storage: z
      .discriminatedUnion('type', [
        z
          .object({
            type: z.literal('sqlite').default('sqlite'),
            /** Relative paths are under dataDir. */
            path: z.string().min(1).default('anvil.db'),
          })
          .strict(),
        z
          .object({
            type: z.literal('postgres'),
            /** postgres://user[:password]@host[:port]/database[?sslmode=...]; printed and logged without its password. */
            url: z.string().refine(isPostgresUrl, 'expected postgres://user[:password]@host[:port]/database'),
            /** Connections per replica (default 10). */
            poolSize: z.number().int().min(1).max(1000).optional(),
          })
          .strict(),
      ])
      .transform((s) => (s.type === 'postgres' ? printedWithoutPassword(s) : s))
      .prefault({}),
    /**
     * Server processes sharing the listening socket (src/server/cluster.ts): a number, or "auto" for
     * one per CPU. 1 runs everything in one process.
     */
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default(1),
    /** The certificate inventory (docs/inventory.md): <dataDir>/inventory.db, or the PostgreSQL database. */
    inventory: z
      .object({
        /** Every this many seconds the server records what the CA issued or revoked since the last time; 0: never. */
        syncSeconds: z.number().int().min(0).max(86_400).default(60),
        /**
         * Every this many hours each discovered certificate's revocation is checked with OCSP and
         * CRLs (src/inventory/revocation.ts), from a thread of its own; 0: never.
         */
        revocationCheckHours: z.number().min(0).max(720).default(12),
        /** Largest CRL those checks read, in MiB. */
        revocationCrlMaxMiB: z.number().int().min(1).max(1024).default(20),
        /** Those checks may fetch from loopback, private and link-local addresses (never cloud metadata). */
        revocationPrivateAddresses: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    /**
     * The management API (/api/v1) and the web dashboard (/dashboard/) on the ACME listener
     * (docs/dashboard.md). Nothing is readable without an API token (anvil token create).
     */
    dashboard: z
      .object({
        enabled: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    /** Inventory alerts: JSON webhook, Slack-compatible webhook, e-mail (docs/alerts.md). Without channels, nothing runs. */
    alerts: AlertsConfigSchema.prefault({}),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
    /** Prometheus metrics (docs/metrics.md): GET <path> on the ACME listener, and on `listen` if set. */
    metrics: z
      .object({
        enabled: z.boolean().default(true),
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9._~\/-]*$/, 'expected an absolute path such as /metrics')
          .refine((p) => !/^\/(acme|ca|ocsp|directory|health)(\/|$)/.test(p), 'collides with an ACME path')
          .default('/metrics'),
        /** A file holding the token scrapes must send as `Authorization: Bearer <token>` (read at start-up); unset: none. */
        bearerTokenFile: z.string().min(1).optional(),
        /** Include the inventory's metrics (certificates, installations, renewals, scans). */
        inventory: z.boolean().default(true),
        /** The inventory part is built at most this often; scrapes in between get the same. 0: every scrape builds. */
        inventoryCacheSeconds: z.number().min(0).max(3600).default(30),
        /** Expired certificates deployed nowhere keep their per-certificate gauges this many days after notAfter. */
        expiredRetentionDays: z.number().min(0).max(3650).default(30),
        /** A listener of its own for the metrics (with --workers: served by the primary). */
        listen: z
          .object({
            host: z.string().min(1).default('127.0.0.1'),
            port: z.number().int().min(0).max(65535),
          })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    /**
     * TEST ONLY, never for production: a server that misbehaves on purpose so that clients prove
     * they cope (after Pebble's PEBBLE_WFE_NONCEREJECT and PEBBLE_AUTHZREUSE). Absent: off.
     */
    testing: z
      .object({
        /** Share of requests whose nonce is valid that are refused with badNonce anyway (the nonce is consumed). */
        nonceRejectPercent: z.number().min(0).max(100).default(0),
        /**
         * Chance, per identifier of a new order, that the account's existing valid (younger than
         * acme.authzReuseDays) or pending authorization is reused. Unset: the normal policy.
         */
        authzReusePercent: z.number().min(0).max(100).optional(),
        /** Share of POSTs answered 503 serverInternal with Retry-After: 1, before any state changes. */
        serverErrorPercent: z.number().min(0).max(100).default(0),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.testing?.authzReusePercent !== undefined && c.testing.authzReusePercent > 0 && c.acme.authzReuseDays === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['testing', 'authzReusePercent'],
        message: 'needs acme.authzReuseDays > 0 (0 switches authorization reuse off)',
      });
    }
    const profileNames = new Set(['classic', 'tlsserver', 'shortlived', 'mtls', ...Object.keys(c.issuance.profiles)]);
    if (!profileNames.has(c.issuance.defaultProfile)) {
      ctx.addIssue({
        code: 'custom',
        path: ['issuance', 'defaultProfile'],
        message: `"${c.issuance.defaultProfile}" is not a profile; use one of ${[...profileNames].join(', ')}`,
      });
    }
    if (c.validation.caa.enabled && !c.acme.caaIdentities?.length) {
      ctx.addIssue({ code: 'custom', path: ['acme', 'caaIdentities'], message: 'validation.caa.enabled needs the CA\'s issuer domain names here' });
    }
  });

export type ServerConfig = z.output<typeof ServerConfigSchema>;

export { ConfigError };

/** Validates a raw config object; errors name each bad field ("validation.httpPort: ..."). */
export function parseServerConfig(raw: unknown, source = 'config'): ServerConfig {
  return deepFreeze(parseConfig(ServerConfigSchema, raw, source));
}

/** Reads a JSON config file (a relative dataDir is relative to it); `overrides` are merged over it. */
export async function loadServerConfig(file: string | undefined, overrides: Record<string, unknown> = {}): Promise<ServerConfig> {
  return parseServerConfig(await readConfigFile(file, overrides, ['dataDir']), file ?? 'configuration');
}
