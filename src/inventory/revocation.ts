/**
 * Revocation checks of the inventory's certificates: is a certificate that was discovered (by a
 * network scan, in files, in a lineage, imported) revoked? Asks its OCSP responder, then its CRL,
 * and records what was found (docs/inventory.md, "Revocation checks").
 *
 * The asking and the verifying are the Anvil client's (src/client/revocation.ts,
 * createRevocationChecker): an OCSP request with a SHA-1 CertID (RFC 5019 §2.1.1) POSTed as
 * application/ocsp-request, a response believed only when signed by the issuer or by a responder
 * the issuer delegated to (id-kp-OCSPSigning, RFC 6960 §4.2.2.2), fresh, and for this very CertID;
 * else the CRL (RFC 5280 §6.3), believed only when signed by the issuer, fresh and for the
 * certificate's distribution point, read once per URL and kept until its nextUpdate for the run,
 * indexed by serial without parsing every entry. This module adds what an inventory needs:
 *
 * - Which certificates: leaves, not expired, not known to be revoked (except those on hold, see
 *   below), not checked within `maxAgeHours`. Certificates that came from Anvil's own CA (source
 *   `ca`) are left out unless `includeCaSourced`: the CA's database sync records their revocations
 *   already, exactly and sooner, and asking our own responder for every certificate we issued
 *   would only load it.
 * - Holds: RFC 5280 §5.3.1 certificateHold (reason 6) is the one revocation that may be lifted. A
 *   certificate a look found on hold is recorded revoked with reason 6 and stays due; a later look
 *   that finds it good (OCSP good, or not on a fresh CRL) clears the revocation with an `unrevoked`
 *   event, and one that finds it revoked for another reason makes that the revocation. Any other
 *   revocation, and any revocation the CA's database sync or an import recorded, stands: a 'good'
 *   answer about it is recorded as an `inconsistent` error (InventoryStore.recordRevocationCheck).
 * - The issuer: a CA certificate of the inventory whose subject is the leaf's issuer and whose key
 *   verifies the leaf's signature (`selectIssuer`); otherwise the certificate at the leaf's AIA
 *   caIssuers URL (DER or PEM, at most 64 KiB), fetched once per URL and run, used only if its key
 *   verifies the leaf. It is not recorded in the inventory. What each URL gave, a failure too, is
 *   kept for the run, for the ISSUER_CACHE_ENTRIES URLs used last (FetchedIssuers).
 * - Limits: http and https only; each request bounded by `timeoutMs` (connect, headers, between
 *   body chunks), an issuer fetch (redirects included) by `timeoutMs` in all; each certificate by
 *   three times `timeoutMs` in all, from its start: issuer fetches, OCSP, CRL and their redirects
 *   share that deadline, and a step that finds none left is a `timeout` (the CPU time to read a CRL
 *   already fetched comes on top: about half a second per 5 MiB); OCSP answers up to 64 KiB, CRLs
 *   up to `crlMaxBytes`; at most `maxRedirects` redirects, each hop checked like the first URL;
 *   `concurrency` certificates at a time and `connectionsPerHost` connections per responder; URLs
 *   at cloud metadata, unspecified and multicast addresses never fetched, and loopback, private
 *   and link-local ones only with `allowPrivateAddresses` (default true: an inventory is of one's
 *   own network, whose private CAs publish there).
 * - Never "good" on a guess: an answer that cannot be verified is a problem for that certificate,
 *   and when no source could be believed the certificate's status stays undetermined, with the
 *   reasons recorded in `revocation_error`.
 *
 * Recorded per certificate (InventoryStore.recordRevocationCheck): `revocation_checked_at`, the
 * `revocation_source` that decided ('ocsp' or 'crl'; null when none could), `revocation_error`
 * (why not, or null); and a revocation found is recorded like the CA's (revoked_at,
 * revocation_reason) with a `revoked` event whose detail says `source` and `url`; a hold lifted,
 * with an `unrevoked` event that says the same.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityInfoAccessSyntax, Certificate, id_pe_authorityInfoAccess } from '@peculiar/asn1-x509';
import { createRevocationChecker, type RevocationCheckResult, type RevocationProblemKind } from '../client/revocation.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { toPem } from '../lib/pem.js';
import { CERTIFICATE_HOLD, type InventoryStore } from './store.js';

const HOUR = 3_600_000;
/** id-ad-caIssuers (RFC 5280 §4.2.2.1). */
const CA_ISSUERS = '1.3.6.1.5.5.7.48.2';
const ISSUER_MAX_BYTES = 64 * 1024;
/** Certificates read from the inventory at a time. */
const PAGE = 200;
/** Longest revocation_error kept. */
const MAX_ERROR_CHARS = 1000;
/** caIssuers URLs whose answer (the certificate, or why not) a run keeps: a few hundred, at most 64 KiB each. */
export const ISSUER_CACHE_ENTRIES = 256;
/** A certificate's whole check (issuer fetches, OCSP, CRL, redirects) gets this many times `timeoutMs`. */
const BUDGET_TIMEOUTS = 3;

