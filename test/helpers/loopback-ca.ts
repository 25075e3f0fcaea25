/**
 * A real `anvil server` that validates http-01 on loopback (a free port, loopback addresses
 * allowed), with a temporary directory holding an Anvil client store: what the end-to-end tests of
 * the client's own commands against our CA need, without DNS. `issue(name)` runs `anvil issue` for
 * 127.0.0.1 with the built-in http-01 server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ANVIL_BIN, startAnvil, type StartedAnvil } from './anvil-process.js';
import { freePort } from './ports.js';
import { runTool, type RunResult } from './run.js';

export interface LoopbackCa {
  anvil: StartedAnvil;
  httpPort: number;
  /** The temporary directory; the store is `<dir>/store`. */
  dir: string;
  store: string;
  /** `anvil <args> --store <store>` (a client command against that store). */
  cli(args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** `anvil issue -d 127.0.0.1 --cert-name <name>` against the CA, over the built-in http-01 server. */
  issue(name: string): Promise<RunResult>;
  cleanup(): Promise<void>;
}

/** `config` is merged into the server config; its `validation` too (httpPort and loopback are set here). */
export async function startLoopbackCa(prefix: string, config: Record<string, unknown> = {}): Promise<LoopbackCa> {
  const httpPort = await freePort();
  const validation = { ...((config.validation as Record<string, unknown> | undefined) ?? {}), httpPort, addressPolicy: { allowLoopback: true } };
  const anvil = await startAnvil({ ...config, validation });
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const store = path.join(dir, 'store');
  const cli = (args: string[], env: Record<string, string> = {}) => runTool(process.execPath, [ANVIL_BIN, ...args, '--store', store], env, 120_000);
  return {
    anvil,
    httpPort,
    dir,
    store,
    cli,
    issue: (name) =>
      cli(['issue', '-d', '127.0.0.1', '--cert-name', name, '--http', '--http-port', String(httpPort), '--http-address', '127.0.0.1', '--agree-tos', '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem]),
    async cleanup() {
      await anvil.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
