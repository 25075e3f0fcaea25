/**
 * A few lines of DER (X.690 §8, §10), writing and reading, for the load generator's CSRs and its
 * certificate check. node:crypto would do both, but on OpenSSL 3 its encoders and decoders are
 * slow (parsing a certificate or exporting a key as SPKI costs 110-160 µs, more than an ECDSA
 * signature): on the hot path, walking the bytes is several times cheaper (docs/benchmarks.md).
 */

// ------------------------------------------------------------------ writing

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: `tag` is the full identifier octet (class, constructed bit and a number below 31). */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = content.length === 1 ? content[0]! : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
export const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);

export function oid(dotted: string): Buffer {
  return tlv(0x06, oidBytes(dotted));
}

function oidBytes(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const groups: number[] = [];
    let v = p;
    do {
      groups.unshift(v & 0x7f);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < groups.length - 1; i++) groups[i]! |= 0x80;
    out.push(...groups);
  }
  return Buffer.from(out);
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
  if (at + 2 > limit) throw new DerError('truncated element');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let len = buf[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const k = len & 0x7f;
    if (k === 0 || k > 4 || p + k > limit) throw new DerError('bad length');
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + buf[p + i]!;
    p += k;
  }
  if (p + len > limit) throw new DerError('element runs past its container');
  return { tag, start: at, contentStart: p, end: p + len };
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

export const contentOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.contentStart, t.end);
export const bytesOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);

/** Dotted text of an OBJECT IDENTIFIER's content. */
export function oidText(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  const first = content[0]!;
  const parts = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  let v = 0;
  for (let i = 1; i < content.length; i++) {
    v = v * 128 + (content[i]! & 0x7f);
    if (!(content[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** Milliseconds since the epoch of a UTCTime (tag 0x17) or GeneralizedTime (0x18) in Z form (RFC 5280 §4.1.2.5). */
export function timeOf(buf: Buffer, t: Tlv): number {
  const s = contentOf(buf, t).toString('latin1');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) throw new DerError(`bad time "${s.slice(0, 20)}"`);
  let year = Number(m[1]);
  // RFC 5280 §4.1.2.5.1: UTCTime years 50-99 are 19xx, 00-49 are 20xx.
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}
