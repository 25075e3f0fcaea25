/**
 * CPU time and memory of processes: this one (process.cpuUsage) and, on Linux, another one by pid
 * (/proc/<pid>/stat and /proc/<pid>/status), so that the server's cost per issuance can be
 * reported when the generator can see the server process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface CpuSample {
  /** Seconds of user plus system time. */
  seconds: number;
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
 * Parses the text of /proc/<pid>/stat: utime and stime are fields 14 and 15 (proc(5)). The
 * command name (field 2) may contain spaces and parentheses, so fields are counted after its
 * closing parenthesis.
 */
export function parseProcStat(text: string, clkTck: number): CpuSample {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('unexpected /proc/<pid>/stat format');
  return { seconds: (utime + stime) / clkTck };
}

/** CPU seconds of process `pid` so far, or undefined when it cannot be read (not Linux, gone, not ours). */
export function processCpu(pid: number): CpuSample | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'), clockTicks());
  } catch {
    return undefined;
  }
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

/** This process's CPU seconds (user plus system). */
export function ownCpu(): CpuSample {
  const u = process.cpuUsage();
  return { seconds: (u.user + u.system) / 1e6 };
}
