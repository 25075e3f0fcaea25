/**
 * `anvil install nginx`: points an nginx server block at a lineage's live files, checks and reloads
 * nginx, verifies over TLS, rolls back on failure (docs/install.md).
 */
import type { Command } from 'commander';

export function registerInstallCommand(_program: Command): void {
  // Filled in by the installation work of issue 4.
}
