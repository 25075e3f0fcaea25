/**
 * The dns-01 solver (RFC 8555 §8.4). The ACME logic lives here once; a DnsProvider only creates
 * and deletes TXT records (src/dns/provider.ts). For each challenge the solver:
 *
 * 1. checks the identifier the server sent is a sane DNS name, and computes the TXT value locally;
 * 2. follows CNAME delegation of `_acme-challenge.<name>` (bounded, loops refused) to the name it
 *    will actually write;
 * 3. finds the zone of that name (explicit `authoritative` zones first, else by SOA) and asks the
 *    provider to add the value there;
 * 4. waits until every authoritative server of the zone answers the TXT query with the value,
 *    asking each server directly (no recursion, no cache), polling until a deadline.
 *
 * `present` resolves only once step 4 is done (the Solver contract). `cleanup` deletes exactly the
 * value that `present` wrote, so a wildcard and its base name can be validated at once with two
 * values on one name. docs/dns-01.md describes the options.
 *
 * Lookups go through a small DNS client on dns-packet (UDP, TCP when the answer is truncated)
 * rather than node:dns, because the propagation check needs non-recursive queries, the AA bit
 * and the rcode, and the zone search needs the SOA of the authority section.
 */
import { createHash, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DnsProvider, TxtRecord } from '../../dns/provider.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import { AcmeClientError } from '../errors.js';
import { checkToken } from './token.js';
import type { ChallengeInput, Solver } from './types.js';

export interface Dns01Options {
  /**
   * Recursive resolvers as "host" or "host:port" ("[v6]:port" for IPv6 with a port), used for the
   * CNAME, SOA, NS and address lookups. Default: the system's resolvers.
   */
  resolvers?: string[];
  /** Port for queries to name servers found through NS records. Default 53 (other values are for labs and tests). */
  nameserverPort?: number;
  /**
   * Explicit authoritative servers ("host:port") per zone, overriding NS discovery. A name equal
   * to or under one of these zones belongs to the longest such zone without any SOA lookup, and
   * CNAME lookups for it go to these servers directly: for split-horizon DNS, and for tests where
   * a CNAME points into a zone served elsewhere.
   */
  authoritative?: Record<string, string[]>;
  /** How long `present` waits for every authoritative server to have the record. Default 120 000 ms. */
  propagationTimeoutMs?: number;
  /** Pause between two rounds of the propagation check. Default 2 000 ms. */
  pollIntervalMs?: number;
  /** Follow CNAME delegation of `_acme-challenge.<name>`. Default true. */
  followCname?: boolean;
  /**
   * Skip the propagation check: `present` resolves as soon as the provider accepted the record.
   * Only for when the authoritative servers cannot be reached from this machine; the server may
   * then look before the record is there. Default false.
   */
  skipPropagationCheck?: boolean;
  /** Timeout of one DNS query (each is tried twice over UDP). Default 2 000 ms. */
  queryTimeoutMs?: number;
  /** Progress messages, for a CLI to show. */
  onStep?: (msg: string) => void;
  /** Time source and pause, for tests. */
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
}

/** The TXT value for a key authorization. */
export function dns01TxtValue(keyAuthorization: string): string {
  // RFC 8555 §8.4: the base64url encoding of the SHA-256 digest of the key authorization.
  return createHash('sha256').update(keyAuthorization, 'utf8').digest('base64url');
}

const LABEL = /^[a-z0-9_-]{1,63}$/;

/** True for a plain ASCII DNS name: labels of letters, digits, "-" and "_", 1..63 each, 253 in all. */
export function isSaneDnsName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

/**
 * The name a dns-01 challenge is about, lower case and without "*.", from what the server sent.
 * SECURITY.md (client): a name that is not a plain DNS name never reaches a provider.
 */
export function dns01Domain(ch: Pick<ChallengeInput, 'identifier'>): string {
  if (ch.identifier.type !== 'dns') {
    // RFC 8738 §7: dns-01 cannot validate IP identifiers.
    throw new AcmeClientError('BAD_RESPONSE', `dns-01 cannot validate a ${String(ch.identifier.type)} identifier`);
  }
  const raw = typeof ch.identifier.value === 'string' ? ch.identifier.value : '';
  // RFC 8555 §7.1.3: a wildcard authorization names the base domain ("*." removed, wildcard: true);
  // a server that left the "*." in place gets the same treatment.
  const name = (raw.startsWith('*.') ? raw.slice(2) : raw).toLowerCase();
  // `_acme-challenge.` must fit within the 253 characters too.
  if (!isSaneDnsName(name) || name.length > 253 - '_acme-challenge.'.length) {
    throw new AcmeClientError('BAD_RESPONSE', `the server sent an unsafe identifier ${JSON.stringify(raw.slice(0, 80))} for dns-01; refusing to use it`);
  }
  return name;
}

