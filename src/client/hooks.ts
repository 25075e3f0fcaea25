/**
 * Hooks: programs the user names, run around obtaining a lineage's certificate (docs/install.md).
 *
 * - `pre`: before the order (e.g. stop a web server that holds port 80);
 * - `post`: after the attempt, whatever its outcome (start it again);
 * - `deploy`: after a new version went live (reload the services that use it);
 * - `failure`: a renewal failed (the lineage's `notify` programs).
 *
 * SECURITY.md (client): a hook is an argument vector run without a shell, and everything it is told
 * (names, paths, serial, error text, some of which come from the CA) arrives in environment
 * variables, never in its command line, so no string from a server can reach a shell.
 */
import { spawn } from 'node:child_process';
import { AcmeClientError } from './errors.js';
import type { LineageFiles } from './store.js';

export interface HookContext {
  lineage: string;
  identifiers: { type: string; value: string }[];
  /** The ACME directory URL. */
  server: string;
  /** live/NAME: the directory whose files always hold the current version. */
  liveDir: string;
  /** The live version's files, or null (before the first version, or for `pre`). */
  files: LineageFiles | null;
  /** The live leaf certificate's serial number (hex), when known. */
  serial?: string;
  notAfter?: Date;
  event: 'pre' | 'post' | 'deploy' | 'failure';
  /** What went wrong (failure only). */
  error?: string;
}

/** Environment variables can hold neither NUL nor unbounded text. */
function envValue(s: string, max = 8192): string {
  const clean = s.replace(/\0/g, '');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/**
 * The variables a hook receives. ANVIL_* always (those without a value are left out), plus
 * certbot's RENEWED_LINEAGE and RENEWED_DOMAINS for `deploy`, so certbot deploy hooks work as they are.
 */
export function hookEnv(ctx: HookContext): Record<string, string> {
  const domains = ctx.identifiers.map((i) => i.value).join(' ');
  const env: Record<string, string> = {
    ANVIL_EVENT: ctx.event,
    ANVIL_LINEAGE: ctx.lineage,
    ANVIL_DOMAINS: domains,
    ANVIL_SERVER: ctx.server,
    ANVIL_LIVE_DIR: ctx.liveDir,
  };
  if (ctx.files) {
    env.ANVIL_CERT = ctx.files.cert;
    env.ANVIL_CHAIN = ctx.files.chain;
    env.ANVIL_FULLCHAIN = ctx.files.fullchain;
    if (ctx.files.privkey) env.ANVIL_KEY = ctx.files.privkey;
    env.ANVIL_VERSION = String(ctx.files.version);
  }
  if (ctx.serial) env.ANVIL_SERIAL = ctx.serial;
  if (ctx.notAfter && !Number.isNaN(ctx.notAfter.getTime())) env.ANVIL_NOT_AFTER = ctx.notAfter.toISOString();
  if (ctx.event === 'failure') env.ANVIL_ERROR = ctx.error ?? 'unknown error';
  if (ctx.event === 'deploy') {
    env.RENEWED_LINEAGE = ctx.liveDir;
    env.RENEWED_DOMAINS = domains;
  }
  for (const k of Object.keys(env)) env[k] = envValue(env[k]!);
  return env;
}

/** A command line for messages: argv joined, each element quoted when it needs it. */
export function formatCommand(argv: readonly string[]): string {
  return argv.map((a) => (a !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

const SHELL_SYNTAX = new Set(['|', ';', '&', '<', '>', '$', '`', '(', ')']);

/**
 * Splits a hook command line (`--deploy-hook "systemctl reload nginx"`) into an argument vector.
 * Whitespace separates words; '…' keeps everything literally; "…" too, except that \" and \\ stand
 * for " and \; outside quotes a backslash keeps the next character. Nothing is expanded: no
 * variables, globs, `~`, pipes or redirections. Unquoted shell syntax (| ; & < > $ ` ( )) is refused
 * rather than passed on as a surprising literal: write `sh -c '...'` when a shell is really wanted
 * (and read the lineage from the environment there, not from the command line).
 */
export function parseHookCommand(s: string): string[] {
  const out: string[] = [];
  let word: string | null = null;
  let i = 0;
  const bad = (msg: string) => new AcmeClientError('BAD_INPUT', `hook command ${JSON.stringify(s.slice(0, 200))}: ${msg}`);
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (word !== null) out.push(word);
      word = null;
      i++;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw bad('a single quote is not closed');
      word = (word ?? '') + s.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let w = '';
      let j = i + 1;
      for (;;) {
        if (j >= s.length) throw bad('a double quote is not closed');
        const d = s[j]!;
        if (d === '"') break;
        if (d === '\\' && (s[j + 1] === '"' || s[j + 1] === '\\')) {
          w += s[j + 1];
          j += 2;
        } else {
          w += d;
          j++;
        }
      }
      word = (word ?? '') + w;
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= s.length) throw bad('it ends with a backslash');
      word = (word ?? '') + s[i + 1];
      i += 2;
    } else if (SHELL_SYNTAX.has(c)) {
      throw bad(`"${c}" is shell syntax, and hooks run without a shell; quote it to pass it literally, or write sh -c '...'`);
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  if (word !== null) out.push(word);
  if (out.length === 0) throw bad('it is empty');
  return out;
}

export interface ProgramResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last lines of output (at most `keepLines` of each). */
  stdout: string[];
  stderr: string[];
  /** Set when the program could not be started (ENOENT, EACCES, ...). */
  spawnError?: Error;
}

export interface RunProgramOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Each line the program prints, as it prints it. */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Lines of each stream kept for the result (default 20). */
  keepLines?: number;
}

/**
 * Runs an argument vector without a shell, in its own process group, with a deadline; on timeout
 * the whole group is killed (TERM, then KILL after 3 s). Output is read line by line and only the
 * last lines kept, so a chatty program cannot fill memory. The result is known when the program
 * exits, even if a daemon it started still holds its stdout open.
 */
export function runProgram(argv: readonly string[], o: RunProgramOptions = {}): Promise<ProgramResult> {
  const keep = o.keepLines ?? 20;
  const timeoutMs = o.timeoutMs ?? 10 * 60_000;
  return new Promise((resolve) => {
    const result: ProgramResult = { code: null, signal: null, timedOut: false, stdout: [], stderr: [] };
    if (argv.length === 0 || !argv[0]) {
      resolve({ ...result, spawnError: new Error('empty command') });
      return;
    }
    const child = spawn(argv[0], argv.slice(1), { env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, shell: false });
    const partial = { stdout: '', stderr: '' };
    const line = (stream: 'stdout' | 'stderr', l: string) => {
      const kept = result[stream];
      kept.push(l.length > 2000 ? `${l.slice(0, 2000)}...` : l);
      if (kept.length > keep) kept.shift();
      o.onOutput?.(l, stream);
    };
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream].setEncoding('utf8');
      child[stream].on('data', (d: string) => {
        const text = partial[stream] + d;
        const lines = text.split('\n');
        partial[stream] = lines.pop()!;
        // A line without an end is cut, not kept growing.
        if (partial[stream].length > 64 * 1024) {
          line(stream, partial[stream]);
          partial[stream] = '';
        }
        for (const l of lines) line(stream, l.replace(/\r$/, ''));
      });
      child[stream].on('error', () => undefined);
    }
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      result.timedOut = true;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), 3000);
    }, timeoutMs);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      for (const stream of ['stdout', 'stderr'] as const) {
        if (partial[stream]) line(stream, partial[stream]);
        partial[stream] = '';
        child[stream].destroy();
      }
      resolve(result);
    };
    child.once('error', (e) => {
      result.spawnError = e;
      finish();
    });
    child.once('exit', (code, signal) => {
      result.code = code;
      result.signal = signal;
      // Give the pipes a moment to deliver what was written just before exit; a background
      // process that inherited them must not keep us waiting.
      const t = setTimeout(finish, 200);
      let open = 2;
      const closed = () => {
        if (--open === 0) {
          clearTimeout(t);
          finish();
        }
      };
      child.stdout.once('close', closed);
      child.stderr.once('close', closed);
    });
  });
}

