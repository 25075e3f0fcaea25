/**
 * The client's store on disk: ACME accounts and certificate lineages.
 *
 * ```
 * <root>/accounts/<server>/<account>/key.pem        account key, 0600
 * <root>/accounts/<server>/<account>/account.json   account URL, contacts, ...
 * <root>/archive/NAME/{cert,chain,fullchain,privkey}N.pem   every version ever obtained
 * <root>/live/NAME/{cert,chain,fullchain,privkey}.pem       the newest version
 * <root>/renewal/NAME.json                           how the lineage was obtained
 * ```
 *
 * `live/NAME` is a symbolic link to `live/.NAME.vN/`, a directory of links into the archive. A new
 * version is written completely (every file fsynced) before one rename() switches `live/NAME` to it,
 * so a reader (nginx, a crash, a power cut) sees the previous four files or the new four, never a
 * certificate with another version's key. Keys are 0600 in 0700 directories.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Identifier } from '../protocol/types.js';
import { fsyncDir, writeFileAtomic } from '../lib/atomic-file.js';
import { AcmeClientError } from './errors.js';
import type { AccountSigner } from './http.js';
import type { CertKeyType } from './keys.js';

/** /etc/anvil as root, $XDG_DATA_HOME/anvil or ~/.local/share/anvil otherwise; ANVIL_HOME overrides both. */
export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ANVIL_HOME) return path.resolve(env.ANVIL_HOME);
  if (process.getuid?.() === 0) return '/etc/anvil';
  const data = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'anvil');
}

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Checks a lineage or account name: a safe single path segment. */
export function checkName(name: string, what = 'certificate name'): string {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new AcmeClientError('BAD_INPUT', `${JSON.stringify(name.slice(0, 80))} is not a usable ${what}: use letters, digits, ".", "_" and "-" (at most 128)`);
  }
  return name;
}

/** The default lineage name for a set of identifiers: the first one, "*" written "_" and ":" "_". */
export function defaultLineageName(identifiers: Identifier[]): string {
  const first = identifiers[0];
  if (!first) throw new AcmeClientError('BAD_INPUT', 'no names given');
  return checkName(first.value.replace(/\*/g, '_').replace(/:/g, '_'));
}

/** A directory name for an ACME server: host, port and path of its directory URL. */
export function serverDirName(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  const p = u.pathname.replace(/^\/+|\/+$/g, '');
  return `${u.hostname.replace(/[[\]:]/g, '_')}${u.port ? `_${u.port}` : ''}${p ? `_${p}` : ''}`.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200);
}

async function ensureDir(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
}

async function readJson<T>(file: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AcmeClientError('STORE', `cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new AcmeClientError('STORE', `${file} is not valid JSON; fix or remove it`);
  }
}

// ---------------------------------------------------------------------------------------------
// Accounts

export interface StoredAccount {
  /** The account's name in the store ("default" unless chosen). */
  name: string;
  directoryUrl: string;
  url: string;
  alg: AccountSigner['alg'];
  contact: string[];
  termsOfServiceAgreed: boolean;
  eabKid?: string;
  createdAt: string;
}

export class AccountStore {
  constructor(readonly root: string) {}

  dir(directoryUrl: string, name: string): string {
    return path.join(this.root, 'accounts', serverDirName(directoryUrl), checkName(name, 'account name'));
  }

  async list(): Promise<Array<StoredAccount & { dir: string }>> {
    const out: Array<StoredAccount & { dir: string }> = [];
    const base = path.join(this.root, 'accounts');
    for (const server of await readdir(base).catch(() => [] as string[])) {
      for (const name of await readdir(path.join(base, server)).catch(() => [] as string[])) {
        const dir = path.join(base, server, name);
        const a = await readJson<StoredAccount>(path.join(dir, 'account.json'));
        if (a) out.push({ ...a, dir });
      }
    }
    return out;
  }

  async load(directoryUrl: string, name: string): Promise<{ account: StoredAccount | null; keyPem: string | null; nextKeyPem: string | null }> {
    const dir = this.dir(directoryUrl, name);
    const account = await readJson<StoredAccount>(path.join(dir, 'account.json'));
    const keyPem = await readFile(path.join(dir, 'key.pem'), 'utf8').catch(() => null);
    const nextKeyPem = await readFile(path.join(dir, 'key.next.pem'), 'utf8').catch(() => null);
    return { account, keyPem, nextKeyPem };
  }

  /** Saves the key first (0600, never overwritten), then the account record. */
  async save(a: StoredAccount, keyPem?: string): Promise<void> {
    const dir = this.dir(a.directoryUrl, a.name);
    await ensureDir(dir, 0o700);
    if (keyPem !== undefined) await writeFileAtomic(path.join(dir, 'key.pem'), keyPem, { mode: 0o600 });
    await writeFileAtomic(path.join(dir, 'account.json'), `${JSON.stringify(a, null, 2)}\n`, { mode: 0o644 });
  }

  /** Key rollover, step 1: the new key is on disk before the server hears of it. */
  async stageNextKey(directoryUrl: string, name: string, keyPem: string): Promise<void> {
    await writeFileAtomic(path.join(this.dir(directoryUrl, name), 'key.next.pem'), keyPem, { mode: 0o600 });
  }

  /** Key rollover, step 2 (after the server accepted it), or recovery of an interrupted one. */
  async promoteNextKey(directoryUrl: string, name: string): Promise<void> {
    const dir = this.dir(directoryUrl, name);
    await rename(path.join(dir, 'key.next.pem'), path.join(dir, 'key.pem'));
    await fsyncDir(dir);
  }

  async dropNextKey(directoryUrl: string, name: string): Promise<void> {
    await rm(path.join(this.dir(directoryUrl, name), 'key.next.pem'), { force: true });
  }

  /** Marks an account deactivated: the files stay, renamed, so nothing is used by mistake. */
  async retire(directoryUrl: string, name: string): Promise<string> {
    const dir = this.dir(directoryUrl, name);
    const to = `${dir}.deactivated-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(dir, to);
    return to;
  }
}