/**
 * Why a certificate's status could not be determined: the checker's kinds, and the issuer's; and
 * `inconsistent`, a 'good' answer about a certificate whose revocation stands (not a hold that a
 * look found: see the module comment).
 */
export type RevocationErrorKind = RevocationProblemKind | 'no-issuer' | 'inconsistent';

export interface RevocationRunOptions {
  clock?: Clock;
  /** Certificates checked at a time (default 8). */
  concurrency?: number;
  /**
   * Per request: connect, response headers, and between body chunks (default 10 s); an issuer
   * fetch, redirects included: this in all. Per certificate, every step together: three times this.
   */
  timeoutMs?: number;
  /** Check certificates not checked within this many hours (default 12; 0: every one, now). */
  maxAgeHours?: number;
  /** Largest CRL read, bytes (default 20 MiB). */
  crlMaxBytes?: number;
  /** Redirects followed per request (default 3). */
  maxRedirects?: number;
  /** Connections per responder (scheme, host, port) at a time (default 2). */
  connectionsPerHost?: number;
  /** Fetch URLs at loopback, private and link-local addresses (default true). */
  allowPrivateAddresses?: boolean;
  /**
   * Trusted roots (PEM) for https URLs, in place of Node's bundled ones (see withBundledRoots).
   * Default: Node's bundled roots.
   */
  ca?: string;
  /** Also check certificates that came from Anvil's own CA (default false: its sync records their revocations). */
  includeCaSourced?: boolean;
  /** Stops starting new checks; those under way finish. */
  signal?: AbortSignal;
  /** After each certificate. */
  onResult?(r: CertificateRevocationResult): void;
  /** Keep every certificate's result in the summary (default true; the server's thread does not). */
  keepResults?: boolean;
}

export interface CertificateRevocationResult {
  fingerprint: string;
  /** 'unknown': no source could be believed (see `error` and `problems`). */
  status: 'good' | 'revoked' | 'unknown';
  source: 'ocsp' | 'crl' | null;
  /** The URL that decided. */
  url: string | null;
  revokedAt?: Date;
  reason?: number | null;
  /** True when this answer lifted a hold (reason 6) that an earlier look found: the revocation was cleared. */
  released?: boolean;
  /**
   * What was recorded as revocation_error: null when a source decided, except when it said good
   * about a certificate whose revocation stands (a problem of kind `inconsistent`).
   */
  error: string | null;
  /** Every answer that could not be used, also those a later source made up for. */
  problems: Array<{ source: 'ocsp' | 'crl' | 'issuer' | null; url: string | null; kind: RevocationErrorKind; message: string }>;
}

export interface RevocationRunSummary {
  /** Certificates looked at (due ones). */
  checked: number;
  good: number;
  /** Found revoked in this run (recorded): newly, or a hold found revoked for another reason. */
  revoked: number;
  /** Of the good ones: holds (reason 6) lifted in this run, their revocation cleared. */
  released: number;
  /** Status not determined. */
  unknown: number;
  /** Problems by kind, over all certificates and sources (an OCSP timeout that the CRL made up for counts too). */
  errors: Partial<Record<RevocationErrorKind, number>>;
  /** Not due: skipped because checked within maxAgeHours. */
  notDue: number;
  /** True when the signal stopped the run before every due certificate was checked. */
  interrupted: boolean;
  durationMs: number;
  results: CertificateRevocationResult[];
}

/** The part of createRevocationChecker this module uses (tests pass their own). */
export type RevocationChecker = Pick<ReturnType<typeof createRevocationChecker>, 'check' | 'fetchCertificate' | 'close'>;

