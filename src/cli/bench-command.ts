/**
 * `anvil bench`: a load generator for any ACME server (docs/benchmarks.md).
 */
import type { Command } from 'commander';

export function registerBenchCommand(_program: Command): void {
  // Filled in by the benchmark work of issue 5.
}
