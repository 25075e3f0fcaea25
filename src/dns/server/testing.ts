/** Test helpers for `anvil dns` (used by its tests only): an in-process server on loopback ports, and `dig` against it. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../lib/logger.js';
import { parseDnsServerConfig } from './config.js';
import { startDnsServer, type RunningDnsServer } from './main.js';

export const ZONE = 'acme.example.com';

export interface TestDnsServer extends RunningDnsServer {
  dataDir: string;
  cleanup(): Promise<void>;
}

/** A server on 127.0.0.1 (DNS and API on free ports), with a temporary data directory. */
export async function startTestDnsServer(extra: Record<string, unknown> = {}): Promise<TestDnsServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dns-'));
  const config = parseDnsServerConfig({
    dataDir: dir,
    zone: ZONE,
    nsNames: [`ns1.${ZONE}`, 'ns.other.example.net'],
    nsAddresses: { [`ns1.${ZONE}`]: ['192.0.2.53', '2001:db8::53'] },
    dnsListen: { host: '127.0.0.1', port: 0 },
    apiListen: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    ...extra,
  });
  const srv = await startDnsServer(config, { log: silentLogger() });
  return Object.assign(srv, {
    dataDir: dir,
    async cleanup() {
      await srv.close();
      await rm(dir, { recursive: true, force: true });
    },
  });
}

export interface DigResult {
  status: string;
  flags: string[];
  answer: string[];
  authority: string[];
  additional: string[];
  out: string;
}

/** Runs dig against 127.0.0.1:port and parses status, header flags and sections. */
export async function dig(port: number, name: string, type: string, more: string[] = []): Promise<DigResult> {
  const args = ['@127.0.0.1', '-p', String(port), name, type, '+tries=1', '+time=3', '+norecurse', ...more];
  const r = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile('dig', args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
  );
  const status = /status: (\w+)/.exec(r.out)?.[1] ?? `dig failed (${r.code})`;
  const flags = (/;; flags: ([^;]*);/.exec(r.out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const section = (title: string) => {
    const m = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(r.out);
    return m ? m[1]!.split('\n').filter((l) => l && !l.startsWith(';')) : [];
  };
  return { status, flags, answer: section('ANSWER'), authority: section('AUTHORITY'), additional: section('ADDITIONAL'), out: r.out };
}

/** A valid ACME dns-01 value (43 base64url characters). */
export function txtValue(seed: string): string {
  return seed.repeat(43).slice(0, 43);
}
