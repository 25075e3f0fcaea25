/**
 * The authoritative answer logic of `anvil dns` for its one zone, without sockets: given a question,
 * what goes in the answer, authority and additional sections, and which rcode (RFC 1034 §4.3.2,
 * RFC 2308 for negative answers). The wire format and transports are in wire.ts and listener.ts.
 *
 * Names at the apex: SOA, NS (+ static records). Name servers inside the zone: their glue A/AAAA.
 * `<subdomain>.<zone>` of a registration: its TXT values from the store. Static records from the
 * config. Everything else in the zone: NXDOMAIN, or NODATA when the name exists (also as an empty
 * non-terminal). Names outside the zone: REFUSED (we are not a resolver).
 */
import type { Answer } from 'dns-packet';
import type { DnsServerConfig } from './config.js';

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';

export interface ZoneAnswer {
  rcode: Rcode;
  /** Authoritative answer (set for every name inside the zone). */
  aa: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

/** Looks up a registration's TXT values by its label: null when no registration has it. */
export type TxtLookup = (subdomain: string) => Promise<string[] | null>;

interface Rr {
  type: 'A' | 'AAAA' | 'CNAME' | 'TXT' | 'NS' | 'SOA';
  ttl: number;
  data: unknown;
}

/** TXT strings are at most 255 bytes each (RFC 1035 §3.3.14): longer static values are split. */
function txtChunks(value: string): Buffer[] {
  const b = Buffer.from(value, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out.length ? out : [Buffer.alloc(0)];
}

export class Zone {
  readonly name: string;
  readonly #txtTtl: number;
  readonly #soa: Rr;
  readonly #negativeTtl: number;
  /** Static RRs by lower-case owner name. */
  readonly #static = new Map<string, Rr[]>();
  /** Every name that exists (owners and their ancestors inside the zone: empty non-terminals). */
  readonly #exists = new Set<string>();
  readonly #glue = new Map<string, Rr[]>();

  constructor(
    config: DnsServerConfig,
    private readonly txt: TxtLookup,
    startedAt: Date = new Date(),
  ) {
    this.name = config.zone;
    this.#txtTtl = config.txtTtl;
    const soa = config.soa;
    this.#soa = {
      type: 'SOA',
      ttl: config.ttl,
      data: {
        mname: config.nsNames[0],
        rname: soa.rname ?? `hostmaster.${config.zone}`,
        serial: soa.serial ?? Math.floor(startedAt.getTime() / 1000) % 4_294_967_296,
        refresh: soa.refresh,
        retry: soa.retry,
        expire: soa.expire,
        minimum: soa.minimum,
      },
    };
    // RFC 2308 §5: the negative TTL is the minimum of the SOA's own TTL and its MINIMUM field.
    this.#negativeTtl = Math.min(config.ttl, soa.minimum);
    this.#add(config.zone, this.#soa);
    for (const ns of config.nsNames) this.#add(config.zone, { type: 'NS', ttl: config.ttl, data: ns });
    for (const [ns, addrs] of Object.entries(config.nsAddresses)) {
      const rrs = addrs.map((a): Rr => ({ type: a.includes(':') ? 'AAAA' : 'A', ttl: config.ttl, data: a }));
      this.#glue.set(ns, rrs);
      for (const rr of rrs) this.#add(ns, rr);
    }
    for (const r of config.records) {
      const ttl = r.ttl ?? config.ttl;
      this.#add(r.name, { type: r.type, ttl, data: r.type === 'TXT' ? txtChunks(r.value) : r.value });
    }
  }

  #add(owner: string, rr: Rr): void {
    const list = this.#static.get(owner) ?? [];
    list.push(rr);
    this.#static.set(owner, list);
    for (let n = owner; ; n = n.slice(n.indexOf('.') + 1)) {
      this.#exists.add(n);
      if (n === this.name || !n.includes('.')) break;
    }
  }

  /** Whether `name` (lower case, no trailing dot) is the zone or below it. */
  contains(name: string): boolean {
    return name === this.name || name.endsWith(`.${this.name}`);
  }

  /**
   * Answers one question. `qname` keeps the asker's case (it is echoed in the answer's owner
   * names, as resolvers using 0x20 randomisation expect); comparison is case-insensitive.
   */
  async answer(qname: string, qtype: string, qclass: string): Promise<ZoneAnswer> {
    const name = qname.toLowerCase().replace(/\.$/, '');
    const empty = (rcode: Rcode, aa = false): ZoneAnswer => ({ rcode, aa, answers: [], authorities: [], additionals: [] });
    if (!this.contains(name)) return empty('REFUSED');
    if (qclass !== 'IN' && qclass !== 'ANY') return empty('REFUSED');
    if (qtype === 'AXFR' || qtype === 'IXFR') return empty('REFUSED', true);

    let rrs = this.#static.get(name);
    let exists = this.#exists.has(name);
    if (!rrs && !exists) {
      // `<subdomain>.<zone>`: one label below the apex, from the store.
      const label = name.slice(0, -(this.name.length + 1));
      if (!label.includes('.')) {
        const values = await this.txt(label);
        if (values !== null) {
          exists = true;
          rrs = values.map((v): Rr => ({ type: 'TXT', ttl: this.#txtTtl, data: txtChunks(v) }));
        }
      }
    }
    const negative = (rcode: Rcode): ZoneAnswer => ({
      ...empty(rcode, true),
      authorities: [this.#rr(this.name, { ...this.#soa, ttl: this.#negativeTtl })],
    });
    if (!exists) return negative('NXDOMAIN');
    const all = rrs ?? [];
    const cname = all.find((r) => r.type === 'CNAME');
    const matching = cname && qtype !== 'CNAME' ? [cname] : all.filter((r) => qtype === 'ANY' || r.type === qtype);
    if (!matching.length) return negative('NOERROR');
    const out: ZoneAnswer = { ...empty('NOERROR', true), answers: matching.map((r) => this.#rr(qname, r)) };
    // Glue for in-zone name servers named in an NS answer (RFC 1034 §4.3.2 step 6).
    for (const r of matching) {
      if (r.type !== 'NS') continue;
      for (const g of this.#glue.get(String(r.data)) ?? []) out.additionals.push(this.#rr(String(r.data), g));
    }
    return out;
  }

  #rr(owner: string, r: Rr): Answer {
    return { name: owner, type: r.type, class: 'IN', ttl: r.ttl, data: r.data } as Answer;
  }
}
