/**
 * The "rfc2136" DNS provider: DNS UPDATE (RFC 2136) signed with TSIG (RFC 8945), for BIND, Knot,
 * PowerDNS and any primary that accepts dynamic updates. Configuration and env var names follow
 * lego's rfc2136 provider.
 *
 * - add: one UPDATE adding the TXT RR to its RRset (RFC 2136 §2.5.1), so other values survive;
 *   adding a value that is already there is a no-op for the server (RFC 2136 §3.4.2.2).
 * - delete: one UPDATE deleting exactly that RR (class NONE, RFC 2136 §2.5.4); deleting a missing
 *   RR is a no-op for the server.
 * - The zone is `zone` from the configuration, else the one the solver found, else found by SOA
 *   queries to the nameserver itself, walking up the labels.
 * - Every message is signed, every answer must carry a valid TSIG chained to our request
 *   (RFC 8945 §5.4): an unsigned "NOERROR" is not believed.
 * - UDP with retries, then TCP when the answer is truncated (RFC 1035 §4.2.1, RFC 7766).
 *
 * Differences from lego: TSIG is required (lego allows unsigned updates), hmac-md5 is not
 * supported, and `zone` / RFC2136_ZONE is ours.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { z } from 'zod';
import { systemClock, type Clock } from '../../lib/clock.js';
import { cryptoRandom, type Random } from '../../lib/random.js';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../provider.js';
import { parseSeconds, type DnsProviderFactory } from '../registry.js';
import { extractTsig, nameToWire, parseTsigAlgorithm, signMessage, TSIG_ALGORITHMS, TSIG_ERROR, tsigErrorName, verifyMessage, type TsigKey } from '../tsig.js';

const NAME = 'rfc2136';

const domainName = z
  .string()
  .transform((s) => s.trim().toLowerCase().replace(/\.$/, ''))
  .refine((s) => /^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(s), 'expected a domain name');

const base64Secret = z
  .string()
  .trim()
  .refine((s) => /^[A-Za-z0-9+/]+={0,2}$/.test(s) && s.length % 4 === 0, 'expected the base64 secret, as in the key file\'s "secret" line');

export const rfc2136Schema = z
  .strictObject({
    /** "host", "host:port" or "[v6]:port"; port 53 by default. */
    nameserver: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+)(:\d{1,5})?$/, 'expected "host" or "host:port"'),
    tsigKeyName: domainName.optional(),
    tsigAlgorithm: z
      .string()
      .default('hmac-sha256')
      .transform((s, ctx) => {
        const a = parseTsigAlgorithm(s);
        if (!a) {
          ctx.addIssue({ code: 'custom', message: `unsupported TSIG algorithm; use one of ${TSIG_ALGORITHMS.join(', ')}` });
          return z.NEVER;
        }
        return a;
      }),
    tsigSecret: base64Secret.optional(),
    /** A BIND key file (`tsig-keygen` output) holding name, algorithm and secret: lego's RFC2136_TSIG_FILE. */
    tsigFile: z.string().min(1).optional(),
    zone: domainName.optional(),
    /** Per exchange (all UDP tries, then TCP). */
    timeoutMs: z.coerce.number().int().min(100).max(300_000).default(10_000),
    ttl: z.coerce.number().int().min(0).max(86_400).default(60),
  })
  .superRefine((c, ctx) => {
    if (c.tsigFile) return;
    if (!c.tsigKeyName) ctx.addIssue({ code: 'custom', path: ['tsigKeyName'], message: 'required (or tsigFile)' });
    if (!c.tsigSecret) ctx.addIssue({ code: 'custom', path: ['tsigSecret'], message: 'required (or tsigFile)' });
  });

export type Rfc2136Config = z.output<typeof rfc2136Schema>;

export interface Rfc2136Deps {
  clock?: Clock;
  random?: Random;
}

/** Reads the first `key "name" { algorithm A; secret "S"; };` of a BIND key file. */
export function parseBindKeyFile(text: string): { name: string; algorithm: string; secret: string } | undefined {
  const m = /key\s+"?([^"\s{]+)"?\s*\{([^}]*)\}/.exec(text);
  if (!m) return undefined;
  const algorithm = /algorithm\s+"?([^";\s]+)"?\s*;/.exec(m[2]!)?.[1];
  const secret = /secret\s+"([^"]+)"\s*;/.exec(m[2]!)?.[1];
  return algorithm && secret ? { name: m[1]!, algorithm, secret } : undefined;
}

function parseNameserver(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(s)!;
  return { host: (m[1] ?? m[2])!, port: m[3] ? Number(m[3]) : 53 };
}

const OPCODE_UPDATE = 5;
const CLASS_NONE = 254;
/** RFC 1035 §4.2.1: without EDNS, UDP messages are at most 512 octets. */
const MAX_UDP = 512;
const UDP_TRIES = 3;

