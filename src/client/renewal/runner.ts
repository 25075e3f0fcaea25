/**
 * The renewal runner: plans every lineage of a store (or the ones named) and renews the due ones.
 *
 * 1. Load: config, live certificate and renewal state of each lineage, with bounded parallel file
 *    I/O and no network.
 * 2. Refresh: ARI (RFC 9773) where the CA's Retry-After has passed, and revocation status where
 *    its check interval has passed; concurrent, and rate limited per CA.
 *    Times in the state further ahead than anvil ever waits (a clock that was wrong) are capped.
 * 3. Decide (decide.ts) and skip lineages that back off after failures.
 * 4. Renew the due ones concurrently (bounded), at most `ratePerMinute` new orders per CA, one at
 *    a time among lineages sharing a challenge port or the same pre/post hooks; `replaces` sent
 *    when renewing at the CA that issued the live certificate; pre, post and deploy hooks;
 *    installers re-verified; the notify hook on failure.
 * 5. State: successes reset the backoff and return to the lineage's own CA for the next renewal;
 *    failures back off exponentially (with jitter), and after `fallbackAfter` consecutive failures
 *    at one CA the next CA of the lineage is used.
 *
 * Every lineage gets one result (and one summary line); nothing is thrown for a lineage's failure:
 * a malformed renewal/NAME.json (checked in full when loading), an unexpected error while planning
 * or renewing one lineage fails that lineage, and the others go on.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../../lib/clock.js';
import type { Random } from '../../lib/random.js';
import type { AcmeApi } from '../api.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import { openAccount } from '../flows/account.js';
import { sanIdentifiers } from '../flows/issue.js';
import { issueToLineage, type IssuedLineage, type IssueToLineageOptions } from '../flows/lineage.js';
import type { HookContext } from '../hooks.js';
import type { AcmeHttp } from '../http.js';
import type { Directory } from '../../protocol/types.js';
import { keyTypeOf, readCsr } from '../keys.js';
import type { Solver } from '../solvers/types.js';
import type { AccountStore, LineageConfig, LineageFiles, LineageStore, SolverConfig } from '../store.js';
import { AriError, ARI_DEFAULT_RETRY_MS, ARI_MAX_RETRY_MS, certIdOf, fetchRenewalInfo, type UnauthenticatedGet } from './ari.js';
import { parseLineageConfig } from './config.js';
import { applyRenewalInfo, decide, iso, span, unitRandom, wantedOf, type CertFacts, type Decision, type DecisionRule } from './decide.js';
import { KeyedMutex, mapLimit, RateLimits, realSleep, type Sleep } from './limits.js';
import { capTimes, recordIssued, RenewalStateStore, type RenewalState } from './state.js';

// ---------------------------------------------------------------------------------------------
// Dependencies (constructor parameters, STYLE.md rule 6)

/** src/client/hooks.ts `runHooks`. */
export type RunHooks = (commands: string[][] | undefined, ctx: HookContext, opts?: { timeoutMs?: number; onOutput?: (line: string) => void }) => Promise<void>;
/** src/client/install/nginx.ts `verifyInstallers`. */
export type VerifyInstallers = (store: LineageStore, cfg: LineageConfig, o: { expectSerial: string; onStep?: (s: string) => void }) => Promise<void>;
/** src/client/revocation.ts `checkRevocation`. */
export type CheckRevocation = (
  leafPem: string,
  issuerPem: string,
  /** `server`: the directory URL of the CA that issued the certificate (a private CA may name private OCSP/CRL addresses). */
  opts?: { timeoutMs?: number; ca?: string; server?: string },
) => Promise<{ status: 'good' | 'revoked' | 'unknown'; source: 'ocsp' | 'crl' | null; revokedAt?: Date; reason?: number; detail?: string }>;

/** One CA of a lineage: its own server (index 0) or a fallback (1..). */
export interface CaRef {
  index: number;
  server: string;
  account: string;
  caBundle?: string;
  profile?: string;
}

/** HTTP to one CA, made once per run and closed at its end. */
export interface CaConnection {
  http: AcmeHttp;
  /** Unauthenticated GET for renewalInfo, while AcmeHttp has none of its own. */
  get?: UnauthenticatedGet;
  close(): Promise<void>;
}

export interface BuiltSolvers {
  solvers: Solver[];
  close(): Promise<void>;
}

export interface RunnerDeps {
  store: LineageStore;
  accounts: AccountStore;
  clock: Clock;
  random: Random;
  /** Waits (rate limits, backoff in the daemon); resolves early when the signal aborts. */
  sleep?: Sleep;
  connect(ca: { server: string; caBundle?: string }): Promise<CaConnection>;
  /** The account for a CA (default: the store's account `ca.account`, never a new one). */
  openAccount?(conn: CaConnection, ca: CaRef): Promise<AcmeApi>;
  solvers(cfg: SolverConfig, onStep?: (msg: string) => void): Promise<BuiltSolvers>;
  /** Default issueToLineage. */
  issue?(o: IssueToLineageOptions): Promise<IssuedLineage>;
  runHooks?: RunHooks;
  verifyInstallers?: VerifyInstallers;
  checkRevocation?: CheckRevocation;
  /** The exit code an error maps to (the CLI's table); default 1. */
  exitCodeOf?(e: unknown): number;
  /** Progress lines ("NAME: ordering ..."). */
  onStep?(line: string): void;
}