// ---------------------------------------------------------------------------------------------
// Lineages

export type SolverConfig =
  | { type: 'http'; host?: string; port?: number }
  | { type: 'webroot'; path: string }
  | { type: 'tls-alpn'; host?: string; port?: number }
  | {
      type: 'dns';
      provider: string;
      /** The provider's JSON config file (secrets stay there or in the environment, never here). */
      configFile?: string;
      resolvers?: string[];
      propagationTimeoutMs?: number;
      nameserverPort?: number;
      authoritative?: Record<string, string[]>;
      skipPropagationCheck?: boolean;
    };

/** renewal/NAME.json: everything needed to obtain the lineage's next version without the user. */
export interface LineageConfig {
  version: 1;
  name: string;
  /** The ACME directory URL. */
  server: string;
  /** Account name in the account store. */
  account: string;
  identifiers: Identifier[];
  /** null when the user brought a CSR. */
  keyType: CertKeyType | null;
  reuseKey: boolean;
  /** Absolute path of the CSR the user brought, if any. */
  csrFile?: string;
  solver: SolverConfig;
  /**
   * Programs (argument vectors, never shell strings) run around a renewal: `pre` before the order,
   * `post` after it whatever the outcome, `deploy` after a new version went live (src/client/hooks.ts).
   */
  hooks?: { pre?: string[][]; post?: string[][]; deploy?: string[][] };
  /** Certificate profile asked for in newOrder (draft-ietf-acme-profiles), if any. */
  profile?: string;
  /**
   * Other CAs to try, in order, after repeated failures at `server` (src/client/renewal). Each has
   * its own account in the account store.
   */
  fallback?: Array<{ server: string; account: string; caBundle?: string; profile?: string }>;
  /** Where the lineage is installed; re-verified after each renewal (src/client/install). */
  installers?: InstallerConfig[];
  /** Programs run when a renewal of this lineage fails (argument vectors; env as for hooks). */
  notify?: string[][];
  /** Extra trusted roots (PEM file) for a private CA. */
  caBundle?: string;
  createdAt: string;
  updatedAt: string;
}

/** An installation of a lineage (written by `anvil install`). */
export interface InstallerConfig {
  type: 'nginx';
  /** The nginx config file holding the server block. */
  conf: string;
  /** The server block's server_name (to pick the block when the file has several). */
  serverName?: string;
  /** host:port to connect to after a reload, to check the new certificate is served. */
  verify?: string;
  /** SNI name sent when verifying (default: the lineage's first DNS name). */
  sni?: string;
  /** nginx binary (default: nginx on PATH). */
  nginx?: string;
  /** Argument vectors: the config test and the reload (defaults: nginx -t, nginx -s reload). */
  test?: string[];
  reload?: string[];
}

