/** Runs the real `anvil server` binary (bin/anvil.js, built by `npm run build`) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ANVIL_BIN = path.join(REPO, 'bin/anvil.js');

export interface AnvilProcess {
  proc: ChildProcess;
  directoryUrl: string;
  dataDir: string;
  rootPem: string;
  dbPath: string;
  configFile: string;
  /** Root for clients: env vars that make certbot, lego, python and curl trust it. */
  trustEnv: Record<string, string>;
  stderr(): string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
  /** Starts the server again on the same config and data (after stop or kill9). */
  restart(): Promise<void>;
}

export function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once('exit', () => r()));
}

async function launch(configFile: string, log: { text: string }): Promise<{ proc: ChildProcess; directoryUrl: string }> {
  const proc = spawn(process.execPath, [ANVIL_BIN, 'server', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr!.on('data', (d: Buffer) => {
    log.text = (log.text + d.toString()).slice(-50_000);
  });
  const directoryUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`anvil did not start within 30 s:\n${log.text}`));
    }, 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ACME directory: (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`anvil exited with ${code}:\n${log.text}`));
    });
  });
  return { proc, directoryUrl };
}

/** `config` is merged over a test default: loopback, port 0, loopback validation allowed. */
export async function startAnvil(config: Record<string, unknown> = {}): Promise<StartedAnvil> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-e2e-'));
  const dataDir = path.join(dir, 'data');
  const configFile = path.join(dir, 'anvil.json');
  const validation = { addressPolicy: { allowLoopback: true }, ...((config.validation as object) ?? {}) };
  await writeFile(
    configFile,
    JSON.stringify({ dataDir, listen: { host: '127.0.0.1', port: 0 }, log: { level: 'info' }, ...config, validation }, null, 2),
  );
  const log = { text: '' };
  let { proc, directoryUrl } = await launch(configFile, log);
  const rootPem = path.join(dataDir, 'ca', 'root.pem');
  const a: AnvilProcess = {
    get proc() {
      return proc;
    },
    get directoryUrl() {
      return directoryUrl;
    },
    dataDir,
    rootPem,
    dbPath: path.join(dataDir, 'anvil.db'),
    configFile,
    trustEnv: { REQUESTS_CA_BUNDLE: rootPem, LEGO_CA_CERTIFICATES: rootPem, SSL_CERT_FILE: rootPem, CURL_CA_BUNDLE: rootPem },
    stderr: () => log.text,
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited(proc);
      clearTimeout(t);
    },
    async kill9() {
      proc.kill('SIGKILL');
      await exited(proc);
    },
    async restart() {
      ({ proc, directoryUrl } = await launch(configFile, log));
    },
  };
  return Object.assign(a, {
    async cleanup() {
      await a.stop();
      await rm(dir, { recursive: true, force: true });
    },
  });
}

export type StartedAnvil = AnvilProcess & { cleanup(): Promise<void> };
