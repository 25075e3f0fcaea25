/**
 * When to renew a lineage: a pure function of the live certificate, the lineage config, the
 * persisted renewal state, the time and a random source (docs/renewal.md lists the rules in order).
 *
 * 1. No live certificate, or --force: now.
 * 2. Revoked (OCSP/CRL), names, key type or profile changed in the config: now. The key type is
 *    not compared for a lineage from the user's CSR (its key is theirs). A config-change rule does
 *    not fire on a certificate that a renewal for that same rule produced while the config still
 *    asks for the same (the state records both): whatever made the new certificate differ from
 *    the config, renewing again would not change it, and would loop.
 * 3. Expired: now.
 * 4. Less than 1/20 of the lifetime left: now, whatever ARI says.
 * 5. ARI (RFC 9773 §4.2): a uniform random time in the suggested window, kept while the window is
 *    unchanged; a window entirely in the past means now.
 * 6. Without ARI: at 2/3 of the lifetime (1/2 when the lifetime is under 10 days).
 *
 * The lifetime counts from when the client obtained the certificate when that is later than its
 * notBefore, so a backdated notBefore cannot make a fresh certificate look due. ARI is followed
 * at once, also for a fresh certificate (a CA revoking it, an operator pulling windows forward);
 * but a certificate that was itself obtained because of ARI less than a minimum interval ago is not
 * renewed again for ARI before that interval is over, so a CA that keeps answering with windows in
 * the past gets one renewal per interval, not a loop.
 */
import type { Random } from '../../lib/random.js';
import type { CertKeyType } from '../keys.js';
import type { LineageConfig } from '../store.js';
import type { RenewalInfo } from './ari.js';
import type { AriState, RenewalState, WantedConfig } from './state.js';

const DAY = 86_400_000;

/** What decide needs to know about the live certificate. */
export interface CertFacts {
  /** Hex, as node prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** Sorted "dns:name" / "ip:address" strings. */
  identifiers: string[];
  /** Null when the key is of a type anvil does not make. */
  keyType: CertKeyType | null;
}

export interface DecideOptions {
  /** Renew even when not due. */
  force?: boolean;
  /**
   * A certificate obtained because of ARI is not renewed for ARI again before this long (nor for
   * the lifetime rule, whatever obtained it). Default: a tenth of its lifetime, at most one day.
   */
  minIntervalMs?: number;
  /**
   * RFC 9773 §4.2 step 5: how long until the caller looks again. An ARI time before then is
   * treated as now. Default 0.
   */
  lookaheadMs?: number;
}

export interface DecideInput {
  cert: CertFacts | null;
  config: Pick<LineageConfig, 'identifiers' | 'keyType' | 'profile' | 'fallback'> & Partial<Pick<LineageConfig, 'csrFile'>>;
  state: RenewalState;
  now: Date;
  /** Uniform in [0, 1). */
  random: () => number;
  options?: DecideOptions;
}

export type DecisionRule =
  | 'missing'
  | 'forced'
  | 'revoked'
  | 'names'
  | 'key-type'
  | 'profile'
  | 'expired'
  | 'last-twentieth'
  | 'ari'
  | 'ari-past'
  | 'lifetime'
  | 'guard';

export interface Decision {
  due: boolean;
  /** When it became (or becomes) due. */
  at: Date;
  rule: DecisionRule;
  /** Human-readable: "ARI window ...", "2/3 of lifetime", "revoked", ... */
  reason: string;
  /** When looking again could change the answer (a new ARI fetch, the next rule's time). */
  nextCheck: Date;
  /** A random time decide drew in the ARI window because none was stored; persist it. */
  ariChosen?: Date;
  /** Something the operator should know (a config change that renewing cannot bring about). */
  notes?: string[];
}

