/**
 * A small DER (X.690 §8, §10) writer and a strict reader, for the CA's issuance hot path (issue #5)
 * and the load generator. Certificates and CSRs are otherwise handled by @peculiar/x509; these
 * few hundred lines exist because a CPU profile showed that library's schema machinery costing
 * more than the signatures themselves (ca.ts, docs/benchmarks.md). node:crypto would parse too,
 * but on OpenSSL 3 its decoders cost 100-160 µs a call.
 *
 * The reader accepts DER only: definite lengths in their shortest form, low tag numbers, nothing
 * past the end of a container; everything is bounds-checked and failures are DerError.
 */

// ------------------------------------------------------------------ writing

function headerLength(n: number): number {
  if (n < 0x80) return 2;
  let k = 0;
  for (let v = n; v > 0; v = Math.floor(v / 256)) k++;
  return 2 + k;
}

function writeHeader(out: Buffer, tag: number, n: number): number {
  out[0] = tag;
  if (n < 0x80) {
    out[1] = n;
    return 2;
  }
  const k = headerLength(n) - 2;
  out[1] = 0x80 | k;
  for (let i = k, v = n; i > 0; i--, v = Math.floor(v / 256)) out[1 + i] = v & 0xff;
  return 2 + k;
}

/** One TLV: `tag` is the full identifier octet (class, constructed bit and a number below 31). */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let n = 0;
  for (const c of content) n += c.length;
  const out = Buffer.allocUnsafe(headerLength(n) + n);
  let p = writeHeader(out, tag, n);
  for (const c of content) {
    c.copy(out, p);
    p += c.length;
  }
  return out;
}

export const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
export const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const NULL = Buffer.from([0x05, 0x00]);
export const TRUE = Buffer.from([0x01, 0x01, 0xff]);

export function oid(dotted: string): Buffer {
  return tlv(0x06, oidBytes(dotted));
}

function base128(v: number, out: number[]): void {
  const groups: number[] = [];
  do {
    groups.unshift(v % 128);
    v = Math.floor(v / 128);
  } while (v > 0);
  for (let i = 0; i < groups.length - 1; i++) groups[i]! |= 0x80;
  out.push(...groups);
}

function oidBytes(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  if (parts.length < 2 || parts.some((p) => !Number.isSafeInteger(p) || p < 0) || parts[0]! > 2 || (parts[0]! < 2 && parts[1]! > 39)) {
    throw new DerError(`bad OBJECT IDENTIFIER "${dotted}"`);
  }
  // X.690 §8.19.4: the first two arcs share one subidentifier, which may itself span several octets.
  const out: number[] = [];
  base128(40 * parts[0]! + parts[1]!, out);
  for (const p of parts.slice(2)) base128(p, out);
  return Buffer.from(out);
}

/**
 * A non-negative INTEGER from its big-endian magnitude: leading zero octets dropped, one put back
 * when the top bit is set (X.690 §8.3.2 wants the shortest two's complement form).
 */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.length === 0 ? Buffer.from([0]) : magnitude.subarray(i);
  return m[0]! & 0x80 ? tlv(0x02, Buffer.from([0]), m) : tlv(0x02, m);
}

/** A BIT STRING of whole octets (no unused bits), as keys and signatures are. */
export function bitString(bytes: Buffer): Buffer {
  return tlv(0x03, Buffer.from([0]), bytes);
}

/**
 * A named-bit BIT STRING (X.690 §11.2.2: trailing zero bits are dropped); `bits` lists the numbers
 * of the bits that are set, bit 0 being the most significant bit of the first octet.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return Buffer.from([0x03, 0x01, 0x00]);
  const last = Math.max(...bits);
  const bytes = Buffer.alloc((last >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return tlv(0x03, Buffer.from([7 - (last & 7)]), bytes);
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/**
 * RFC 5280 §4.1.2.5: UTCTime for 1950 through 2049, GeneralizedTime otherwise, both in UTC with
 * seconds and without fractions (milliseconds are dropped, not rounded).
 */
export function time(date: Date | number): Buffer {
  const d = new Date(typeof date === 'number' ? date : date.getTime());
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new DerError(`year ${year} cannot be written`);
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year <= 2049) return tlv(0x17, Buffer.from(`${pad2(year % 100)}${rest}`, 'latin1'));
  return tlv(0x18, Buffer.from(`${String(year).padStart(4, '0')}${rest}`, 'latin1'));
}

// ------------------------------------------------------------------ reading

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** One element of a DER buffer: its tag, and where its header, content and end are. */
export interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** The element at `at`, checked to lie within `limit` (default: the buffer's end). */
export function readTlv(buf: Buffer, at: number, limit = buf.length): Tlv {
  if (limit > buf.length) limit = buf.length;
  if (at < 0 || at + 2 > limit) throw new DerError('truncated element');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let len = buf[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const k = len & 0x7f;
    // X.690 §10.1: definite form only; §8.1.3.5 with §10.1: no leading zero octets, and the long
    // form only where the short one cannot hold the length.
    if (k === 0) throw new DerError('indefinite length');
    if (k > 4) throw new DerError('length too large');
    if (p + k > limit) throw new DerError('truncated length');
    if (buf[p] === 0) throw new DerError('length not in its shortest form');
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + buf[p + i]!;
    if (len < 0x80) throw new DerError('length not in its shortest form');
    p += k;
  }
  if (p + len > limit) throw new DerError('element runs past its container');
  return { tag, start: at, contentStart: p, end: p + len };
}

/** The single element that is all of `buf`: DER has no trailing bytes. */
export function readDer(buf: Buffer): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError('trailing bytes after the element');
  return t;
}

