/** Opens the configured store: SQLite (embedded default) or PostgreSQL (shared by replicas). */
import { openPostgresStore } from './postgres.js';
import { openSqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type StoreConfig = { type: 'sqlite'; path: string } | { type: 'postgres'; url: string; poolSize?: number };

export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.type) {
    case 'sqlite':
      return openSqliteStore(config.path);
    case 'postgres':
      return openPostgresStore(config.url, { poolSize: config.poolSize });
  }
}

export type { Store } from './store.js';
