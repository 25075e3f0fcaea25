/**
 * `anvil dns` configuration: one strict schema, validated at start-up with errors that name the
 * field, then frozen. Only `zone` and `nsNames` are required; every other field has a safe default.
 * docs/anvil-dns.md documents each field.
 */
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, deepFreeze, parseConfig, readConfigFile } from '../../lib/config-file.js';
import { parseCidr } from './cidr.js';

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** An absolute DNS name: lower-cased, without a trailing dot. */
const dnsName = z
  .string()
  .min(1)
  .transform((s) => s.toLowerCase().replace(/\.$/, ''))
  .refine((s) => s.length <= 253 && s.split('.').every((l) => LABEL.test(l)), 'expected a DNS name such as "acme.example.com"');

const ip = z.string().refine((s) => net.isIP(s) !== 0, 'expected an IPv4 or IPv6 address');
const cidr = z.string().refine((s) => parseCidr(s) !== null, 'expected a CIDR such as "192.0.2.0/24" or "2001:db8::/32"');
const port = z.number().int().min(0).max(65535);
const ttl = z.number().int().min(0).max(2_147_483_647);

const staticRecord = z
  .object({
    /** Absolute name inside the zone ("www.acme.example.com"), or "@" for the apex. */
    name: z.string().min(1),
    type: z.enum(['A', 'AAAA', 'CNAME', 'TXT']),
    value: z.string().min(1).max(4000),
    ttl: ttl.optional(),
  })
  .strict();

export const DnsServerConfigSchema = z
  .object({
    /** The SQLite database lives here (created 0700). */
    dataDir: z.string().min(1).default('./data-dns'),
    /** Database file; relative paths are under dataDir. */
    databasePath: z.string().min(1).default('anvil-dns.db'),
    /** The one zone this server is authoritative for, e.g. "acme.example.com". */
    zone: dnsName,
    /** The zone's name servers (NS records at the apex); the first is the SOA MNAME. */
    nsNames: z.array(dnsName).min(1),
    /** Glue: addresses of name servers inside the zone, answered as A/AAAA. */
    nsAddresses: z.record(z.string(), z.array(ip).min(1)).default({}),
    /** Static records (A, AAAA, CNAME, TXT) inside the zone. */
    records: z.array(staticRecord).default([]),
    /** TTL of the TXT records set through the API: short, so a new value is seen at once. */
    txtTtl: ttl.default(1),
    /** TTL of SOA, NS, glue and static records without their own. */
    ttl: ttl.default(3600),
    soa: z
      .object({
        /** Mailbox of the zone's operator as a DNS name; default hostmaster.<zone>. */
        rname: dnsName.optional(),
        /** Default: start-up time in seconds (a new serial per start). */
        serial: z.number().int().min(0).max(4_294_967_295).optional(),
        refresh: ttl.default(3600),
        retry: ttl.default(600),
        expire: ttl.default(604800),
        /** Negative-caching TTL (RFC 2308): short, so a "no such record" answer is not kept long. */
        minimum: ttl.default(1),
      })
      .strict()
      .prefault({}),
    dnsListen: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: port.default(53) })
      .strict()
      .prefault({}),
    dnsLimits: z
      .object({
        /** Largest UDP answer, whatever a client's EDNS0 buffer size says (1232: no fragmentation). */
        maxUdpPayload: z.number().int().min(512).max(4096).default(1232),
        maxTcpConnections: z.number().int().min(1).max(100_000).default(256),
        /** A TCP connection idle this long is closed. */
        tcpIdleTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /** Largest query accepted (UDP datagram or TCP message). */
        maxQueryBytes: z.number().int().min(512).max(65_535).default(4096),
      })
      .strict()
      .prefault({}),
    apiListen: z
      .object({ host: z.string().min(1).default('127.0.0.1'), port: port.default(8053) })
      .strict()
      .prefault({}),
    /** HTTPS for the API (PEM files). Without it the API is plain HTTP: keep it on loopback or behind a TLS proxy. */
    apiTls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
    api: z
      .object({
        maxBodyBytes: z.number().int().min(256).max(1024 * 1024).default(8192),
        requestTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /** Take the client address from the last X-Forwarded-For entry (only behind a proxy you control). */
        trustForwardedFor: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    registration: z
      .object({
        /** "closed": POST /register is refused; only `anvil dns register` creates registrations. */
        mode: z.enum(['open', 'closed']).default('open'),
        /** Client addresses allowed to POST /register; empty: any. */
        allowFrom: z.array(cidr).default([]),
      })
      .strict()
      .prefault({}),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const inZone = (n: string) => n === c.zone || n.endsWith(`.${c.zone}`);
    for (const [name, _addrs] of Object.entries(c.nsAddresses)) {
      const n = name.toLowerCase().replace(/\.$/, '');
      if (!c.nsNames.includes(n)) ctx.addIssue({ code: 'custom', path: ['nsAddresses', name], message: 'not one of nsNames' });
      else if (!inZone(n)) ctx.addIssue({ code: 'custom', path: ['nsAddresses', name], message: 'glue is only served for name servers inside the zone' });
    }
    c.records.forEach((r, i) => {
      const n = r.name === '@' ? c.zone : r.name.toLowerCase().replace(/\.$/, '');
      if (!inZone(n) || !n.split('.').every((l) => LABEL.test(l))) {
        ctx.addIssue({ code: 'custom', path: ['records', i, 'name'], message: `expected "@" or a name inside ${c.zone}` });
      }
      if (r.type === 'A' && !net.isIPv4(r.value)) ctx.addIssue({ code: 'custom', path: ['records', i, 'value'], message: 'expected an IPv4 address' });
      if (r.type === 'AAAA' && !net.isIPv6(r.value)) ctx.addIssue({ code: 'custom', path: ['records', i, 'value'], message: 'expected an IPv6 address' });
      if (r.type === 'CNAME') {
        if (n === c.zone) ctx.addIssue({ code: 'custom', path: ['records', i, 'name'], message: 'a CNAME cannot be at the zone apex' });
        if (c.records.some((o, j) => j !== i && (o.name === '@' ? c.zone : o.name.toLowerCase().replace(/\.$/, '')) === n)) {
          ctx.addIssue({ code: 'custom', path: ['records', i, 'name'], message: 'a CNAME cannot share its name with other records' });
        }
        const target = r.value.toLowerCase().replace(/\.$/, '');
        if (!target.split('.').every((l) => LABEL.test(l))) ctx.addIssue({ code: 'custom', path: ['records', i, 'value'], message: 'expected a DNS name' });
      }
    });
  });

