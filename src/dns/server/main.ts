/**
 * `anvil dns`: builds and wires the parts (store, zone, DNS listener, acme-dns API) from a config.
 * The one place where they meet.
 */
import { createLogger, type Logger } from '../../lib/logger.js';
import type { Clock } from '../../lib/clock.js';
import type { Random } from '../../lib/random.js';
import { openSqliteDnsStore, type DnsStore } from '../../storage/dns-store.js';
import { startAcmeDnsApi } from './api.js';
import { dnsDbPathOf, type DnsServerConfig } from './config.js';
import { startDnsListener } from './listener.js';
import { AcmeDnsRegistry } from './registry.js';
import { Zone } from './zone.js';

export interface RunningDnsServer {
  /** Where DNS (UDP and TCP) listens. */
  dns: { host: string; port: number };
  /** The acme-dns API's base URL. */
  apiUrl: string;
  zone: string;
  store: DnsStore;
  registry: AcmeDnsRegistry;
  close(): Promise<void>;
}

export async function startDnsServer(
  config: DnsServerConfig,
  deps: { log?: Logger; clock?: Clock; random?: Random; store?: DnsStore } = {},
): Promise<RunningDnsServer> {
  const log = deps.log ?? createLogger({ level: config.log.level });
  const store = deps.store ?? (await openSqliteDnsStore(dnsDbPathOf(config)));
  const opened: Array<() => Promise<void>> = [() => store.close()];
  const closeAll = async () => {
    for (const c of opened.reverse()) await c().catch(() => undefined);
  };
  try {
    const zone = new Zone(config, (sub) => store.getTxt(sub), deps.clock?.now());
    const registry = new AcmeDnsRegistry(store, config.zone, { clock: deps.clock, random: deps.random });
    const dns = await startDnsListener(zone, { ...config.dnsListen, ...config.dnsLimits, log });
    opened.push(() => dns.close());
    const api = await startAcmeDnsApi(registry, {
      ...config.apiListen,
      tls: config.apiTls,
      ...config.api,
      registration: config.registration,
      log,
    });
    opened.push(() => api.close());
    log.info({ zone: config.zone, dns: `${dns.host}:${dns.port}`, api: api.url }, 'anvil dns started');
    return {
      dns: { host: dns.host, port: dns.port },
      apiUrl: api.url,
      zone: config.zone,
      store,
      registry,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