/** Longest CNAME chain followed from `_acme-challenge.<name>`. */
const MAX_CNAME_HOPS = 8;

// RFC 1035 §4.1.1 rcodes.
const RCODE_NAMES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };
const NOERROR = 0;
const NXDOMAIN = 3;

type QType = 'TXT' | 'CNAME' | 'SOA' | 'NS' | 'A' | 'AAAA';

interface Endpoint {
  host: string;
  port: number;
}

interface DnsReply {
  rcode: number;
  aa: boolean;
  answers: dnsPacket.Answer[];
  authorities: dnsPacket.Answer[];
  additionals: dnsPacket.Answer[];
}

/** An authoritative server to check: a name (or "host:port") and the addresses to ask. */
interface NameServer {
  label: string;
  addrs: Endpoint[];
}

function showEndpoint(e: Endpoint): string {
  return net.isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** "host", "host:port", "[v6]:port" or a bare IPv6 address. */
function parseEndpoint(s: string, defaultPort: number): Endpoint {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  let host: string;
  let port: string | undefined;
  if (m) [, host = '', port] = m;
  else if (s.split(':').length === 2) [host = '', port] = s.split(':');
  else host = s;
  const p = port === undefined ? defaultPort : Number(port);
  if (!host || !Number.isInteger(p) || p < 1 || p > 65535) throw new AcmeClientError('DNS_LOOKUP', `dns-01: ${JSON.stringify(s)} is not a "host" or "host:port"`);
  return { host, port: p };
}

function sameName(a: string, b: string): boolean {
  return a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
}

/** True when `name` is `zone` or under it. */
function inZone(name: string, zone: string): boolean {
  const n = name.toLowerCase();
  const z = zone.toLowerCase().replace(/\.$/, '');
  return z === '' || n === z || n.endsWith(`.${z}`);
}

function txtString(a: dnsPacket.Answer): string {
  const d = (a as { data?: unknown }).data;
  const chunks = Array.isArray(d) ? d : [d];
  return chunks.map((c) => (Buffer.isBuffer(c) ? c.toString('latin1') : String(c ?? ''))).join('');
}

function reply(p: dnsPacket.DecodedPacket): DnsReply {
  return {
    rcode: (p.flags ?? 0) & 0xf,
    aa: p.flag_aa,
    answers: p.answers ?? [],
    authorities: p.authorities ?? [],
    additionals: p.additionals ?? [],
  };
}

function matches(p: dnsPacket.DecodedPacket, id: number, name: string, type: QType): boolean {
  const q = p.questions?.[0];
  return p.id === id && p.type === 'response' && q !== undefined && q.type === type && sameName(q.name, name);
}

/** One DNS query over UDP (falling back to TCP when the answer is truncated), tried twice. */
async function query(to: Endpoint, name: string, type: QType, recursive: boolean, timeoutMs: number): Promise<DnsReply> {
  let last: unknown;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return await queryOnce(to, name, type, recursive, timeoutMs);
    } catch (e) {
      last = e;
      if ((e as { code?: string }).code !== 'ETIMEOUT') break;
    }
  }
  throw last;
}

function timeoutError(): Error {
  return Object.assign(new Error('timed out'), { code: 'ETIMEOUT' });
}

function queryOnce(to: Endpoint, name: string, type: QType, recursive: boolean, timeoutMs: number): Promise<DnsReply> {
  const id = randomInt(0, 65536);
  const msg: dnsPacket.Packet = {
    type: 'query',
    id,
    flags: recursive ? dnsPacket.RECURSION_DESIRED : 0,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  };
  return new Promise<DnsReply>((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(to.host) ? 'udp6' : 'udp4');
    let finished = false;
    const done = (err: unknown, r?: DnsReply) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(timeoutError()), timeoutMs);
    sock.on('error', (e) => done(e));
    sock.on('message', (buf) => {
      let p: dnsPacket.DecodedPacket;
      try {
        p = dnsPacket.decode(buf);
      } catch {
        return; // not DNS: keep waiting for the real answer
      }
      // Answers with another id or question are not ours (late, or spoofed): ignore them.
      if (!matches(p, id, name, type)) return;
      if (p.flag_tc) {
        // Truncated: the same question again over TCP (RFC 7766).
        finished = true;
        clearTimeout(timer);
        sock.close();
        queryTcp(to, msg, name, type, timeoutMs).then(resolve, reject);
        return;
      }
      done(null, reply(p));
    });
    sock.send(dnsPacket.encode(msg), to.port, to.host, (e) => {
      if (e) done(e);
    });
  });
}

