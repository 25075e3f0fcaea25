/**
 * Installing a lineage into nginx, and checking it after each renewal (docs/install.md).
 *
 * `installNginx`: edits one server block to use live/NAME/fullchain.pem and privkey.pem (the file
 * is replaced atomically, a backup is kept under the store), runs the config test, reloads, and
 * connects over TLS until nginx serves the lineage's certificate. Any failure restores the file
 * byte for byte and reloads again.
 *
 * `verifyInstallers` / `verifyAfterRenewal`: after a renewal switched live/NAME to a new version,
 * the config already points at live/, so only test, reload and the TLS check run; a failure points
 * live/NAME back at the previous version that can still serve (rollback.ts: not expired, not known
 * revoked) and reloads, so nginx keeps serving a certificate that worked. No rollback when none
 * can, or when the config test fails with the previous version too (then the new certificate is
 * not the cause): the new version stays live, and the failure is still reported.
 *
 * Commands are argument vectors run without a shell (src/client/hooks.ts runProgram). Callers hold
 * the lineage's lock; installNginx also locks the config file against another anvil editing it.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, open, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { fsyncDir } from '../../lib/atomic-file.js';
import type { Stats } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { AcmeClientError } from '../errors.js';
import { describeOutcome, formatCommand, lastLines, runProgram } from '../hooks.js';
import type { InstallerConfig, LineageConfig, LineageStore } from '../store.js';
import { listenTarget, parseNginxConf, pickServerBlock, setCertificatePaths, type ServerBlock } from './nginx-conf.js';
import { markRolledBack, rollbackTarget, switchLive, type RollbackOptions } from './rollback.js';

export type InstallStep = 'read config' | 'edit config' | 'config test' | 'reload' | 'TLS check';

/**
 * An installer failed at `step`; what was rolled back is in the message. Code INSTALL.
 * `rolledBack` false: the new version was left live (no older one could serve, or it was not the
 * cause, or the rollback itself failed), which the message says.
 */
export class InstallError extends AcmeClientError {
  constructor(
    readonly step: InstallStep,
    message: string,
    readonly rolledBack = true,
  ) {
    super('INSTALL', message);
    this.name = 'InstallError';
  }
}

const COMMAND_TIMEOUT_MS = 120_000;
/** How long to keep connecting after a reload (nginx reloads asynchronously). */
const DEFAULT_VERIFY_MS = 15_000;
const BACKUPS_KEPT = 10;

// ---------------------------------------------------------------------------------------------
// Commands

/** -p, -c and -e (prefix, main config, error log) with their values, from an nginx argv. */
function globalFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-p' || a === '-c' || a === '-e') {
      if (argv[i + 1] !== undefined) out.push(a, argv[i + 1]!);
      i++;
    } else if (/^-[pce]./.test(a)) out.push(a);
  }
  return out;
}

/**
 * The config test and reload commands: the installer's, or `nginx -t` and `nginx -s reload` with
 * the -p/-c/-e flags of whichever of the two was given (so `--test-cmd "nginx -p P -c C -t"` alone
 * also reloads that nginx).
 */
export function nginxCommands(inst: InstallerConfig): { test: string[]; reload: string[] } {
  const bin = inst.nginx ?? 'nginx';
  const given = inst.test ?? inst.reload;
  const flags = given ? globalFlags(given) : [];
  return { test: inst.test ?? [bin, ...flags, '-t'], reload: inst.reload ?? [bin, ...flags, '-s', 'reload'] };
}

class StepFailure extends Error {
  constructor(
    readonly step: InstallStep,
    message: string,
  ) {
    super(message);
  }
}

async function runStep(step: InstallStep, argv: string[]): Promise<void> {
  const r = await runProgram(argv, { timeoutMs: COMMAND_TIMEOUT_MS });
  if (!r.spawnError && !r.timedOut && !r.signal && r.code === 0) return;
  throw new StepFailure(step, `"${formatCommand(argv)}" ${describeOutcome(r, COMMAND_TIMEOUT_MS)}${lastLines(r)}`);
}

// ---------------------------------------------------------------------------------------------
// The TLS check

