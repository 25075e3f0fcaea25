/** Runs a real program (never through a shell) and collects its exit code and output. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout then stderr. */
  out: string;
}

export function runTool(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0, stdout, stderr, out: stdout + stderr }),
    );
  });
}

/**
 * A reason to skip a suite when a real peer is not installed (developer machines), or false.
 * Under CI (CI=true, as .ci/run sets it) nothing is skipped: a missing peer must fail loudly.
 */
export function missingTools(...tools: string[]): string | false {
  if (process.env.CI === 'true') return false;
  const path = (process.env.PATH ?? '').split(':');
  const missing = tools.filter((t) => !path.some((d) => existsSync(`${d}/${t}`)));
  return missing.length ? `${missing.join(', ')} not installed (bash .ci/run installs the Debian packages)` : false;
}
