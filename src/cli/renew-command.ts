/**
 * `anvil renew`: renews every lineage that is due and exits; `anvil renew --daemon` keeps checking
 * (docs/renewal.md).
 */
import type { Command } from 'commander';

export function registerRenewCommand(_program: Command): void {
  // Filled in by the renewal work of issue 4.
}
