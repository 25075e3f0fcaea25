/**
 * The one place where the server's parts are built and wired: storage, CA, validator, authority,
 * HTTP API. Everything else receives its collaborators through constructors.
 */
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../lib/free-port.js';
import { X509Certificate } from '../lib/x509.js';
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../lib/clock.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { cryptoRandom, type Random } from '../lib/random.js';
import { openStore, type StoreConfig } from '../storage/index.js';
import type { Store } from '../storage/store.js';
import { buildApi, paths } from './api/app.js';
import { Authority } from './authority/authority.js';
import type { ServerConfig } from './config.js';
import { faultsActive } from './authority/testing-faults.js';
import { caExists, initCa, loadCa } from './issuance/ca.js';
import { Profiles } from './issuance/profiles.js';
import { CrlService } from './revocation/crl.js';
import { registerRevocationRoutes } from './api/revocation-routes.js';
import { OcspResponder } from './revocation/ocsp.js';
import { createValidator } from './validation/index.js';
import type { Validator } from './validation/types.js';

export interface RunningServer {
  directoryUrl: string;
  baseUrl: string;
  app: FastifyInstance;
  authority: Authority;
  store: Store;
  caDir: string;
  close(): Promise<void>;
}

export interface ServerDeps {
  logger?: Logger;
  clock?: Clock;
  random?: Random;
  /** Replaces the network validator (tests). */
  validator?: Validator;
  /** Draws for the test-only faults of config `testing` (tests make them deterministic); defaults to `random`. */
  testingRandom?: Random;
}

export function caDirOf(config: ServerConfig): string {
  return path.join(path.resolve(config.dataDir), 'ca');
}

/** The SQLite database file (relative paths are under dataDir); null when the store is PostgreSQL. */
export function dbPathOf(config: ServerConfig): string | null {
  return config.storage.type === 'sqlite' ? path.resolve(path.resolve(config.dataDir), config.storage.path) : null;
}

/** How long after its expiry a used nonce is still remembered (clock differences between replicas). */
const NONCE_PURGE_MARGIN_MS = 10 * 60_000;

/** What openStore needs, from the config's storage section. */
export function storeConfigOf(config: ServerConfig): StoreConfig {
  const s = config.storage;
  return s.type === 'sqlite' ? { type: 'sqlite', path: dbPathOf(config)! } : { type: 'postgres', url: s.url, poolSize: s.poolSize };
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '::') return 'localhost';
  return net.isIPv6(host) ? `[${host}]` : host;
}

/**
 * The thread that records the CA's issuances and revocations in the inventory
 * (src/inventory/sources.ts), or null when `inventory.syncSeconds` is 0. One per server: the
 * single process, or the primary of `--workers`.
 */
export async function startInventorySync(config: ServerConfig, log: Logger): Promise<{ stop(): Promise<void> } | null> {
  if (config.inventory.syncSeconds <= 0) return null;
  const { startSyncThread } = await import('../inventory/sources.js');
  const { inventoryLocationOf } = await import('../inventory/inventory.js');
  return startSyncThread(
    { store: storeConfigOf(config), inventory: inventoryLocationOf(config.storage, path.resolve(config.dataDir)), intervalMs: config.inventory.syncSeconds * 1000 },
    (r) => {
      if (r.type === 'error') log.warn({ error: r.message }, 'inventory sync failed; it is tried again at the next interval');
      else if (r.result?.failed) log.warn({ ...r.result }, 'inventory sync: some certificates of the CA could not be read; they are left out of the inventory');
      else log.debug({ ...r.result }, 'inventory synced from the CA');
    },
  );
}

