/**
 * Starts `anvil server` in this process on 127.0.0.1 (plain HTTP, port 0, a temp data dir), for
 * protocol tests. Validation goes to a FakeValidator the test controls (the real validators have
 * their own tests), or, with `realValidation`, to the real validator.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Clock } from '../../src/lib/clock.js';
import { silentLogger, type Logger } from '../../src/lib/logger.js';
import type { Random } from '../../src/lib/random.js';
import { AcmeProblem } from '../../src/protocol/problems.js';
import { parseServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/main.js';
import type { CaaCheck, ValidationRequest, ValidationResult, Validator } from '../../src/server/validation/types.js';

export class FakeValidator implements Validator {
  /** Identifier values whose validation fails with incorrectResponse. */
  readonly failing = new Set<string>();
  readonly seen: ValidationRequest[] = [];
  /** Delay before answering, to observe the processing state. */
  delayMs = 0;
  /** Names whose CAA check refuses issuance. */
  readonly caaRefused = new Set<string>();

  async checkCaa(req: CaaCheck): Promise<AcmeProblem | null> {
    return this.caaRefused.has(req.name) ? new AcmeProblem('caa', `fake: CAA forbids ${req.name}`) : null;
  }

  async validate(req: ValidationRequest): Promise<ValidationResult> {
    this.seen.push(req);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failing.has(req.identifier.value)) {
      return { ok: false, problem: new AcmeProblem('incorrectResponse', `fake: refused ${req.identifier.value}`), records: [] };
    }
    return { ok: true, records: [{ hostname: req.identifier.value }] };
  }
}

export interface TestServer {
  srv: RunningServer;
  validator: FakeValidator;
  dataDir: string;
  directoryUrl: string;
  stop(): Promise<void>;
}

export async function startTestServer(
  extra: Record<string, unknown> = {},
  deps: { clock?: Clock; realValidation?: boolean; validator?: Validator; logger?: Logger; testingRandom?: Random } = {},
): Promise<TestServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'anvil-test-'));
  const config = parseServerConfig({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    tls: { enabled: false },
    log: { level: 'silent' },
    // No inventory sync or revocation thread in the many in-process servers (each would start a
    // worker and load its modules); the tests of the inventory and the e2e servers (bin/anvil.js) run them.
    inventory: { syncSeconds: 0, revocationCheckHours: 0 },
    ...extra,
  });
  const validator = new FakeValidator();
  const srv = await startServer(config, {
    logger: deps.logger ?? silentLogger(),
    ...(deps.realValidation ? {} : { validator: deps.validator ?? validator }),
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.testingRandom ? { testingRandom: deps.testingRandom } : {}),
  });
  return {
    srv,
    validator,
    dataDir,
    directoryUrl: srv.directoryUrl,
    async stop() {
      await srv.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
