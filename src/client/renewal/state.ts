/**
 * Per-lineage renewal state, kept between runs in `<store>/renewal/.state/NAME.json`: the ARI
 * window and the random time chosen in it, when to ask the CA again, the last revocation check,
 * consecutive failures and the backoff, which CA of the lineage is in use, and what was issued
 * last. Written atomically; a missing, unreadable or corrupt file means "start fresh", never a
 * crash (the worst case is an extra ARI request or a renewal at the lifetime-based time).
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { checkName } from '../store.js';

/** RFC 9773: what the CA last said about the live certificate. */
export interface AriState {
  /** Serial (hex, as node prints it) of the certificate this is about. */
  serial: string;
  certId: string;
  /** Directory URL of the CA asked. */
  server: string;
  /** The suggested window (absent after a failed fetch). */
  window?: { start: string; end: string };
  /** RFC 9773 §4.2 step 2: a uniform random time in the window, kept while the window is unchanged. */
  chosen?: string;
  explanationURL?: string;
  fetchedAt?: string;
  /** RFC 9773 §4.3.2: ask again at this time (Retry-After, clamped; or after an error). */
  nextFetch: string;
  /** Consecutive failed fetches (for backoff on temporary errors). */
  errors?: number;
  lastError?: string;
}

export interface RevocationState {
  serial: string;
  status: 'good' | 'revoked' | 'unknown';
  source: 'ocsp' | 'crl' | null;
  checkedAt: string;
  nextCheck: string;
  revokedAt?: string;
  reason?: number;
  detail?: string;
}

/** What the last issuance (by `anvil issue` or a renewal) produced. */
export interface IssuedState {
  serial: string;
  /** When the client obtained it (not the certificate's notBefore, which CAs backdate). */
  at: string;
  /** Directory URL of the CA that issued it. */
  server: string;
  /** 0 for the lineage's own server, 1.. for its fallbacks in order. */
  caIndex: number;
  profile?: string;
  /** The certID it replaced (RFC 9773 §5), when `replaces` was accepted. */
  replaced?: string;
  /** The decision rule that renewal followed ("ari", "ari-past", "lifetime", ...), when a renewal got it. */
  trigger?: string;
  /**
   * What the config asked for when that renewal was decided (sorted "dns:name" identifiers, key
   * type, profile for the CA used): a config-change rule (names, key type, profile) does not fire
   * again on the certificate it produced while the config still asks for the same.
   */
  wanted?: WantedConfig;
}

/** The config values the config-change rules of decide() compare. */
export interface WantedConfig {
  names: string[];
  keyType: string | null;
  /** '' for the CA's default profile. */
  profile: string;
}

/**
 * What decide() needs from the live certificate, cached by live version number (archived versions
 * are written once and never change), so planning need not read and parse every certificate.
 */
export interface CertCache {
  version: number;
  serial: string;
  notBefore: string;
  notAfter: string;
  identifiers: string[];
  keyType: string | null;
}

export interface RenewalState {
  version: 1;
  cert?: CertCache;
  ari?: AriState;
  revocation?: RevocationState;
  /** Consecutive failed renewal attempts (any CA). */
  failures: number;
  /** Consecutive failed attempts at the CA of `caIndex`. */
  failuresAtCa: number;
  /** Which CA the next attempt goes to: 0 the lineage's server, 1.. its fallbacks. */
  caIndex: number;
  /** No attempt before this time (exponential backoff after failures). */
  nextAttempt?: string;
  lastAttempt?: string;
  lastResult?: 'renewed' | 'failed';
  lastError?: string;
  /** The exit code that failure maps to (for runs that skip the lineage while it backs off). */
  lastExitCode?: number;
  lastRenewal?: string;
  issued?: IssuedState;
  /** Since when every renewal attempt found the lineage locked by another process (cleared by any other outcome). */
  lockedSince?: string;
}

