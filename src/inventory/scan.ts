/**
 * Network discovery for the certificate inventory (`anvil scan`): open a TLS connection to each
 * target, record what the server presented, and hang up. Pure library code: no CLI, no storage.
 *
 * Contract of `scan`:
 * - One observation per target started, in the order of `targets`. A target is started unless the
 *   signal was aborted first (or `onProgress` threw); targets in flight are finished, not cut off,
 *   so an abort returns within `timeoutMs`.
 * - No application data is sent: the connection is destroyed right after the handshake (or its
 *   failure). No ALPN, no session resumption. SNI is sent only when `target.sni` is set. Node's
 *   default protocol floor applies (TLS 1.2), so a TLS 1.0/1.1-only server ends as 'tls'.
 * - Recorded: `at` (injected clock, when the connection started), `durationMs` (monotonic), the
 *   peer `address`, the certificate `chain` (DER, leaf first), the `protocol`, `authorized` /
 *   `authorizationError` (OpenSSL's verdict on the chain against the trust roots: the system roots,
 *   or `opts.ca` instead of them) and `hostnameError` (`tls.checkServerIdentity(sni ?? host, leaf)`),
 *   kept apart: a good chain for the wrong name is `authorized: true` with a `hostnameError`.
 * - `chain` is what Node links from the certificates the server sent (`getPeerCertificate(true)`,
 *   following `issuerCertificate`). Node also appends issuers it finds in the local trust store,
 *   and marks them exactly like sent ones, so trailing certificates that are in the trust roots are
 *   dropped: a trust anchor never appears in `chain`, whether the server sent it or not.
 * - A failure is an observation with `chain: []` and `error.code`: 'timeout' (name lookup, connect
 *   and handshake not done within `timeoutMs`, one timer for all; or ETIMEDOUT), 'refused', 'unreachable',
 *   'dns', 'reset' (ECONNRESET, EPIPE, or closed before the handshake completed), 'tls' (alerts and
 *   handshake errors: OpenSSL and ERR_TLS_ codes) or 'other'. `scan` itself rejects only for bad
 *   arguments (`ScanError`, codes below) or when `onProgress` throws (after the pool has drained).
 * - At most `concurrency` connections are open at once (a fixed pool of workers), and with
 *   `ratePerSecond` new connections are spaced by a token bucket (burst 1) that sleeps on one timer
 *   per waiting worker. Nothing (socket, timer, listener) is left behind when `scan` settles.
 *
 * `parseTargets` turns command-line specs into targets; see its comment.
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { domainToASCII } from 'node:url';
import { systemClock, type Clock } from '../lib/clock.js';
import { parsePem, toPem } from '../lib/pem.js';

export interface ScanTarget {
  /** IPv4, IPv6 (no brackets) or DNS name. */
  host: string;
  port: number;
  /** TLS server name to send; none for an IP host unless given. Never an IP address. */
  sni?: string;
}

export type ScanErrorKind = 'timeout' | 'refused' | 'unreachable' | 'dns' | 'reset' | 'tls' | 'other';

export interface ScanObservation {
  target: ScanTarget;
  /** When the connection started, from the injected clock. */
  at: Date;
  /** Connect + handshake (or until the failure), from the monotonic clock. */
  durationMs: number;
  /** The peer address connected to, once TCP connected. */
  address?: string;
  /** DER certificates as the server presented them, leaf first, trust anchors left out; [] on error. */
  chain: Buffer[];
  /** e.g. 'TLSv1.3'. */
  protocol?: string;
  /** Did the chain verify against the trust roots (system roots, or opts.ca if given). */
  authorized?: boolean;
  /** OpenSSL's code, e.g. 'CERT_HAS_EXPIRED', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'. */
  authorizationError?: string;
  /** Message of tls.checkServerIdentity(sni ?? host, leaf) when it fails; absent when it matches. */
  hostnameError?: string;
  error?: { code: ScanErrorKind; message: string };
}

