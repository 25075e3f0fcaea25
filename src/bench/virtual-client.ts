/**
 * One virtual client: an ES256 account registered once, then complete issuances one after another
 * (RFC 8555 §7.4): newOrder, each authorization, its http-01 challenge answered by the shared
 * responder, polls until valid, finalize with a fresh key and CSR, polls while processing,
 * download, and the certificate check. Nonces come from the previous answer (§6.5), so a
 * newNonce is needed only at the start and after an answer without one. It is a GET (RFC 8555
 * §7.2 allows GET and HEAD): undici closes the connection after every HEAD.
 */
import { performance } from 'node:perf_hooks';
import type { AuthorizationJson, Directory, Identifier, OrderJson, ProblemJson } from '../protocol/types.js';
import { checkCertificate } from './certificate.js';
import { freshCsr } from './csr.js';
import { BenchError, BenchSetupError } from './errors.js';
import type { BenchHttp, BenchResponse } from './http.js';
import { Es256Signer } from './jws.js';
import type { Http01Responder } from './responder.js';
import type { PhaseStats } from './stats.js';

const BAD_NONCE = 'urn:ietf:params:acme:error:badNonce';
/** Attempts of one request, counting the first (badNonce, and 429/503 when Retry-After is honoured). */
const MAX_ATTEMPTS = 3;
/** With --honour-retry-after, longer Retry-After values are not waited out: the flow fails. */
export const MAX_RETRY_AFTER_SECONDS = 10;

export interface FlowSettings {
  http: BenchHttp;
  directory: Directory;
  responder: Http01Responder;
  /** The identifiers of every order. */
  identifiers: readonly Identifier[];
  /** sanAttribute(identifiers), computed once. */
  sanAttribute: Buffer;
  pollIntervalMs: number;
  honourRetryAfter: boolean;
  /** A flow that has not finished polling after this long fails with kind timeout. */
  flowTimeoutMs: number;
  /** Waits (polls, Retry-After); rejects at once when the run is stopped for good. */
  sleep: (ms: number) => Promise<void>;
}

function problemOf(r: BenchResponse, what: string): BenchError {
  if (/json/.test(r.contentType)) {
    try {
      const p = JSON.parse(r.text) as ProblemJson;
      if (p && typeof p.type === 'string') return new BenchError(p.type, `${what}: HTTP ${r.status} ${p.type}: ${p.detail ?? ''}`);
    } catch {
      // not JSON after all: reported below
    }
  }
  return new BenchError('badResponse', `${what}: HTTP ${r.status} without a problem document`);
}

function json<T>(r: BenchResponse, what: string): T {
  let v: unknown;
  try {
    v = JSON.parse(r.text);
  } catch {
    throw new BenchError('badResponse', `${what}: the answer is not JSON`);
  }
  if (typeof v !== 'object' || v === null) throw new BenchError('badResponse', `${what}: the answer is not a JSON object`);
  return v as T;
}

/** The reason an authorization is invalid: its failed challenge's problem, else a local kind. */
function authzFailure(a: AuthorizationJson, url: string): BenchError {
  const failed = Array.isArray(a.challenges) ? a.challenges.find((c) => c.error) : undefined;
  if (failed?.error && typeof failed.error.type === 'string') {
    return new BenchError(failed.error.type, `authorization ${url} is ${a.status}: ${failed.error.type}: ${failed.error.detail ?? ''}`);
  }
  return new BenchError('invalidAuthorization', `authorization ${url} is ${String(a.status)}`);
}

export class VirtualClient {
  readonly #s: FlowSettings;
  readonly #signer = Es256Signer.generate();
  #kid: string | undefined;
  #nonce: string | undefined;

  constructor(settings: FlowSettings) {
    this.#s = settings;
  }

