/**
 * Atomic file writes (STYLE.md rule 12): write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory. A crash leaves the old file or the new one, never
 * half of either.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: { mode?: number; exclusive?: boolean } = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    if (opts.exclusive) {
      // Refuse to replace an existing file: link() fails with EEXIST where rename() would overwrite.
      const { link } = await import('node:fs/promises');
      await link(tmp, file);
      await rm(tmp, { force: true });
    } else {
      await rename(tmp, file);
    }
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dir);
}

/** Makes a directory's entries (a rename, a new link) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
