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
import { serverMetrics } from './metrics-setup.js';
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
 * (src/inventory/sources.ts), and the one that checks the revocation of discovered certificates
 * (startRevocationChecks); null when both are off (`inventory.syncSeconds` and
 * `inventory.revocationCheckHours` 0). One per server: the single process, or the primary of
 * `--workers`.
 */
export async function startInventorySync(config: ServerConfig, log: Logger): Promise<{ stop(): Promise<void> } | null> {
  const revocation = await startRevocationChecks(config, log);
  if (config.inventory.syncSeconds <= 0) return revocation;
  const { startSyncThread } = await import('../inventory/sources.js');
  const { inventoryLocationOf } = await import('../inventory/inventory.js');
  const sync = await startSyncThread(
    { store: storeConfigOf(config), inventory: inventoryLocationOf(config.storage, path.resolve(config.dataDir)), intervalMs: config.inventory.syncSeconds * 1000 },
    (r) => {
      if (r.type === 'error') log.warn({ error: r.message }, 'inventory sync failed');
      else if (r.result?.failed) log.warn({ ...r.result }, 'inventory sync: some certificates of the CA could not be read; they are left out of the inventory');
      else log.debug({ ...r.result }, 'inventory synced from the CA');
    },
  );
  return revocation ? { stop: async () => void (await Promise.all([sync.stop(), revocation.stop()])) } : sync;
}

/**
 * The thread that asks OCSP responders and CRLs whether the inventory's discovered certificates
 * are revoked (src/inventory/revocation.ts): each certificate every `inventory.revocationCheckHours`
 * (null when 0). It looks for due certificates every 10 minutes (or that interval, if shorter),
 * the first time a minute after start, so that it never competes with a starting server.
 */
export async function startRevocationChecks(config: ServerConfig, log: Logger): Promise<{ stop(): Promise<void> } | null> {
  const inv = config.inventory;
  if (inv.revocationCheckHours <= 0) return null;
  const { startRevocationThread, withBundledRoots } = await import('../inventory/revocation.js');
  const { inventoryLocationOf } = await import('../inventory/inventory.js');
  // Our own CA's https URLs (OCSP, CRL, issuer) are trusted beside the public roots.
  const { readFile } = await import('node:fs/promises');
  const root = await readFile(path.join(caDirOf(config), 'root.pem'), 'utf8').catch(() => null);
  return startRevocationThread(
    {
      inventory: inventoryLocationOf(config.storage, path.resolve(config.dataDir)),
      maxAgeHours: inv.revocationCheckHours,
      wakeMs: Math.min(inv.revocationCheckHours * 3_600_000, 600_000),
      firstDelayMs: 60_000,
      options: {
        concurrency: 4,
        crlMaxBytes: inv.revocationCrlMaxMiB * 1024 * 1024,
        allowPrivateAddresses: inv.revocationPrivateAddresses,
        ...(root ? { ca: withBundledRoots(root) } : {}),
      },
    },
    (r) => {
      if (r.type === 'error') log.warn({ error: r.message }, 'inventory revocation checks failed');
      else if (r.summary.revoked || r.summary.released || r.summary.unknown || r.summary.errors.inconsistent) {
        log.info({ ...r.summary }, 'inventory revocation checks: revocations found, holds lifted, answers that contradict a recorded revocation, or statuses that could not be determined');
      }
      else log.debug({ ...r.summary }, 'inventory revocation checks done');
    },
  );
}

/**
 * The thread that sends the inventory's alerts (src/inventory/alerts.ts, docs/alerts.md) every
 * `alerts.intervalSeconds`; null when that is 0 or no channel is configured. A thread of its own
 * because each run assesses the whole inventory. Failures are logged, never fatal: a channel that
 * is misconfigured must not stop the CA.
 */
export async function startInventoryAlerts(config: ServerConfig, log: Logger): Promise<{ stop(): Promise<void> } | null> {
  const a = config.alerts;
  if (a.intervalSeconds <= 0 || a.channels.length === 0) return null;
  const { startAlertsThread, logAlertReport } = await import('../inventory/alerts.js');
  const { inventoryLocationOf } = await import('../inventory/inventory.js');
  return startAlertsThread({ inventory: inventoryLocationOf(config.storage, path.resolve(config.dataDir)), alerts: a, intervalMs: a.intervalSeconds * 1000 }, (r) => logAlertReport(log, r));
}

/** Every background job of the inventory (startInventorySync, startInventoryAlerts), as one. */
export async function startInventoryBackground(config: ServerConfig, log: Logger): Promise<{ stop(): Promise<void> } | null> {
  const jobs = [await startInventorySync(config, log), await startInventoryAlerts(config, log)].filter((j) => j !== null);
  return jobs.length ? { stop: async () => void (await Promise.all(jobs.map((j) => j.stop()))) } : null;
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
  // Prometheus metrics (docs/metrics.md): the authority reports to them, the API counts requests.
  const metrics = await serverMetrics(config, { logger: log, clock });
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
    ...(metrics ? { observer: metrics.acme } : {}),
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
    ...(metrics ? { requestMetrics: metrics.acme.requests } : {}),
  });

  await registerRevocationRoutes(app, {
    ...(crl ? { crl } : {}),
    ...(ocsp ? { ocsp } : {}),
    paths: { crl: P.crl, ocsp: P.ocsp },
    clock,
    crlMaxAgeSeconds: Math.round(rv.crl.refreshMinutes * 60),
  });
  await metrics?.attach(app);

  // The management API and the dashboard (src/web/api.ts), on by default: nothing is readable
  // without a token, and there is none until an operator creates one (anvil token create).
  let management: { close(): Promise<void> } | null = null;
  if (config.dashboard.enabled) {
    const { openInventory, inventoryLocationOf } = await import('../inventory/inventory.js');
    const { EstateView } = await import('../inventory/estate-view.js');
    const { registerManagement } = await import('../web/api.js');
    const { auditKeyPath, loadAuditKey } = await import('../web/audit.js');
    const auditKey = await loadAuditKey(auditKeyPath(caDir), { create: true });
    const inventory = await openInventory(inventoryLocationOf(config.storage, dataDir));
    management = inventory;
    await registerManagement(app, {
      inventory,
      view: new EstateView(inventory, { now: () => clock.now(), onError: (e) => log.warn({ err: e }, 'reading the inventory for the dashboard failed; tried again at the next request') }),
      auditKey,
      ca: { store, authority },
      logger: log,
      now: () => clock.now(),
      secureCookie: config.tls.enabled,
    });
  }

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
  const inventorySync = (await import('node:cluster')).default.isWorker ? null : await startInventoryBackground(config, log);

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
        await metrics?.close();
        await management?.close();
        await authority.close();
        await crl?.close();
        await store.close();
      })();
      return closing;
    },
  };
}