function queryTcp(to: Endpoint, msg: dnsPacket.Packet, name: string, type: QType, timeoutMs: number): Promise<DnsReply> {
  return new Promise<DnsReply>((resolve, reject) => {
    const sock = net.connect({ host: to.host, port: to.port });
    let buf = Buffer.alloc(0);
    let finished = false;
    const done = (err: unknown, r?: DnsReply) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(timeoutError()), timeoutMs);
    sock.on('error', (e) => done(e));
    sock.on('connect', () => sock.write(dnsPacket.streamEncode(msg)));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 70_000) return done(new Error('oversized TCP answer'));
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      try {
        const p = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        if (!matches(p, msg.id!, name, type)) return done(new Error('answer for another question'));
        done(null, reply(p));
      } catch (e) {
        done(e);
      }
    });
    sock.on('end', () => done(new Error('connection closed before the answer')));
  });
}

function reason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ETIMEOUT') return 'timed out';
  if (code === 'ECONNREFUSED') return 'connection refused';
  return code ?? (e instanceof Error ? e.message : String(e));
}

export class Dns01Solver implements Solver {
  readonly type = 'dns-01' as const;
  readonly #provider: DnsProvider;
  readonly #resolvers: Endpoint[];
  readonly #nsPort: number;
  readonly #zones: Array<{ zone: string; servers: string[] }>;
  readonly #timeoutMs: number;
  readonly #intervalMs: number;
  readonly #queryTimeoutMs: number;
  readonly #followCname: boolean;
  readonly #skipCheck: boolean;
  readonly #step: (msg: string) => void;
  readonly #clock: Clock;
  readonly #sleep: (ms: number) => Promise<void>;
  /** What `present` wrote (or tried to write), by challenge token: `cleanup` deletes exactly this. */
  readonly #written = new Map<string, TxtRecord>();

