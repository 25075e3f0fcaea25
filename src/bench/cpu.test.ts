/** CPU readers: /proc/<pid>/stat parsing, and reading this very process. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownCpu, parseProcStat, processCpu, processRssMb } from './cpu.js';

test('utime and stime are read after the command name, even one with spaces and parentheses', () => {
  // Fields 14 and 15 (utime, stime) are 250 and 50 ticks.
  const line = '4242 (node (my) server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 11 0 100 1000000 5000 18446744073709551615';
  assert.deepEqual(parseProcStat(line, 100), { seconds: 3 });
  assert.deepEqual(parseProcStat(line, 250), { seconds: 1.2 });
  assert.throws(() => parseProcStat('garbage', 100), /unexpected/);
});

test('this process can be read by pid on Linux, and an absent pid gives undefined', { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
  const before = processCpu(process.pid);
  assert.ok(before && before.seconds >= 0);
  assert.ok((processRssMb(process.pid) ?? 0) > 1);
  assert.equal(processCpu(2 ** 22 + 7), undefined);
  assert.ok(ownCpu().seconds > 0);
});