  async #newNonce(stats: PhaseStats): Promise<string> {
    stats.requests++;
    stats.newNonces++;
    const r = await this.#s.http.request('GET', this.#s.directory.newNonce, undefined);
    if (!r.nonce) throw new BenchError('badResponse', `newNonce: HTTP ${r.status} without a Replay-Nonce`);
    return r.nonce;
  }

  /** A signed POST (payload null: POST-as-GET); answers of 400 and above become BenchErrors. */
  async #post(url: string, payload: unknown, stats: PhaseStats, what: string): Promise<BenchResponse> {
    for (let attempt = 1; ; attempt++) {
      const nonce = this.#nonce ?? (await this.#newNonce(stats));
      this.#nonce = undefined;
      const body = this.#signer.body(url, nonce, this.#kid ?? null, payload);
      stats.requests++;
      stats.signedPosts++;
      const r = await this.#s.http.request('POST', url, body);
      if (r.nonce) this.#nonce = r.nonce;
      if (r.status < 400) return r;
      const err = problemOf(r, what);
      if (attempt < MAX_ATTEMPTS) {
        // RFC 8555 §6.5: a client retries badNonce with the nonce the error carried.
        if (err.kind === BAD_NONCE) {
          stats.retries++;
          continue;
        }
        if (this.#s.honourRetryAfter && (r.status === 429 || r.status === 503) && r.retryAfter !== undefined && r.retryAfter <= MAX_RETRY_AFTER_SECONDS) {
          stats.retries++;
          await this.#s.sleep(r.retryAfter * 1000);
          continue;
        }
      }
      throw err;
    }
  }

  /** How long to wait before the next poll, after an answer that said `retryAfter`. */
  #wait(retryAfter: number | undefined): number {
    if (this.#s.honourRetryAfter && retryAfter !== undefined) return Math.min(retryAfter, MAX_RETRY_AFTER_SECONDS) * 1000;
    return this.#s.pollIntervalMs;
  }

  /** RFC 8555 §7.3: a new account for this client's key (once, before any flow). */
  async register(stats: PhaseStats): Promise<void> {
    let r: BenchResponse;
    try {
      r = await this.#post(this.#s.directory.newAccount, { termsOfServiceAgreed: true }, stats, 'newAccount');
    } catch (e) {
      if (!(e instanceof BenchError)) throw e;
      const hint = e.kind.endsWith(':externalAccountRequired') ? ' (anvil bench does not do external account binding)' : '';
      throw new BenchSetupError('ACCOUNT', `registering an account failed: ${e.message}${hint}`, { cause: e });
    }
    if ((r.status !== 201 && r.status !== 200) || !r.location) {
      throw new BenchSetupError('ACCOUNT', `newAccount answered HTTP ${r.status}${r.location ? '' : ' without a Location'}`);
    }
    this.#kid = r.location;
  }

  /** One complete issuance. Throws a BenchError saying why it failed. */
  async flow(stats: PhaseStats): Promise<void> {
    const s = this.#s;
    const deadline = performance.now() + s.flowTimeoutMs;
    const or = await this.#post(s.directory.newOrder, { identifiers: s.identifiers }, stats, 'newOrder');
    const order = json<OrderJson>(or, 'newOrder');
    const orderUrl = or.location;
    if (or.status !== 201 || !orderUrl || !Array.isArray(order.authorizations) || typeof order.finalize !== 'string') {
      throw new BenchError('badResponse', `newOrder: HTTP ${or.status}, expected 201 with a Location, authorizations and finalize`);
    }

    const pending: Array<{ url: string; token: string }> = [];
    try {
      let wait = s.pollIntervalMs;
      for (const url of order.authorizations) {
        const a = json<AuthorizationJson>(await this.#post(url, null, stats, 'authorization'), 'authorization');
        if (a.status === 'valid') {
          stats.authzReused++;
          continue;
        }
        if (a.status !== 'pending') throw authzFailure(a, url);
        const ch = Array.isArray(a.challenges) ? a.challenges.find((c) => c.type === 'http-01') : undefined;
        if (!ch || typeof ch.url !== 'string' || typeof ch.token !== 'string' || !/^[A-Za-z0-9_-]{16,}$/.test(ch.token)) {
          throw new BenchError('badResponse', `authorization ${url} offers no usable http-01 challenge`);
        }
        // RFC 8555 §8.1: the key authorization is the token, ".", and the account key's thumbprint.
        s.responder.set(ch.token, `${ch.token}.${this.#signer.thumbprint}`);
        pending.push({ url, token: ch.token });
        // RFC 8555 §7.5.1: an empty object says the challenge is ready to be validated.
        wait = this.#wait((await this.#post(ch.url, {}, stats, 'challenge')).retryAfter);
      }
      while (pending.length > 0) {
        if (performance.now() + wait > deadline) throw new BenchError('timeout', `authorizations still pending after ${s.flowTimeoutMs} ms`);
        await s.sleep(wait);
        for (let i = pending.length - 1; i >= 0; i--) {
          const p = pending[i]!;
          stats.polls++;
          const r = await this.#post(p.url, null, stats, 'authorization poll');
          const a = json<AuthorizationJson>(r, 'authorization poll');
          if (a.status === 'valid') {
            stats.authzValidated++;
            s.responder.delete(p.token);
            pending.splice(i, 1);
          } else if (a.status === 'pending') wait = this.#wait(r.retryAfter);
          else throw authzFailure(a, p.url);
        }
      }
    } finally {
      for (const p of pending) s.responder.delete(p.token);
    }

    const csr = freshCsr(s.sanAttribute);
    let fr = await this.#post(order.finalize, { csr: csr.der.toString('base64url') }, stats, 'finalize');
    let o = json<OrderJson>(fr, 'finalize');
    // RFC 8555 §7.4: the order may still be processing; poll it until it is valid or invalid.
    while (o.status === 'processing' || o.status === 'ready') {
      const wait = this.#wait(fr.retryAfter);
      if (performance.now() + wait > deadline) throw new BenchError('timeout', `the order is still ${o.status} after ${s.flowTimeoutMs} ms`);
      await s.sleep(wait);
      stats.polls++;
      fr = await this.#post(orderUrl, null, stats, 'order poll');
      o = json<OrderJson>(fr, 'order poll');
    }
    if (o.status !== 'valid' || typeof o.certificate !== 'string') {
      if (o.error && typeof o.error.type === 'string') throw new BenchError(o.error.type, `the order is ${o.status}: ${o.error.type}: ${o.error.detail ?? ''}`);
      throw new BenchError('invalidOrder', `the order is ${String(o.status)} after finalize${o.status === 'valid' ? ' but names no certificate' : ''}`);
    }
    const cr = await this.#post(o.certificate, null, stats, 'certificate download');
    checkCertificate(cr.text, { spki: csr.spki, identifiers: s.identifiers });
  }
}
