/**
 * Obtaining a certificate (RFC 8555 §7.4): order, solve each authorization with the first solver
 * that fits, finalize with the caller's CSR, download, and check what came back before anyone
 * installs it. Clean-up of every presented challenge runs in `finally`, each with its own timeout.
 */
import { X509Certificate } from 'node:crypto';
import type { AuthorizationJson, ChallengeJson, Identifier, ProblemJson } from '../../protocol/types.js';
import type { AcmeApi, Order } from '../api.js';
import { AcmeClientError, AcmeProblemError } from '../errors.js';
import { checkToken } from '../solvers/token.js';
import type { ChallengeInput, Solver } from '../solvers/types.js';

export interface ObtainOptions {
  identifiers: Identifier[];
  /** In order of preference. */
  solvers: Solver[];
  csrDer: Buffer;
  /** DER SubjectPublicKeyInfo of the CSR's key: the leaf must carry exactly this key. */
  keySpki: Buffer;
  timeoutMs?: number;
  cleanupTimeoutMs?: number;
  /** Progress, for a CLI to show. */
  onStep?: (step: string) => void;
  /** RFC 9773 §5: the certID of the certificate this one replaces (a renewal). */
  replaces?: string;
  /** draft-ietf-acme-profiles: the certificate profile to ask for. */
  profile?: string;
}

export interface Obtained {
  chainPem: string;
  order: Order;
  leaf: X509Certificate;
  /**
   * What became of `replaces`: sent and accepted, or dropped because the CA refused it
   * (`replacesError` says how). Undefined when none was asked for.
   */
  replaces?: 'accepted' | 'dropped';
  replacesError?: string;
}

/**
 * True when a newOrder that carried `replaces` is worth asking for once more without it: any
 * refusal of the request (a 4xx problem), since CAs word a refused `replaces` in many ways. RFC
 * 9773 §5 alreadyReplaced (an earlier attempt replaced it already); Anvil's 403 unauthorized (the
 * certificate belongs to another account: the lineage's account changed) and 404 (a certificate
 * this CA does not know: the CA was set up again, or the lineage moved to another CA); a CA that
 * does not understand the field. Not rateLimited (429) nor badNonce, which have their own handling
 * (the backoff, and AcmeHttp's own retry) and would only be made worse by a second request.
 */
