/**
 * Where a test's inventories live: a fresh SQLite file in a temporary directory, or a fresh
 * PostgreSQL database (test/helpers/postgres.ts), each call a new one; all of them removed when the
 * test file ends.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import type { InventoryLocation } from '../../src/inventory/inventory.js';
import { createDatabase, dropDatabases } from './postgres.js';

export function inventoryLocations(prefix: string): { sqlite(): Promise<InventoryLocation>; postgres(): Promise<InventoryLocation> } {
  const dirs: string[] = [];
  after(async () => {
    await dropDatabases();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  return {
    async sqlite() {
      const d = await mkdtemp(path.join(os.tmpdir(), prefix));
      dirs.push(d);
      return { type: 'sqlite', path: path.join(d, 'inventory.db') };
    },
    postgres: async () => ({ type: 'postgres', url: await createDatabase() }),
  };
}
