/**
 * Obtaining a certificate into a lineage of the store: key (new, reused, or the user's CSR), order,
 * challenges, checked chain, then the new version written and made live in one step. The lineage
 * is locked for the whole run; a failure at any point leaves the live version as it was.
 */
import type { X509Certificate } from 'node:crypto';
import type { Identifier } from '../../protocol/types.js';
import { signerSpki, type AcmeApi, type Order } from '../api.js';
import { AcmeClientError } from '../errors.js';
import { createCsr, generateCertKey, keyTypeOf, privateKeyPem, readPrivateKey, spkiOf, type CertKeyType, type CsrInfo } from '../keys.js';
import type { Solver } from '../solvers/types.js';
import { profileFor } from '../renewal/decide.js';
import { recordIssued, RenewalStateStore } from '../renewal/state.js';
import type { LineageConfig, LineageFiles, LineageStore } from '../store.js';
import { obtainCertificate, type Obtained } from './issue.js';

export interface IssueToLineageOptions {
  api: AcmeApi;
  store: LineageStore;
  /** Everything but the bookkeeping fields; saved as renewal/NAME.json once the certificate is live. */
  config: Omit<LineageConfig, 'version' | 'createdAt' | 'updatedAt'>;
  solvers: Solver[];
  /** A CSR the user brought (then no key is generated or stored). */
  csr?: CsrInfo;
  timeoutMs?: number;
  onStep?: (step: string) => void;
  /** RFC 9773 §5: certID of the certificate being replaced; dropped once if the CA refuses it. */
  replaces?: string;
  /**
   * Certificate profile to ask for. Default: the profile the config names for the CA of `api`
   * (`profile` for the lineage's server, `fallback[i].profile` for a fallback CA).
   */
  profile?: string;
  /**
   * Runs with the lock held, before anything else, given the live version: throw to give up
   * (a renewal checks that nobody renewed the lineage since it was planned).
   */
  precheck?: (current: LineageFiles | null) => Promise<void>;
  /**
   * Runs with the lock still held once the new version is live and recorded (deploy hooks,
   * installer checks that may roll the live version back). Its errors propagate.
   */
  afterSave?: (issued: IssuedLineage) => Promise<void>;
  /** Time source for the bookkeeping (tests). */
  now?: () => Date;
  /**
   * A renewal: `config` is the caller's earlier snapshot of renewal/NAME.json, so once the
   * certificate is live the file is read again (under the lock) and only what the renewal changes
   * is written: the identifiers when they came from the CSR, and `updatedAt`. Installers, hooks,
   * notify programs and anything else changed meanwhile (`anvil install`, an editor) stay as they
   * are on disk. Without it (`anvil issue`), `config` is written as given.
   */
  keepConfig?: boolean;
}

export interface IssuedLineage {
  files: LineageFiles;
  leaf: X509Certificate;
  chainPem: string;
  order: Order;
  /** True when the previous version's key was used again. */
  reusedKey: boolean;
  /** The profile asked for, if any. */
  profile?: string;
  replaces?: Obtained['replaces'];
  replacesError?: string;
}

/** 0 for the lineage's own server, i + 1 for fallback i, -1 for a CA the config does not name. */
export function caIndexOf(config: Pick<LineageConfig, 'server' | 'fallback'>, directoryUrl: string): number {
  const norm = (u: string) => {
    try {
      return new URL(u).href;
    } catch {
      return u;
    }
  };
  const d = norm(directoryUrl);
  if (norm(config.server) === d) return 0;
  const i = (config.fallback ?? []).findIndex((f) => norm(f.server) === d);
  return i < 0 ? -1 : i + 1;
}