export type DnsServerConfig = z.output<typeof DnsServerConfigSchema>;

/** Config errors of `anvil dns` (the same class as the server's: code CONFIG_INVALID). */
export { ConfigError as DnsConfigError };

/** Validates a raw config object; errors name each bad field ("dnsListen.port: ..."). */
export function parseDnsServerConfig(raw: unknown, source = 'config'): DnsServerConfig {
  const c = parseConfig(DnsServerConfigSchema, raw, source);
  // Normalise names once, so the rest of the code compares lower-case names without trailing dots.
  c.nsAddresses = Object.fromEntries(Object.entries(c.nsAddresses).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ''), v]));
  c.records = c.records.map((x) => ({
    ...x,
    name: x.name === '@' ? c.zone : x.name.toLowerCase().replace(/\.$/, ''),
    value: x.type === 'CNAME' ? x.value.toLowerCase().replace(/\.$/, '') : x.value,
  }));
  return deepFreeze(c);
}

/** Reads a JSON config file (relative paths are relative to it); `overrides` are merged over it. */
export async function loadDnsServerConfig(file: string | undefined, overrides: Record<string, unknown> = {}): Promise<DnsServerConfig> {
  return parseDnsServerConfig(await readConfigFile(file, overrides, ['dataDir', 'apiTls.cert', 'apiTls.key']), file ?? 'configuration');
}

/** The database file of a config. */
export function dnsDbPathOf(c: DnsServerConfig): string {
  return path.resolve(c.dataDir, c.databasePath);
}