export function freshState(): RenewalState {
  return { version: 1, failures: 0, failuresAtCa: 0, caIndex: 0 };
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length <= 4096;
const isTime = (v: unknown): v is string => isStr(v) && !Number.isNaN(Date.parse(v));
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 1e9;

function ari(v: unknown): AriState | undefined {
  const a = v as Partial<AriState> | null;
  if (!a || typeof a !== 'object' || !isStr(a.serial) || !isStr(a.certId) || !isStr(a.server) || !isTime(a.nextFetch)) return undefined;
  const out: AriState = { serial: a.serial, certId: a.certId, server: a.server, nextFetch: a.nextFetch };
  if (a.window && isTime(a.window.start) && isTime(a.window.end)) out.window = { start: a.window.start, end: a.window.end };
  if (out.window && isTime(a.chosen)) out.chosen = a.chosen;
  if (isStr(a.explanationURL)) out.explanationURL = a.explanationURL;
  if (isTime(a.fetchedAt)) out.fetchedAt = a.fetchedAt;
  if (isCount(a.errors)) out.errors = a.errors;
  if (isStr(a.lastError)) out.lastError = a.lastError;
  return out;
}

function revocation(v: unknown): RevocationState | undefined {
  const r = v as Partial<RevocationState> | null;
  if (!r || typeof r !== 'object' || !isStr(r.serial) || !isTime(r.checkedAt) || !isTime(r.nextCheck)) return undefined;
  if (r.status !== 'good' && r.status !== 'revoked' && r.status !== 'unknown') return undefined;
  const out: RevocationState = {
    serial: r.serial,
    status: r.status,
    source: r.source === 'ocsp' || r.source === 'crl' ? r.source : null,
    checkedAt: r.checkedAt,
    nextCheck: r.nextCheck,
  };
  if (isTime(r.revokedAt)) out.revokedAt = r.revokedAt;
  if (isCount(r.reason)) out.reason = r.reason;
  if (isStr(r.detail)) out.detail = r.detail;
  return out;
}

function certCache(v: unknown): CertCache | undefined {
  const c = v as Partial<CertCache> | null;
  if (!c || typeof c !== 'object' || !isCount(c.version) || !isStr(c.serial) || !isTime(c.notBefore) || !isTime(c.notAfter)) return undefined;
  if (!Array.isArray(c.identifiers) || !c.identifiers.every(isStr) || !(c.keyType === null || isStr(c.keyType))) return undefined;
  return { version: c.version, serial: c.serial, notBefore: c.notBefore, notAfter: c.notAfter, identifiers: [...c.identifiers], keyType: c.keyType };
}

function issued(v: unknown): IssuedState | undefined {
  const i = v as Partial<IssuedState> | null;
  if (!i || typeof i !== 'object' || !isStr(i.serial) || !isTime(i.at) || !isStr(i.server)) return undefined;
  const out: IssuedState = { serial: i.serial, at: i.at, server: i.server, caIndex: isCount(i.caIndex) ? i.caIndex : 0 };
  if (isStr(i.profile)) out.profile = i.profile;
  if (isStr(i.replaced)) out.replaced = i.replaced;
  if (isStr(i.trigger)) out.trigger = i.trigger;
  const w = i.wanted as Partial<WantedConfig> | undefined;
  if (w && typeof w === 'object' && Array.isArray(w.names) && w.names.every(isStr) && (w.keyType === null || isStr(w.keyType)) && isStr(w.profile)) {
    out.wanted = { names: [...w.names], keyType: w.keyType, profile: w.profile };
  }
  return out;
}

/** Keeps what is well-formed in a parsed state file and drops the rest. */
export function normalizeState(raw: unknown): RenewalState {
  const s = freshState();
  const r = raw as Partial<RenewalState> | null;
  if (!r || typeof r !== 'object' || Array.isArray(r)) return s;
  const a = ari(r.ari);
  if (a) s.ari = a;
  const rv = revocation(r.revocation);
  if (rv) s.revocation = rv;
  const is = issued(r.issued);
  if (is) s.issued = is;
  const cc = certCache(r.cert);
  if (cc) s.cert = cc;
  if (isCount(r.failures)) s.failures = r.failures;
  if (isCount(r.failuresAtCa)) s.failuresAtCa = r.failuresAtCa;
  if (isCount(r.caIndex)) s.caIndex = r.caIndex;
  if (isTime(r.nextAttempt)) s.nextAttempt = r.nextAttempt;
  if (isTime(r.lastAttempt)) s.lastAttempt = r.lastAttempt;
  if (r.lastResult === 'renewed' || r.lastResult === 'failed') s.lastResult = r.lastResult;
  if (isStr(r.lastError)) s.lastError = r.lastError;
  if (isCount(r.lastExitCode)) s.lastExitCode = r.lastExitCode;
  if (isTime(r.lastRenewal)) s.lastRenewal = r.lastRenewal;
  if (isTime(r.lockedSince)) s.lockedSince = r.lockedSince;
  return s;
}

export interface ReadState {
  state: RenewalState;
  /** Set when the file existed but could not be used (then `state` is fresh). */
  warning?: string;
}

/** The state files of a store. One writer per lineage at a time (the runner's own concurrency). */
export class RenewalStateStore {
  readonly dir: string;
  constructor(storeRoot: string) {
    this.dir = path.join(storeRoot, 'renewal', '.state');
  }

  file(name: string): string {
    return path.join(this.dir, `${checkName(name)}.json`);
  }

  async read(name: string): Promise<ReadState> {
    let text: string;
    try {
      text = await readFile(this.file(name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: freshState() };
      return { state: freshState(), warning: `cannot read ${this.file(name)} (${(e as Error).message}); starting with a fresh renewal state` };
    }
    try {
      return { state: normalizeState(JSON.parse(text)) };
    } catch {
      return { state: freshState(), warning: `${this.file(name)} is not valid JSON; starting with a fresh renewal state` };
    }
  }

  /** Atomic (STYLE.md rule 12): a crash leaves the previous state or the new one. */
  async write(name: string, state: RenewalState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file(name), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  }
}

/**
 * The state after a new certificate went live: what was issued, failures and backoff cleared,
 * the next renewal starting at the lineage's own CA again, ARI and revocation facts of the old
 * certificate dropped (RFC 9773 §4.3: no more renewalInfo checks for a replaced certificate).
 */
export function recordIssued(prev: RenewalState, issued: IssuedState): RenewalState {
  const { ari: _ari, revocation: _rev, cert: _cert, nextAttempt: _next, lastError: _err, lastExitCode: _code, lockedSince: _locked, ...rest } = prev;
  return { ...rest, version: 1, issued, failures: 0, failuresAtCa: 0, caIndex: 0, lastResult: 'renewed', lastRenewal: issued.at, lastAttempt: issued.at };
}

export interface TimeCaps {
  /** The longest backoff a run would set (RunOptions.backoffMaxMs). */
  backoffMaxMs: number;
  /** The revocation check interval; a stored next check may be up to 10 % later (the jitter). */
  revocationIntervalMs: number;
  /** The longest wait before asking for renewalInfo again (RFC 9773 Retry-After, clamped). */
  ariMaxMs: number;
}

/**
 * Times in a state file that lie further ahead than anvil itself would ever have set them (written
 * while the clock was wrong, then corrected; or edited by hand), brought back to the longest wait
 * allowed from `now`: the backoff, the next renewalInfo request, the next revocation check. A time
 * in the past that should not be (`lockedSince` ahead of now) becomes now. Returns what it changed,
 * for a warning; `state` is changed in place.
 */
export function capTimes(state: RenewalState, now: Date, caps: TimeCaps): string[] {
  const t = now.getTime();
  const changed: string[] = [];
  const cap = (v: string | undefined, maxMs: number, what: string): string | undefined => {
    if (v === undefined || Date.parse(v) <= t + maxMs) return v;
    const to = new Date(t + maxMs).toISOString();
    changed.push(`${what} ${v} was further ahead than anvil ever waits; now ${to}`);
    return to;
  };
  if (state.nextAttempt !== undefined) state.nextAttempt = cap(state.nextAttempt, caps.backoffMaxMs, 'the end of the backoff');
  if (state.ari) state.ari.nextFetch = cap(state.ari.nextFetch, caps.ariMaxMs, 'the next renewalInfo request')!;
  if (state.revocation) state.revocation.nextCheck = cap(state.revocation.nextCheck, Math.round(caps.revocationIntervalMs * 1.1), 'the next revocation check')!;
  if (state.lockedSince !== undefined && Date.parse(state.lockedSince) > t) state.lockedSince = now.toISOString();
  return changed;
}