/** The elements inside a constructed element. */
export function childrenOf(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** `t` if it has tag `tag`, else DerError naming `what`. */
export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}${t ? `, found 0x${t.tag.toString(16)}` : ', found nothing'}`);
  return t;
}

export const contentOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.contentStart, t.end);
export const bytesOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);

/** The content of an INTEGER, checked to be in its shortest form (X.690 §8.3.2). */
export function integerOf(buf: Buffer, t: Tlv): Buffer {
  expectTag(t, 0x02, 'INTEGER');
  const c = contentOf(buf, t);
  if (c.length === 0) throw new DerError('empty INTEGER');
  if (c.length > 1 && ((c[0] === 0x00 && c[1]! < 0x80) || (c[0] === 0xff && c[1]! >= 0x80))) {
    throw new DerError('INTEGER not in its shortest form');
  }
  return c;
}

/** The magnitude of a non-negative INTEGER, without the sign octet. */
export function unsignedIntegerOf(buf: Buffer, t: Tlv): Buffer {
  const c = integerOf(buf, t);
  if (c[0]! & 0x80) throw new DerError('negative INTEGER');
  return c.length > 1 && c[0] === 0 ? c.subarray(1) : c;
}

/** A small INTEGER (up to 2^47) as a number. */
export function smallIntegerOf(buf: Buffer, t: Tlv): number {
  const c = integerOf(buf, t);
  if (c.length > 6) throw new DerError('INTEGER too large');
  return c.readIntBE(0, c.length);
}

/** BOOLEAN: DER allows only 0x00 and 0xff (X.690 §11.1). */
export function booleanOf(buf: Buffer, t: Tlv): boolean {
  expectTag(t, 0x01, 'BOOLEAN');
  if (t.end - t.contentStart !== 1) throw new DerError('BOOLEAN of the wrong length');
  const v = buf[t.contentStart];
  if (v !== 0x00 && v !== 0xff) throw new DerError('BOOLEAN neither 0x00 nor 0xff');
  return v === 0xff;
}

/** NULL: no content. */
export function nullOf(t: Tlv): null {
  expectTag(t, 0x05, 'NULL');
  if (t.end !== t.contentStart) throw new DerError('NULL with content');
  return null;
}

/**
 * The bits of a BIT STRING: the octets after the unused-bits count, with the count. DER wants the
 * unused bits zero (X.690 §11.2.1) and no count without bits.
 */
export function bitStringOf(buf: Buffer, t: Tlv): { unusedBits: number; bytes: Buffer } {
  expectTag(t, 0x03, 'BIT STRING');
  const c = contentOf(buf, t);
  if (c.length === 0) throw new DerError('empty BIT STRING');
  const unusedBits = c[0]!;
  if (unusedBits > 7 || (c.length === 1 && unusedBits !== 0)) throw new DerError('bad BIT STRING');
  if (unusedBits && c[c.length - 1]! & ((1 << unusedBits) - 1)) throw new DerError('BIT STRING with unused bits set');
  return { unusedBits, bytes: c.subarray(1) };
}

/** The octets of a BIT STRING that must be whole octets (keys, signatures). */
export function octetsOfBitString(buf: Buffer, t: Tlv): Buffer {
  const b = bitStringOf(buf, t);
  if (b.unusedBits !== 0) throw new DerError('BIT STRING is not whole octets');
  return b.bytes;
}

/** Dotted text of an OBJECT IDENTIFIER's content (X.690 §8.19), which must be in its shortest form. */
export function oidText(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  if (content[content.length - 1]! & 0x80) throw new DerError('truncated OBJECT IDENTIFIER');
  const subs: number[] = [];
  let v = 0;
  let fresh = true;
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!;
    if (fresh && b === 0x80) throw new DerError('OBJECT IDENTIFIER not in its shortest form');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new DerError('OBJECT IDENTIFIER arc too large');
    fresh = !(b & 0x80);
    if (fresh) {
      subs.push(v);
      v = 0;
    }
  }
  const first = subs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...subs.slice(1)].join('.');
}

/** Dotted text of the OBJECT IDENTIFIER `t`. */
export function oidOf(buf: Buffer, t: Tlv | undefined): string {
  return oidText(contentOf(buf, expectTag(t, 0x06, 'OBJECT IDENTIFIER')));
}

/** Milliseconds since the epoch of a UTCTime (tag 0x17) or GeneralizedTime (0x18) in Z form (RFC 5280 §4.1.2.5). */
export function timeOf(buf: Buffer, t: Tlv): number {
  const s = contentOf(buf, t).toString('latin1');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) throw new DerError(`bad time "${s.slice(0, 20)}"`);
  let year = Number(m[1]);
  // RFC 5280 §4.1.2.5.1: UTCTime years 50-99 are 19xx, 00-49 are 20xx.
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000;
  const [mo, d, h, mi, sec] = [2, 3, 4, 5, 6].map((i) => Number(m[i]));
  // Not Date.UTC, which reads years 0-99 as 1900-1999.
  const back = new Date(0);
  back.setUTCFullYear(year, mo! - 1, d);
  back.setUTCHours(h!, mi, sec, 0);
  // Dates roll "February 30" over into March; a real time round-trips.
  if (back.getUTCMonth() !== mo! - 1 || back.getUTCDate() !== d || back.getUTCHours() !== h || back.getUTCMinutes() !== mi || back.getUTCSeconds() !== sec) {
    throw new DerError(`bad time "${s}"`);
  }
  return back.getTime();
}