  constructor(provider: DnsProvider, opts: Dns01Options = {}) {
    this.#provider = provider;
    const resolvers = opts.resolvers?.length ? opts.resolvers : new Resolver().getServers();
    this.#resolvers = resolvers.map((r) => parseEndpoint(r, 53));
    this.#nsPort = opts.nameserverPort ?? 53;
    this.#zones = Object.entries(opts.authoritative ?? {})
      .map(([zone, servers]) => ({ zone: zone.toLowerCase().replace(/\.$/, ''), servers }))
      .sort((a, b) => b.zone.length - a.zone.length);
    for (const z of this.#zones) {
      if (!z.servers.length) throw new AcmeClientError('DNS_LOOKUP', `dns-01: no servers given for zone ${z.zone}`);
      z.servers.forEach((s) => parseEndpoint(s, this.#nsPort));
    }
    this.#timeoutMs = opts.propagationTimeoutMs ?? 120_000;
    this.#intervalMs = opts.pollIntervalMs ?? 2_000;
    this.#queryTimeoutMs = opts.queryTimeoutMs ?? 2_000;
    this.#followCname = opts.followCname ?? true;
    this.#skipCheck = opts.skipPropagationCheck ?? false;
    this.#step = opts.onStep ?? (() => undefined);
    this.#clock = opts.clock ?? systemClock;
    this.#sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  async present(ch: ChallengeInput): Promise<void> {
    checkToken(ch.token);
    const domain = dns01Domain(ch);
    const value = dns01TxtValue(ch.keyAuthorization);
    // RFC 8555 §8.4: the record lives at "_acme-challenge." + the domain name being validated.
    const name = `_acme-challenge.${domain}`;
    const fqdn = this.#followCname ? await this.#followChain(name) : name;
    const zone = await this.#zoneOf(fqdn);
    const record: TxtRecord = { fqdn, value, domain, zone: zone.zone };
    // Remembered before the provider is called: a create that failed half-way is still cleaned up.
    this.#written.set(ch.token, record);
    this.#step(`dns-01: adding TXT ${fqdn} (zone ${zone.zone}) through ${this.#provider.name}`);
    await this.#provider.createTxtRecord(record);
    if (this.#skipCheck) {
      this.#step(`dns-01: not checking that ${fqdn} propagated (skipPropagationCheck)`);
      return;
    }
    const servers = zone.servers ?? (await this.#nameServers(zone.zone));
    await this.#waitForPropagation(servers, record);
  }

  async cleanup(ch: ChallengeInput): Promise<void> {
    const record = this.#written.get(ch.token);
    // Nothing was written (present failed before the provider was called, or never ran).
    if (!record) return;
    this.#step(`dns-01: removing TXT ${record.fqdn} through ${this.#provider.name}`);
    // Providers succeed when the value is already gone (DnsProvider contract).
    await this.#provider.deleteTxtRecord(record);
    this.#written.delete(ch.token);
  }

  /** The provider belongs to the caller, who may use it for more issuances: it stays open. */
  async close(): Promise<void> {}

  /** The configured zone holding `name` (longest match), if any. */
  #configuredZone(name: string): { zone: string; servers: string[] } | undefined {
    return this.#zones.find((z) => inZone(name, z.zone));
  }

  /**
   * Asks the servers configured for the name's zone (no recursion), or else the resolvers, in
   * order; the first NOERROR or NXDOMAIN answer wins.
   */
  async #lookup(name: string, type: QType): Promise<DnsReply> {
    const conf = this.#configuredZone(name);
    const targets = conf ? conf.servers.map((s) => parseEndpoint(s, this.#nsPort)) : this.#resolvers;
    if (!targets.length) throw new AcmeClientError('DNS_LOOKUP', `dns-01: no DNS resolvers configured or found to look up ${type} ${name}`);
    const failures: string[] = [];
    for (const t of targets) {
      try {
        const r = await query(t, name, type, !conf, this.#queryTimeoutMs);
        if (r.rcode === NOERROR || r.rcode === NXDOMAIN) return r;
        failures.push(`${showEndpoint(t)}: ${RCODE_NAMES[r.rcode] ?? `rcode ${r.rcode}`}`);
      } catch (e) {
        failures.push(`${showEndpoint(t)}: ${reason(e)}`);
      }
    }
    throw new AcmeClientError('DNS_LOOKUP', `dns-01: looking up ${type} ${name} failed (${failures.join('; ')})`);
  }

  /** Follows CNAMEs from `name`; returns the end of the chain. */
  async #followChain(name: string): Promise<string> {
    const chain = [name];
    let current = name;
    for (;;) {
      const r = await this.#lookup(current, 'CNAME');
      const c = r.answers.find((a) => a.type === 'CNAME' && sameName(a.name, current));
      if (!c) return current;
      const next = String((c as { data?: unknown }).data ?? '').toLowerCase().replace(/\.$/, '');
      if (!isSaneDnsName(next)) {
        throw new AcmeClientError('DNS_CNAME_CHAIN', `dns-01: ${current} is an alias of ${JSON.stringify(next.slice(0, 80))}, which is not a usable DNS name`);
      }
      if (chain.includes(next)) {
        throw new AcmeClientError('DNS_CNAME_CHAIN', `dns-01: CNAME loop: ${[...chain, next].join(' -> ')}`);
      }
      chain.push(next);
      if (chain.length > MAX_CNAME_HOPS + 1) {
        throw new AcmeClientError('DNS_CNAME_CHAIN', `dns-01: CNAME chain longer than ${MAX_CNAME_HOPS}: ${chain.join(' -> ')}`);
      }
      this.#step(`dns-01: ${current} is an alias of ${next}`);
      current = next;
    }
  }

  /** The zone of `name`: a configured zone, else the owner of the SOA found climbing from `name`. */
  async #zoneOf(name: string): Promise<{ zone: string; servers?: NameServer[] }> {
    const conf = this.#configuredZone(name);
    if (conf) {
      return { zone: conf.zone, servers: conf.servers.map((s) => ({ label: s, addrs: [parseEndpoint(s, this.#nsPort)] })) };
    }
    for (let n = name; ; n = n.slice(n.indexOf('.') + 1)) {
      const r = await this.#lookup(n, 'SOA');
      // The SOA is the answer at a zone apex, and in the authority section of NXDOMAIN/NODATA
      // answers below it. One for an unrelated zone (the end of a CNAME at `n`) does not count.
      const soa = [...r.answers, ...r.authorities].find((a) => a.type === 'SOA' && inZone(name, a.name));
      if (soa) return { zone: soa.name.toLowerCase().replace(/\.$/, '') };
      if (!n.includes('.')) throw new AcmeClientError('DNS_LOOKUP', `dns-01: found no SOA record for ${name} or its parents`);
    }
  }

  /** A and AAAA addresses of `name` (IPv4 first); [] when it has none. */
  async #addresses(name: string, glue: dnsPacket.Answer[]): Promise<string[]> {
    const fromGlue = glue.filter((a) => (a.type === 'A' || a.type === 'AAAA') && sameName(a.name, name)).map((a) => String((a as { data?: unknown }).data));
    if (fromGlue.length) return fromGlue.sort((a, b) => Number(net.isIPv6(a)) - Number(net.isIPv6(b)));
    const out: string[] = [];
    for (const type of ['A', 'AAAA'] as const) {
      try {
        const r = await this.#lookup(name, type);
        out.push(...r.answers.filter((a) => a.type === type).map((a) => String((a as { data?: unknown }).data)));
      } catch {
        /* the other family may still answer */
      }
    }
    return out;
  }

  /** The zone's authoritative servers from its NS records. */
  async #nameServers(zone: string): Promise<NameServer[]> {
    const r = await this.#lookup(zone, 'NS');
    const names = [...new Set(r.answers.filter((a) => a.type === 'NS' && sameName(a.name, zone)).map((a) => String((a as { data?: unknown }).data).toLowerCase().replace(/\.$/, '')))];
    if (!names.length) throw new AcmeClientError('DNS_LOOKUP', `dns-01: zone ${zone} has no NS records`);
    const out: NameServer[] = [];
    for (const ns of names) {
      const addrs = await this.#addresses(ns, r.additionals);
      if (!addrs.length) throw new AcmeClientError('DNS_LOOKUP', `dns-01: name server ${ns} of zone ${zone} has no address`);
      out.push({ label: ns, addrs: addrs.map((host) => ({ host, port: this.#nsPort })) });
    }
    return out;
  }

  /**
   * Whether `ns` answers authoritatively with the value: null when it does, else why not. The
   * first of its addresses that answers speaks for it.
   */
  async #check(ns: NameServer, rec: TxtRecord, timeoutMs: number): Promise<string | null> {
    let why = 'no address answered';
    for (const addr of ns.addrs) {
      let r: DnsReply;
      try {
        // Asked directly and without recursion: what this server serves, not what a cache holds.
        r = await query(addr, rec.fqdn, 'TXT', false, timeoutMs);
      } catch (e) {
        why = `${showEndpoint(addr)} ${reason(e)}`;
        continue;
      }
      if (r.rcode !== NOERROR && r.rcode !== NXDOMAIN) {
        why = `${showEndpoint(addr)} answered ${RCODE_NAMES[r.rcode] ?? `rcode ${r.rcode}`}`;
        continue;
      }
      if (!r.aa) {
        why = `${showEndpoint(addr)} is not authoritative for ${rec.fqdn}`;
        continue;
      }
      const values = r.answers.filter((a) => a.type === 'TXT' && sameName(a.name, rec.fqdn)).map(txtString);
      if (values.includes(rec.value)) return null;
      return values.length ? `${values.length} other TXT value(s) but not ours yet` : 'no TXT record yet';
    }
    return why;
  }

  async #waitForPropagation(servers: NameServer[], rec: TxtRecord): Promise<void> {
    const deadline = this.#clock.now().getTime() + this.#timeoutMs;
    let pending = servers.map((ns) => ({ ns, why: 'not asked yet' }));
    this.#step(`dns-01: waiting for ${servers.map((s) => s.label).join(', ')} to serve TXT ${rec.fqdn}`);
    for (;;) {
      const left = deadline - this.#clock.now().getTime();
      const perQuery = Math.max(100, Math.min(this.#queryTimeoutMs, left));
      const results = await Promise.all(pending.map(async (p) => ({ ns: p.ns, why: await this.#check(p.ns, rec, perQuery) })));
      pending = results.filter((p): p is { ns: NameServer; why: string } => p.why !== null);
      if (!pending.length) {
        this.#step(`dns-01: ${rec.fqdn} is served by all ${servers.length} authoritative server(s)`);
        return;
      }
      const now = this.#clock.now().getTime();
      if (now >= deadline) {
        const lagging = pending.map((p) => `${p.ns.label} (${p.why})`).join(', ');
        throw new AcmeClientError(
          'DNS_PROPAGATION_TIMEOUT',
          `dns-01: after ${this.#timeoutMs} ms, ${pending.length} of ${servers.length} authoritative server(s) of ${rec.zone} still do not serve the TXT record at ${rec.fqdn}: ${lagging}`,
        );
      }
      this.#step(`dns-01: still waiting for ${pending.map((p) => p.ns.label).join(', ')}`);
      await this.#sleep(Math.min(this.#intervalMs, deadline - now));
    }
  }
}
