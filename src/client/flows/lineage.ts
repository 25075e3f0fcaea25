/**
 * Obtaining a certificate into a lineage of the store: key (new, reused, or the user's CSR), order,
 * challenges, checked chain, then the new version written and made live in one step. The lineage
 * is locked for the whole run; a failure at any point leaves the live version as it was.
 */
import type { X509Certificate } from 'node:crypto';
import type { Identifier } from '../../protocol/types.js';
import { signerSpki, type AcmeApi, type Order } from '../api.js';
import { AcmeClientError } from '../errors.js';
import { createCsr, generateCertKey, privateKeyPem, readPrivateKey, spkiOf, type CertKeyType, type CsrInfo } from '../keys.js';
import type { Solver } from '../solvers/types.js';
import type { LineageConfig, LineageFiles, LineageStore } from '../store.js';
import { obtainCertificate } from './issue.js';

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
}

export interface IssuedLineage {
  files: LineageFiles;
  leaf: X509Certificate;
  chainPem: string;
  order: Order;
  /** True when the previous version's key was used again. */
  reusedKey: boolean;
}

export async function issueToLineage(o: IssueToLineageOptions): Promise<IssuedLineage> {
  const { store, config } = o;
  const release = await store.lock(config.name);
  try {
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
      const previous = config.reuseKey ? await store.currentKeyPem(config.name) : null;
      const key = previous ? readPrivateKey(previous, `the key of ${config.name}`) : await generateCertKey((config.keyType ?? 'ecdsa-p256') as CertKeyType);
      reusedKey = previous !== null;
      keyPem = previous ?? privateKeyPem(key);
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
    });
    o.onStep?.(`saving ${config.name}`);
    const files = await store.save(config.name, got.chainPem, keyPem);
    const prev = await store.readConfig(config.name);
    const now = new Date().toISOString();
    await store.writeConfig({ version: 1, ...config, identifiers, createdAt: prev?.createdAt ?? now, updatedAt: now });
    return { files, leaf: got.leaf, chainPem: got.chainPem, order: got.order, reusedKey };
  } finally {
    await release();
  }
}