const RCODES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE' };

function fail(message: string, cause?: unknown): DnsProviderError {
  return new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', message, cause === undefined ? undefined : { cause });
}

/** TXT character-strings are at most 255 octets (RFC 1035 §3.3.14): longer values are split. */
function txtStrings(value: string): Buffer[] {
  const b = Buffer.from(value, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out.length ? out : [Buffer.alloc(0)];
}

interface Answer {
  rcode: number;
  /** Set when the answer's TSIG verified: only then is its content believed. */
  packet: dnsPacket.DecodedPacket | undefined;
  /** Why the TSIG did not verify, when it did not. */
  unverified?: string;
}

class Rfc2136Provider implements DnsProvider {
  readonly name = NAME;
  readonly #key: TsigKey;
  readonly #host: string;
  readonly #port: number;
  readonly #ns: string;
  readonly #zone: string | undefined;
  readonly #ttl: number;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #zones = new Map<string, string>();

  constructor(c: { key: TsigKey; nameserver: string; zone: string | undefined; ttl: number; timeoutMs: number }, deps: Rfc2136Deps) {
    this.#key = c.key;
    const ns = parseNameserver(c.nameserver);
    this.#host = ns.host;
    this.#port = ns.port;
    this.#ns = c.nameserver;
    this.#zone = c.zone;
    this.#ttl = c.ttl;
    this.#timeoutMs = c.timeoutMs;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.random ?? cryptoRandom;
  }

  async createTxtRecord(r: TxtRecord): Promise<void> {
    await this.#update(r, 'add');
  }

  async deleteTxtRecord(r: TxtRecord): Promise<void> {
    await this.#update(r, 'delete');
  }

  async #update(r: TxtRecord, op: 'add' | 'delete'): Promise<void> {
    const fqdn = r.fqdn.toLowerCase().replace(/\.$/, '');
    try {
      nameToWire(fqdn);
    } catch {
      throw fail(`invalid record name "${r.fqdn}"`);
    }
    const zone = await this.#zoneFor(fqdn, r.zone);
    const id = this.#random.bytes(2).readUInt16BE(0);
    const zoneQuestion = { name: zone, type: 'SOA' as const, class: 'IN' as const };
    const rr = { name: fqdn, type: 'TXT' as const, class: 'IN' as const, ttl: op === 'add' ? this.#ttl : 0, data: txtStrings(r.value) };
    // RFC 2136 §2.3: the zone section holds one SOA "question" naming the zone; §2.5: the update
    // section (dns-packet's "authorities") holds the changes. No prerequisites.
    const msg = dnsPacket.encode({ id, type: 'query', flags: OPCODE_UPDATE << 11, questions: [zoneQuestion], authorities: [rr] });
    if (op === 'delete') {
      // RFC 2136 §2.5.4: delete an RR from an RRset = class NONE, TTL 0, the RR's type and RDATA.
      // dns-packet has no class NONE, so the class field is written here: it sits after the
      // header, the zone question and the RR's owner name (dns-packet never compresses).
      const at = 12 + nameToWire(zone).length + 4 + nameToWire(fqdn).length + 2;
      msg.writeUInt16BE(CLASS_NONE, at);
    }
    const what = `${op === 'add' ? 'adding' : 'deleting'} a TXT value at ${fqdn}`;
    const { rcode, unverified } = await this.#exchange(msg, what);
    // A failure is believed even unsigned (failing is safe); a success only when signed.
    if (rcode !== 0) throw fail(`${what}: ${this.#rcodeText(rcode, zone)}${unverified ? ' (the answer carried no valid TSIG)' : ''}`);
    if (unverified) throw fail(`${what}: ${unverified}`);
  }

  #rcodeText(rcode: number, zone: string): string {
    const name = RCODES[rcode] ?? `RCODE ${rcode}`;
    switch (rcode) {
      case 9:
        return `${this.#ns} is not authoritative for zone ${zone} (NOTAUTH); set "zone" if the zone was guessed wrong`;
      case 5:
        return `${this.#ns} refused the update (REFUSED): is key "${this.#key.name}" allowed to update zone ${zone}?`;
      case 10:
        return `the name is not in zone ${zone} (NOTZONE)`;
      case 4:
        return `${this.#ns} does not implement dynamic updates (NOTIMP)`;
      case 2:
        return `${this.#ns} could not apply the update (SERVFAIL)`;
      case 1:
        return `${this.#ns} could not parse the update (FORMERR)`;
      default:
        return `unexpected answer ${name} from ${this.#ns}`;
    }
  }

  /** Signs, sends, and checks the answer's TSIG; returns the RCODE and the decoded answer. */
  async #exchange(unsigned: Buffer, what: string): Promise<Answer> {
    const now = () => Math.floor(this.#clock.now().getTime() / 1000);
    const id = unsigned.readUInt16BE(0);
    const { message, mac } = signMessage(unsigned, this.#key, { timeSigned: now() });
    const raw = await this.#send(message, id);
    const rcode = raw.readUInt16BE(2) & 0x0f;
    let found: ReturnType<typeof extractTsig>;
    try {
      found = extractTsig(raw);
    } catch {
      found = undefined;
    }
    // RFC 8945 §5.3.2: a server that could not verify our request says why in the TSIG error field
    // (the answer is then unsigned: we only ever believe it as a failure).
    if (found && found.tsig.error !== TSIG_ERROR.NOERROR) throw fail(`${what}: ${this.#tsigErrorText(found.tsig.error, found.tsig.otherData, now())}`);
    const verified = verifyMessage(raw, this.#key, { requestMac: mac, now: now() });
    // RFC 8945 §5.4: an answer whose TSIG does not verify is not believed: no content.
    if (!verified.ok) return { rcode, packet: undefined, unverified: `the answer from ${this.#ns} failed TSIG verification (${verified.reason}: ${verified.detail})` };
    try {
      return { rcode, packet: dnsPacket.decode(found!.unsigned) };
    } catch (e) {
      throw fail(`${what}: malformed answer from ${this.#ns}`, e);
    }
  }

  #tsigErrorText(error: number, otherData: Buffer, now: number): string {
    const base = `${this.#ns} rejected TSIG key "${this.#key.name}" with ${tsigErrorName(error)}`;
    switch (error) {
      case TSIG_ERROR.BADSIG:
        return `${base}: the secret or the algorithm (${this.#key.algorithm}) differs from the server's key`;
      case TSIG_ERROR.BADKEY:
        return `${base}: the server has no key of that name with algorithm ${this.#key.algorithm}`;
      case TSIG_ERROR.BADTIME: {
        // RFC 8945 §5.2.3: Other Data then holds the server's time.
        const skew = otherData.length === 6 ? ` (server time is ${otherData.readUIntBE(0, 6) - now} s from ours)` : '';
        return `${base}: our clock and the server's differ by more than the fudge${skew}`;
      }
      default:
        return base;
    }
  }

  /** RFC 2136 §4: the primary must be authoritative, so it answers for the zone: ask it for the SOA. */
  async #zoneFor(fqdn: string, hint: string | undefined): Promise<string> {
    if (this.#zone) {
      if (fqdn !== this.#zone && !fqdn.endsWith(`.${this.#zone}`)) throw fail(`${fqdn} is not in the configured zone ${this.#zone}`);
      return this.#zone;
    }
    if (hint) return hint.toLowerCase().replace(/\.$/, '');
    const cached = this.#zones.get(fqdn);
    if (cached) return cached;
    const labels = fqdn.split('.');
    for (let i = 0; i < labels.length; i++) {
      const name = labels.slice(i).join('.');
      const id = this.#random.bytes(2).readUInt16BE(0);
      const q = dnsPacket.encode({ id, type: 'query', flags: 0, questions: [{ name, type: 'SOA', class: 'IN' }] });
      const what = `finding the zone of ${fqdn}`;
      const { rcode, packet, unverified } = await this.#exchange(q, what);
      if (rcode !== 0 && rcode !== 3) continue; // REFUSED, NOTAUTH, ...: not this server's zone.
      if (!packet) throw fail(`${what}: ${unverified}`);
      const soa = [...(packet.answers ?? []), ...(packet.authorities ?? [])].find((a) => a.type === 'SOA');
      if (!soa) continue;
      const owner = soa.name.toLowerCase().replace(/\.$/, '');
      if (owner === name || name.endsWith(`.${owner}`)) {
        this.#zones.set(fqdn, owner);
        return owner;
      }
    }
    throw fail(`cannot find the zone of ${fqdn}: ${this.#ns} has no SOA for it or any parent; set "zone" (RFC2136_ZONE)`);
  }

  async #send(message: Buffer, id: number): Promise<Buffer> {
    const deadline = Date.now() + this.#timeoutMs;
    let address = this.#host;
    let family = net.isIP(address);
    if (family === 0) {
      try {
        ({ address, family } = await lookup(this.#host));
      } catch (e) {
        throw fail(`cannot resolve nameserver ${this.#host}`, e);
      }
    }
    if (message.length <= MAX_UDP) {
      const answer = await this.#udp(message, id, address, family === 6 ? 'udp6' : 'udp4', deadline);
      // TC (RFC 1035 §4.1.1): the answer did not fit; ask again over TCP.
      if ((answer[2]! & 0x02) === 0) return answer;
    }
    return await this.#tcp(message, id, address, deadline);
  }

  #timeout(): DnsProviderError {
    return new DnsProviderError(NAME, 'DNS_PROVIDER_TIMEOUT', `no answer from ${this.#ns} within ${this.#timeoutMs} ms`);
  }

  /** Sends up to UDP_TRIES times on one connected socket; the first answer with our ID wins. */
  #udp(message: Buffer, id: number, address: string, type: 'udp4' | 'udp6', deadline: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket(type);
      const timers: NodeJS.Timeout[] = [];
      let done = false;
      const finish = (err: Error | undefined, answer?: Buffer) => {
        if (done) return;
        done = true;
        timers.forEach(clearTimeout);
        sock.close();
        if (err) reject(err);
        else resolve(answer!);
      };
      sock.on('error', (e: NodeJS.ErrnoException) =>
        finish(e.code === 'ECONNREFUSED' ? fail(`${this.#ns} refused the connection (is a DNS server listening there?)`, e) : fail(`UDP to ${this.#ns}: ${e.code ?? e.message}`, e)),
      );
      sock.on('message', (m) => {
        // Connected socket: only the server's datagrams arrive. Match the ID and the QR bit.
        if (m.length >= 12 && m.readUInt16BE(0) === id && (m[2]! & 0x80) !== 0) finish(undefined, m);
      });
      const total = Math.max(0, deadline - Date.now());
      const interval = Math.max(200, Math.floor(total / UDP_TRIES));
      const send = () => sock.send(message, (e) => e && finish(fail(`UDP to ${this.#ns}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, e)));
      sock.connect(this.#port, address, () => {
        send();
        for (let i = 1; i < UDP_TRIES; i++) if (i * interval < total) timers.push(setTimeout(send, i * interval));
      });
      timers.push(setTimeout(() => finish(this.#timeout()), total));
    });
  }

  /** RFC 1035 §4.2.2: TCP messages are preceded by a two-octet length. */
  #tcp(message: Buffer, id: number, address: string, deadline: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: address, port: this.#port });
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | undefined, answer?: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(answer!);
      };
      const timer = setTimeout(() => finish(this.#timeout()), Math.max(0, deadline - Date.now()));
      sock.on('error', (e: NodeJS.ErrnoException) => finish(fail(`TCP to ${this.#ns}: ${e.code ?? e.message}`, e)));
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(message.length);
        sock.write(Buffer.concat([len, message]));
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2) return;
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) return;
        const answer = buf.subarray(2, 2 + n);
        if (answer.length < 12 || answer.readUInt16BE(0) !== id) finish(fail(`TCP answer from ${this.#ns} does not match the request`));
        else finish(undefined, Buffer.from(answer));
      });
      sock.on('end', () => finish(fail(`${this.#ns} closed the TCP connection without an answer`)));
    });
  }
}