/**
 * The issuer of `leafDer` among `candidates` (DER): the first whose subject is the leaf's issuer
 * (and whose key identifier, when both carry one, matches) and whose key verifies the leaf's
 * signature. null when none does, or when the leaf does not parse.
 */
export function selectIssuer(leafDer: Buffer, candidates: readonly Buffer[]): Buffer | null {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafDer);
  } catch {
    return null;
  }
  for (const der of candidates) {
    try {
      const c = new X509Certificate(der);
      // RFC 5280 §6.1.3 (a)(1) and (a)(4): the issuer's key verifies the signature, and its subject is the issuer name.
      if (leaf.checkIssued(c) && leaf.verify(c.publicKey)) return der;
    } catch {
      // a candidate that does not parse or has a key node cannot use is not the issuer
    }
  }
  return null;
}

/** The http(s) caIssuers URLs of a certificate's AIA extension (RFC 5280 §4.2.2.1), at most two. */
export function caIssuersUrls(der: Buffer): string[] {
  try {
    const cert = AsnConvert.parse(der, Certificate);
    const aia = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_pe_authorityInfoAccess);
    if (!aia) return [];
    return [...AsnConvert.parse(aia.extnValue.buffer, AuthorityInfoAccessSyntax)]
      .filter((d) => d.accessMethod === CA_ISSUERS && d.accessLocation.uniformResourceIdentifier)
      .map((d) => d.accessLocation.uniformResourceIdentifier!)
      .filter((u) => /^https?:\/\//i.test(u))
      .slice(0, 2);
  } catch {
    return [];
  }
}

/**
 * Node's bundled roots (the Mozilla set, tls.rootCertificates) with `extra` PEM roots added: an
 * Anvil CA's own root, whose https OCSP, CRL and issuer URLs are then trusted too.
 */
export function withBundledRoots(...extra: string[]): string {
  return [...tls.rootCertificates, ...extra.map((p) => p.trim())].join('\n');
}

const errorText = (problems: CertificateRevocationResult['problems']): string => {
  const s = problems.map((p) => `${p.source ? `${p.source}${p.url ? ` ${p.url}` : ''}: ` : ''}${p.kind}: ${p.message}`).join('; ');
  return s.length > MAX_ERROR_CHARS ? `${s.slice(0, MAX_ERROR_CHARS - 1)}…` : s;
};

/** What a caIssuers URL gave: the certificate (DER), or why not. */
export type IssuerFetch = Buffer | { kind: RevocationErrorKind; message: string };

/**
 * The answers of caIssuers URLs in one run, the certificate or the failure alike (so a URL that
 * fails is asked once, not once per certificate naming it), for at most `max` URLs: the one used
 * least recently goes first. `fetch` must not reject (a failure is an answer). A fetch under way
 * counts as an entry; one dropped meanwhile still answers those already waiting for it.
 */
export class FetchedIssuers {
  readonly #entries = new Map<string, Promise<IssuerFetch>>();

  constructor(
    private readonly max: number,
    private readonly fetch: (url: string) => Promise<IssuerFetch>,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  get(url: string): Promise<IssuerFetch> {
    let p = this.#entries.get(url);
    if (p) {
      // Map order is insertion order: moved to the end, it is now the most recently used.
      this.#entries.delete(url);
    } else {
      p = this.fetch(url);
    }
    this.#entries.set(url, p);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= Math.max(1, this.max)) break;
      this.#entries.delete(oldest);
    }
    return p;
  }
}

