#!/usr/bin/env node
// Runs the test suites with node:test (Node 20 has no glob support in --test, so we list files).
// Usage: node scripts/run-tests.mjs [unit|server|e2e|all] [more node --test flags]
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const suites = { unit: ['src'], server: ['test/server', 'test/contract'], e2e: ['test/e2e'] };
suites.all = [...suites.unit, ...suites.server, ...suites.e2e];

const [which = 'all', ...extra] = process.argv.slice(2);
if (!suites[which]) {
  console.error(`unknown suite "${which}"; use one of ${Object.keys(suites).join(', ')}`);
  process.exit(2);
}

async function find(dir) {
  const out = [];
  let entries = [];
  try {
    entries = await readdir(path.join(root, dir), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await find(p)));
    else if (e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = (await Promise.all(suites[which].map(find))).flat().sort();
const args = ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...extra, ...files];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