export function isReplacesRefusal(e: unknown): e is AcmeProblemError {
  if (!(e instanceof AcmeProblemError)) return false;
  if (e.type === 'alreadyReplaced') return true;
  if (e.type === 'rateLimited' || e.type === 'badNonce' || e.status === 429) return false;
  return e.status >= 400 && e.status < 500;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, reject) => {
        t = setTimeout(() => reject(new AcmeClientError('TIMEOUT', `${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

function failure(az: AuthorizationJson): AcmeClientError {
  const err = az.challenges.find((c) => c.error)?.error as ProblemJson | undefined;
  if (err) {
    const e = new AcmeProblemError(err, err.status ?? 403, undefined, `authorization for ${az.identifier.value}`);
    e.identifier = az.identifier.value;
    return e;
  }
  return new AcmeClientError('BAD_RESPONSE', `the authorization for ${az.identifier.value} is ${az.status}`);
}

/** SAN entries of a certificate as sorted "dns:x" / "ip:y" strings (from node's text form). */
export function sanIdentifiers(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((e) => {
      if (e.startsWith('DNS:')) return `dns:${e.slice(4).toLowerCase()}`;
      if (e.startsWith('IP Address:')) return `ip:${new URL(`http://${e.slice(11).includes(':') ? `[${e.slice(11)}]` : e.slice(11)}/`).hostname.replace(/^\[|\]$/g, '')}`;
      return `other:${e}`;
    })
    .sort();
}

/** Checks a downloaded chain: leaf key and names as asked, each certificate issued by the next. */
export function checkChain(chainPem: string, identifiers: Identifier[], keySpki: Buffer): X509Certificate {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  let certs: X509Certificate[];
  try {
    certs = blocks.map((b) => new X509Certificate(b));
  } catch {
    throw new AcmeClientError('BAD_RESPONSE', 'the certificate chain does not parse');
  }
  const leaf = certs[0];
  if (!leaf) throw new AcmeClientError('BAD_RESPONSE', 'the certificate chain is empty');
  if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(keySpki)) {
    throw new AcmeClientError('BAD_RESPONSE', 'the certificate does not carry the key of the CSR; not installing it');
  }
  const want = identifiers.map((i) => `${i.type}:${i.value.toLowerCase()}`).sort();
  const got = sanIdentifiers(leaf);
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    throw new AcmeClientError('BAD_RESPONSE', `the certificate names ${got.join(', ')} instead of ${want.join(', ')}; not installing it`);
  }
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!certs[i]!.checkIssued(certs[i + 1]!) || !certs[i]!.verify(certs[i + 1]!.publicKey)) {
      throw new AcmeClientError('BAD_RESPONSE', `certificate ${i} of the chain is not signed by certificate ${i + 1}; not installing it`);
    }
  }
  return leaf;
}

export async function obtainCertificate(api: AcmeApi, o: ObtainOptions): Promise<Obtained> {
  const timeoutMs = o.timeoutMs ?? 300_000;
  const step = o.onStep ?? (() => undefined);
  step(`ordering ${o.identifiers.map((i) => i.value).join(', ')}${o.profile ? ` (profile ${o.profile})` : ''}`);
  const profile = o.profile !== undefined ? { profile: o.profile } : {};
  let order: Order;
  let replaces: Obtained['replaces'];
  let replacesError: string | undefined;
  if (o.replaces !== undefined) {
    try {
      order = await api.newOrder(o.identifiers, { ...profile, replaces: o.replaces });
      replaces = 'accepted';
    } catch (e) {
      // RFC 9773 §5: the order is asked for once more without "replaces", which is only a hint.
      if (!isReplacesRefusal(e)) throw e;
      replaces = 'dropped';
      replacesError = `${e.type}: ${e.detail}`;
      step(`the CA refused "replaces" (${replacesError}); ordering without it`);
      order = await api.newOrder(o.identifiers, profile);
    }
  } else {
    order = await api.newOrder(o.identifiers, profile);
  }
  const presented: Array<{ solver: Solver; ch: ChallengeInput }> = [];
  try {
    // Every challenge is presented before the CA is asked to look at any of them: a wildcard and
    // its base name share one TXT name, and a resolver that cached the name with one value would
    // otherwise make the second validation fail.
    const pending: Array<{ url: string; challenge: ChallengeJson }> = [];
    for (const url of order.body.authorizations) {
      const az = await api.getAuthorization(url);
      if (az.status === 'valid') continue;
      if (az.status !== 'pending') throw failure(az);
      // Unknown challenge types are ignored; the first solver that fits wins.
      const pick = o.solvers.map((s) => ({ s, c: az.challenges.find((c) => c.type === s.type) })).find((x) => x.c);
      if (!pick?.c) {
        throw new AcmeClientError('BAD_RESPONSE', `no configured solver fits ${az.identifier.value} (offered: ${az.challenges.map((c) => c.type).join(', ')})`);
      }
      const ch: ChallengeInput = {
        identifier: az.identifier,
        wildcard: az.wildcard === true,
        type: pick.c.type,
        token: checkToken(pick.c.token),
        keyAuthorization: await api.keyAuthorization(pick.c.token),
      };
      step(`${ch.type} for ${ch.wildcard ? '*.' : ''}${ch.identifier.value}`);
      presented.push({ solver: pick.s, ch });
      await pick.s.present(ch);
      pending.push({ url, challenge: pick.c });
    }
    // RFC 8555 §7.5.1: the client tells the server each challenge is ready, then polls.
    for (const p of pending) await api.respondChallenge(p.challenge);
    for (const p of pending) {
      const done = await api.waitAuthorization(p.url, timeoutMs);
      if (done.status !== 'valid') throw failure(done);
    }
  } finally {
    for (const { solver, ch } of presented) {
      await withTimeout(solver.cleanup(ch), o.cleanupTimeoutMs ?? 30_000, `clean-up of ${ch.type} for ${ch.identifier.value}`).catch(() => undefined);
    }
    for (const s of new Set(o.solvers)) await s.close?.().catch(() => undefined);
  }
  order = await api.waitOrder(order, timeoutMs);
  if (order.body.status !== 'ready') throw new AcmeClientError('BAD_RESPONSE', `the order is ${order.body.status}, not ready`);
  step('finalizing');
  order = await api.waitOrder(await api.finalize(order, o.csrDer), timeoutMs);
  if (order.body.status !== 'valid') throw new AcmeClientError('BAD_RESPONSE', `the order ended ${order.body.status}`);
  if (!order.body.certificate) throw new AcmeClientError('BAD_RESPONSE', 'the order is valid but names no certificate URL');
  step('downloading');
  const chainPem = await api.downloadCertificate(order.body.certificate);
  const leaf = checkChain(chainPem, o.identifiers, o.keySpki);
  return { chainPem, order, leaf, ...(replaces ? { replaces } : {}), ...(replacesError ? { replacesError } : {}) };
}
