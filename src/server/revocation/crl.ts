/**
 * Certificate revocation lists (RFC 5280 §5): one full CRL v2 for the intermediate, signed by it,
 * kept in the store so that every replica serves the same one and CRL numbers only grow.
 *
 * The CRL is built with @peculiar/asn1-x509's schema classes rather than X509CrlGenerator: the
 * generator checks every entry against all earlier ones (20,000 entries took 23 s), this is linear.
 */
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  CertificateList,
  CRLNumber,
  CRLReason,
  Extension,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  KeyIdentifier,
  Name,
  RevokedCertificate,
  TBSCertList,
  Time,
  Version,
} from '@peculiar/asn1-x509';
import { systemClock, type Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { cryptoRandom, type Random } from '../../lib/random.js';
import type { CrlRecord, RevokedEntry, Store } from '../../storage/store.js';
import { floorToSecond, issuerIdentity, serialOctets, signatureAlgorithm, signDer, toArrayBuffer, type IssuerIdentity, type RevocationIssuer } from './issuer.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** How long a replica trusts its copy of the stored CRL before reading the store again. */
const STORE_RECHECK_MS = 5_000;
/** Compare-and-set attempts before a regeneration gives up (another replica keeps winning). */
const CAS_ATTEMPTS = 5;

export type CrlStore = Pick<Store, 'listRevoked' | 'getCrl' | 'putCrl'>;

export interface CrlInput {
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: readonly RevokedEntry[];
}

function extension(extnID: string, value: unknown): Extension {
  return new Extension({ extnID, critical: false, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** DER of a CRL v2 signed by `issuer`. */
export function buildCrl(issuer: RevocationIssuer, identity: IssuerIdentity, input: CrlInput): Buffer {
  const algorithm = signatureAlgorithm(issuer);
  const tbs = new TBSCertList({
    // RFC 5280 §5.1.2.1: v2, since the CRL has extensions.
    version: Version.v2,
    signature: algorithm,
    // §5.1.2.3: the issuer is the signing CA's subject, byte for byte.
    issuer: AsnConvert.parse(identity.nameDer, Name),
    thisUpdate: new Time(input.thisUpdate),
    // §5.1.2.5: conforming CRL issuers MUST include nextUpdate.
    nextUpdate: new Time(input.nextUpdate),
    crlExtensions: [
      // §5.2.1 and §5.2.3: CRLs carry the authority key identifier and a CRL number.
      extension(id_ce_authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(toArrayBuffer(issuer.authorityKeyId)) })),
      extension(id_ce_cRLNumber, new CRLNumber(input.number)),
    ],
  });
  if (input.entries.length) {
    tbs.revokedCertificates = input.entries.map((e) => {
      const entry = new RevokedCertificate({ userCertificate: serialOctets(e.serial), revocationDate: new Time(e.revokedAt) });
      // §5.3.1: "the reason code unspecified (0) SHOULD be absent" rather than present as 0.
      if (e.reason) entry.crlEntryExtensions = [extension(id_ce_cRLReasons, new CRLReason(e.reason))];
      return entry;
    });
  }
  const tbsDer = AsnConvert.serialize(tbs);
  const crl = new CertificateList({ tbsCertList: tbs, signatureAlgorithm: algorithm, signature: signDer(issuer, tbsDer) });
  return Buffer.from(AsnConvert.serialize(crl));
}

export interface CrlServiceOptions {
  store: CrlStore;
  issuer: RevocationIssuer;
  logger: Logger;
  clock?: Clock;
  /** Jitter between compare-and-set attempts. */
  random?: Random;
  /** nextUpdate is this long after thisUpdate. */
  validityHours: number;
  /** A new CRL is signed this often even without revocations. */
  refreshMinutes: number;
  /**
   * Most entries one CRL may hold. Beyond, regeneration fails loudly (the previous CRL stays)
   * rather than publishing a CRL that leaves revoked certificates out. TODO(#4): partitioned CRLs.
   */
  maxEntries?: number;
}

/**
 * The CRL of one issuer. `current()` serves the stored CRL and signs a new one when there is none
 * or less than half of its validity is left; `regenerate()` always signs a new one (after every
 * revocation and on the refresh timer). Several replicas sharing one database coordinate through
 * the store's compare-and-set on the CRL number, so numbers never go backwards or repeat.
 *
 * Concurrency: calls within one process are serialised; a `regenerate()` that arrives while one is
 * running waits for it and then runs once more (for all callers that arrived meanwhile), so every
 * caller gets a CRL built after its call began, i.e. one that includes a revocation committed before.
 */
export class CrlService {
  readonly #store: CrlStore;
  readonly #issuer: RevocationIssuer;
  readonly #identity: IssuerIdentity;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #validityMs: number;
  readonly #refreshMs: number;
  readonly #maxEntries: number;
  #cached: CrlRecord | null = null;
  #cachedAt = 0;
  #running: Promise<CrlRecord> | null = null;
  #queued: Promise<CrlRecord> | null = null;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: CrlServiceOptions) {
    this.#store = o.store;
    this.#issuer = o.issuer;
    this.#identity = issuerIdentity(o.issuer);
    this.#log = o.logger;
    this.#clock = o.clock ?? systemClock;
    this.#random = o.random ?? cryptoRandom;
    this.#validityMs = o.validityHours * HOUR;
    this.#refreshMs = o.refreshMinutes * MINUTE;
    this.#maxEntries = o.maxEntries ?? 1_000_000;
  }

  /** Starts the refresh timer (unref'd) and makes sure a fresh CRL exists, in the background. */
  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      this.refresh().catch((e: unknown) => this.#log.error({ err: e }, 'scheduled CRL regeneration failed; the previous CRL is still served'));
    }, this.#refreshMs);
    this.#timer.unref();
    this.current().catch((e: unknown) => this.#log.error({ err: e }, 'signing the first CRL failed; it is retried on the next request and on schedule'));
  }

  /** Stops the timer and waits for a regeneration in progress. Later calls to `regenerate()` do nothing new. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.allSettled([this.#running, this.#queued]);
  }

  /** The CRL to serve: the stored one, signed anew if missing or past half its validity. */
  async current(): Promise<CrlRecord> {
    const now = this.#clock.now().getTime();
    let rec = this.#cached;
    if (!rec || now - this.#cachedAt > STORE_RECHECK_MS) rec = await this.#load();
    if (rec && rec.nextUpdate.getTime() - now >= this.#validityMs / 2) return rec;
    try {
      return await this.regenerate();
    } catch (e) {
      // An older CRL that has not reached nextUpdate is still correct to serve; an expired one is not.
      if (rec && rec.nextUpdate.getTime() > now) {
        this.#log.error({ err: e }, 'CRL regeneration failed; serving the previous CRL until its nextUpdate');
        return rec;
      }
      throw e;
    }
  }

  /** Signs and stores a new CRL (after a revocation, on schedule). */
  regenerate(): Promise<CrlRecord> {
    if (this.#queued) return this.#queued;
    if (this.#running) {
      const after = this.#running.catch(() => undefined).then(() => {
        this.#queued = null;
        return this.#start();
      });
      this.#queued = after;
      return after;
    }
    return this.#start();
  }

  /** The timer's tick: signs a new CRL unless another replica did so within half a refresh period. */
  async refresh(): Promise<CrlRecord> {
    const rec = await this.#load();
    if (rec && this.#clock.now().getTime() - rec.thisUpdate.getTime() < this.#refreshMs / 2 && rec.nextUpdate.getTime() - this.#clock.now().getTime() >= this.#validityMs / 2) {
      return rec;
    }
    return this.regenerate();
  }

  #start(): Promise<CrlRecord> {
    const p = this.#regenerateOnce().finally(() => {
      if (this.#running === p) this.#running = null;
    });
    this.#running = p;
    return p;
  }

  async #load(): Promise<CrlRecord | null> {
    const rec = await this.#store.getCrl(this.#identity.storeId);
    if (rec && (!this.#cached || rec.number >= this.#cached.number)) {
      this.#cached = rec;
      this.#cachedAt = this.#clock.now().getTime();
    }
    return this.#cached;
  }

  async #regenerateOnce(): Promise<CrlRecord> {
    if (this.#closed && this.#cached) return this.#cached;
    for (let attempt = 1; ; attempt++) {
      const prev = await this.#store.getCrl(this.#identity.storeId);
      const now = floorToSecond(this.#clock.now());
      // Never earlier than the CRL it replaces, even if this replica's clock is behind.
      const thisUpdate = prev && prev.thisUpdate > now ? prev.thisUpdate : now;
      const nextUpdate = new Date(thisUpdate.getTime() + this.#validityMs);
      const entries = await this.#store.listRevoked(now, this.#maxEntries + 1);
      if (entries.length > this.#maxEntries) {
        throw new Error(`more than ${this.#maxEntries} unexpired revoked certificates: one CRL cannot hold them (revocation.crl)`);
      }
      const number = (prev?.number ?? 0) + 1;
      const der = buildCrl(this.#issuer, this.#identity, { number, thisUpdate, nextUpdate, entries });
      const rec: CrlRecord = { issuer: this.#identity.storeId, number, thisUpdate, nextUpdate, der };
      // RFC 5280 §5.2.3: "CRL issuers MUST NOT issue a CRL with a number lower than a previous one."
      if (await this.#store.putCrl(rec, prev?.number ?? null)) {
        this.#cached = rec;
        this.#cachedAt = this.#clock.now().getTime();
        this.#log.info({ crlNumber: number, entries: entries.length, nextUpdate }, 'signed a new CRL');
        return rec;
      }
      // Another replica stored a CRL meanwhile; it may predate our revocation, so build again.
      if (attempt >= CAS_ATTEMPTS) throw new Error(`could not store a new CRL after ${attempt} attempts: other writers kept replacing it`);
      await new Promise((r) => setTimeout(r, 10 + (this.#random.bytes(1)[0]! % 40) * attempt));
    }
  }
}