export async function issueToLineage(o: IssueToLineageOptions): Promise<IssuedLineage> {
  const { store, config } = o;
  const now = o.now ?? (() => new Date());
  const release = await store.lock(config.name);
  try {
    if (o.precheck) await o.precheck(await store.current(config.name));
    const caIndex = caIndexOf(config, o.api.http.directoryUrl);
    const profile = o.profile ?? (caIndex >= 0 ? profileFor(config, caIndex) : undefined);
    let keyPem: string | null = null;
    let csrDer: Buffer;
    let spki: Buffer;
    let identifiers: Identifier[] = config.identifiers;
    let reusedKey = false;
    if (o.csr) {
      csrDer = o.csr.der;
      spki = o.csr.spki;
      identifiers = o.csr.identifiers;
    } else {
      const keyType = (config.keyType ?? 'ecdsa-p256') as CertKeyType;
      const previousPem = config.reuseKey ? await store.currentKeyPem(config.name) : null;
      let previous = previousPem ? readPrivateKey(previousPem, `the key of ${config.name}`) : null;
      // SECURITY.md (client): a live key that is the account key is refused even when a key type
      // change means it would not be reused: reuseKey says the user means to keep using it.
      if (previous && spkiOf(previous).equals(signerSpki(o.api.signer))) {
        throw new AcmeClientError('BAD_INPUT', 'the certificate key is the account key; use a key of its own for the certificate');
      }
      // The key is reused only while it is of the type the config asks for: a new key type in the
      // config would otherwise never reach the certificate (and renewal for it would loop).
      const previousType = previous ? (keyTypeOf(previous) ?? null) : null;
      if (previous && config.keyType && previousType !== config.keyType) {
        o.onStep?.(`the key of ${config.name} is ${previousType ?? 'of a type anvil does not make'}, not ${config.keyType} as renewal/${config.name}.json asks: generating a new ${config.keyType} key instead of reusing it`);
        previous = null;
      }
      const key = previous ?? (await generateCertKey(keyType));
      reusedKey = previous !== null;
      keyPem = previous ? previousPem : privateKeyPem(key);
      spki = spkiOf(key);
      csrDer = await createCsr(key, identifiers);
    }
    // SECURITY.md (client): the account key is never a certificate key (RFC 8555 §11.1).
    if (spki.equals(signerSpki(o.api.signer))) {
      throw new AcmeClientError('BAD_INPUT', 'the certificate key is the account key; use a key of its own for the certificate');
    }
    const got = await obtainCertificate(o.api, {
      identifiers,
      solvers: o.solvers,
      csrDer,
      keySpki: spki,
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.onStep ? { onStep: o.onStep } : {}),
      ...(o.replaces !== undefined ? { replaces: o.replaces } : {}),
      ...(profile !== undefined ? { profile } : {}),
    });
    o.onStep?.(`saving ${config.name}`);
    const files = await store.save(config.name, got.chainPem, keyPem);
    const at = now();
    const stamp = at.toISOString();
    if (o.keepConfig) {
      // What is on disk now, not the caller's snapshot: only the renewal's own changes go in.
      const onDisk = await store.readConfig(config.name).catch(() => null);
      if (onDisk && typeof onDisk === 'object' && !Array.isArray(onDisk)) {
        await store.writeConfig({ ...onDisk, name: config.name, ...(o.csr ? { identifiers } : {}), updatedAt: stamp });
      } else {
        o.onStep?.(`renewal/${config.name}.json is gone or unreadable now; not writing it again`);
      }
    } else {
      const prev = await store.readConfig(config.name);
      await store.writeConfig({ version: 1, ...config, identifiers, createdAt: prev?.createdAt ?? stamp, updatedAt: stamp });
    }
    // The renewal state learns what was obtained, when, from which CA and under which profile, so
    // that renewal counts the lifetime from now (not a backdated notBefore) and notices profile
    // changes. Best effort: the certificate is live already, and a missing state only means the
    // renewal falls back to the certificate's own dates.
    const states = new RenewalStateStore(store.root);
    await states
      .read(config.name)
      .then(({ state }) =>
        states.write(
          config.name,
          recordIssued(state, {
            serial: got.leaf.serialNumber,
            at: stamp,
            server: o.api.http.directoryUrl,
            caIndex: Math.max(caIndex, 0),
            ...(profile !== undefined ? { profile } : {}),
            ...(got.replaces === 'accepted' && o.replaces ? { replaced: o.replaces } : {}),
          }),
        ),
      )
      .catch(() => undefined);
    const result: IssuedLineage = {
      files,
      leaf: got.leaf,
      chainPem: got.chainPem,
      order: got.order,
      reusedKey,
      ...(profile !== undefined ? { profile } : {}),
      ...(got.replaces ? { replaces: got.replaces } : {}),
      ...(got.replacesError ? { replacesError: got.replacesError } : {}),
    };
    if (o.afterSave) await o.afterSave(result);
    return result;
  } finally {
    await release();
  }
}
