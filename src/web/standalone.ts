/**
 * `anvil dashboard`: the management API and the dashboard without the ACME server, e.g. on an
 * internal address while the CA answers ACME on a public one. It reads the CA's store (accounts,
 * orders, revocations, EAB keys) but does not sign: revocations are refused here and made through
 * `anvil server`'s own /api/v1.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import path from 'node:path';
import { createLogger } from '../lib/logger.js';
import type { ServerConfig } from '../server/config.js';
import { caExists } from '../server/issuance/ca.js';
import { caDirOf, storeConfigOf } from '../server/main.js';
import { openStore } from '../storage/index.js';
import { EstateView } from '../inventory/estate-view.js';
import { inventoryLocationOf, openInventory } from '../inventory/inventory.js';
import { registerManagement } from './api.js';
import { auditKeyPath, loadAuditKey } from './audit.js';

export async function serveDashboard(config: ServerConfig, listen: { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const log = createLogger({ level: config.log.level });
  const inventory = await openInventory(inventoryLocationOf(config.storage, path.resolve(config.dataDir)));
  // Without a CA (a data directory used for the inventory only) there are no CA pages.
  const store = (await caExists(caDirOf(config))) ? await openStore(storeConfigOf(config)) : null;
  const app = Fastify({ loggerInstance: log, return503OnClosing: true }) as unknown as FastifyInstance;
  await registerManagement(app, {
    inventory,
    view: new EstateView(inventory, { now: () => new Date(), onError: (e) => log.warn({ err: e }, 'reading the inventory failed; tried again at the next request') }),
    auditKey: await loadAuditKey(auditKeyPath(caDirOf(config)), { create: true }),
    ...(store ? { ca: { store } } : {}),
    logger: log,
    now: () => new Date(),
    secureCookie: false,
  });
  app.get('/', async (_req, reply) => reply.redirect('/dashboard/'));
  await app.listen({ host: listen.host, port: listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}`,
    async close() {
      await app.close();
      await inventory.close();
      await store?.close();
    },
  };
}
