/** CPU readers: /proc/<pid>/stat parsing, process trees, and reading this very process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { ownCpu, parseProcStat, processTree, processTreeSample } from './cpu.js';

test('pid, ppid and the four times are read after the command name, even one with spaces and parentheses', () => {
  // Fields 14 to 17 (utime, stime, cutime, cstime) are 250, 50, 20 and 10 ticks.
  const line = '4242 (node (my) server) S 17 4242 4242 0 -1 4194560 1000 0 0 0 250 50 20 10 20 0 11 0 100 1000000 5000 18446744073709551615';
  assert.deepEqual(parseProcStat(line, 100), { pid: 4242, ppid: 17, seconds: 3, childrenSeconds: 0.3 });
  assert.deepEqual(parseProcStat(line, 250).seconds, 1.2);
  assert.throws(() => parseProcStat('garbage', 100), /unexpected/);
});

test('a process tree holds the root and every descendant, not its siblings', () => {
  const all = [
    { pid: 1, ppid: 0 },
    { pid: 10, ppid: 1 },
    { pid: 11, ppid: 10 },
    { pid: 12, ppid: 10 },
    { pid: 13, ppid: 12 },
    { pid: 20, ppid: 1 },
  ];
  assert.deepEqual(processTree(10, all).sort(), [10, 11, 12, 13]);
  assert.deepEqual(processTree(99, all), [99]);
});

test('this process and a busy child are read by pid on Linux; an absent pid gives undefined', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  const child = spawn(process.execPath, ['-e', 'const t = Date.now(); while (Date.now() - t < 400); setTimeout(() => {}, 5000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 600));
    const tree = processTreeSample(process.pid);
    assert.ok(tree && tree.processes >= 2, `${tree?.processes}`);
    assert.ok(tree.seconds >= ownCpu().seconds * 0.5);
    assert.ok((tree.rssMb ?? 0) > 1);
    const alone = processTreeSample(child.pid!);
    assert.ok(alone && alone.processes === 1 && alone.seconds >= 0.2, `${alone?.seconds}`);
    assert.equal(processTreeSample(2 ** 22 + 7), undefined);
  } finally {
    child.kill();
  }
});
