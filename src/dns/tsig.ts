/**
 * TSIG (RFC 8945): shared-secret authentication of DNS messages, as BIND, Knot and PowerDNS use it
 * for dynamic updates. The message itself is built with dns-packet; this module only appends and
 * checks the TSIG resource record, whose layout and MAC input are small enough to write by hand.
 *
 * Supported algorithms (RFC 8945 §6): hmac-sha256 (the mandatory one) and hmac-sha512, plus
 * hmac-sha1, hmac-sha224 and hmac-sha384 because node:crypto has them for free. HMAC-MD5 and
 * GSS-TSIG are not supported. MACs are never truncated on the messages we sign, and a truncated MAC
 * on a message we verify is refused (RFC 8945 §5.2.2.1 allows, never requires, accepting them).
 *
 * Secrets never leave this module: they are HMAC keys and nothing else, and no message built here
 * contains them.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type TsigAlgorithm = 'hmac-sha1' | 'hmac-sha224' | 'hmac-sha256' | 'hmac-sha384' | 'hmac-sha512';

/** Algorithm name (RFC 8945 §6, without the trailing dot) -> node:crypto digest. */
const DIGESTS: Record<TsigAlgorithm, { hash: string; size: number }> = {
  'hmac-sha1': { hash: 'sha1', size: 20 },
  'hmac-sha224': { hash: 'sha224', size: 28 },
  'hmac-sha256': { hash: 'sha256', size: 32 },
  'hmac-sha384': { hash: 'sha384', size: 48 },
  'hmac-sha512': { hash: 'sha512', size: 64 },
};

export const TSIG_ALGORITHMS = Object.keys(DIGESTS) as TsigAlgorithm[];

/** Accepts "hmac-sha256", "HMAC-SHA256" and the wire spelling "hmac-sha256." (lego's). */
export function parseTsigAlgorithm(s: string): TsigAlgorithm | undefined {
  const a = s.trim().toLowerCase().replace(/\.$/, '');
  return (TSIG_ALGORITHMS as string[]).includes(a) ? (a as TsigAlgorithm) : undefined;
}

export interface TsigKey {
  /** The key's name as the server knows it, e.g. "anvil-test" (a domain name; case does not matter). */
  name: string;
  algorithm: TsigAlgorithm;
  secret: Buffer;
}

/** RFC 8945 §3: TSIG error values carried in the RR's Error field. */
export const TSIG_ERROR = { NOERROR: 0, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADMODE: 19, BADNAME: 20, BADALG: 21, BADTRUNC: 22 } as const;

export function tsigErrorName(code: number): string {
  for (const [k, v] of Object.entries(TSIG_ERROR)) if (v === code) return k;
  return `error ${code}`;
}

/** RFC 8945 §4.2: the RDATA of a TSIG RR, plus where the RR starts in the message. */
export interface TsigRecord {
  /** Owner name of the RR: the key name (lower case, no trailing dot). */
  keyName: string;
  /** Algorithm name as on the wire (lower case, no trailing dot). */
  algorithm: string;
  /** Seconds since the epoch (48 bits). */
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  otherData: Buffer;
}

export class TsigFormatError extends Error {
  readonly code = 'TSIG_FORMERR';
  constructor(message: string) {
    super(message);
    this.name = 'TsigFormatError';
  }
}

const TYPE_TSIG = 250;
const CLASS_ANY = 255;
/** RFC 8945 §5.2.3 suggests 300 seconds. */
export const DEFAULT_FUDGE = 300;