/** Builds the provider from a validated configuration (reads tsigFile when given). */
export async function createRfc2136Provider(config: Rfc2136Config, deps: Rfc2136Deps = {}): Promise<DnsProvider> {
  let name = config.tsigKeyName;
  let algorithm = config.tsigAlgorithm;
  let secret = config.tsigSecret;
  if (config.tsigFile) {
    let text: string;
    try {
      text = await readFile(config.tsigFile, 'utf8');
    } catch (e) {
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `tsigFile: cannot read ${config.tsigFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const k = parseBindKeyFile(text);
    const alg = k && parseTsigAlgorithm(k.algorithm);
    if (!k || !alg) throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `tsigFile: ${config.tsigFile} holds no key statement with a supported algorithm`);
    name = k.name.toLowerCase().replace(/\.$/, '');
    algorithm = alg;
    secret = k.secret;
  }
  const key: TsigKey = { name: name!, algorithm, secret: Buffer.from(secret!, 'base64') };
  if (key.secret.length === 0) throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', 'tsigSecret: empty secret');
  return new Rfc2136Provider({ key, nameserver: config.nameserver, zone: config.zone, ttl: config.ttl, timeoutMs: config.timeoutMs }, deps);
}

export const rfc2136Factory: DnsProviderFactory<Rfc2136Config> = {
  name: NAME,
  description: 'DNS UPDATE (RFC 2136) signed with TSIG, for BIND, Knot, PowerDNS and other primaries',
  schema: rfc2136Schema,
  env: {
    RFC2136_NAMESERVER: 'nameserver',
    RFC2136_TSIG_KEY: 'tsigKeyName',
    RFC2136_TSIG_ALGORITHM: 'tsigAlgorithm',
    RFC2136_TSIG_SECRET: 'tsigSecret',
    RFC2136_TSIG_FILE: 'tsigFile',
    RFC2136_ZONE: 'zone',
    RFC2136_TTL: 'ttl',
    RFC2136_DNS_TIMEOUT: 'timeoutMs',
  },
  envParse: { RFC2136_DNS_TIMEOUT: parseSeconds },
  create: (config) => createRfc2136Provider(config),
};