export function parseHostPort(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AcmeClientError('BAD_INPUT', `"${v}" is not HOST:PORT (e.g. 127.0.0.1:443 or [::1]:443)`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

function normSerial(s: string): string {
  return s.toUpperCase().replace(/^0+(?=.)/, '');
}

/** The leaf certificate served at host:port with SNI `sni` (not sent for an IP address). */
export function servedCertificate(host: string, port: number, sni: string | undefined, timeoutMs = 5000): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (e: Error | null, c?: X509Certificate) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (e) reject(e);
      else resolve(c!);
    };
    // The served leaf is compared with the lineage's own certificate, so trust is not the question
    // here (a private CA's root need not be in the system store).
    const socket = tls.connect({ host, port, ...(sni && !net.isIP(sni) ? { servername: sni } : {}), rejectUnauthorized: false });
    const timer = setTimeout(() => done(new Error(`no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
    socket.once('secureConnect', () => {
      const c = socket.getPeerX509Certificate();
      if (c) done(null, c);
      else done(new Error('the server sent no certificate'));
    });
    socket.once('error', (e) => done(e));
  });
}

interface Expected {
  serial: string;
  /** SHA-256 fingerprint when the expected serial is the certificate file's own. */
  fingerprint?: string;
}

/** Connects until the expected certificate is served or the deadline passes; returns what was seen last. */
async function waitForCertificate(target: { host: string; port: number }, sni: string | undefined, want: Expected, deadlineMs: number): Promise<{ ok: boolean; seen: string }> {
  const end = Date.now() + deadlineMs;
  let seen = 'nothing';
  for (;;) {
    try {
      const c = await servedCertificate(target.host, target.port, sni, Math.max(1000, Math.min(5000, end - Date.now())));
      const ok = normSerial(c.serialNumber) === normSerial(want.serial) && (!want.fingerprint || c.fingerprint256 === want.fingerprint);
      seen = `serial ${c.serialNumber} (${c.subjectAltName ?? c.subject.replace(/\n/g, ', ')})`;
      if (ok) return { ok, seen };
    } catch (e) {
      seen = `no certificate: ${(e as Error).message}`;
    }
    if (Date.now() + 250 >= end) return { ok: false, seen };
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function expectedOf(certFile: string, expectSerial?: string): Promise<Expected> {
  const c = new X509Certificate(await readFile(certFile));
  if (expectSerial && normSerial(expectSerial) !== normSerial(c.serialNumber)) return { serial: expectSerial };
  return { serial: c.serialNumber, fingerprint: c.fingerprint256 };
}

// ---------------------------------------------------------------------------------------------
// Files

function decode(buf: Buffer): { text: string; encoding: BufferEncoding } {
  const text = buf.toString('utf8');
  // A file that is not UTF-8 is read byte for byte, so untouched bytes are written back unchanged.
  return Buffer.from(text, 'utf8').equals(buf) ? { text, encoding: 'utf8' } : { text: buf.toString('latin1'), encoding: 'latin1' };
}

/** Atomically replaces `file` (temporary file in the same directory, fsync, rename), keeping mode and owner. */
async function replaceFile(file: string, data: Buffer, like: { mode: number; uid: number; gid: number }): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.anvil-${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.chmod(like.mode & 0o7777);
    await fh.chown(like.uid, like.gid).catch(() => undefined);
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dir);
}

/** Keeps the previous content under <store>/backups/nginx (not beside the file: nginx might include it). */
async function backup(store: LineageStore, real: string, data: Buffer): Promise<string> {
  const dir = path.join(store.root, 'backups', 'nginx');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stem = `${path.basename(real)}.${createHash('sha256').update(real).digest('hex').slice(0, 8)}`;
  const file = path.join(dir, `${stem}.${new Date().toISOString().replace(/[:.]/g, '-')}.${randomBytes(2).toString('hex')}`);
  await replaceFile(file, data, { mode: 0o600, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  const old = (await readdir(dir)).filter((f) => f.startsWith(`${stem}.`)).sort();
  for (const f of old.slice(0, Math.max(0, old.length - BACKUPS_KEPT))) await rm(path.join(dir, f), { force: true });
  return file;
}

// ---------------------------------------------------------------------------------------------
// Names and targets

function sniFor(inst: InstallerConfig, block: ServerBlock | null, identifiers: LineageConfig['identifiers'] | undefined): string | undefined {
  if (inst.sni) return inst.sni;
  if (inst.serverName) return inst.serverName.replace(/^\./, '');
  const plain = block?.serverNames.find((n) => /^\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(n));
  if (plain) return plain.replace(/^\./, '');
  const dns = identifiers?.find((i) => i.type === 'dns');
  return dns ? dns.value.replace(/^\*\./, 'anvil-check.') : undefined;
}

function targetFor(inst: InstallerConfig, block: ServerBlock | null, conf: string): { host: string; port: number } {
  if (inst.verify) return parseHostPort(inst.verify);
  const t = block ? listenTarget(block) : null;
  if (!t) throw new AcmeClientError('BAD_INPUT', `cannot tell from ${conf} where to connect to check the certificate; give --verify HOST:PORT`);
  return t;
}

function formatTarget(t: { host: string; port: number }): string {
  return net.isIPv6(t.host) ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

async function readConf(conf: string): Promise<{ real: string; data: Buffer; st: Stats }> {
  let real: string;
  try {
    // A link (sites-enabled/x -> sites-available/x) stays a link: the file it points at is edited.
    real = await realpath(conf);
    const data = await readFile(real);
    return { real, data, st: await stat(real) };
  } catch (e) {
    throw new AcmeClientError('BAD_INPUT', `cannot read the nginx config ${conf}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// anvil install nginx

export interface InstallResult {
  /** The file edited (links resolved). */
  conf: string;
  changed: boolean;
  /** Copy of the previous content, when the file changed. */
  backup: string | null;
  serverBlockLine: number;
  /** Where the certificate was checked, and its serial. */
  verify: string;
  sni: string | null;
  serial: string;
  /** The installer as it should be recorded in the lineage's config (verify and sni filled in). */
  installer: InstallerConfig;
}

export async function installNginx(o: {
  store: LineageStore;
  name: string;
  installer: InstallerConfig;
  expectSerial?: string;
  onStep?: (msg: string) => void;
  /** How long to keep checking over TLS after the reload (default 15 s). */
  timeoutMs?: number;
}): Promise<InstallResult> {
  const { store, name, installer } = o;
  const step = o.onStep ?? (() => undefined);
  const cur = await store.current(name);
  if (!cur) throw new AcmeClientError('BAD_INPUT', `${name} has no certificate yet; get one with anvil issue first`);
  if (!cur.privkey) throw new AcmeClientError('BAD_INPUT', `${name} was issued for a CSR you brought, so anvil has no key to give nginx; set ssl_certificate_key to your key yourself`);
  const cfg = await store.readConfig(name);
  const { real, st } = await readConf(installer.conf);
  const release = await store.lock(`nginx-conf-${createHash('sha256').update(real).digest('hex').slice(0, 16)}`);
  try {
    // Read again under the lock: another anvil may have just written it.
    const again = await readFile(real);
    const { text, encoding } = decode(again);
    const edit = setCertificatePaths(text, { file: real, ...(installer.serverName ? { serverName: installer.serverName } : {}), fullchain: cur.fullchain, privkey: cur.privkey });
    const target = targetFor(installer, edit.block, real);
    const sni = sniFor(installer, edit.block, cfg?.identifiers);
    const want = await expectedOf(cur.cert, o.expectSerial);
    const cmds = nginxCommands(installer);
    if (edit.includes.length) step(`note: the server block includes other files (lines ${edit.includes.join(', ')}); a certificate set there would conflict`);

    // What nginx served before, to confirm a rollback.
    const before = await servedCertificate(target.host, target.port, sni, 3000).catch(() => null);
    let backupFile: string | null = null;
    let reloaded = false;
    try {
      if (edit.changed) {
        backupFile = await backup(store, real, again);
        step(`nginx: pointing the server block at ${real}:${edit.block.directive.line} at ${path.dirname(cur.fullchain)} (backup ${backupFile})`);
        try {
          await replaceFile(real, Buffer.from(edit.text, encoding), st);
        } catch (e) {
          throw new StepFailure('edit config', `cannot write ${real}: ${(e as Error).message}`);
        }
      } else step(`nginx: ${real}:${edit.block.directive.line} already points at ${path.dirname(cur.fullchain)}`);
      step(`nginx: testing the configuration (${formatCommand(cmds.test)})`);
      await runStep('config test', cmds.test);
      step(`nginx: reloading (${formatCommand(cmds.reload)})`);
      reloaded = true;
      await runStep('reload', cmds.reload);
      step(`nginx: checking that ${formatTarget(target)}${sni ? ` (SNI ${sni})` : ''} serves serial ${want.serial}`);
      const seen = await waitForCertificate(target, sni, want, o.timeoutMs ?? DEFAULT_VERIFY_MS);
      if (!seen.ok) throw new StepFailure('TLS check', `${formatTarget(target)}${sni ? ` (SNI ${sni})` : ''} served ${seen.seen}, not serial ${want.serial}`);
    } catch (e) {
      if (!(e instanceof StepFailure)) throw e;
      const undo: string[] = [];
      if (edit.changed) {
        try {
          await replaceFile(real, again, st);
          undo.push(`${real} restored`);
        } catch (err) {
          undo.push(`RESTORING ${real} FAILED (${(err as Error).message}); the previous content is in ${backupFile}`);
        }
      } else undo.push(`${real} was not changed`);
      if (reloaded) {
        try {
          await runStep('reload', cmds.reload);
          undo.push('nginx reloaded');
          if (before) {
            const back = await waitForCertificate(target, sni, { serial: before.serialNumber, fingerprint: before.fingerprint256 }, o.timeoutMs ?? DEFAULT_VERIFY_MS);
            undo.push(back.ok ? `it serves serial ${before.serialNumber} again` : `but it now serves ${back.seen}`);
          }
        } catch (err) {
          undo.push(`the reload after restoring failed too: ${(err as Error).message}`);
        }
      }
      throw new InstallError(e.step, `${name}: nginx ${real}: ${e.step} failed: ${e.message}\n  rolled back: ${undo.join('; ')}`);
    }
    step(`nginx: ${formatTarget(target)} serves ${name} (serial ${want.serial})`);
    const recorded: InstallerConfig = {
      ...installer,
      type: 'nginx',
      conf: path.resolve(installer.conf),
      verify: formatTarget(target),
      ...(sni ? { sni } : {}),
    };
    return {
      conf: real,
      changed: edit.changed,
      backup: backupFile,
      serverBlockLine: edit.block.directive.line,
      verify: formatTarget(target),
      sni: sni ?? null,
      serial: want.serial,
      installer: recorded,
    };
  } finally {
    await release();
  }
}

// ---------------------------------------------------------------------------------------------
// After a renewal

export interface VerifiedInstaller {
  conf: string;
  verify: string;
  serial: string;
}

/** Where an installer checks: its recorded verify/sni, else what its config file says. */
async function checkPlan(inst: InstallerConfig, identifiers: LineageConfig['identifiers'] | undefined): Promise<{ target: { host: string; port: number }; sni: string | undefined }> {
  let block: ServerBlock | null = null;
  if (!inst.verify || (!inst.sni && !inst.serverName)) {
    const { real, data } = await readConf(inst.conf);
    block = pickServerBlock(parseNginxConf(decode(data).text, real), real, inst.serverName);
  }
  return { target: targetFor(inst, block, inst.conf), sni: sniFor(inst, block, identifiers) };
}

/**
 * The step after a new version of `name` went live: for each installer, config test, reload and
 * TLS check of the new serial. On the first failure:
 *
 * - live/NAME goes back to the newest older version that can still serve (complete, not expired at
 *   `now`, not in `revokedSerials`; rollback.ts rollbackTarget), and the failed one is marked so
 *   that no later rollback returns to it;
 * - except when no older version can serve, or when the config test failed and fails with that
 *   older version too (the test is run once more with live/NAME on it, then switched back): the
 *   cause is not the new certificate, so the new version stays live;
 * - every installer already reloaded is reloaded again and checked for the serial now live;
 * - an InstallError says which step of which installer failed and what was or was not rolled back.
 *
 * The caller holds the lock.
 */
export async function verifyAfterRenewal(o: {
  store: LineageStore;
  name: string;
  installers: InstallerConfig[];
  identifiers?: LineageConfig['identifiers'];
  expectSerial?: string;
  onStep?: (msg: string) => void;
  timeoutMs?: number;
} & RollbackOptions): Promise<VerifiedInstaller[]> {
  const step = o.onStep ?? (() => undefined);
  if (o.installers.length === 0) return [];
  const cur = await o.store.current(o.name);
  if (!cur) throw new AcmeClientError('STORE', `${o.name} has no live version to verify`);
  const want = await expectedOf(cur.cert, o.expectSerial);
  const done: VerifiedInstaller[] = [];
  const touched: InstallerConfig[] = [];
  let failure: { inst: InstallerConfig; step: InstallStep; message: string } | null = null;
  for (const inst of o.installers) {
    if (inst.type !== 'nginx') {
      failure = { inst, step: 'read config', message: `unknown installer type ${JSON.stringify((inst as { type: unknown }).type)}` };
      break;
    }
    const cmds = nginxCommands(inst);
    try {
      let plan;
      try {
        plan = await checkPlan(inst, o.identifiers);
      } catch (e) {
        throw new StepFailure('read config', (e as Error).message);
      }
      step(`nginx ${inst.conf}: testing the configuration`);
      await runStep('config test', cmds.test);
      touched.push(inst);
      step(`nginx ${inst.conf}: reloading`);
      await runStep('reload', cmds.reload);
      step(`nginx ${inst.conf}: checking that ${formatTarget(plan.target)} serves serial ${want.serial}`);
      const seen = await waitForCertificate(plan.target, plan.sni, want, o.timeoutMs ?? DEFAULT_VERIFY_MS);
      if (!seen.ok) throw new StepFailure('TLS check', `${formatTarget(plan.target)}${plan.sni ? ` (SNI ${plan.sni})` : ''} served ${seen.seen}, not serial ${want.serial}`);
      done.push({ conf: inst.conf, verify: formatTarget(plan.target), serial: want.serial });
    } catch (e) {
      if (!(e instanceof StepFailure)) throw e;
      failure = { inst, step: e.step, message: e.message };
      break;
    }
  }
  if (!failure) return done;

  const undo: string[] = [];
  let rolledBack = false;
  try {
    const t = await rollbackTarget(o.store, o.name, { ...(o.now ? { now: o.now } : {}), ...(o.revokedSerials ? { revokedSerials: o.revokedSerials } : {}) });
    if (!t.to) {
      undo.push(`no version older than ${t.from} can go live again (${t.skipped.join('; ') || 'there is none'}); version ${t.from} stays live`);
    } else {
      const to = t.to;
      await switchLive(o.store, o.name, to.version, to.withKey);
      let cause = true;
      if (failure.step === 'config test') {
        // Is it the new certificate? The same test, with live/NAME on the older version.
        step(`nginx ${failure.inst.conf}: testing the configuration with version ${to.version}`);
        cause = await runStep('config test', nginxCommands(failure.inst).test).then(
          () => true,
          () => false,
        );
      }
      if (cause) {
        await markRolledBack(o.store, o.name, t.from);
        rolledBack = true;
        undo.push(`live/${o.name} points at version ${to.version} again (version ${t.from} stays in the archive)`);
      } else {
        await switchLive(o.store, o.name, t.from, cur.privkey !== null);
        undo.push(`the config test fails with version ${to.version} too, so the new certificate is not the cause; version ${t.from} stays live`);
      }
    }
  } catch (err) {
    undo.push(`ROLLBACK FAILED: ${(err as Error).message}`);
  }
  // Every nginx already reloaded gets what live/NAME now holds.
  const live = await o.store.current(o.name).catch(() => null);
  if (!rolledBack && live && live.version !== cur.version) undo.push(`live/${o.name} is on version ${live.version}`);
  const serving = live ? await expectedOf(live.cert, live.version === cur.version ? o.expectSerial : undefined).catch(() => null) : null;
  for (const inst of touched) {
    try {
      await runStep('reload', nginxCommands(inst).reload);
      undo.push(`nginx ${inst.conf} reloaded`);
      const plan = await checkPlan(inst, o.identifiers).catch(() => null);
      if (plan && serving) {
        const back = await waitForCertificate(plan.target, plan.sni, serving, o.timeoutMs ?? DEFAULT_VERIFY_MS);
        undo.push(back.ok ? `it serves serial ${serving.serial}${rolledBack ? ' again' : ''}` : `but ${formatTarget(plan.target)} now serves ${back.seen}`);
      }
    } catch (err) {
      undo.push(`the reload of nginx ${inst.conf} ${rolledBack ? 'after the rollback' : 'again'} failed too: ${(err as Error).message}`);
    }
  }
  throw new InstallError(
    failure.step,
    `${o.name}: nginx ${failure.inst.conf}: ${failure.step} failed after the renewal: ${failure.message}\n  ${rolledBack ? 'rolled back' : 'not rolled back'}: ${undo.join('; ')}`,
    rolledBack,
  );
}

/** Runs every installer of a lineage's config after a renewal (see verifyAfterRenewal). */
export async function verifyInstallers(
  store: LineageStore,
  cfg: LineageConfig,
  opts: { expectSerial?: string; onStep?: (msg: string) => void; timeoutMs?: number } & RollbackOptions = {},
): Promise<VerifiedInstaller[]> {
  return verifyAfterRenewal({ store, name: cfg.name, installers: cfg.installers ?? [], identifiers: cfg.identifiers, ...opts });
}