/** 2026-01-01T00:00:00Z (no milliseconds). */
export function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A duration for people: "3 d", "5 h", "12 min", "40 s". */
export function span(ms: number): string {
  const a = Math.abs(ms);
  if (a >= 2 * DAY) return `${Math.round(ms / DAY)} d`;
  if (a >= 2 * 3_600_000) return `${Math.round(ms / 3_600_000)} h`;
  if (a >= 2 * 60_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 1000)} s`;
}

/** Uniform in [0, 1) from a Random (48 bits). */
export function unitRandom(r: Random): () => number {
  return () => r.bytes(6).readUIntBE(0, 6) / 2 ** 48;
}

/** The profile configured for the CA of `caIndex` (0: the lineage's server; 1..: its fallbacks). */
export function profileFor(config: Pick<LineageConfig, 'profile' | 'fallback'>, caIndex: number): string | undefined {
  return caIndex === 0 ? config.profile : config.fallback?.[caIndex - 1]?.profile;
}

function windowText(a: AriState): string {
  return `ARI window ${iso(new Date(a.window!.start))} .. ${iso(new Date(a.window!.end))}${a.explanationURL ? ` (see ${a.explanationURL})` : ''}`;
}

function drawIn(start: Date, end: Date, random: () => number): Date {
  const r = Math.min(Math.max(random(), 0), 1);
  return new Date(start.getTime() + Math.floor(r * (end.getTime() - start.getTime())));
}

/**
 * RFC 9773 §4.2/§4.3: a fresh RenewalInfo merged into the state. The random time is kept while
 * the window is unchanged and drawn again when it changes.
 */
export function applyRenewalInfo(
  prev: AriState | undefined,
  info: RenewalInfo,
  about: { serial: string; certId: string; server: string },
  now: Date,
  random: () => number,
): AriState {
  const start = info.start.toISOString();
  const end = info.end.toISOString();
  const same = prev?.serial === about.serial && prev.window?.start === start && prev.window?.end === end && prev.chosen !== undefined;
  const out: AriState = {
    ...about,
    window: { start, end },
    chosen: same ? prev!.chosen! : drawIn(info.start, info.end, random).toISOString(),
    fetchedAt: now.toISOString(),
    nextFetch: new Date(now.getTime() + info.retryAfterMs).toISOString(),
  };
  if (info.explanationURL) out.explanationURL = info.explanationURL;
  return out;
}

/** Sorted "dns:name" / "ip:address" strings of a config's identifiers (as CertFacts has them). */
function namesOf(config: Pick<LineageConfig, 'identifiers'>): string[] {
  return config.identifiers.map((i) => `${i.type}:${i.value.toLowerCase()}`).sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** What the config-change rules compare, as `config` has it for the CA of `caIndex` (recorded with each renewal). */
export function wantedOf(config: Pick<LineageConfig, 'identifiers' | 'keyType' | 'profile' | 'fallback'>, caIndex: number): WantedConfig {
  return { names: namesOf(config), keyType: config.keyType ?? null, profile: profileFor(config, caIndex) ?? '' };
}

export function decide(input: DecideInput): Decision {
  const { cert, config, state, now } = input;
  const o = input.options ?? {};
  const hard = (rule: DecisionRule, reason: string, at = now): Decision => ({ due: true, at, rule, reason, nextCheck: now });

  if (!cert) return hard('missing', 'no live certificate');
  if (o.force) return hard('forced', 'forced');
  const mine = state.issued?.serial === cert.serial ? state.issued : undefined;

  const rev = state.revocation;
  if (rev?.serial === cert.serial && rev.status === 'revoked') {
    return hard('revoked', `revoked${rev.revokedAt ? ` at ${iso(new Date(rev.revokedAt))}` : ''} (${rev.source?.toUpperCase() ?? 'CA'})`);
  }
  // A config-change rule that produced this very certificate, for a config that still asks for the
  // same, does not fire again: the notes say what stays different instead.
  const notes: string[] = [];
  const again = (rule: DecisionRule, same: (w: WantedConfig) => boolean, reason: string): boolean => {
    if (mine?.trigger !== rule || (mine.wanted && !same(mine.wanted))) return false;
    notes.push(`${reason}, but certificate ${cert.serial} was obtained for that very change at ${iso(new Date(mine.at))}; not renewing for it again`);
    return true;
  };
  const names = namesOf(config);
  if (!sameList(names, cert.identifiers)) {
    const reason = `names changed (config: ${config.identifiers.map((i) => i.value).join(', ')}; certificate: ${cert.identifiers.map((i) => i.replace(/^\w+:/, '')).join(', ')})`;
    if (!again('names', (w) => sameList(w.names, names), reason)) return hard('names', reason);
  }
  // A lineage from the user's CSR has the CSR's key, whatever keyType says.
  if (config.keyType && !config.csrFile && cert.keyType !== config.keyType) {
    const reason = `key type changed (${cert.keyType ?? 'unknown'} -> ${config.keyType})`;
    if (!again('key-type', (w) => w.keyType === config.keyType, reason)) return hard('key-type', reason);
  }
  // The certificate does not say which profile it was issued under; the state does, when anvil obtained it.
  if (mine) {
    const want = profileFor(config, mine.caIndex) ?? '';
    if ((mine.profile ?? '') !== want) {
      const reason = `profile changed (${mine.profile || 'default'} -> ${want || 'default'})`;
      if (!again('profile', (w) => w.profile === want, reason)) return hard('profile', reason);
    }
  }
  const d = decideByTime(input, mine);
  return notes.length ? { ...d, notes } : d;
}

/** Rules 3 to 6: expiry, the last twentieth, ARI, the lifetime. */
function decideByTime(input: DecideInput, mine: RenewalState['issued']): Decision {
  const { state, now, random } = input;
  const cert = input.cert!;
  const o = input.options ?? {};
  const t = now.getTime();
  const hard = (rule: DecisionRule, reason: string, at = now): Decision => ({ due: true, at, rule, reason, nextCheck: now });
  const notAfter = cert.notAfter.getTime();
  if (t >= notAfter) return hard('expired', `expired at ${iso(cert.notAfter)}`, cert.notAfter);

  // The lifetime counts from when we got it, if later than notBefore (a backdated notBefore).
  const obtained = mine ? Date.parse(mine.at) : Number.NaN;
  let start = cert.notBefore.getTime();
  if (Number.isFinite(obtained) && obtained > start && obtained < notAfter) start = obtained;
  const lifetime = Math.max(notAfter - start, 1);
  const twentieth = notAfter - lifetime / 20;
  if (t >= twentieth) return hard('last-twentieth', `less than 1/20 of lifetime left (expires ${iso(cert.notAfter)})`, new Date(twentieth));

  const minInterval = o.minIntervalMs ?? Math.min(DAY, lifetime / 10);
  const guardUntil = Number.isFinite(obtained) ? obtained + minInterval : -Infinity;
  const ariGuardUntil = mine?.trigger === 'ari' || mine?.trigger === 'ari-past' ? guardUntil : -Infinity;
  const lookahead = o.lookaheadMs ?? 0;
  const soon = (at: number, ...more: number[]) => new Date(Math.min(at, twentieth, ...more));

  // Rule 5: ARI, for this very certificate.
  const ari = state.ari?.serial === cert.serial ? state.ari : undefined;
  // A fetch that is overdue (the CA could not be asked this run) does not make the caller spin.
  const nextFetch = ari && Date.parse(ari.nextFetch) > t ? Date.parse(ari.nextFetch) : Infinity;
  if (ari?.window) {
    let chosenIso = ari.chosen;
    let ariChosen: Date | undefined;
    if (!chosenIso) {
      ariChosen = drawIn(new Date(ari.window.start), new Date(ari.window.end), random);
      chosenIso = ariChosen.toISOString();
    }
    const chosen = Date.parse(chosenIso);
    const past = Date.parse(ari.window.end) <= t;
    const extra = ariChosen ? { ariChosen } : {};
    if (chosen <= t + lookahead || past) {
      if (ariGuardUntil > t) {
        return {
          due: false,
          at: soon(ariGuardUntil),
          rule: 'guard',
          reason: `renewed for ARI at ${iso(new Date(obtained))}, less than ${span(minInterval)} ago; not renewing again yet although the ${windowText(ari)} says so`,
          nextCheck: soon(ariGuardUntil, nextFetch),
          ...extra,
        };
      }
      if (past) return { ...hard('ari-past', `${windowText(ari)} is in the past: renewing now`), ...extra };
      return { due: true, at: new Date(chosen), rule: 'ari', reason: windowText(ari), nextCheck: now, ...extra };
    }
    const at = soon(chosen);
    const reason = at.getTime() < chosen ? `less than 1/20 of lifetime left by then; the ${windowText(ari)} is later` : windowText(ari);
    return { due: false, at, rule: at.getTime() < chosen ? 'last-twentieth' : 'ari', reason, nextCheck: soon(chosen, nextFetch), ...extra };
  }

  // Rule 6: lifetime.
  const short = lifetime < 10 * DAY;
  const dueAt = start + (short ? lifetime / 2 : (lifetime * 2) / 3);
  const reason = short ? '1/2 of lifetime (lifetime under 10 days)' : '2/3 of lifetime';
  if (t >= dueAt) {
    if (guardUntil > t) {
      return { due: false, at: new Date(guardUntil), rule: 'guard', reason: `obtained ${iso(new Date(obtained))}, less than ${span(minInterval)} ago`, nextCheck: soon(guardUntil, nextFetch) };
    }
    return { due: true, at: new Date(dueAt), rule: 'lifetime', reason, nextCheck: now };
  }
  return { due: false, at: new Date(dueAt), rule: 'lifetime', reason, nextCheck: soon(dueAt, nextFetch) };
}
