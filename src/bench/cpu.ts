/**
 * CPU time and memory of processes: this one (process.cpuUsage) and, on Linux, another one and
 * its descendants by pid (/proc/<pid>/stat and /proc/<pid>/status), so that the server's cost per
 * issuance can be reported when the generator can see the server process, `anvil server
 * --workers N` included (the primary and its workers are summed).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  ppid: number;
  /** Seconds of user plus system time of the process itself (utime + stime). */
  seconds: number;
  /** Seconds of its children that exited and were waited for (cutime + cstime). */
  childrenSeconds: number;
}

let ticks: number | undefined;

/** Clock ticks per second of /proc's times (`getconf CLK_TCK`, 100 on practically every Linux). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
      ticks = Number.isInteger(n) && n > 0 ? n : 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/**
 * Parses the text of /proc/<pid>/stat (proc(5)): ppid is field 4, utime, stime, cutime and cstime
 * fields 14 to 17. The command name (field 2) may contain spaces and parentheses, so fields are
 * counted after its last closing parenthesis.
 */
export function parseProcStat(text: string, clkTck: number): ProcStat {
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const [pid, ppid, utime, stime, cutime, cstime] = [Number.parseInt(text, 10), rest[1], rest[11], rest[12], rest[13], rest[14]].map(Number);
  if (close < 0 || ![pid, ppid, utime, stime, cutime, cstime].every((v) => Number.isFinite(v))) throw new Error('unexpected /proc/<pid>/stat format');
  return { pid: pid!, ppid: ppid!, seconds: (utime! + stime!) / clkTck, childrenSeconds: (cutime! + cstime!) / clkTck };
}

function readStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'), clockTicks());
  } catch {
    return undefined;
  }
}

/** The pids of `root` and of every live descendant, from one scan of /proc. */
export function processTree(root: number, all: readonly Pick<ProcStat, 'pid' | 'ppid'>[]): number[] {
  const children = new Map<number, number[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const out: number[] = [];
  const queue = [root];
  while (queue.length && out.length < 10_000) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

export interface TreeSample {
  /** CPU seconds of the process and its descendants, those that exited and were waited for included. */
  seconds: number;
  processes: number;
  /** Resident memory of the live processes, MiB. */
  rssMb: number | undefined;
}

/** CPU and memory of process `pid` and its descendants, or undefined when it cannot be read (not Linux, gone). */
export function processTreeSample(pid: number): TreeSample | undefined {
  const root = readStat(pid);
  if (!root) return undefined;
  let all: ProcStat[] = [root];
  try {
    all = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map((d) => readStat(Number(d)))
      .filter((s): s is ProcStat => s !== undefined);
  } catch {
    // /proc not listable: the root alone
  }
  const byPid = new Map(all.map((s) => [s.pid, s]));
  const tree = processTree(pid, all);
  let seconds = 0;
  let rss = 0;
  let rssKnown = true;
  for (const p of tree) {
    const s = byPid.get(p) ?? (p === pid ? root : undefined);
    if (!s) continue;
    seconds += s.seconds + s.childrenSeconds;
    const r = processRssMb(p);
    if (r === undefined) rssKnown = false;
    else rss += r;
  }
  return { seconds, processes: tree.length, rssMb: rssKnown ? Math.round(rss * 10) / 10 : undefined };
}

/** Resident set size of process `pid` in MiB (VmRSS of /proc/<pid>/status), or undefined. */
export function processRssMb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : undefined;
  } catch {
    return undefined;
  }
}

/** This process's CPU seconds (user plus system, all threads). */
export function ownCpu(): { seconds: number } {
  const u = process.cpuUsage();
  return { seconds: (u.user + u.system) / 1e6 };
}