/** A domain name in canonical wire form (RFC 8945 §4.3.3: lower case, uncompressed). */
export function nameToWire(name: string): Buffer {
  const n = name.replace(/\.$/, '').toLowerCase();
  if (n === '') return Buffer.from([0]);
  const parts: Buffer[] = [];
  for (const label of n.split('.')) {
    const b = Buffer.from(label, 'utf8');
    // RFC 1035 §2.3.4: labels are 1..63 octets.
    if (b.length === 0 || b.length > 63) throw new TsigFormatError(`invalid domain name "${name}"`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  const wire = Buffer.concat(parts);
  if (wire.length > 255) throw new TsigFormatError(`domain name too long "${name}"`);
  return wire;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u48(n: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(n, 0, 6);
  return b;
}

interface TsigVariables {
  timeSigned: number;
  fudge: number;
  error: number;
  otherData: Buffer;
}

/**
 * RFC 8945 §4.3: MAC = HMAC(secret, [request MAC size + request MAC] (§4.3.1, responses only)
 * + the message without its TSIG RR, with the original ID and ARCOUNT (§4.3.2)
 * + the TSIG variables (§4.3.3): key name, class ANY, TTL 0, algorithm name, time signed, fudge,
 * error, other length, other data).
 */
function computeMac(key: TsigKey, unsigned: Buffer, vars: TsigVariables, requestMac: Buffer | undefined): Buffer {
  const d = DIGESTS[key.algorithm];
  const h = createHmac(d.hash, key.secret);
  if (requestMac) h.update(u16(requestMac.length)).update(requestMac);
  h.update(unsigned);
  h.update(nameToWire(key.name)).update(u16(CLASS_ANY)).update(Buffer.alloc(4));
  h.update(nameToWire(key.algorithm)).update(u48(vars.timeSigned)).update(u16(vars.fudge));
  h.update(u16(vars.error)).update(u16(vars.otherData.length)).update(vars.otherData);
  return h.digest();
}

export interface SignOptions {
  /** Seconds since the epoch; default: now. */
  timeSigned?: number;
  fudge?: number;
  /** The request's MAC, when signing a response to it (RFC 8945 §4.3.1). */
  requestMac?: Buffer;
  /** TSIG error to report (responses only). */
  error?: number;
  otherData?: Buffer;
}

/**
 * Signs a complete DNS message: appends the TSIG RR as the last additional record and increments
 * ARCOUNT (RFC 8945 §5.1). Returns the signed message and its MAC (needed to verify the response).
 */
export function signMessage(message: Uint8Array, key: TsigKey, opts: SignOptions = {}): { message: Buffer; mac: Buffer } {
  const msg = Buffer.from(message);
  if (msg.length < 12) throw new TsigFormatError('DNS message shorter than its header');
  const vars: TsigVariables = {
    timeSigned: opts.timeSigned ?? Math.floor(Date.now() / 1000),
    fudge: opts.fudge ?? DEFAULT_FUDGE,
    error: opts.error ?? 0,
    otherData: opts.otherData ?? Buffer.alloc(0),
  };
  const mac = computeMac(key, msg, vars, opts.requestMac);
  // RFC 8945 §4.2: Algorithm Name, Time Signed, Fudge, MAC Size, MAC, Original ID, Error, Other Len, Other Data.
  const rdata = Buffer.concat([
    nameToWire(key.algorithm),
    u48(vars.timeSigned),
    u16(vars.fudge),
    u16(mac.length),
    mac,
    u16(msg.readUInt16BE(0)),
    u16(vars.error),
    u16(vars.otherData.length),
    vars.otherData,
  ]);
  const rr = Buffer.concat([nameToWire(key.name), u16(TYPE_TSIG), u16(CLASS_ANY), Buffer.alloc(4), u16(rdata.length), rdata]);
  const out = Buffer.concat([msg, rr]);
  out.writeUInt16BE(msg.readUInt16BE(10) + 1, 10);
  return { message: out, mac };
}

/** Reads a possibly compressed name at `offset`; returns it (lower case, no trailing dot) and the offset after it. */
function readName(buf: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let pos = offset;
  let end = -1;
  for (let hops = 0; ; ) {
    if (pos >= buf.length) throw new TsigFormatError('name runs past the end of the message');
    const len = buf[pos]!;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new TsigFormatError('truncated compression pointer');
      if (end < 0) end = pos + 2;
      const target = buf.readUInt16BE(pos) & 0x3fff;
      // RFC 1035 §4.1.4: pointers go to a prior occurrence; a bounded hop count also stops loops.
      if (target >= pos || ++hops > 64) throw new TsigFormatError('bad compression pointer');
      pos = target;
      continue;
    }
    if (len & 0xc0) throw new TsigFormatError('bad label type');
    if (pos + 1 + len > buf.length) throw new TsigFormatError('label runs past the end of the message');
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len).toLowerCase());
    pos += 1 + len;
  }
  return { name: labels.join('.'), end };
}

function skipRecord(buf: Buffer, offset: number, question: boolean): number {
  let pos = readName(buf, offset).end;
  if (question) pos += 4;
  else {
    if (pos + 10 > buf.length) throw new TsigFormatError('record header runs past the end of the message');
    pos += 10 + buf.readUInt16BE(pos + 8);
  }
  if (pos > buf.length) throw new TsigFormatError('record runs past the end of the message');
  return pos;
}

/**
 * Finds the TSIG RR (RFC 8945 §5.1: the last record of the additional section) and returns it
 * with the message as it was before signing (ARCOUNT decremented, the original ID restored,
 * RFC 8945 §4.3.2). Returns undefined for an unsigned message; throws TsigFormatError when the
 * message does not parse.
 */
