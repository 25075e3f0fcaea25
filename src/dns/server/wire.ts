/**
 * DNS messages in and out (RFC 1035 §4, EDNS0 from RFC 6891), on top of dns-packet: parses a query
 * defensively, asks the Zone, encodes the response and truncates it for UDP (TC bit, RFC 2181 §9).
 *
 * Never throws for bad input: malformed queries get FORMERR when a header can be read, and nothing
 * at all otherwise (so do responses sent to us: answering them could start a loop).
 */
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import type { Rcode, Zone } from './zone.js';

const RCODES: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const QR = 1 << 15;
const OPCODE_MASK = 0xf << 11;
const BADVERS = 16;

export type Transport = 'udp' | 'tcp';

export interface WireOptions {
  /** Largest UDP response we send, whatever the client's EDNS0 buffer size says. */
  maxUdpPayload: number;
  /** Called when the zone lookup throws (e.g. the database is gone): the answer is SERVFAIL. */
  onError?: (e: unknown) => void;
}

/** A bare header-only response (FORMERR, NOTIMP...), built without dns-packet. */
function headerOnly(query: Buffer, rcode: number): Buffer {
  const b = Buffer.alloc(12);
  query.copy(b, 0, 0, 2); // id
  const flags = query.readUInt16BE(2);
  // QR, the query's opcode and RD; everything else zero.
  b.writeUInt16BE(QR | (flags & OPCODE_MASK) | (flags & dnsPacket.RECURSION_DESIRED) | (rcode & 0xf), 2);
  return b;
}

/**
 * The question's name exactly as sent, if it is plain: uncompressed labels of printable ASCII
 * without dots or spaces. Anything else (binary labels, a "." inside a label, which dns-packet would
 * turn into extra labels) is not a name of our zone.
 */
function plainQname(msg: Buffer): boolean {
  let o = 12;
  for (let total = 0; ; ) {
    const len = msg[o];
    if (len === undefined || len > 63) return false;
    o += 1;
    if (len === 0) return true;
    total += len + 1;
    if (total > 254 || o + len > msg.length) return false;
    for (let i = o; i < o + len; i++) {
      const c = msg[i]!;
      if (c <= 0x20 || c >= 0x7f || c === 0x2e) return false;
    }
    o += len;
  }
}

/** Handles one query message; returns the response to send, or null to send nothing. */
export async function handleQuery(msg: Buffer, transport: Transport, zone: Zone, opts: WireOptions): Promise<Buffer | null> {
  if (msg.length < 12) return null;
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return null;
  let q: Packet;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return headerOnly(msg, RCODES.FORMERR);
  }
  const opcode = (flags & OPCODE_MASK) >> 11;
  if (opcode !== 0) return headerOnly(msg, RCODES.NOTIMP);
  const questions = q.questions ?? [];
  const opts_ = (q.additionals ?? []).filter((a) => a.type === 'OPT');
  if (questions.length !== 1 || opts_.length > 1 || (q.answers ?? []).length > 0) return headerOnly(msg, RCODES.FORMERR);
  const question = questions[0]!;
  const opt = opts_[0] as (Answer & { udpPayloadSize?: number; ednsVersion?: number }) | undefined;

  const base = {
    id: q.id ?? 0,
    type: 'response' as const,
    questions: [question],
  };
  const rdFlag = flags & dnsPacket.RECURSION_DESIRED;
  const ourOpt = (extendedRcode = 0): Answer =>
    ({ name: '.', type: 'OPT', udpPayloadSize: opts.maxUdpPayload, extendedRcode, ednsVersion: 0, flags: 0, options: [] }) as unknown as Answer;

  // RFC 6891 §6.1.3: only EDNS version 0 exists; anything else is BADVERS.
  if (opt && (opt.ednsVersion ?? 0) > 0) {
    return dnsPacket.encode({ ...base, flags: rdFlag | (BADVERS & 0xf), additionals: [ourOpt(BADVERS >> 4)] });
  }
  let result;
  if (!plainQname(msg)) {
    result = { rcode: 'REFUSED' as Rcode, aa: false, answers: [], authorities: [], additionals: [] };
  } else {
    try {
      result = await zone.answer(question.name, question.type, question.class ?? 'IN');
    } catch (e) {
      opts.onError?.(e);
      result = { rcode: 'SERVFAIL' as Rcode, aa: false, answers: [], authorities: [], additionals: [] };
    }
  }
  const head = { ...base, flags: rdFlag | (result.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | RCODES[result.rcode] };
  const extra = opt ? [ourOpt()] : [];
  const full: Packet = { ...head, answers: result.answers, authorities: result.authorities, additionals: [...result.additionals, ...extra] };
  const out = dnsPacket.encode(full);
  if (transport === 'tcp') return out;
  // RFC 6891 §6.2.5: the client's advertised size (at least 512), capped by ours; 512 without EDNS0.
  const limit = opt ? Math.min(Math.max(opt.udpPayloadSize ?? 512, 512), opts.maxUdpPayload) : 512;
  if (out.length <= limit) return out;
  // Additional data may be dropped without TC (RFC 2181 §9); otherwise send the question only, with TC.
  const lean = dnsPacket.encode({ ...full, additionals: extra });
  if (lean.length <= limit) return lean;
  return dnsPacket.encode({ ...head, flags: head.flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: extra });
}