export interface RunOptions {
  /** Only these lineages (default: all in the store). */
  names?: string[];
  force?: boolean;
  /** Plan and report, renew nothing, write no state. */
  dryRun?: boolean;
  /** Renewals in parallel (default 4). */
  concurrency?: number;
  /** New orders per CA per minute (default 20), with a burst of up to 10. */
  ratePerMinute?: number;
  /** renewalInfo requests per CA per minute (default 6000, bursts of 100). */
  ariRatePerMinute?: number;
  /** ARI and revocation requests in parallel (default 16). */
  networkConcurrency?: number;
  /** Lineages loaded in parallel (default 64). */
  planConcurrency?: number;
  /** Consecutive failures at one CA before the lineage's next CA is tried (default 3). */
  fallbackAfter?: number;
  /** Backoff after the first failure (default 1 min), doubling up to `backoffMaxMs` (default 1 day). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** See DecideOptions. */
  minIntervalMs?: number;
  lookaheadMs?: number;
  /** Check OCSP/CRL (default true when a checkRevocation is given), at most every `revocationIntervalMs` (default 12 h). */
  revocationCheck?: boolean;
  revocationIntervalMs?: number;
  /**
   * A lineage found locked by another process at every attempt for longer than this (default
   * 1 hour) fails, with a hint naming the lock file, instead of being skipped once more.
   */
  lockedFailAfterMs?: number;
  /** Validation/finalization timeout of one renewal. */
  timeoutMs?: number;
  hookTimeoutMs?: number;
  /** When aborted, no new work starts; work in progress runs on. */
  signal?: AbortSignal;
  /** Called as each lineage's result is known. */
  onResult?(r: LineageResult): void;
}

export type LineageStatus = 'renewed' | 'not-due' | 'would-renew' | 'failed' | 'backoff' | 'skipped';

export interface LineageResult {
  name: string;
  status: LineageStatus;
  /** Which decision rule applied. */
  rule?: DecisionRule;
  /** Why it was (or was not) due, for people. */
  reason: string;
  /** When it became or becomes due. */
  dueAt?: string;
  nextCheck?: string;
  /** The new certificate (renewed) or the live one. */
  serial?: string;
  notAfter?: string;
  /** The CA used (or to be used). */
  server?: string;
  /** 0 for the lineage's own CA, 1.. for a fallback. */
  caIndex?: number;
  /** RFC 9773 §5: "sent and accepted", "dropped" after the CA refused it, or not sent. */
  replaces?: 'accepted' | 'dropped' | 'not-sent';
  /** True when a new version went live (also for failures of later steps: deploy hook, installer). */
  renewed?: boolean;
  error?: { code: string; type?: string; message: string };
  /** What to do about a failure. */
  hint?: string;
  exitCode?: number;
  failures?: number;
  nextAttempt?: string;
  warnings?: string[];
}

export interface RunSummary {
  results: LineageResult[];
  startedAt: string;
  finishedAt: string;
  /** The earliest nextCheck of any lineage (for a daemon's sleep). */
  nextCheck?: string;
  /** True when the run stopped early because its signal aborted. */
  aborted: boolean;
}

// ---------------------------------------------------------------------------------------------

interface Planned {
  name: string;
  config: LineageConfig | null;
  files: LineageFiles | null;
  /** The live certificate, parsed only when needed (certID, revocation check); see #leaf. */
  cert?: X509Certificate | null;
  facts: CertFacts | null;
  state: RenewalState;
  dirty: boolean;
  warnings: string[];
  loadError?: unknown;
  /** What went wrong when the lineage could be read but not planned. */
  planError?: unknown;
  decision?: Decision;
}

type ResultBase = Pick<LineageResult, 'name' | 'rule' | 'reason' | 'server' | 'caIndex'>;

/** One renewal attempt of a lineage at one CA: what its failure handling needs. */
interface Attempt {
  p: Planned;
  base: ResultBase;
  ca: CaRef;
  cas: CaRef[];
  attemptAt: Date;
  ctx: Omit<HookContext, 'event' | 'files'>;
  hookOpts: { timeoutMs?: number };
  o: RunOptions;
}

/** Raised by the precheck when the live certificate is no longer the one planned. */
class Superseded extends Error {}

/** Error codes that say nothing about the CA (they do not count towards switching to a fallback). */
const LOCAL_CODES = new Set(['STORE', 'HOOK', 'LOCKED', 'INSTALL']);

export function caList(cfg: Pick<LineageConfig, 'server' | 'account' | 'caBundle' | 'profile' | 'fallback'>): CaRef[] {
  const own: CaRef = { index: 0, server: cfg.server, account: cfg.account };
  if (cfg.caBundle) own.caBundle = cfg.caBundle;
  if (cfg.profile !== undefined) own.profile = cfg.profile;
  return [
    own,
    ...(cfg.fallback ?? []).map((f, i) => {
      const r: CaRef = { index: i + 1, server: f.server, account: f.account };
      if (f.caBundle) r.caBundle = f.caBundle;
      if (f.profile !== undefined) r.profile = f.profile;
      return r;
    }),
  ];
}

/** Facts decide() needs, from a parsed certificate. */
export function certFacts(cert: X509Certificate): CertFacts {
  return {
    serial: cert.serialNumber,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    identifiers: sanIdentifiers(cert),
    keyType: keyTypeOf(cert.publicKey) ?? null,
  };
}

function errorInfo(e: unknown): { code: string; type?: string; message: string } {
  if (e instanceof AcmeProblemError) return { code: e.code, type: e.type, message: e.message };
  if (e instanceof AcmeClientError) return { code: e.code, message: e.message };
  const err = e as { code?: unknown; message?: unknown };
  return { code: typeof err?.code === 'string' ? err.code : 'INTERNAL', message: typeof err?.message === 'string' ? err.message : String(e) };
}

