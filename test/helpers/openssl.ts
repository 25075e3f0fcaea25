/** Checks of issued certificates with openssl, the reference peer. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function splitChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((b) => `${b}\n`) ?? [];
}

/**
 * Verifies `chainPem` (leaf first) against the root with `openssl verify` and returns the leaf's
 * SANs as openssl prints them ("DNS:a.example", "IP Address:192.0.2.1"), sorted.
 */
export async function verifyChain(chainPem: string, rootPem: string): Promise<string[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-verify-'));
  try {
    const [leaf, ...rest] = splitChain(chainPem);
    if (!leaf) throw new Error('no certificate in chain');
    await writeFile(path.join(dir, 'leaf.pem'), leaf);
    await writeFile(path.join(dir, 'rest.pem'), rest.join('') || leaf);
    const root = rootPem.includes('BEGIN') ? rootPem : await readFile(rootPem, 'utf8');
    await writeFile(path.join(dir, 'root.pem'), root);
    const v = await run('openssl', ['verify', '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'rest.pem'), path.join(dir, 'leaf.pem')]);
    if (!/: OK\s*$/.test(v.stdout)) throw new Error(`openssl verify: ${v.stdout}${v.stderr}`);
    const t = await run('openssl', ['x509', '-in', path.join(dir, 'leaf.pem'), '-noout', '-ext', 'subjectAltName']);
    return t.stdout
      .split('\n')
      .slice(1)
      .join(',')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .sort();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `openssl x509 -noout -text` of one PEM certificate. */
export async function certificateText(pem: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-text-'));
  try {
    await writeFile(path.join(dir, 'cert.pem'), pem);
    return (await run('openssl', ['x509', '-in', path.join(dir, 'cert.pem'), '-noout', '-text'])).stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
