/** Opens the configured store. SQLite today; PostgreSQL plugs in here. */
import { openSqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type StoreConfig = { type: 'sqlite'; path: string };

export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.type) {
    case 'sqlite':
      return openSqliteStore(config.path);
  }
}

export type { Store } from './store.js';
