/**
 * Rolling a lineage back: `live/NAME` is pointed again at the newest older version that can still
 * serve (complete, its certificate within its validity period, not known to be revoked), with the
 * same atomic switch LineageStore.save uses (a new link directory of links into the archive, then
 * one rename() of the `live/NAME` symlink), so readers see the old four files or the new four,
 * never a mix. The archive keeps every version; nothing is deleted but the link directory of the
 * abandoned version, which is marked (archive/NAME/.rolled-back-N) so a later rollback never goes
 * back to a version that already failed.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
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

export interface RollbackOptions {
  /** The time the certificates must be valid at (default: now). */
  now?: Date;
  /**
   * Serials (hex, any case) known to be revoked, e.g. the certificate a renewal replaced because
   * its revocation check said 'revoked': never rolled back to.
   */
  revokedSerials?: readonly string[];
}

export interface RollbackTarget {
  /** The live version. */
  from: number;
  /** The version a rollback would go to, and whether it has a key file; null when none can serve. */
  to: { version: number; withKey: boolean } | null;
  /** Why each older version was passed over ("version 2: expired on ..."), newest first. */
  skipped: string[];
}

const normSerial = (s: string) => s.toUpperCase().replace(/^0+(?=.)/, '');

/**
 * Why the certificate of archived version `v` cannot go live again at `now`, or null if it can.
 * An unreadable certificate cannot: nginx would refuse it, or serve it and fail every client.
 */
async function unusable(file: string, now: Date, revoked: ReadonlySet<string>): Promise<string | null> {
  let c: X509Certificate;
  try {
    c = new X509Certificate(await readFile(file));
  } catch (e) {
    return `its certificate cannot be read (${(e as Error).message})`;
  }
  const notAfter = new Date(c.validTo);
  const notBefore = new Date(c.validFrom);
  if (!(notAfter.getTime() > now.getTime())) return `its certificate expired on ${notAfter.toISOString()}`;
  if (notBefore.getTime() > now.getTime()) return `its certificate is not valid before ${notBefore.toISOString()}`;
  if (revoked.has(normSerial(c.serialNumber))) return `its certificate (serial ${c.serialNumber}) is revoked`;
  return null;
}

/**
 * The version rollbackLive would switch to: the newest older version that is complete (certificate
 * files, and a key when the live version has one), was not rolled back before, and whose
 * certificate is valid at `o.now` and not in `o.revokedSerials`.
 */
export async function rollbackTarget(store: LineageStore, name: string, o: RollbackOptions = {}): Promise<RollbackTarget> {
  checkName(name);
  const cur = await store.current(name);
  if (!cur) throw new AcmeClientError('STORE', `${name} has no live version to roll back`);
  const archive = path.join(store.archiveDir, name);
  const now = o.now ?? new Date();
  const revoked = new Set((o.revokedSerials ?? []).map(normSerial));
  const skipped: string[] = [];
  for (const v of await store.versions(name)) {
    if (v >= cur.version) continue;
    if (await exists(path.join(archive, `.rolled-back-${v}`))) {
      skipped.push(`version ${v}: rolled back from before`);
      continue;
    }
    const [cert, chain, fullchain, privkey] = await Promise.all(KINDS.map((k) => exists(path.join(archive, `${k}${v}.pem`))));
    if (!(cert && chain && fullchain && (privkey || !cur.privkey))) {
      skipped.push(`version ${v}: incomplete`);
      continue;
    }
    const why = await unusable(path.join(archive, `cert${v}.pem`), now, revoked);
    if (why) {
      skipped.push(`version ${v}: ${why}`);
      continue;
    }
    return { from: cur.version, to: { version: v, withKey: Boolean(privkey) }, skipped };
  }
  return { from: cur.version, to: null, skipped };
}

/**
 * Points live/NAME at archived version `version` (atomically, as LineageStore.save does) and drops
 * the link directory of the version it pointed at before. Marks nothing: rollbackLive does.
 */
export async function switchLive(store: LineageStore, name: string, version: number, withKey: boolean): Promise<void> {
  checkName(name);
  const live = path.join(store.liveDir, name);
  const before = await readlink(live).catch(() => null);
  if (!before) throw new AcmeClientError('STORE', `${live} is not a link made by anvil; move it away`);
  const target = `.${name}.v${version}`;
  if (before === target) return;
  const vdir = path.join(store.liveDir, target);
  await rm(vdir, { recursive: true, force: true });
  await mkdir(vdir, { mode: 0o700 });
  for (const kind of KINDS) {
    if (kind === 'privkey' && !withKey) continue;
    await symlink(path.join('..', '..', 'archive', name, `${kind}${version}.pem`), path.join(vdir, `${kind}.pem`));
  }
  await fsyncDir(vdir);
  const tmp = path.join(store.liveDir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  await symlink(target, tmp);
  try {
    await rename(tmp, live);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new AcmeClientError('STORE', `cannot switch ${live} to version ${version}: ${(e as Error).message}`);
  }
  await fsyncDir(store.liveDir);
  if (/^\.(.+)\.v\d+$/.test(before)) await rm(path.join(store.liveDir, before), { recursive: true, force: true });
}

/** Marks `version` as rolled back from, so that no later rollback returns to it. */
export async function markRolledBack(store: LineageStore, name: string, version: number): Promise<void> {
  await writeFile(path.join(store.archiveDir, checkName(name), `.rolled-back-${version}`), `${new Date().toISOString()}\n`, { mode: 0o600 });
}

/**
 * Points live/NAME at rollbackTarget's version and marks the live one rolled back; returns the
 * versions switched from and to. Throws INSTALL, leaving live/NAME as it was, when no older version
 * can serve (none, incomplete, expired, revoked: the message says which). The caller holds the
 * lineage's lock.
 */
export async function rollbackLive(store: LineageStore, name: string, o: RollbackOptions = {}): Promise<{ from: number; to: number }> {
  const t = await rollbackTarget(store, name, o);
  if (!t.to) {
    throw new AcmeClientError('INSTALL', `${name}: no version older than ${t.from} can go live again${t.skipped.length ? ` (${t.skipped.join('; ')})` : ''}`);
  }
  await markRolledBack(store, name, t.from);
  await switchLive(store, name, t.to.version, t.to.withKey);
  return { from: t.from, to: t.to.version };
}
