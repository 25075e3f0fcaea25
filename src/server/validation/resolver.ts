/** DNS lookups for validation, through the configured resolvers (tests point them at a local server). */
import { Resolver } from 'node:dns/promises';
import { AcmeProblem } from '../../protocol/problems.js';

export interface DnsLookup {
  /** A and AAAA addresses; throws a `dns` problem when the name has none or DNS fails. */
  addresses(name: string): Promise<string[]>;
  /** CAA records; [] when the name or the records do not exist; a `dns` problem on failure. */
  caa(name: string): Promise<CaaRecord[]>;
  /** TXT records (chunks joined); [] when the name or the records do not exist. */
  txt(name: string): Promise<string[]>;
  readonly servers: string[];
}

export interface CaaRecord {
  critical: boolean;
  tag: string;
  value: string;
}

const MISSING = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME']);

function dnsProblem(name: string, rr: string, e: unknown): AcmeProblem {
  const code = (e as { code?: string }).code ?? 'error';
  const what =
    code === 'ETIMEOUT' ? 'timed out' : code === 'ESERVFAIL' ? 'SERVFAIL' : code === 'ECONNREFUSED' ? 'connection refused' : code;
  return new AcmeProblem('dns', `DNS problem: ${what} looking up ${rr} for ${name}`);
}

export function createDnsLookup(opts: { servers: string[]; timeoutMs: number }): DnsLookup {
  const r = new Resolver({ timeout: opts.timeoutMs, tries: 2 });
  if (opts.servers.length) r.setServers(opts.servers);
  return {
    servers: opts.servers.length ? opts.servers : r.getServers(),
    async addresses(name) {
      const [a, aaaa] = await Promise.allSettled([r.resolve4(name), r.resolve6(name)]);
      const out: string[] = [];
      let failure: unknown = null;
      for (const [res, rr] of [
        [aaaa, 'AAAA'],
        [a, 'A'],
      ] as const) {
        if (res.status === 'fulfilled') out.push(...res.value);
        else if (!MISSING.has((res.reason as { code?: string }).code ?? '')) failure ??= dnsProblem(name, rr, res.reason);
      }
      if (out.length) return out;
      if (failure) throw failure;
      throw new AcmeProblem('dns', `DNS problem: no A or AAAA record for ${name}`);
    },
    async caa(name) {
      try {
        return (await r.resolveCaa(name)).map((rec) => {
          const { critical, ...rest } = rec as unknown as Record<string, unknown> & { critical: number };
          const [tag = '', value = ''] = Object.entries(rest)[0] ?? [];
          return { critical: (critical & 128) !== 0, tag: tag.toLowerCase(), value: String(value) };
        });
      } catch (e) {
        if (MISSING.has((e as { code?: string }).code ?? '')) return [];
        throw dnsProblem(name, 'CAA', e);
      }
    },
    async txt(name) {
      try {
        return (await r.resolveTxt(name)).map((chunks) => chunks.join(''));
      } catch (e) {
        if (MISSING.has((e as { code?: string }).code ?? '')) return [];
        throw dnsProblem(name, 'TXT', e);
      }
    },
  };
}