/** "exit code 3", "killed by SIGTERM", "timed out after 600 s", "cannot be started: ...". */
export function describeOutcome(r: ProgramResult, timeoutMs: number): string {
  if (r.spawnError) return `cannot be started: ${r.spawnError.message}`;
  if (r.timedOut) return `timed out after ${Math.round(timeoutMs / 1000)} s and was killed`;
  if (r.signal) return `was killed by ${r.signal}`;
  return `exited with code ${r.code}`;
}

/** The last lines of a failed program's stderr (or stdout when stderr is empty), for a message. */
export function lastLines(r: ProgramResult, n = 5): string {
  const lines = (r.stderr.some((l) => l.trim()) ? r.stderr : r.stdout).filter((l) => l.trim()).slice(-n);
  return lines.length ? `:\n    ${lines.join('\n    ')}` : '';
}

/**
 * Runs hooks in order, each with the process environment plus `hookEnv(ctx)`. A non-zero exit, a
 * signal or the deadline (default 10 minutes each) is an AcmeClientError('HOOK') naming the hook,
 * how it ended and the last lines of its stderr. `pre` hooks stop at the first failure (the order
 * is not started); `post`, `deploy` and `failure` hooks all run, and one error names every failure.
 */
export async function runHooks(
  commands: string[][] | undefined,
  ctx: HookContext,
  opts: { timeoutMs?: number; onOutput?: (line: string) => void; env?: NodeJS.ProcessEnv } = {},
): Promise<void> {
  if (!commands?.length) return;
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const env = { ...(opts.env ?? process.env), ...hookEnv(ctx) };
  const failures: string[] = [];
  for (const argv of commands) {
    const name = `${ctx.event} hook "${formatCommand(argv)}"`;
    const r = await runProgram(argv, {
      env,
      timeoutMs,
      ...(opts.onOutput ? { onOutput: (l: string) => opts.onOutput!(`[${ctx.event} hook ${argv[0] ?? ''}] ${l}`) } : {}),
    });
    if (!r.spawnError && !r.timedOut && !r.signal && r.code === 0) continue;
    failures.push(`${name} ${describeOutcome(r, timeoutMs)}${lastLines(r)}`);
    if (ctx.event === 'pre') break;
  }
  if (failures.length === 1) throw new AcmeClientError('HOOK', `${ctx.lineage}: ${failures[0]}`);
  if (failures.length > 1) throw new AcmeClientError('HOOK', `${ctx.lineage}: ${failures.length} ${ctx.event} hooks failed:\n  ${failures.join('\n  ')}`);
}