export interface LineageFiles {
  version: number;
  cert: string;
  chain: string;
  fullchain: string;
  /** Absent when the user brought a CSR (the key is theirs). */
  privkey: string | null;
}

const KINDS = ['cert', 'chain', 'fullchain', 'privkey'] as const;

export class LineageStore {
  constructor(readonly root: string) {}

  get archiveDir(): string {
    return path.join(this.root, 'archive');
  }
  get liveDir(): string {
    return path.join(this.root, 'live');
  }
  configFile(name: string): string {
    return path.join(this.root, 'renewal', `${checkName(name)}.json`);
  }

  async names(): Promise<string[]> {
    const files = await readdir(path.join(this.root, 'renewal')).catch(() => [] as string[]);
    return files.filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5)).sort();
  }

  async readConfig(name: string): Promise<LineageConfig | null> {
    return readJson<LineageConfig>(this.configFile(name));
  }

  async writeConfig(cfg: LineageConfig): Promise<void> {
    const file = this.configFile(cfg.name);
    await ensureDir(path.dirname(file), 0o755);
    await writeFileAtomic(file, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o644 });
  }

  /** The version live/NAME points at, with absolute paths through live/, or null. */
  async current(name: string): Promise<LineageFiles | null> {
    let target: string;
    try {
      target = await readlink(path.join(this.liveDir, checkName(name)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new AcmeClientError('STORE', `${path.join(this.liveDir, name)} is not a link made by anvil: ${(e as Error).message}`);
    }
    const m = /^\.(.+)\.v(\d+)$/.exec(target);
    if (!m || m[1] !== name) throw new AcmeClientError('STORE', `${path.join(this.liveDir, name)} points at ${target}, not at a version made by anvil`);
    const live = path.join(this.liveDir, name);
    const hasKey = await stat(path.join(live, 'privkey.pem')).then(
      () => true,
      () => false,
    );
    return {
      version: Number(m[2]),
      cert: path.join(live, 'cert.pem'),
      chain: path.join(live, 'chain.pem'),
      fullchain: path.join(live, 'fullchain.pem'),
      privkey: hasKey ? path.join(live, 'privkey.pem') : null,
    };
  }

  /** Archived versions of a lineage (complete or not), highest first. */
  async versions(name: string): Promise<number[]> {
    const files = await readdir(path.join(this.archiveDir, checkName(name))).catch(() => [] as string[]);
    const ns = new Set<number>();
    for (const f of files) {
      const m = /^(?:cert|chain|fullchain|privkey)(\d+)\.pem$/.exec(f);
      if (m) ns.add(Number(m[1]));
    }
    return [...ns].sort((a, b) => b - a);
  }

  /**
   * Writes a new version and makes it live. `privateKeyPem` null: no key file (a CSR the user
   * brought). The order of steps is what makes a crash harmless: archive files first (fsynced),
   * then the version's link directory, then one atomic rename of live/NAME.
   */
  async save(name: string, chainPem: string, privateKeyPem: string | null): Promise<LineageFiles> {
    checkName(name);
    const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw new AcmeClientError('BAD_RESPONSE', 'no certificate to save');
    const content: Record<(typeof KINDS)[number], string | null> = {
      cert: `${blocks[0]}\n`,
      chain: blocks.length > 1 ? `${blocks.slice(1).join('\n')}\n` : '',
      fullchain: `${blocks.join('\n')}\n`,
      privkey: privateKeyPem,
    };
    const archive = path.join(this.archiveDir, name);
    await ensureDir(this.archiveDir, 0o700);
    await ensureDir(archive, 0o700);
    await ensureDir(this.liveDir, 0o700);
    // A version number never used before, even by a run that crashed half-way.
    const n = ((await this.versions(name))[0] ?? 0) + 1;
    for (const kind of KINDS) {
      const data = content[kind];
      if (data === null) continue;
      await writeFileAtomic(path.join(archive, `${kind}${n}.pem`), data, { mode: kind === 'privkey' ? 0o600 : 0o644, exclusive: true });
    }
    const vdir = path.join(this.liveDir, `.${name}.v${n}`);
    await rm(vdir, { recursive: true, force: true });
    await mkdir(vdir, { mode: 0o700 });
    for (const kind of KINDS) {
      if (content[kind] === null) continue;
      await symlink(path.join('..', '..', 'archive', name, `${kind}${n}.pem`), path.join(vdir, `${kind}.pem`));
    }
    await fsyncDir(vdir);
    const tmp = path.join(this.liveDir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    await symlink(`.${name}.v${n}`, tmp);
    const live = path.join(this.liveDir, name);
    try {
      const st = await stat(live).catch(() => null);
      if (st && !(await readlink(live).catch(() => null))) {
        throw new AcmeClientError('STORE', `${live} exists and is not a link made by anvil; move it away`);
      }
      await rename(tmp, live);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fsyncDir(this.liveDir);
    // Link directories of older versions are no longer reachable; the archive keeps their files.
    for (const f of await readdir(this.liveDir)) {
      const m = /^\.(.+)\.v(\d+)$/.exec(f);
      if (m && m[1] === name && Number(m[2]) !== n) await rm(path.join(this.liveDir, f), { recursive: true, force: true });
    }
    return (await this.current(name))!;
  }

  /** The private key of the live version (for key reuse and revocation by key), or null. */
  async currentKeyPem(name: string): Promise<string | null> {
    const cur = await this.current(name);
    if (!cur?.privkey) return null;
    return readFile(cur.privkey, 'utf8');
  }

  /** The lock file of a lineage (see lock()); a stale one left by a crash may be removed by hand. */
  lockFile(name: string): string {
    return path.join(this.root, 'locks', `${checkName(name)}.lock`);
  }

  /**
   * An exclusive lock on a lineage for one process (O_EXCL file holding the pid). A lock left by a
   * process that no longer runs is taken over. A lock file holding this process's own pid counts
   * as held only while this process really holds it (`heldLocks`): in a container anvil is often
   * PID 1 again after a SIGKILL, and would otherwise wait for itself forever.
   */
  async lock(name: string): Promise<() => Promise<void>> {
    const file = this.lockFile(name);
    await ensureDir(path.dirname(file), 0o700);
    const key = path.resolve(file);
    for (let attempt = 0; attempt < 2; attempt++) {
      // Another holder in this very process (another LineageStore on the same root, say).
      if (heldLocks.has(key)) throw new AcmeClientError('LOCKED', `this process (pid ${process.pid}) is already working on ${name} (lock file ${file}); try again when it has finished`);
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new AcmeClientError('STORE', `cannot lock ${name}: ${(e as Error).message}`);
        const text = (await readFile(file, 'utf8').catch(() => '')).trim();
        const pid = Number(text);
        let alive = false;
        if (heldLocks.has(key)) alive = true;
        else if (pid === process.pid) {
          // Our own pid, but this process does not hold it: a previous process with our pid (a
          // container's PID 1 before a SIGKILL) left it behind.
          alive = false;
        } else if (text === '') {
          // Created an instant ago by a process that has not written its pid yet.
          const st = await stat(file).catch(() => null);
          alive = st !== null && Date.now() - st.mtimeMs < 10_000;
        } else if (Number.isInteger(pid) && pid > 0) {
          try {
            process.kill(pid, 0);
            alive = true;
          } catch (err) {
            alive = (err as NodeJS.ErrnoException).code === 'EPERM';
          }
        }
        if (alive) {
          const who = heldLocks.has(key) ? `this process (pid ${process.pid})` : `another anvil process (pid ${text || 'not written yet'})`;
          throw new AcmeClientError('LOCKED', `${who} is working on ${name} (lock file ${file}); try again when it has finished`);
        }
        await rm(file, { force: true });
        continue;
      }
      heldLocks.add(key);
      try {
        await fh.writeFile(String(process.pid));
      } catch (e) {
        heldLocks.delete(key);
        await rm(file, { force: true }).catch(() => undefined);
        throw new AcmeClientError('STORE', `cannot lock ${name}: ${(e as Error).message}`);
      } finally {
        await fh.close().catch(() => undefined);
      }
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        try {
          await rm(file, { force: true });
        } finally {
          heldLocks.delete(key);
        }
      };
    }
    throw new AcmeClientError('LOCKED', `cannot take the lock on ${name} (lock file ${file})`);
  }
}

/**
 * Lock files (absolute paths) this process holds right now. Module-wide, not per LineageStore:
 * what matters is whether this process holds the lock, whichever object took it.
 */
const heldLocks = new Set<string>();
