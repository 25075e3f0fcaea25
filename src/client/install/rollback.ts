/**
 * Rolling a lineage back: `live/NAME` is pointed again at the newest complete version older than
 * the live one, with the same atomic switch LineageStore.save uses (a new link directory of links
 * into the archive, then one rename() of the `live/NAME` symlink), so readers see the old four
 * files or the new four, never a mix. The archive keeps every version; nothing is deleted but the
 * link directory of the abandoned version, which is marked (archive/NAME/.rolled-back-N) so a later
 * rollback never goes back to a version that already failed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { fsyncDir } from '../../lib/atomic-file.js';
import path from 'node:path';
import { AcmeClientError } from '../errors.js';
import { checkName, type LineageStore } from '../store.js';

const KINDS = ['cert', 'chain', 'fullchain', 'privkey'] as const;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/**
 * Points live/NAME at the newest complete version older than the live one and not rolled back
 * before; returns the versions switched from and to.
 * Throws INSTALL when there is no earlier complete version (then live/NAME is left as it was).
 * The caller holds the lineage's lock.
 */
export async function rollbackLive(store: LineageStore, name: string): Promise<{ from: number; to: number }> {
  checkName(name);
  const cur = await store.current(name);
  if (!cur) throw new AcmeClientError('STORE', `${name} has no live version to roll back`);
  const archive = path.join(store.archiveDir, name);
  let to: number | null = null;
  let withKey = false;
  for (const v of await store.versions(name)) {
    if (v >= cur.version || (await exists(path.join(archive, `.rolled-back-${v}`)))) continue;
    const have = await Promise.all(KINDS.map((k) => exists(path.join(archive, `${k}${v}.pem`))));
    const [cert, chain, fullchain, privkey] = have;
    // A version is complete with its certificate files, and with a key when the live one has one.
    if (cert && chain && fullchain && (privkey || !cur.privkey)) {
      to = v;
      withKey = Boolean(privkey);
      break;
    }
  }
  if (to === null) throw new AcmeClientError('INSTALL', `${name} has no earlier complete version than ${cur.version} to roll back to`);
  await writeFile(path.join(archive, `.rolled-back-${cur.version}`), `${new Date().toISOString()}\n`, { mode: 0o600 });
  const vdir = path.join(store.liveDir, `.${name}.v${to}`);
  await rm(vdir, { recursive: true, force: true });
  await mkdir(vdir, { mode: 0o700 });
  for (const kind of KINDS) {
    if (kind === 'privkey' && !withKey) continue;
    await symlink(path.join('..', '..', 'archive', name, `${kind}${to}.pem`), path.join(vdir, `${kind}.pem`));
  }
  await fsyncDir(vdir);
  const live = path.join(store.liveDir, name);
  if (!(await readlink(live).catch(() => null))) throw new AcmeClientError('STORE', `${live} is not a link made by anvil; move it away`);
  const tmp = path.join(store.liveDir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  await symlink(`.${name}.v${to}`, tmp);
  try {
    await rename(tmp, live);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new AcmeClientError('STORE', `cannot switch ${live} back to version ${to}: ${(e as Error).message}`);
  }
  await fsyncDir(store.liveDir);
  await rm(path.join(store.liveDir, `.${name}.v${cur.version}`), { recursive: true, force: true });
  return { from: cur.version, to };
}
