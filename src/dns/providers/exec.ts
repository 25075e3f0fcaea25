/**
 * The "exec" DNS provider: runs an external program, with lego's exec contract, so scripts
 * written for lego work unchanged:
 *
 *   PROGRAM present _acme-challenge.example.com. VALUE
 *   PROGRAM cleanup _acme-challenge.example.com. VALUE
 *
 * (the name with its trailing dot). The same data is also in the environment, ANVIL_DNS_FQDN
 * (with the trailing dot), ANVIL_DNS_VALUE and ANVIL_DNS_DOMAIN, on top of Anvil's own
 * environment (as lego passes its own).
 *
 * The program runs with an argument array, never through a shell, so nothing in a name or a value
 * can be interpreted. It is killed (its whole process group) when it exceeds the timeout. A
 * non-zero exit is a failure that quotes the last lines of its stderr.
 *
 * lego's RAW mode (`PROGRAM present -- DOMAIN TOKEN KEYAUTH`) is not supported: a DnsProvider
 * receives the TXT value, not the challenge token and key authorization it was derived from
 * (src/dns/provider.ts), and widening that contract for one mode would hand key authorizations
 * to every provider. EXEC_MODE=RAW is therefore a configuration error that says so.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { z } from 'zod';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../provider.js';
import { parseSeconds, type DnsProviderFactory } from '../registry.js';

const NAME = 'exec';

export const execSchema = z.strictObject({
  /** The program: an absolute or relative path, or a bare name looked up in PATH. */
  path: z.string().min(1),
  /** lego's EXEC_MODE: only the default mode (unset, "" or "none"). */
  mode: z
    .string()
    .optional()
    .refine((m) => m === undefined || ['', 'none', 'default'].includes(m.toLowerCase()), {
      message: 'RAW mode is not supported: DNS providers receive the TXT value, not the token and key authorization; leave the mode unset',
    }),
  timeoutMs: z.coerce.number().int().min(100).max(3_600_000).default(120_000),
});

export type ExecConfig = z.output<typeof execSchema>;

/** How long a killed program gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000;
const STDERR_KEEP = 8192;
const STDERR_LINES = 5;

function lastLines(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.replace(/[\u0000-\u001f\u007f]/g, ' ').trim())
    .filter(Boolean)
    .slice(-STDERR_LINES)
    .map((l) => (l.length > 300 ? `${l.slice(0, 300)}...` : l));
  return lines.join(' | ');
}

class ExecProvider implements DnsProvider {
  readonly name = NAME;
  readonly #path: string;
  readonly #timeoutMs: number;

  constructor(config: ExecConfig) {
    this.#path = config.path;
    this.#timeoutMs = config.timeoutMs;
  }

  createTxtRecord(r: TxtRecord): Promise<void> {
    return this.#run('present', r);
  }

  deleteTxtRecord(r: TxtRecord): Promise<void> {
    return this.#run('cleanup', r);
  }

  #run(action: 'present' | 'cleanup', r: TxtRecord): Promise<void> {
    const fqdn = `${r.fqdn.replace(/\.$/, '')}.`;
    const what = `${this.#path} ${action} ${fqdn}`;
    return new Promise<void>((resolve, reject) => {
      let stderr = '';
      let settled = false;
      let timedOut = false;
      const child = spawn(this.#path, [action, fqdn, r.value], {
        shell: false,
        // Its own process group, so that a timeout kills what the program started too.
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, ANVIL_DNS_FQDN: fqdn, ANVIL_DNS_VALUE: r.value, ANVIL_DNS_DOMAIN: r.domain },
      });
      const killGroup = (signal: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, signal);
        } catch {
          /* already gone */
        }
      };
      const settle = (err?: DnsProviderError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup('SIGTERM');
        setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS).unref();
      }, this.#timeoutMs);
      child.stderr!.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
      });
      child.on('error', (e: NodeJS.ErrnoException) => settle(new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `cannot run ${this.#path}: ${e.code ?? e.message}`, { cause: e })));
      // 'close' waits for stderr to end, which a left-over grandchild could hold open: 'exit'
      // plus a short grace period bounds that.
      child.on('exit', (code, signal) => {
        const report = () => {
          const tail = lastLines(stderr);
          const stderrPart = tail ? `: ${tail}` : '';
          if (timedOut) settle(new DnsProviderError(NAME, 'DNS_PROVIDER_TIMEOUT', `${what} did not finish within ${this.#timeoutMs} ms and was killed${stderrPart}`));
          else if (code === 0) settle();
          else if (code !== null) settle(new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `${what} exited with code ${code}${stderrPart}`));
          else settle(new DnsProviderError(NAME, 'DNS_PROVIDER_FAILED', `${what} was killed by ${signal}${stderrPart}`));
        };
        if (child.stderr!.readableEnded) report();
        else {
          const t = setTimeout(report, 500);
          child.stderr!.once('end', () => {
            clearTimeout(t);
            report();
          });
        }
      });
    });
  }
}

/** Builds the provider; a path with a slash must name an executable file now, not at the first challenge. */
export async function createExecProvider(config: ExecConfig): Promise<DnsProvider> {
  if (config.path.includes('/')) {
    try {
      if (!(await stat(config.path)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOTFILE' });
      await access(config.path, constants.X_OK);
    } catch (e) {
      throw new DnsProviderError(NAME, 'DNS_PROVIDER_CONFIG', `path: ${config.path} is not an executable file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  return new ExecProvider(config);
}

export const execFactory: DnsProviderFactory<ExecConfig> = {
  name: NAME,
  description: "Runs a program with lego's exec arguments: present|cleanup FQDN. VALUE",
  schema: execSchema,
  env: { EXEC_PATH: 'path', EXEC_MODE: 'mode', EXEC_TIMEOUT: 'timeoutMs' },
  envParse: { EXEC_TIMEOUT: parseSeconds },
  create: (config) => createExecProvider(config),
};