export function extractTsig(message: Uint8Array): { tsig: TsigRecord; unsigned: Buffer } | undefined {
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (buf.length < 12) throw new TsigFormatError('DNS message shorter than its header');
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  const arcount = counts[3];
  if (arcount === 0) return undefined;
  let pos = 12;
  for (let i = 0; i < counts[0]; i++) pos = skipRecord(buf, pos, true);
  const before = counts[1] + counts[2] + arcount - 1;
  for (let i = 0; i < before; i++) pos = skipRecord(buf, pos, false);
  const start = pos;
  const owner = readName(buf, pos);
  pos = owner.end;
  if (pos + 10 > buf.length) throw new TsigFormatError('truncated record');
  if (buf.readUInt16BE(pos) !== TYPE_TSIG) return undefined;
  // RFC 8945 §4.2: CLASS is ANY and TTL is 0.
  if (buf.readUInt16BE(pos + 2) !== CLASS_ANY || buf.readUInt32BE(pos + 4) !== 0) throw new TsigFormatError('TSIG RR with a wrong class or TTL');
  const rdlength = buf.readUInt16BE(pos + 8);
  const rdStart = pos + 10;
  const rdEnd = rdStart + rdlength;
  if (rdEnd !== buf.length) throw new TsigFormatError('TSIG RR is not the last record, or its length is wrong');
  const alg = readName(buf, rdStart);
  let p = alg.end;
  const need = (n: number) => {
    if (p + n > rdEnd) throw new TsigFormatError('truncated TSIG RDATA');
  };
  need(10);
  const timeSigned = buf.readUIntBE(p, 6);
  const fudge = buf.readUInt16BE(p + 6);
  const macSize = buf.readUInt16BE(p + 8);
  p += 10;
  need(macSize + 6);
  const mac = Buffer.from(buf.subarray(p, p + macSize));
  p += macSize;
  const originalId = buf.readUInt16BE(p);
  const error = buf.readUInt16BE(p + 2);
  const otherLen = buf.readUInt16BE(p + 4);
  p += 6;
  need(otherLen);
  const otherData = Buffer.from(buf.subarray(p, p + otherLen));
  p += otherLen;
  if (p !== rdEnd) throw new TsigFormatError('trailing bytes in TSIG RDATA');
  const unsigned = Buffer.from(buf.subarray(0, start));
  unsigned.writeUInt16BE(arcount - 1, 10);
  unsigned.writeUInt16BE(originalId, 0);
  return { tsig: { keyName: owner.name, algorithm: alg.name, timeSigned, fudge, mac, originalId, error, otherData }, unsigned };
}

export type TsigFailure = 'unsigned' | 'malformed' | 'badkey' | 'badsig' | 'badtrunc' | 'badtime';

export type TsigVerification = { ok: true; tsig: TsigRecord } | { ok: false; reason: TsigFailure; detail: string; tsig?: TsigRecord };

export interface VerifyOptions {
  /** The MAC of the request this message answers (RFC 8945 §4.3.1); omit when verifying a request. */
  requestMac?: Buffer;
  /** Seconds since the epoch; default: now. */
  now?: number;
}

/**
 * Verifies a signed message (RFC 8945 §5.2 for requests, §5.4 for answers): the TSIG RR names
 * this key and algorithm, the MAC (chained to the request's MAC for an answer) matches in full,
 * and the signing time is within the fudge. Never throws for bad input: returns the reason.
 */
export function verifyMessage(message: Uint8Array, key: TsigKey, opts: VerifyOptions = {}): TsigVerification {
  let found: ReturnType<typeof extractTsig>;
  try {
    found = extractTsig(message);
  } catch (e) {
    return { ok: false, reason: 'malformed', detail: (e as Error).message };
  }
  if (!found) return { ok: false, reason: 'unsigned', detail: 'the message carries no TSIG record' };
  const { tsig, unsigned } = found;
  // RFC 8945 §5.2.1 / §5.4.1: the key and the algorithm must be the ones we share.
  if (tsig.keyName !== key.name.replace(/\.$/, '').toLowerCase() || tsig.algorithm !== key.algorithm) {
    return { ok: false, reason: 'badkey', detail: `signed with key "${tsig.keyName}" (${tsig.algorithm}), expected "${key.name}" (${key.algorithm})`, tsig };
  }
  // RFC 8945 §5.2.2.1: a MAC longer than the digest is a format error; we accept no truncation.
  const size = DIGESTS[key.algorithm].size;
  if (tsig.mac.length !== size) {
    return { ok: false, reason: tsig.mac.length === 0 ? 'badsig' : 'badtrunc', detail: `MAC of ${tsig.mac.length} octets, expected ${size}`, tsig };
  }
  const expected = computeMac(key, unsigned, tsig, opts.requestMac);
  if (!timingSafeEqual(expected, tsig.mac)) return { ok: false, reason: 'badsig', detail: 'the MAC does not verify', tsig };
  // RFC 8945 §5.2.3 / §5.4.3: the time check comes after the MAC check.
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - tsig.timeSigned) > tsig.fudge) {
    return { ok: false, reason: 'badtime', detail: `signed at ${tsig.timeSigned}, now is ${now}, fudge ${tsig.fudge} s`, tsig };
  }
  return { ok: true, tsig };
}