/** What to do about a failure, in one sentence. */
function hintFor(e: unknown, name: string, ca: CaRef | undefined, retry: string): string {
  const again = retry ? ` anvil tries again after ${retry}` : '';
  if (e instanceof AcmeProblemError) {
    if (e.identifier) return `check that ${e.identifier} points at this host and its challenge can be answered (see renewal/${name}.json "solver");${again}`;
    switch (e.type) {
      case 'rateLimited':
        return `the CA rate-limits this account or these names;${again}`;
      case 'invalidProfile':
        return `the CA does not offer that profile: fix "profile" in renewal/${name}.json (the CA lists its profiles in its directory's meta.profiles)`;
      case 'unauthorized':
      case 'accountDoesNotExist':
        return `check the account: anvil account show --server ${ca?.server ?? '...'} --account ${ca?.account ?? 'default'}`;
      default:
        return `the CA refused the order;${again}`;
    }
  }
  if (e instanceof AcmeClientError) {
    switch (e.code) {
      case 'NETWORK':
      case 'TIMEOUT':
      case 'RETRIES_EXHAUSTED':
        return `the CA ${ca?.server ?? ''} could not be reached;${again}`;
      case 'DNS_PROPAGATION_TIMEOUT':
      case 'DNS_LOOKUP':
      case 'DNS_CNAME_CHAIN':
        return `check the DNS provider and the _acme-challenge records;${again}`;
      case 'BAD_INPUT':
        return `fix renewal/${name}.json (an account missing at a CA is registered with: anvil account register --server ${ca?.server ?? 'URL'} --account ${ca?.account ?? 'default'})`;
      case 'HOOK':
        return 'fix the hook command, then run anvil renew again';
      case 'INSTALL':
        return (e as { rolledBack?: boolean }).rolledBack === false
          ? `the new certificate stays live (the web server's problem is not the certificate); fix the web server configuration, then run anvil renew --force --cert ${name}`
          : `the installer rolled back; fix the web server configuration and run anvil renew --force --cert ${name}`;
      case 'STORE':
        return 'check the store directory (permissions, disk space)';
      case 'LOCKED':
        return `another process has held the lock on ${name} for a long time: if no anvil process is working on it, the lock is stale; remove it and run anvil renew --force --cert ${name};${again}`;
      default:
        return `the CA answered something unusable;${again}`;
    }
  }
  return `unexpected error;${again}`;
}

/** Serial of a PEM file's first certificate, or null. */
async function serialOfFile(file: string): Promise<string | null> {
  try {
    return new X509Certificate(await readFile(file)).serialNumber;
  } catch {
    return null;
  }
}

export class RenewalRunner {
  readonly #d: RunnerDeps;
  readonly #states: RenewalStateStore;
  readonly #sleep: Sleep;
  readonly #mutex = new KeyedMutex();
  readonly #random: () => number;
  #orderLimits: RateLimits | undefined;
  #ariLimits: RateLimits | undefined;
  #limitsKey = '';

  constructor(deps: RunnerDeps) {
    this.#d = deps;
    this.#states = new RenewalStateStore(deps.store.root);
    this.#sleep = deps.sleep ?? realSleep;
    this.#random = unitRandom(deps.random);
  }

  /** Token buckets persist across runs of one runner (a daemon's ticks share them). */
  #limits(o: RunOptions): { orders: RateLimits; ari: RateLimits } {
    const rate = o.ratePerMinute ?? 20;
    const ariRate = o.ariRatePerMinute ?? 6000;
    const key = `${rate}/${ariRate}`;
    if (!this.#orderLimits || !this.#ariLimits || key !== this.#limitsKey) {
      this.#orderLimits = new RateLimits(rate, Math.min(rate, 10), this.#d.clock, this.#sleep);
      this.#ariLimits = new RateLimits(ariRate, Math.min(ariRate, 100), this.#d.clock, this.#sleep);
      this.#limitsKey = key;
    }
    return { orders: this.#orderLimits, ari: this.#ariLimits };
  }