export interface ScanOptions {
  /** Connections open at once, 1..1024; default 32. */
  concurrency?: number;
  /** Per target, connect + handshake, in ms; default 5000. */
  timeoutMs?: number;
  /** Max new connections per second (token bucket, burst 1); undefined = unlimited. */
  ratePerSecond?: number;
  /** Trust roots replacing the system roots: PEM text (string or Buffer, may hold several) or DER Buffers. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Called once per finished target; if it throws, no new target starts and scan rejects with that error. */
  onProgress?: (done: number, total: number, last: ScanObservation) => void;
  /** Stop starting new targets; those in flight finish; resolve with what was observed. */
  signal?: AbortSignal;
  clock?: Clock;
  /** Name resolution for host-name targets (as net.connect's `lookup`); default: the system resolver. */
  lookup?: net.LookupFunction;
}

export type ScanErrorCode =
  /** A target spec, port, SNI name or ScanTarget is not usable. */
  | 'BAD_TARGET'
  /** The expansion of the specs exceeds maxTargets. */
  | 'TOO_MANY_TARGETS'
  /** An option of scan or parseTargets is out of range. */
  | 'BAD_OPTION';

export class ScanError extends Error {
  readonly code: ScanErrorCode;
  constructor(code: ScanErrorCode, message: string) {
    super(message);
    this.name = 'ScanError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// scan

const DEFAULT_CONCURRENCY = 32;
const MAX_CONCURRENCY = 1024;
const DEFAULT_TIMEOUT_MS = 5000;
const MAX_TIMEOUT_MS = 2 ** 31 - 1; // setTimeout's limit

export async function scan(targets: ScanTarget[], opts: ScanOptions = {}): Promise<ScanObservation[]> {
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new ScanError('BAD_OPTION', `concurrency ${concurrency}: expected an integer from 1 to ${MAX_CONCURRENCY}`);
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new ScanError('BAD_OPTION', `timeoutMs ${timeoutMs}: expected a number of milliseconds above 0`);
  }
  if (opts.ratePerSecond !== undefined && (!Number.isFinite(opts.ratePerSecond) || opts.ratePerSecond <= 0)) {
    throw new ScanError('BAD_OPTION', `ratePerSecond ${opts.ratePerSecond}: expected a number above 0`);
  }
  targets.forEach(checkTarget);
  const roots = opts.ca === undefined ? undefined : caCertificates(opts.ca);
  if (targets.length === 0 || opts.signal?.aborted) return [];

  const probeOptions: ProbeOptions = {
    timeoutMs,
    clock: opts.clock ?? systemClock,
    lookup: opts.lookup,
    // One context for the whole scan: the roots are parsed once, not per connection.
    secureContext: tls.createSecureContext(roots ? { ca: roots.map((der) => toPem('CERTIFICATE', der)) } : {}),
    trusted: roots ? new Set(roots.map((der) => der.toString('base64'))) : systemRootKeys(),
  };
  const bucket = opts.ratePerSecond === undefined ? undefined : new TokenBucket(opts.ratePerSecond);
  const total = targets.length;
  const results: Array<ScanObservation | undefined> = new Array(total);
  // Stops the pool: the caller's signal, or an onProgress that threw. Wakes workers waiting for a token.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let next = 0;
  let done = 0;
  let progressError: { error: unknown } | undefined;

  const worker = async (): Promise<void> => {
    while (!stop.signal.aborted) {
      const i = next++;
      const target = targets[i];
      if (target === undefined) return;
      if (bucket && !(await bucket.take(stop.signal))) return;
      const observation = await probe(target, probeOptions);
      results[i] = observation;
      done++;
      if (opts.onProgress) {
        try {
          opts.onProgress(done, total, observation);
        } catch (error) {
          progressError ??= { error };
          stop.abort();
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (progressError) throw progressError.error;
  return results.filter((r): r is ScanObservation => r !== undefined);
}

function checkTarget(t: ScanTarget): void {
  const where = `target ${JSON.stringify(t)}`;
  if (typeof t.host !== 'string' || t.host === '') throw new ScanError('BAD_TARGET', `${where}: expected a host`);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw new ScanError('BAD_TARGET', `${where}: expected a port from 1 to 65535`);
  if (t.sni !== undefined && (t.sni === '' || net.isIP(t.sni) !== 0)) {
    throw new ScanError('BAD_TARGET', `${where}: sni must be a DNS name (TLS never sends an IP address as server name)`);
  }
}

/** DER of every certificate in `ca`; throws BAD_OPTION when one does not parse or there is none. */
function caCertificates(ca: string | Buffer | Array<string | Buffer>): Buffer[] {
  const out: Buffer[] = [];
  for (const item of Array.isArray(ca) ? ca : [ca]) {
    const isPem = typeof item === 'string' || item.includes('-----BEGIN');
    const ders = isPem
      ? parsePem(item.toString())
          .filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE')
          .map((b) => b.der)
      : [Buffer.from(item)];
    for (const der of ders) {
      try {
        new X509Certificate(der);
      } catch (e) {
        throw new ScanError('BAD_OPTION', `ca: a certificate does not parse (${(e as Error).message})`);
      }
      out.push(der);
    }
  }
  if (out.length === 0) throw new ScanError('BAD_OPTION', 'ca: expected at least one certificate (PEM or DER)');
  return out;
}

let systemRoots: Set<string> | undefined;
/** Node's bundled roots (what `ca: undefined` trusts), as base64 DER; parsed once. */
function systemRootKeys(): Set<string> {
  systemRoots ??= new Set(tls.rootCertificates.flatMap((pem) => parsePem(pem).map((b) => b.der.toString('base64'))));
  return systemRoots;
}

interface ProbeOptions {
  timeoutMs: number;
  clock: Clock;
  lookup: net.LookupFunction | undefined;
  secureContext: tls.SecureContext;
  /** base64 DER of the trust roots, to tell what Node appended from the store. */
  trusted: Set<string>;
}

/** One connection: connect, handshake, read, destroy. Never rejects. */
function probe(target: ScanTarget, o: ProbeOptions): Promise<ScanObservation> {
  return new Promise((resolve) => {
    const at = o.clock.now();
    const t0 = performance.now();
    let address: string | undefined;
    let settled = false;
    let socket: tls.TLSSocket | undefined;

    const finish = (found: Partial<ScanObservation>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      const observation: ScanObservation = { target, at, durationMs: performance.now() - t0, chain: [] };
      if (address !== undefined) observation.address = address;
      resolve(Object.assign(observation, found));
    };
    const timer = setTimeout(() => {
      const phase = address === undefined ? 'no TCP connection (name lookup included)' : 'connected, but no TLS handshake';
      finish({ error: { code: 'timeout', message: `${phase} within ${o.timeoutMs} ms` } });
    }, o.timeoutMs);

    try {
      socket = tls.connect({
        host: target.host,
        port: target.port,
        ...(target.sni !== undefined ? { servername: target.sni } : {}),
        ...(o.lookup ? { lookup: o.lookup } : {}),
        secureContext: o.secureContext,
        rejectUnauthorized: false,
        // Node folds a hostname mismatch into `authorized`; we report the two apart.
        checkServerIdentity: () => undefined,
      });
    } catch (e) {
      finish({ error: classifyError(e) });
      return;
    }
    const s = socket;
    // Stays attached after finish(): a late error from the destroyed socket is swallowed.
    s.on('error', (e) => finish({ error: classifyError(e) }));
    s.once('connect', () => {
      address = s.remoteAddress;
    });
    s.once('close', () => finish({ error: { code: 'reset', message: 'connection closed before the TLS handshake completed' } }));
    s.once('secureConnect', () => {
      address ??= s.remoteAddress;
      try {
        finish(readHandshake(s, target, o.trusted));
      } catch (e) {
        finish({ error: { code: 'other', message: `reading the handshake: ${(e as Error).message}` } });
      }
    });
  });
}

function readHandshake(s: tls.TLSSocket, target: ScanTarget, trusted: Set<string>): Partial<ScanObservation> {
  const leaf = s.getPeerCertificate(true);
  if (!leaf?.raw) return { error: { code: 'tls', message: 'the server presented no certificate' } };
  const walked: tls.DetailedPeerCertificate[] = [];
  const seen = new Set<string>();
  for (let c: tls.DetailedPeerCertificate | undefined = leaf; c?.raw; c = c.issuerCertificate) {
    const key = c.raw.toString('base64');
    if (seen.has(key)) break; // a self-signed certificate is its own issuer
    seen.add(key);
    walked.push(c);
  }
  // Node appends issuers from the trust store after the ones sent; it cannot tell us which, so
  // trailing trusted certificates go (never the leaf).
  while (walked.length > 1 && trusted.has(walked[walked.length - 1]!.raw.toString('base64'))) walked.pop();

  const found: Partial<ScanObservation> = { chain: walked.map((c) => c.raw), authorized: s.authorized };
  const protocol = s.getProtocol();
  if (protocol) found.protocol = protocol;
  // Typed as Error, but Node stores OpenSSL's code string there.
  const authorizationError = s.authorizationError as unknown;
  if (!s.authorized && authorizationError) {
    found.authorizationError = authorizationError instanceof Error ? ((authorizationError as NodeJS.ErrnoException).code ?? authorizationError.message) : String(authorizationError);
  }
  const mismatch = tls.checkServerIdentity(target.sni ?? target.host, leaf);
  if (mismatch) found.hostnameError = mismatch.message;
  return found;
}

const ERROR_KINDS: Record<string, ScanErrorKind> = {
  ECONNREFUSED: 'refused',
  ETIMEDOUT: 'timeout',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'unreachable',
  EHOSTDOWN: 'unreachable',
  ENETDOWN: 'unreachable',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  EAI_NONAME: 'dns',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ECONNABORTED: 'reset',
};

/** Maps a socket or TLS error to the observation's error kind. */
export function classifyError(e: unknown): { code: ScanErrorKind; message: string } {
  const err = e as (Error & { code?: unknown; library?: unknown; errors?: unknown[] }) | undefined;
  const message = err instanceof Error ? err.message : String(e);
  let code = typeof err?.code === 'string' ? err.code : undefined;
  // autoSelectFamily may report every address's failure together.
  if (code === undefined && Array.isArray(err?.errors)) code = (err.errors[0] as { code?: string } | undefined)?.code;
  const kind = code === undefined ? undefined : ERROR_KINDS[code];
  if (kind) return { code: kind, message };
  if (code?.startsWith('ERR_SSL_') || code?.startsWith('ERR_TLS_') || code?.startsWith('ERR_OSSL_') || err?.library === 'SSL routines') {
    return { code: 'tls', message };
  }
  return { code: 'other', message };
}

/**
 * Token bucket of `burst` tokens refilled at `ratePerSecond`. Each `take` reserves its token at
 * once (the count may go negative), so callers are served in call order and each waits on its own
 * timer until its slot; no polling.
 */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  readonly #time: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> };
  #tokens: number;
  #last: number;

  constructor(
    ratePerSecond: number,
    burst = 1,
    time: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> } = {
      now: () => performance.now(),
      sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : {}),
    },
  ) {
    this.#rate = ratePerSecond / 1000; // per ms
    this.#burst = burst;
    this.#time = time;
    this.#tokens = burst;
    this.#last = time.now();
  }

  /** Resolves true when the token is due, false when `signal` aborts first (its timer is cleared). */
  async take(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    const now = this.#time.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) * this.#rate) - 1;
    this.#last = now;
    if (this.#tokens >= 0) return true;
    const due = now - this.#tokens / this.#rate;
    try {
      // A timer can fire early against this clock (libuv measures from the start of its loop
      // iteration), so sleep again for what is left.
      for (let left = due - now; left > 0; left = due - this.#time.now()) await this.#time.sleep(left, signal);
      return true;
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// parseTargets

const DEFAULT_MAX_TARGETS = 65536;
const EXPECTED = 'expected a host name, host:port, an IPv4 address, an IPv6 address, [IPv6]:port, or a CIDR range (10.0.0.0/24, 2001:db8::/120)';

function bad(spec: string, why: string): ScanError {
  return new ScanError('BAD_TARGET', `${JSON.stringify(spec)}: ${why}`);
}

type Spec =
  | { kind: 'name'; host: string; port?: number }
  | { kind: 'ip'; host: string; port?: number }
  | { kind: 'v4'; first: number; count: number; port?: number }
  | { kind: 'v6'; first: bigint; count: bigint; port?: number };

/**
 * Expands command-line specs into targets, in spec order, then address, port and SNI order,
 * without duplicates. Accepted: `example.com` (IDNs become their xn-- form; a trailing dot is
 * dropped), `host:port`, `192.0.2.1`, `2001:db8::1` (a zone `%eth0` is kept), `[2001:db8::1]:443`,
 * and CIDR ranges `10.0.0.0/24`, `10.0.0.0/24:8443`, `2001:db8::/120`, `[2001:db8::/120]:8443`.
 * Host bits set in a range are ignored (`10.0.0.7/24` is `10.0.0.0/24`). IPv4 ranges shorter than
 * /31 leave out the network and broadcast addresses; IPv6 ranges (which have no broadcast)
 * include every address. IPv6 addresses are written in RFC 5952 form.
 *
 * Port: the spec's own, else each of `opts.ports` (default [443]; an empty list means the default).
 * SNI: one target per name of `opts.sni`; without it, a host name is its own SNI and an IP gets none.
 *
 * Throws ScanError 'BAD_TARGET' for a spec, port or SNI name it cannot use, and 'TOO_MANY_TARGETS'
 * when the expansion (counted before de-duplication, and before anything is allocated) exceeds
 * `opts.maxTargets` (default 65536).
 */
export function parseTargets(specs: string[], opts: { ports?: number[]; sni?: string[]; maxTargets?: number } = {}): ScanTarget[] {
  const maxTargets = opts.maxTargets ?? DEFAULT_MAX_TARGETS;
  if (!Number.isSafeInteger(maxTargets) || maxTargets < 1) {
    throw new ScanError('BAD_OPTION', `maxTargets ${maxTargets}: expected a positive integer`);
  }
  const ports = unique(opts.ports?.length ? opts.ports : [443]);
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new ScanError('BAD_TARGET', `port ${p}: expected a port from 1 to 65535`);
  }
  const snis = unique(
    (opts.sni ?? []).map((name) => {
      if (net.isIP(name) !== 0) throw new ScanError('BAD_TARGET', `SNI ${JSON.stringify(name)}: expected a DNS name (TLS never sends an IP address as server name)`);
      const ascii = hostName(name);
      if (ascii === undefined) throw new ScanError('BAD_TARGET', `SNI ${JSON.stringify(name)}: expected a DNS name`);
      return ascii;
    }),
  );

  const parsed = specs.map(parseSpec);
  let count = 0n;
  let largest = { spec: '', count: 0n };
  parsed.forEach((s, i) => {
    const addresses = s.kind === 'v4' ? BigInt(s.count) : s.kind === 'v6' ? s.count : 1n;
    const n = addresses * BigInt(s.port !== undefined ? 1 : ports.length) * BigInt(Math.max(snis.length, 1));
    count += n;
    if (n > largest.count) largest = { spec: specs[i]!, count: n };
  });
  if (count > BigInt(maxTargets)) {
    throw new ScanError('TOO_MANY_TARGETS', `the specs expand to ${count} targets (${JSON.stringify(largest.spec)} alone to ${largest.count}), more than the limit of ${maxTargets}`);
  }

  const out: ScanTarget[] = [];
  const seen = new Set<string>();
  const add = (host: string, port: number, sni: string | undefined): void => {
    const key = `${host} ${port} ${sni ?? ''}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(sni === undefined ? { host, port } : { host, port, sni });
  };
  const addHost = (s: Spec, host: string): void => {
    for (const port of s.port !== undefined ? [s.port] : ports) {
      if (snis.length > 0) for (const sni of snis) add(host, port, sni);
      else add(host, port, s.kind === 'name' ? host : undefined);
    }
  };
  for (const s of parsed) {
    if (s.kind === 'v4') for (let i = 0; i < s.count; i++) addHost(s, formatIPv4(s.first + i));
    else if (s.kind === 'v6') for (let i = 0n; i < s.count; i++) addHost(s, formatIPv6(s.first + i));
    else addHost(s, s.host);
  }
  return out;
}

function parseSpec(spec: string): Spec {
  const trimmed = spec.trim();
  if (trimmed === '') throw bad(spec, EXPECTED);

  // [IPv6], [IPv6]:port, [IPv6/prefix]:port
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(trimmed);
  if (bracket) {
    const inner = bracket[1]!;
    const port = bracket[2] === undefined ? undefined : parsePort(spec, bracket[2]);
    if (inner.includes('/')) return { ...cidr6(spec, inner), ...(port !== undefined ? { port } : {}) };
    if (!net.isIPv6(inner)) throw bad(spec, `${JSON.stringify(inner)} in brackets is not an IPv6 address; ${EXPECTED}`);
    return { kind: 'ip', host: canonicalIPv6(inner), ...(port !== undefined ? { port } : {}) };
  }

  const slash = trimmed.indexOf('/');
  if (slash >= 0) {
    const address = trimmed.slice(0, slash);
    const rest = trimmed.slice(slash + 1);
    if (net.isIPv6(address)) {
      if (rest.includes(':')) throw bad(spec, `expected [${address}/prefix]:port for an IPv6 range with a port`);
      return cidr6(spec, trimmed);
    }
    const m = /^([^:]*)(?::(.*))?$/.exec(rest)!;
    const port = m[2] === undefined ? undefined : parsePort(spec, m[2]);
    return { ...cidr4(spec, address, m[1]!), ...(port !== undefined ? { port } : {}) };
  }

  if (net.isIPv6(trimmed)) return { kind: 'ip', host: canonicalIPv6(trimmed) };

  let host = trimmed;
  let port: number | undefined;
  const colon = trimmed.lastIndexOf(':');
  if (colon >= 0) {
    host = trimmed.slice(0, colon);
    if (host.includes(':')) throw bad(spec, `not an IPv6 address, and an IPv6 address with a port needs brackets; ${EXPECTED}`);
    port = parsePort(spec, trimmed.slice(colon + 1));
  }
  const withPort = port !== undefined ? { port } : {};
  if (net.isIPv4(host)) return { kind: 'ip', host, ...withPort };
  const name = hostName(host);
  if (name === undefined) throw bad(spec, `${JSON.stringify(host)} is not a valid host name or IP address; ${EXPECTED}`);
  return { kind: 'name', host: name, ...withPort };
}

function parsePort(spec: string, text: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw bad(spec, `port ${JSON.stringify(text)}: expected a number from 1 to 65535`);
  return port;
}

function parsePrefix(spec: string, text: string, max: number): number {
  const prefix = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!(prefix >= 0 && prefix <= max)) throw bad(spec, `prefix /${text}: expected a number from 0 to ${max}`);
  return prefix;
}

function cidr4(spec: string, address: string, prefixText: string): Spec & { kind: 'v4' } {
  if (!net.isIPv4(address)) throw bad(spec, `${JSON.stringify(address)} is not an IPv4 address; ${EXPECTED}`);
  const prefix = parsePrefix(spec, prefixText, 32);
  const size = 2 ** (32 - prefix);
  const network = Math.floor(parseIPv4(address) / size) * size;
  // /31 (RFC 3021) and /32 have no network or broadcast address to skip.
  return prefix >= 31 ? { kind: 'v4', first: network, count: size } : { kind: 'v4', first: network + 1, count: size - 2 };
}

function cidr6(spec: string, text: string): Spec & { kind: 'v6' } {
  const slash = text.indexOf('/');
  const address = text.slice(0, slash);
  if (address.includes('%') || !net.isIPv6(address)) throw bad(spec, `${JSON.stringify(address)} is not an IPv6 address (without zone); ${EXPECTED}`);
  const prefix = parsePrefix(spec, text.slice(slash + 1), 128);
  const hostBits = BigInt(128 - prefix);
  return { kind: 'v6', first: (parseIPv6(address) >> hostBits) << hostBits, count: 1n << hostBits };
}

/** A DNS name in lower-case ASCII (xn-- for IDNs) without the trailing dot, or undefined when invalid. */
function hostName(text: string): string | undefined {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  // A name ending in a number would be read as an IPv4 address by the WHATWG host parser ("1.2.3").
  const last = name.slice(name.lastIndexOf('.') + 1);
  if (/^(\d+|0x[0-9a-f]*)$/i.test(last)) return undefined;
  const ascii = domainToASCII(name);
  if (ascii === '' || ascii.length > 253 || net.isIP(ascii) !== 0) return undefined;
  const labelOk = (l: string): boolean => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l);
  return ascii.split('.').every(labelOk) ? ascii : undefined;
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function parseIPv4(text: string): number {
  return text.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** `text` must satisfy net.isIPv6 and carry no zone. */
function parseIPv6(text: string): bigint {
  let s = text;
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = parseIPv4(v4[1]!);
    s = `${s.slice(0, -v4[1]!.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952 §4: lower case, no leading zeros, the longest run (first if tied) of 2+ zero groups as "::". */
function formatIPv6(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(16 * (7 - i))) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function canonicalIPv6(text: string): string {
  const zone = text.indexOf('%');
  return zone < 0 ? formatIPv6(parseIPv6(text)) : `${formatIPv6(parseIPv6(text.slice(0, zone)))}${text.slice(zone)}`;
}