export async function startServer(config: ServerConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const log = deps.logger ?? createLogger({ level: config.log.level });
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? cryptoRandom;
  const testingRandom = deps.testingRandom ?? random;
  const testing = config.testing;
  if (faultsActive(testing)) {
    log.warn(
      { testing },
      'TEST-ONLY FAULTS ARE ON (config "testing"): this server refuses valid nonces, fails requests and reuses authorizations on purpose. Never use this configuration in production.',
    );
  }
  const dataDir = path.resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });

  const caDir = caDirOf(config);
  if (!(await caExists(caDir))) {
    await initCa(caDir, config.ca);
    log.info({ caDir, keyAlgorithm: config.ca.keyAlgorithm }, 'created a new CA (root and intermediate)');
  }

  const port = config.listen.port === 0 ? await freePort(config.listen.host) : config.listen.port;
  const scheme = config.tls.enabled ? 'https' : 'http';
  const baseUrl = (config.baseUrl ?? `${scheme}://${hostForUrl(config.listen.host)}:${port}`).replace(/\/+$/, '');

  const profiles = new Profiles({
    lifetimeDays: config.issuance.lifetimeDays,
    clientAuth: config.issuance.clientAuth,
    profiles: config.issuance.profiles,
    defaultProfile: config.issuance.defaultProfile,
  });
  const P = paths();
  const ca = await loadCa(caDir, {
    issuerUrl: `${baseUrl}${P.issuer}`,
    ...(config.revocation.crl.enabled ? { crlUrl: `${baseUrl}${P.crl}` } : {}),
    ...(config.revocation.ocsp.enabled ? { ocspUrl: `${baseUrl}${P.ocsp}` } : {}),
    clock,
    random,
    backdateMs: config.issuance.backdateSeconds * 1000,
    allowEd25519: config.issuance.allowEd25519,
  });
  const store = await openStore(storeConfigOf(config));
  // Revocation status (RFC 5280 CRL, RFC 6960 OCSP), signed by the intermediate.
  const rv = config.revocation;
  const crl = rv.crl.enabled
    ? new CrlService({ store, issuer: ca, logger: log, clock, random, validityHours: rv.crl.validityHours, refreshMinutes: rv.crl.refreshMinutes })
    : undefined;
  const ocsp = rv.ocsp.enabled ? new OcspResponder({ store, issuer: ca, logger: log, clock, validityHours: rv.ocsp.validityHours }) : undefined;
  const { caa, ...validationConfig } = config.validation;
  const validator =
    deps.validator ??
    createValidator(
      { ...validationConfig, ...(caa.enabled ? { caa: { identities: [...(config.acme.caaIdentities ?? [])] } } : {}) },
      { logger: log },
    );
  const authority = new Authority({
    store,
    issuer: ca,
    validator,
    clock,
    random,
    logger: log,
    config: {
      ...config.acme,
      identifierPolicy: config.acme.identifierPolicy,
      profiles,
      renewalInfoRetryAfterSeconds: config.acme.renewalInfo.retryAfterSeconds,
      renewalInfoExplanationUrl: config.acme.renewalInfo.explanationUrl,
      validationConcurrency: config.validation.concurrency,
      caaRecheckAfterHours: config.validation.caa.recheckAfterHours,
      authzReusePercent: testing?.authzReusePercent,
    },
    accountUrl: (id) => baseUrl + paths().account(id),
    testingRandom,
    // A revocation signs a new CRL at once (OCSP answers from the store and needs nothing).
    ...(crl ? { onRevoked: async () => void (await crl.regenerate()) } : {}),
  });

  let https: { key: string; cert: string } | undefined;
  if (config.tls.enabled) {
    const tlsCert = await ca.issueServerCertificate([...config.tls.names], 30);
    https = { key: tlsCert.keyPem, cert: tlsCert.certPem };
  }

  const intermediateDer = Buffer.from(new X509Certificate(ca.intermediatePem).rawData);
  const app = await buildApi({
    authority,
    logger: log,
    baseUrl: () => baseUrl,
    meta: {
      ...(config.acme.termsOfService ? { termsOfService: config.acme.termsOfService } : {}),
      ...(config.acme.website ? { website: config.acme.website } : {}),
      ...(config.acme.caaIdentities ? { caaIdentities: [...config.acme.caaIdentities] } : {}),
      externalAccountRequired: config.acme.externalAccountRequired,
      profiles: profiles.descriptions(),
    },
    maxBodyBytes: config.acme.maxBodyBytes,
    eabKey: async (kid) => {
      const k = await store.getEabKey(kid);
      if (!k) return null;
      return Buffer.from(k.hmacKey, 'base64url');
    },
    rootPem: ca.rootPem,
    intermediateDer,
    trustProxy: config.trustProxy,
    ...(https ? { https } : {}),
    health: async () => ({ certificates: await store.countCertificates() }),
    ...(testing ? { testing: { faults: testing, random: testingRandom } } : {}),
  });

  await registerRevocationRoutes(app, {
    ...(crl ? { crl } : {}),
    ...(ocsp ? { ocsp } : {}),
    paths: { crl: P.crl, ocsp: P.ocsp },
    clock,
    crlMaxAgeSeconds: Math.round(rv.crl.refreshMinutes * 60),
  });

  await app.listen({ host: config.listen.host, port });
  crl?.start();
  const recovered = await authority.recover();

  // Background upkeep: used nonces go some time after they expired, and issuances or validations
  // that stalled (a signing error, a replica that died) are picked up again. The margin covers
  // clock differences between replicas: a replica whose clock is behind the purging one's still
  // takes a nonce for unexpired for that long, and must still find it used.
  const purge = setInterval(() => {
    store
      .purgeExpired(new Date(clock.now().getTime() - NONCE_PURGE_MARGIN_MS))
      .catch((e: unknown) => log.warn({ err: e }, 'purging expired nonces failed'));
    authority.recover({ olderThanMs: 120_000 }).catch((e: unknown) => log.warn({ err: e }, 'recovery sweep failed'));
  }, 60_000);
  purge.unref();

  // The inventory follows the CA in a thread of its own. With --workers the primary runs it.
  const inventorySync = (await import('node:cluster')).default.isWorker ? null : await startInventorySync(config, log);

  const directoryUrl = `${baseUrl}/directory`;
  log.info({ directory: directoryUrl, listen: `${config.listen.host}:${port}`, recovered }, 'anvil server started');

  let closing: Promise<void> | undefined;
  return {
    directoryUrl,
    baseUrl,
    app,
    authority,
    store,
    caDir,
    close() {
      closing ??= (async () => {
        clearInterval(purge);
        await inventorySync?.stop();
        await app.close();
        await authority.close();
        await crl?.close();
        await store.close();
      })();
      return closing;
    },
  };
}