  async run(o: RunOptions = {}): Promise<RunSummary> {
    const started = this.#d.clock.now();
    const signal = o.signal;
    const names = o.names ?? (await this.#d.store.names());
    const conns = new Map<string, Promise<CaConnection>>();
    const accounts = new Map<string, Promise<AcmeApi>>();
    const results: LineageResult[] = [];
    const emit = (r: LineageResult) => {
      results.push(r);
      o.onResult?.(r);
    };
    const connect = (ca: { server: string; caBundle?: string }): Promise<CaConnection> => {
      const key = `${ca.server}\n${ca.caBundle ?? ''}`;
      let c = conns.get(key);
      if (!c) {
        c = this.#d.connect(ca);
        conns.set(key, c);
      }
      return c;
    };
    // One directory request per CA and run, its failure included: a CA that is down costs one
    // failed request per run, not one per lineage.
    const directories = new Map<string, Promise<Directory>>();
    const directory = (ca: { server: string; caBundle?: string }): Promise<{ conn: CaConnection; dir: Directory }> => {
      const key = `${ca.server}\n${ca.caBundle ?? ''}`;
      let d = directories.get(key);
      if (!d) {
        d = connect(ca).then((c) => c.http.directory());
        directories.set(key, d);
      }
      return Promise.all([connect(ca), d]).then(([conn, dir]) => ({ conn, dir }));
    };
    const account = async (ca: CaRef): Promise<AcmeApi> => {
      const key = `${ca.server}\n${ca.caBundle ?? ''}\n${ca.account}`;
      let a = accounts.get(key);
      if (!a) {
        a = connect(ca).then((conn) =>
          this.#d.openAccount ? this.#d.openAccount(conn, ca) : openAccount({ store: this.#d.accounts, http: conn.http, name: ca.account }).then((r) => r.api),
        );
        accounts.set(key, a);
        a.catch(() => accounts.delete(key));
      }
      return a;
    };
    const limits = this.#limits(o);
    try {
      // 1. Load.
      const planned = await mapLimit(names, o.planConcurrency ?? 64, (name) => this.#load(name));
      const now = this.#d.clock.now();
      const revocationIntervalMs = o.revocationIntervalMs ?? 12 * 3_600_000;
      // A state written while the clock was far ahead (or edited) must not stop renewal for months.
      const caps = { backoffMaxMs: o.backoffMaxMs ?? 86_400_000, ariMaxMs: ARI_MAX_RETRY_MS, revocationIntervalMs };
      for (const p of planned) {
        if (!p.config) continue;
        const capped = capTimes(p.state, now, caps);
        if (capped.length) {
          p.warnings.push(`renewal state: ${capped.join('; ')}`);
          p.dirty = true;
        }
      }
      // 2. Refresh (network), unless shutting down.
      const revocation = o.revocationCheck ?? Boolean(this.#d.checkRevocation);
      await mapLimit(planned, o.networkConcurrency ?? 16, async (p) => {
        if (signal?.aborted || !p.facts || !p.config || p.loadError || o.force) return;
        if (p.facts.notAfter.getTime() <= now.getTime()) return;
        try {
          await this.#refreshAri(p, directory, limits.ari, signal);
          if (revocation && this.#d.checkRevocation) await this.#refreshRevocation(p, revocationIntervalMs);
        } catch (e) {
          p.planError = e;
        }
      });
      // 3. Decide.
      const due: Planned[] = [];
      const cannot = (p: Planned, reason: string, e: unknown) =>
        emit({
          name: p.name,
          status: 'failed',
          reason,
          error: errorInfo(e),
          hint: hintFor(e, p.name, undefined, ''),
          exitCode: this.#exit(e),
          ...(p.warnings.length ? { warnings: p.warnings } : {}),
        });
      for (const p of planned) {
        if (p.loadError || !p.config) {
          cannot(p, 'cannot be read', p.loadError ?? new AcmeClientError('STORE', `renewal/${p.name}.json is missing`));
          continue;
        }
        if (p.planError) {
          cannot(p, 'cannot be planned', p.planError);
          continue;
        }
        const now2 = this.#d.clock.now();
        let d: Decision;
        try {
          d = decide({
            cert: p.facts,
            config: p.config,
            state: p.state,
            now: now2,
            random: this.#random,
            options: {
              ...(o.force ? { force: true } : {}),
              ...(o.minIntervalMs !== undefined ? { minIntervalMs: o.minIntervalMs } : {}),
              ...(o.lookaheadMs !== undefined ? { lookaheadMs: o.lookaheadMs } : {}),
            },
          });
        } catch (e) {
          cannot(p, 'cannot be planned', e);
          continue;
        }
        p.decision = d;
        if (d.notes) p.warnings.push(...d.notes);
        // LOCKED results count as "in a row" only while the lineage stays due.
        if (!d.due && p.state.lockedSince !== undefined) {
          delete p.state.lockedSince;
          p.dirty = true;
        }
        if (d.ariChosen && p.state.ari) {
          p.state.ari.chosen = d.ariChosen.toISOString();
          p.dirty = true;
        }
        const base = {
          name: p.name,
          rule: d.rule,
          reason: d.reason,
          dueAt: iso(d.at),
          nextCheck: iso(d.nextCheck),
          ...(p.facts ? { serial: p.facts.serial, notAfter: iso(p.facts.notAfter) } : {}),
          ...(p.warnings.length ? { warnings: p.warnings } : {}),
        };
        if (!d.due) {
          emit({ ...base, status: 'not-due' });
        } else if (!o.force && p.state.nextAttempt && Date.parse(p.state.nextAttempt) > now2.getTime()) {
          // RFC 9773 §4.2: renewal attempts stay subject to the client's error backoff.
          const cas = caList(p.config);
          const ca = cas[p.state.caIndex] ?? cas[0]!;
          emit({
            ...base,
            status: 'backoff',
            nextCheck: iso(new Date(p.state.nextAttempt)),
            error: { code: 'BACKOFF', message: p.state.lastError ?? 'an earlier attempt failed' },
            hint: `an earlier attempt failed (${p.state.failures} in a row); anvil tries again after ${iso(new Date(p.state.nextAttempt))}, or now with --force`,
            exitCode: p.state.lastExitCode ?? 1,
            failures: p.state.failures,
            nextAttempt: p.state.nextAttempt,
            server: ca.server,
            caIndex: ca.index,
          });
        } else if (o.dryRun) {
          const cas = caList(p.config);
          const ca = cas[p.state.caIndex] ?? cas[0]!;
          emit({ ...base, status: 'would-renew', server: ca.server, caIndex: ca.index });
        } else {
          due.push(p);
        }
      }
      if (!o.dryRun) await mapLimit(planned, o.planConcurrency ?? 64, (p) => this.#save(p));
      // 4. Renew.
      await mapLimit(due, o.concurrency ?? 4, async (p) => {
        if (signal?.aborted) {
          emit({ name: p.name, status: 'skipped', reason: p.decision!.reason, rule: p.decision!.rule, hint: 'shutting down; the next run renews it' });
          return;
        }
        let r: LineageResult;
        try {
          r = await this.#renew(p, o, account, connect, limits.orders);
        } catch (e) {
          // A bug or an unexpected state of this lineage: its failure, not the run's.
          r = { name: p.name, status: 'failed', reason: p.decision!.reason, rule: p.decision!.rule, error: errorInfo(e), hint: hintFor(e, p.name, undefined, ''), exitCode: this.#exit(e), ...this.#warnings(p) };
        }
        emit(r);
        await this.#save(p);
      });
    } finally {
      await Promise.all([...conns.values()].map((c) => c.then((x) => x.close()).catch(() => undefined)));
    }
    const order = new Map(names.map((n, i) => [n, i]));
    results.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));
    const next = results.reduce((m, r) => (r.nextCheck ? Math.min(m, Date.parse(r.nextCheck)) : m), Infinity);
    return {
      results,
      startedAt: started.toISOString(),
      finishedAt: this.#d.clock.now().toISOString(),
      ...(Number.isFinite(next) ? { nextCheck: new Date(next).toISOString() } : {}),
      aborted: Boolean(signal?.aborted),
    };
  }

  #exit(e: unknown): number {
    try {
      return this.#d.exitCodeOf?.(e) ?? 1;
    } catch {
      return 1;
    }
  }

  async #load(name: string): Promise<Planned> {
    const p: Planned = { name, config: null, files: null, facts: null, state: { version: 1, failures: 0, failuresAtCa: 0, caIndex: 0 }, dirty: false, warnings: [] };
    try {
      const [config, files, st] = await Promise.all([this.#d.store.readConfig(name), this.#d.store.current(name), this.#states.read(name)]);
      p.files = files;
      p.state = st.state;
      if (st.warning) p.warnings.push(st.warning);
      // Checked in full here, so that nothing later trips over a malformed field.
      p.config = config === null ? null : parseLineageConfig(config, name);
      const cached = p.state.cert;
      if (files && cached?.version === files.version) {
        p.facts = {
          serial: cached.serial,
          notBefore: new Date(cached.notBefore),
          notAfter: new Date(cached.notAfter),
          identifiers: cached.identifiers,
          keyType: cached.keyType as CertFacts['keyType'],
        };
      } else if (files) {
        const cert = await this.#leaf(p);
        if (cert) {
          p.facts = certFacts(cert);
          p.state.cert = {
            version: files.version,
            serial: p.facts.serial,
            notBefore: p.facts.notBefore.toISOString(),
            notAfter: p.facts.notAfter.toISOString(),
            identifiers: p.facts.identifiers,
            keyType: p.facts.keyType,
          };
          p.dirty = true;
        }
      }
    } catch (e) {
      p.loadError = e;
    }
    return p;
  }

  /** The live certificate, read once; null (with a warning) when it cannot be read. */
  async #leaf(p: Planned): Promise<X509Certificate | null> {
    if (p.cert !== undefined) return p.cert;
    if (!p.files) return (p.cert = null);
    try {
      p.cert = new X509Certificate(await readFile(p.files.cert));
    } catch (e) {
      // An unreadable live certificate is replaced: decide() sees "no live certificate".
      p.warnings.push(`the live certificate ${p.files.cert} cannot be read (${(e as Error).message}); getting a new one`);
      p.cert = null;
    }
    return p.cert;
  }

  async #save(p: Planned): Promise<void> {
    if (!p.dirty || !p.config) return;
    p.dirty = false;
    await this.#states.write(p.name, p.state).catch((e: Error) => p.warnings.push(`cannot save the renewal state: ${e.message}`));
  }

  /** The CA that issued the live certificate (ARI is asked there, and `replaces` only goes there). */
  #issuerCa(p: Planned): CaRef {
    const cas = caList(p.config!);
    const i = p.state.issued?.serial === p.facts?.serial ? p.state.issued!.caIndex : 0;
    return cas[i] ?? cas[0]!;
  }

  async #refreshAri(
    p: Planned,
    directory: (ca: { server: string; caBundle?: string }) => Promise<{ conn: CaConnection; dir: Directory }>,
    ari: RateLimits,
    signal?: AbortSignal,
  ): Promise<void> {
    const facts = p.facts!;
    const ca = this.#issuerCa(p);
    const prev = p.state.ari?.serial === facts.serial && p.state.ari.server === ca.server ? p.state.ari : undefined;
    const now = this.#d.clock.now();
    // RFC 9773 §4.3.2: ask again once Retry-After has passed, not before.
    if (prev && Date.parse(prev.nextFetch) > now.getTime()) return;
    let certId = prev?.certId || undefined;
    try {
      // A CA without renewalInfo costs one directory request per run, made once for all its lineages.
      const { conn, dir } = await directory(ca);
      if (!dir.renewalInfo) return;
      if (!certId) {
        const leaf = await this.#leaf(p);
        if (!leaf) return;
        try {
          certId = await certIdOf(leaf);
        } catch (e) {
          // No Authority Key Identifier: no ARI for this certificate; the lifetime rule applies.
          p.state.ari = { serial: facts.serial, certId: '', server: ca.server, nextFetch: new Date(now.getTime() + ARI_MAX_RETRY_MS).toISOString(), lastError: (e as Error).message };
          p.dirty = true;
          return;
        }
      }
      if (!(await ari.take(ca.server, signal))) return;
      const info = await fetchRenewalInfo(conn.http, certId, { ...(conn.get ? { get: conn.get } : {}), now: this.#d.clock.now() });
      if (!info) return;
      p.state.ari = applyRenewalInfo(prev, info, { serial: facts.serial, certId, server: ca.server }, this.#d.clock.now(), this.#random);
    } catch (e) {
      // RFC 9773 §4.3.3: temporary errors back off exponentially (capped); long-term ones wait six hours.
      const errors = (prev?.errors ?? 0) + 1;
      const temporary = e instanceof AriError ? e.temporary : true;
      const wait = temporary ? Math.min(ARI_DEFAULT_RETRY_MS, 60_000 * 2 ** Math.min(errors - 1, 20)) : ARI_DEFAULT_RETRY_MS;
      p.state.ari = {
        ...(prev ?? {}),
        serial: facts.serial,
        certId: certId ?? '',
        server: ca.server,
        nextFetch: new Date(now.getTime() + wait).toISOString(),
        errors,
        lastError: (e as Error).message.slice(0, 500),
      };
      p.warnings.push(`renewalInfo: ${(e as Error).message} (asking again after ${span(wait)})`);
    }
    p.dirty = true;
  }

  async #refreshRevocation(p: Planned, intervalMs: number): Promise<void> {
    const facts = p.facts!;
    const prev = p.state.revocation?.serial === facts.serial ? p.state.revocation : undefined;
    const now = this.#d.clock.now();
    if (prev && (prev.status === 'revoked' || Date.parse(prev.nextCheck) > now.getTime())) return;
    if (!p.files) return;
    const chain = await readFile(p.files.chain, 'utf8').catch(() => '');
    const issuerPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chain)?.[0];
    if (!issuerPem) return;
    const leaf = await this.#leaf(p);
    if (!leaf || leaf.serialNumber !== facts.serial) return;
    const leafPem = leaf.toString();
    try {
      let ca: string | undefined;
      const issuerCa = this.#issuerCa(p);
      if (issuerCa.caBundle) ca = await readFile(issuerCa.caBundle, 'utf8').catch(() => undefined);
      const r = await this.#d.checkRevocation!(leafPem, issuerPem, { timeoutMs: 15_000, server: issuerCa.server, ...(ca ? { ca } : {}) });
      p.state.revocation = {
        serial: facts.serial,
        status: r.status,
        source: r.source,
        checkedAt: now.toISOString(),
        // ±10 % so that a fleet checked in one run does not come due again all in the same minute.
        nextCheck: new Date(now.getTime() + (r.status === 'unknown' ? Math.min(intervalMs, 3_600_000) : intervalMs) * (0.9 + 0.2 * this.#random())).toISOString(),
        ...(r.revokedAt ? { revokedAt: r.revokedAt.toISOString() } : {}),
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
        ...(r.detail ? { detail: r.detail.slice(0, 500) } : {}),
      };
    } catch (e) {
      p.state.revocation = {
        serial: facts.serial,
        status: 'unknown',
        source: null,
        checkedAt: now.toISOString(),
        nextCheck: new Date(now.getTime() + Math.min(intervalMs, 3_600_000)).toISOString(),
        detail: (e as Error).message.slice(0, 500),
      };
    }
    p.dirty = true;
  }

  /** Keys of resources two renewals must not use at once: a standalone listener's port, identical pre/post hooks. */
  #exclusive(cfg: LineageConfig): string[] {
    const keys: string[] = [];
    const s = cfg.solver;
    if (s.type === 'http') keys.push(`listen:${s.host ?? '*'}:${s.port ?? 80}`);
    if (s.type === 'tls-alpn') keys.push(`listen:${s.host ?? '*'}:${s.port ?? 443}`);
    if (cfg.hooks?.pre?.length || cfg.hooks?.post?.length) keys.push(`hooks:${JSON.stringify([cfg.hooks.pre ?? [], cfg.hooks.post ?? []])}`);
    return keys;
  }

  async #renew(
    p: Planned,
    o: RunOptions,
    account: (ca: CaRef) => Promise<AcmeApi>,
    connect: (ca: { server: string; caBundle?: string }) => Promise<CaConnection>,
    orders: RateLimits,
  ): Promise<LineageResult> {
    const cfg = p.config!;
    const d = p.decision!;
    const cas = caList(cfg);
    const ca = cas[p.state.caIndex] ?? cas[0]!;
    const step = (msg: string) => this.#d.onStep?.(`${p.name}: ${msg}`);
    const hooks = this.#d.runHooks;
    const hookOpts = { ...(o.hookTimeoutMs ? { timeoutMs: o.hookTimeoutMs } : {}), onOutput: (l: string) => step(l) };
    const ctx = { lineage: p.name, identifiers: cfg.identifiers, server: ca.server, liveDir: path.join(this.#d.store.liveDir, p.name) };
    const base: ResultBase = {
      name: p.name,
      rule: d.rule,
      reason: d.reason,
      server: ca.server,
      caIndex: ca.index,
    };
    const unlock = await this.#mutex.lock(this.#exclusive(cfg));
    try {
      if (!(await orders.take(ca.server, o.signal))) return { ...base, status: 'skipped', hint: 'shutting down; the next run renews it' };
      const attemptAt = this.#d.clock.now();
      const before = { ...p.state };
      let stage: 'pre' | 'ca' | 'local' = 'pre';
      let issued: IssuedLineage | undefined;
      let failure: unknown;
      /** A failure after the new version went live (deploy hook, installer check, post hook). */
      let after: unknown;
      let replaces: string | undefined;
      try {
        if (hooks && cfg.hooks?.pre?.length) await hooks(cfg.hooks.pre, { ...ctx, files: null, event: 'pre' }, hookOpts);
        stage = 'ca';
        const conn = await connect(ca);
        const api = await account(ca);
        // RFC 9773 §5: "replaces" only names a certificate of this very CA, and only when it speaks
        // ARI; and never an expired certificate, which there is nothing left to replace.
        const live = p.facts && p.facts.notAfter.getTime() > attemptAt.getTime();
        if (live && this.#issuerCa(p).index === ca.index && (await conn.http.directory()).renewalInfo) {
          if (p.state.ari?.serial === p.facts!.serial && p.state.ari.certId) replaces = p.state.ari.certId;
          else {
            const leaf = await this.#leaf(p);
            if (leaf) replaces = await certIdOf(leaf).catch(() => undefined);
          }
        }
        stage = 'local';
        const csr = cfg.csrFile
          ? await readCsr(
              await readFile(cfg.csrFile).catch((e: Error) => {
                throw new AcmeClientError('BAD_INPUT', `cannot read the CSR ${cfg.csrFile}: ${e.message}`);
              }),
            )
          : undefined;
        const built = await this.#d.solvers(cfg.solver, step);
        stage = 'ca';
        const plannedSerial = p.facts?.serial ?? null;
        const { version: _v, createdAt: _c, updatedAt: _u, ...config } = cfg;
        try {
          issued = await (this.#d.issue ?? issueToLineage)({
            api,
            store: this.#d.store,
            config,
            solvers: built.solvers,
            ...(csr ? { csr } : {}),
            ...(replaces ? { replaces } : {}),
            ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
            onStep: step,
            now: () => this.#d.clock.now(),
            // renewal/NAME.json may have changed since this run read it (anvil install): only the
            // renewal's own changes are written.
            keepConfig: true,
            // Another process may have renewed it since this run looked.
            precheck: async (cur) => {
              const serial = cur ? await serialOfFile(cur.cert) : null;
              if (serial !== plannedSerial) throw new Superseded(`the live certificate changed (now ${serial ?? 'none'}) since this run planned`);
            },
            // Deploy hooks and installer checks run with the lineage still locked (an installer
            // that fails rolls live/NAME back to the previous version).
            afterSave: async (got) => {
              try {
                const serial = got.leaf.serialNumber;
                if (hooks && cfg.hooks?.deploy?.length) {
                  await hooks(cfg.hooks.deploy, { ...ctx, files: got.files, serial, notAfter: new Date(got.leaf.validTo), event: 'deploy' }, hookOpts);
                }
                if (cfg.installers?.length && this.#d.verifyInstallers) await this.#d.verifyInstallers(this.#d.store, cfg, { expectSerial: serial, onStep: step });
              } catch (e) {
                after = e;
              }
            },
          });
        } finally {
          await built.close().catch(() => undefined);
        }
      } catch (e) {
        failure = e;
      } finally {
        if (hooks && cfg.hooks?.post?.length) {
          await hooks(cfg.hooks.post, { ...ctx, files: issued?.files ?? p.files, event: 'post' }, hookOpts).catch((e: unknown) => {
            if (issued) after ??= e;
            else failure ??= e;
          });
        }
      }

      if (failure instanceof AcmeClientError && failure.code === 'LOCKED') return this.#locked({ p, base, ca, cas, attemptAt, ctx, hookOpts, o }, failure);
      // Anything else than the lock ends a run of LOCKED results.
      if (p.state.lockedSince !== undefined) {
        delete p.state.lockedSince;
        p.dirty = true;
      }
      if (failure instanceof Superseded) return { ...base, status: 'skipped', hint: `${failure.message}; nothing to do`, ...this.#warnings(p) };
      if (!issued) return this.#failed({ p, base, ca, cas, attemptAt, ctx, hookOpts, o }, failure, stage === 'ca');

      // The new version went live. issueToLineage recorded it in the state file; take that record
      // (or make the same one, should its best-effort write have failed).
      const serial = issued.leaf.serialNumber;
      const onDisk = (await this.#states.read(p.name)).state;
      p.state =
        onDisk.issued?.serial === serial
          ? onDisk
          : recordIssued(p.state, { serial, at: this.#d.clock.now().toISOString(), server: ca.server, caIndex: ca.index, ...(issued.profile !== undefined ? { profile: issued.profile } : {}) });
      // Why it was renewed, and what the config asked for then: decide() does not renew for ARI
      // again at once what ARI just renewed, nor for a config change what that change just renewed.
      p.state.issued = { ...p.state.issued!, trigger: d.rule, wanted: wantedOf(cfg, ca.index) };
      p.dirty = true;
      if (issued.replacesError) p.warnings.push(`the CA refused "replaces" (${issued.replacesError}); renewed without it`);
      if (ca.index > 0) p.warnings.push(`renewed at fallback CA ${ca.server}; the next renewal tries ${cfg.server} first again`);
      const result: LineageResult = {
        ...base,
        status: 'renewed',
        renewed: true,
        serial,
        notAfter: iso(new Date(issued.leaf.validTo)),
        replaces: replaces ? (issued.replaces ?? 'accepted') : 'not-sent',
      };
      if (after instanceof AcmeClientError && after.code === 'INSTALL') {
        // The installer put the previous version back: the renewal did not take, so it counts as
        // a failure with backoff (the previous certificate is still due), counted on from before.
        p.state = { ...p.state, failures: before.failures, failuresAtCa: before.failuresAtCa, caIndex: before.caIndex };
        const r = await this.#failed({ p, base: { ...base }, ca, cas, attemptAt, ctx, hookOpts, o }, after, false);
        return { ...r, serial, renewed: false, hint: `${r.hint ?? ''} (the new certificate ${serial} stays in the archive)` };
      }
      if (after) return this.#afterFailure(p, { ...result, status: 'failed' }, after, ctx, hookOpts);
      return { ...result, ...this.#warnings(p) };
    } finally {
      unlock();
    }
  }

  /**
   * Another process holds the lineage's lock. Skipped (it is probably renewing it right now), but
   * not forever: when every attempt for longer than `lockedFailAfterMs` found it locked, the lock
   * is most likely stale (a process killed in a way that left it, on a system where its pid now
   * belongs to another process), and the lineage fails, loudly, with the lock file to remove.
   */
  async #locked(a: Attempt, e: AcmeClientError): Promise<LineageResult> {
    const { p, attemptAt, o } = a;
    const limit = o.lockedFailAfterMs ?? 3_600_000;
    if (p.state.lockedSince === undefined) {
      p.state.lockedSince = attemptAt.toISOString();
      p.dirty = true;
    }
    const since = new Date(p.state.lockedSince);
    const lockedFor = attemptAt.getTime() - since.getTime();
    if (lockedFor <= limit) {
      const note = lockedFor > 0 ? ` (locked at every attempt since ${iso(since)})` : '';
      return { ...a.base, status: 'skipped', hint: `${e.message}${note}`, ...this.#warnings(p) };
    }
    const file = this.#d.store.lockFile(p.name);
    const err = new AcmeClientError('LOCKED', `${p.name} has been locked at every attempt since ${iso(since)} (${span(lockedFor)}): ${e.message}`);
    const r = await this.#failed(a, err, false);
    return {
      ...r,
      hint: `if no anvil process is working on ${p.name}, its lock is stale: remove ${file} and run anvil renew --force --cert ${p.name}; anvil tries again after ${iso(new Date(p.state.nextAttempt!))}`,
    };
  }

  #warnings(p: Planned): { warnings?: string[] } {
    return p.warnings.length ? { warnings: [...p.warnings] } : {};
  }

  /** A step after the new version went live failed: loud, notified, but no backoff and no re-renewal. */
  async #afterFailure(p: Planned, r: LineageResult, e: unknown, ctx: Omit<HookContext, 'event' | 'files'>, hookOpts: { timeoutMs?: number }): Promise<LineageResult> {
    const info = errorInfo(e);
    await this.#notify(p, { ...ctx, files: p.files }, `${p.name}: renewed (serial ${r.serial}), then: ${info.message}`, hookOpts);
    return {
      ...r,
      error: info,
      hint: `the new certificate is live, but ${hintFor(e, p.name, undefined, '')}`,
      exitCode: this.#exit(e),
      ...this.#warnings(p),
    };
  }

  async #notify(p: Planned, ctx: Omit<HookContext, 'event'>, error: string, hookOpts: { timeoutMs?: number }): Promise<void> {
    const cmds = p.config?.notify;
    if (!cmds?.length || !this.#d.runHooks) return;
    await this.#d.runHooks(cmds, { ...ctx, event: 'failure', error }, hookOpts).catch((e: Error) => p.warnings.push(`notify hook: ${e.message}`));
  }

  async #failed(a: Attempt, e: unknown, atCa: boolean): Promise<LineageResult> {
    const { p, base, ca, cas, attemptAt, ctx, hookOpts, o: opts } = a;
    const o = { backoffBaseMs: opts.backoffBaseMs ?? 60_000, backoffMaxMs: opts.backoffMaxMs ?? 86_400_000, fallbackAfter: Math.max(1, opts.fallbackAfter ?? 3) };
    const s = p.state;
    const info = errorInfo(e);
    s.failures += 1;
    s.lastAttempt = attemptAt.toISOString();
    s.lastResult = 'failed';
    s.lastError = info.message.slice(0, 1000);
    s.lastExitCode = this.#exit(e);
    // Exponential backoff with jitter: base, 2 base, 4 base ... up to the maximum.
    const raw = Math.min(o.backoffMaxMs, o.backoffBaseMs * 2 ** Math.min(s.failures - 1, 40));
    const wait = Math.min(o.backoffMaxMs, Math.round(raw * (0.75 + 0.5 * this.#random())));
    // A CA's refusal of an order is retried sooner when it says when (rate limits).
    const retryAfter = e instanceof AcmeProblemError && e.retryAfter ? e.retryAfter * 1000 : 0;
    s.nextAttempt = new Date(attemptAt.getTime() + Math.max(wait, Math.min(retryAfter, o.backoffMaxMs))).toISOString();
    let switched = '';
    // Only failures that another CA might not have count towards switching: not a broken hook,
    // store or CSR, and not a bug of ours.
    if (atCa && e instanceof AcmeClientError && !LOCAL_CODES.has(e.code)) {
      s.failuresAtCa += 1;
      if (s.failuresAtCa >= o.fallbackAfter && cas.length > 1) {
        const next = cas[(ca.index + 1) % cas.length]!;
        s.caIndex = next.index;
        s.failuresAtCa = 0;
        switched = `; after ${o.fallbackAfter} failures in a row at ${ca.server}, the next attempt goes to ${next.index === 0 ? 'the lineage\'s own CA' : 'fallback CA'} ${next.server}`;
      }
    }
    p.dirty = true;
    const retry = iso(new Date(s.nextAttempt));
    const r: LineageResult = {
      ...base,
      status: 'failed',
      error: info,
      hint: `${hintFor(e, p.name, ca, retry)}${switched}`,
      exitCode: s.lastExitCode,
      failures: s.failures,
      nextAttempt: s.nextAttempt,
      nextCheck: iso(new Date(s.nextAttempt)),
    };
    await this.#notify(p, { ...ctx, files: p.files }, `${p.name}: renewal failed: ${info.message}`, hookOpts);
    return { ...r, ...this.#warnings(p) };
  }
}

/**
 * One line per lineage, for people and logs:
 * "NAME: renewed (2/3 of lifetime) serial 0A1B expires 2026-04-01T00:00:00Z",
 * "NAME: not due until 2026-03-01T00:00:00Z (ARI window ...)",
 * "NAME: FAILED (expired): the CA refused ...: what to do".
 */
export function summaryLine(r: LineageResult): string {
  const warn = r.warnings?.length ? ` [${r.warnings.join('; ')}]` : '';
  switch (r.status) {
    case 'renewed':
      return `${r.name}: renewed (${r.reason}) serial ${r.serial} expires ${r.notAfter}${r.caIndex ? ` via fallback CA ${r.server}` : ''}${warn}`;
    case 'not-due':
      return `${r.name}: not due until ${r.dueAt} (${r.reason})${warn}`;
    case 'would-renew':
      return `${r.name}: due (${r.reason}); dry run, not renewed${r.caIndex ? ` (would use fallback CA ${r.server})` : ''}${warn}`;
    case 'skipped':
      return `${r.name}: skipped: ${r.hint ?? r.reason}${warn}`;
    case 'backoff':
      return `${r.name}: FAILED earlier (${r.failures ?? 1} in a row: ${r.error?.message ?? ''}): ${r.hint}${warn}`;
    case 'failed':
      return `${r.name}: FAILED${r.renewed ? ` after renewing (serial ${r.serial})` : ` (${r.reason})`}: ${r.error?.message ?? 'unknown error'}: ${r.hint ?? ''}${warn}`;
  }
}

/**
 * The decision for one lineage from local files only (no ARI request, no revocation check): what
 * `anvil issue` uses to tell whether an existing certificate is due. Null when nothing is live.
 */
export async function decideLineage(
  store: LineageStore,
  name: string,
  config: Pick<LineageConfig, 'identifiers' | 'keyType' | 'profile' | 'fallback'> & Partial<Pick<LineageConfig, 'csrFile'>>,
  o: { now?: Date; random?: () => number } = {},
): Promise<Decision | null> {
  const files = await store.current(name);
  if (!files) return null;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(files.cert));
  } catch {
    return null;
  }
  const { state } = await new RenewalStateStore(store.root).read(name);
  return decide({ cert: certFacts(cert), config, state, now: o.now ?? new Date(), random: o.random ?? Math.random });
}