/** `p`, or a `timeout` failure once `deadline` (ms since the epoch) has passed. */
async function byDeadline(p: Promise<IssuerFetch>, deadline: number): Promise<IssuerFetch> {
  const left = deadline - Date.now();
  const late: IssuerFetch = { kind: 'timeout', message: 'no time left for this certificate' };
  if (left <= 0) return late;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<IssuerFetch>((resolve) => (timer = setTimeout(() => resolve(late), left)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Checks every due certificate of the inventory (see the module comment) and records the
 * results. Never throws for a certificate's trouble (that is recorded); throws only when the
 * inventory itself fails.
 */
export async function checkInventoryRevocation(store: InventoryStore, o: RevocationRunOptions = {}, checkerIn?: RevocationChecker): Promise<RevocationRunSummary> {
  const clock = o.clock ?? systemClock;
  const started = Date.now();
  const timeoutMs = o.timeoutMs ?? 10_000;
  const concurrency = Math.max(1, o.concurrency ?? 8);
  const maxAgeMs = (o.maxAgeHours ?? 12) * HOUR;
  const allowPrivate = o.allowPrivateAddresses ?? true;
  const checker =
    checkerIn ??
    createRevocationChecker({
      timeoutMs,
      allowPrivateAddresses: allowPrivate,
      crlMaxBytes: o.crlMaxBytes ?? 20 * 1024 * 1024,
      maxRedirects: o.maxRedirects ?? 3,
      connectionsPerOrigin: o.connectionsPerHost ?? 2,
    });
  const summary: RevocationRunSummary = { checked: 0, good: 0, revoked: 0, released: 0, unknown: 0, errors: {}, notDue: 0, interrupted: false, durationMs: 0, results: [] };
  const db = store.db;
  try {
    const nowMs = clock.now().getTime();
    // The CA certificates of the inventory, by subject: the issuers to try first.
    const byName = new Map<string, Buffer[]>();
    for (const r of await db.selectFrom('inv_certificates').select(['subject', 'der']).where('is_ca', '=', 1).execute()) {
      byName.set(r.subject, [...(byName.get(r.subject) ?? []), Buffer.from(r.der)]);
    }
    // Issuers fetched from caIssuers URLs in this run (a failure is kept too: asked once per run
    // while the URL stays among the ISSUER_CACHE_ENTRIES used last).
    const fetched = new FetchedIssuers(ISSUER_CACHE_ENTRIES, (url) =>
      checker.fetchCertificate(url, { timeoutMs, maxBytes: ISSUER_MAX_BYTES, allowPrivateAddresses: allowPrivate, ...(o.ca ? { ca: o.ca } : {}) }).catch((e: Error & { kind?: RevocationErrorKind }) => ({
        kind: e.kind ?? 'other',
        message: e.message,
      })),
    );

    // Not revoked; or on hold as a look found it (store.ts isNetworkHold): asked until it is lifted or made final.
    const base = () => {
      let q = db
        .selectFrom('inv_certificates')
        .where('is_ca', '=', 0)
        .where('not_after', '>', nowMs)
        .where((eb) => eb.or([eb('revoked_at', 'is', null), eb.and([eb('revocation_reason', '=', CERTIFICATE_HOLD), eb('revocation_source', 'in', ['ocsp', 'crl'])])]));
      if (!o.includeCaSourced) q = q.where('source', '!=', 'ca');
      return q;
    };
    const dueSince = nowMs - maxAgeMs;
    const notDue = await base()
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('revocation_checked_at', 'is not', null)
      .where('revocation_checked_at', '>=', dueSince)
      .executeTakeFirst();
    summary.notDue = maxAgeMs > 0 ? Number(notDue?.n ?? 0) : 0;

    const one = async (row: { fingerprint: string; issuer: string; der: Uint8Array }): Promise<void> => {
      // Every step of this certificate, waits for other certificates' fetches included, ends by then.
      const deadline = Date.now() + BUDGET_TIMEOUTS * timeoutMs;
      const der = Buffer.from(row.der);
      const problems: CertificateRevocationResult['problems'] = [];
      let issuer = selectIssuer(der, byName.get(row.issuer) ?? []);
      if (!issuer) {
        const urls = caIssuersUrls(der);
        for (const url of urls) {
          const got = await byDeadline(fetched.get(url), deadline);
          if (!Buffer.isBuffer(got)) {
            problems.push({ source: 'issuer', url, kind: got.kind, message: `fetching the issuer: ${got.message}` });
            continue;
          }
          issuer = selectIssuer(der, [got]);
          if (issuer) break;
          problems.push({ source: 'issuer', url, kind: 'issuer', message: 'the certificate there did not issue this one' });
        }
        if (!issuer && !urls.length) {
          problems.push({ source: 'issuer', url: null, kind: 'no-issuer', message: `its issuer (${row.issuer}) is not in the inventory and it names no caIssuers URL` });
        }
      }
      let r: RevocationCheckResult | null = null;
      const left = deadline - Date.now();
      if (issuer && left <= 0) {
        problems.push({ source: null, url: null, kind: 'timeout', message: `no time left for OCSP and CRL: fetching the issuer took the certificate's ${BUDGET_TIMEOUTS * timeoutMs} ms` });
      } else if (issuer) {
        try {
          r = await checker.check(toPem('CERTIFICATE', der), toPem('CERTIFICATE', issuer), { timeoutMs: left, allowPrivateAddresses: allowPrivate, ...(o.ca ? { ca: o.ca } : {}) });
        } catch (e) {
          problems.push({ source: null, url: null, kind: 'other', message: (e as Error).message });
        }
        for (const p of r?.problems ?? []) problems.push(p);
      }
      const decided = r && r.status !== 'unknown' && r.source ? r : null;
      const url = decided?.url ?? null;
      const result: CertificateRevocationResult = {
        fingerprint: row.fingerprint,
        status: decided ? decided.status : 'unknown',
        source: decided?.source ?? null,
        url,
        ...(decided?.status === 'revoked' ? { revokedAt: decided.revokedAt, reason: decided.reason ?? null } : {}),
        error: decided ? null : errorText(problems) || 'undetermined',
        problems,
      };
      const now = clock.now();
      const recorded = await store.recordRevocationCheck(row.fingerprint, now, {
        source: result.source,
        error: result.error,
        url,
        ...(result.status === 'revoked' ? { revoked: { at: result.revokedAt ?? now, reason: result.reason ?? null, url: url ?? '' } } : {}),
      });
      if (recorded.outcome === 'released') result.released = true;
      if (recorded.outcome === 'inconsistent') {
        problems.push({ source: result.source, url, kind: 'inconsistent', message: recorded.error ?? 'a good answer about a revoked certificate' });
        result.error = recorded.error;
      }
      summary.checked++;
      if (result.status === 'good') {
        summary.good++;
        if (result.released) summary.released++;
      } else if (result.status === 'revoked') {
        if (recorded.outcome === 'revoked') summary.revoked++;
      } else summary.unknown++;
      for (const p of problems) summary.errors[p.kind] = (summary.errors[p.kind] ?? 0) + 1;
      if (o.keepResults !== false) summary.results.push(result);
      o.onResult?.(result);
    };

    // Pages in fingerprint order (each page's rows leave the due set as they are recorded; the
    // key keeps a certificate whose recording failed from coming back).
    let after = '';
    for (;;) {
      if (o.signal?.aborted) {
        summary.interrupted = true;
        break;
      }
      let q = base().select(['fingerprint', 'issuer', 'der']).where('fingerprint', '>', after);
      if (maxAgeMs > 0) q = q.where((eb) => eb.or([eb('revocation_checked_at', 'is', null), eb('revocation_checked_at', '<', dueSince)]));
      const rows = await q.orderBy('fingerprint').limit(PAGE).execute();
      if (!rows.length) break;
      after = rows[rows.length - 1]!.fingerprint;
      let next = 0;
      const workers = Array.from({ length: Math.min(concurrency, rows.length) }, async () => {
        while (next < rows.length && !o.signal?.aborted) await one(rows[next++]!);
      });
      await Promise.all(workers);
      if (o.signal?.aborted && next < rows.length) summary.interrupted = true;
    }
  } finally {
    if (!checkerIn) await checker.close();
    summary.durationMs = Date.now() - started;
  }
  return summary;
}

/** What the revocation thread (revocation-worker.ts) is given. */
export interface RevocationThreadConfig {
  inventory: import('./inventory.js').InventoryLocation;
  /** Each certificate is checked again after this long (inventory.revocationCheckHours). */
  maxAgeHours: number;
  /** The thread looks for due certificates this often (new ones are checked soon after they are found). */
  wakeMs: number;
  /** Before the first look, so that a starting server is not slowed down. */
  firstDelayMs: number;
  options: Pick<RevocationRunOptions, 'concurrency' | 'timeoutMs' | 'crlMaxBytes' | 'allowPrivateAddresses' | 'ca'>;
}

export type RevocationThreadReport =
  | { type: 'checked'; summary: Omit<RevocationRunSummary, 'results'> }
  | { type: 'error'; message: string };

/**
 * Starts the thread that checks the inventory's due certificates every `wakeMs` (off the event
 * loop that serves ACME: a large CRL takes a second or two to read). stop() ends the run under
 * way after the checks in flight, then the thread.
 */
export async function startRevocationThread(config: RevocationThreadConfig, onReport: (r: RevocationThreadReport) => void): Promise<{ stop(): Promise<void> }> {
  const { startInventoryThread } = await import('./thread.js');
  return startInventoryThread<RevocationThreadReport>('revocation-worker', config, onReport);
}
