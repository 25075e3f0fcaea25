/**
 * `anvil token` (management API tokens), `anvil audit` (the hash-chained audit log) and
 * `anvil dashboard` (the management API and dashboard on a listener of their own): docs/dashboard.md.
 */
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';

const lazy = {
  config: () => import('../server/config.js'),
  inventory: () => import('../inventory/inventory.js'),
  tokens: () => import('../web/tokens.js'),
  audit: () => import('../web/audit.js'),
};

/** A mistake the user can fix: `anvil <command>: <message>`, exit code 2. */
export class ManageUsageError extends Error {
  readonly code = 'MANAGE_USAGE';
}

interface StoreOpts {
  config?: string;
  dataDir?: string;
}

function withStoreOptions(c: Command): Command {
  return c
    .option('-c, --config <file>', 'server config file: its dataDir and storage say where the tokens and the audit log are')
    .option('-d, --data-dir <dir>', 'data directory (default ./data): they are in <dir>/inventory.db');
}

async function configOf(opts: StoreOpts) {
  const o: Record<string, unknown> = {};
  if (opts.dataDir) o.dataDir = path.resolve(opts.dataDir);
  return (await lazy.config()).loadServerConfig(opts.config, o);
}

/** The audit log of this data directory, with its key (<dataDir>/ca/audit.key; made when `create`). */
async function auditOf(config: Awaited<ReturnType<typeof configOf>>, db: import('kysely').Kysely<import('../storage/schema.js').Database>, create: boolean) {
  const { AuditLog, auditKeyPath, loadAuditKey } = await lazy.audit();
  let key: Buffer;
  try {
    key = await loadAuditKey(auditKeyPath(path.join(path.resolve(config.dataDir), 'ca')), { create });
  } catch (e) {
    throw new ManageUsageError(`${(e as Error).message} (give the server's --config or --data-dir)`);
  }
  return new AuditLog(db, key);
}

async function openInventoryOf(opts: StoreOpts) {
  const c = await configOf(opts);
  const inv = await lazy.inventory();
  return { config: c, inventory: await inv.openInventory(inv.inventoryLocationOf(c.storage, path.resolve(c.dataDir))) };
}

/** The command line as an audit actor: the operating-system user who ran it. */
function cliActor(role: 'admin' = 'admin') {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    /* no passwd entry (a container): "unknown" */
  }
  return { kind: 'cli' as const, name: user, role };
}

function days(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 3650) throw new InvalidArgumentError('expected a number of days from 1 to 3650');
  return n;
}

function head(v: string): { seq: number; hash: string } {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('expected SEQ:HASH as "anvil audit head" prints it, e.g. 42:9f86d0...');
  return { seq: Number(m[1]), hash: m[2]! };
}

export function registerManageCommands(program: Command): void {
  const token = program.command('token').description('API tokens of the management API and the dashboard (roles: viewer, operator, admin).');

  withStoreOptions(
    token
      .command('create')
      .description('Create a token; it is printed once and only its hash is kept.')
      .requiredOption('--name <name>', 'who or what the token is for (unique; letters, digits, . _ @ -)')
      .requiredOption('--role <role>', 'viewer (reads), operator (also revokes), or admin (also EAB keys, tokens, audit log)')
      .option('--expires-days <n>', 'the token stops working after this many days (default: never)', days)
      .option('--json', 'print JSON'),
  ).action(async (opts: StoreOpts & { name: string; role: string; expiresDays?: number; json?: boolean }) => {
    const { ROLES, TokenError, TokenStore } = await lazy.tokens();
    if (!(ROLES as readonly string[]).includes(opts.role)) throw new ManageUsageError(`--role must be one of ${ROLES.join(', ')}`);
    const { config, inventory } = await openInventoryOf(opts);
    try {
      const now = new Date();
      const actor = cliActor();
      const audit = await auditOf(config, inventory.db, true);
      const expiresAt = opts.expiresDays ? new Date(now.getTime() + opts.expiresDays * 86_400_000) : null;
      let created;
      try {
        created = await new TokenStore(inventory.db).create({ name: opts.name, role: opts.role as 'viewer', createdBy: `cli:${actor.name}`, expiresAt }, now);
      } catch (e) {
        if (e instanceof TokenError) throw new ManageUsageError(e.message);
        throw e;
      }
      await audit.append(actor, 'token.create', `token:${created.info.name}`, { id: created.info.id, role: created.info.role, expiresAt: expiresAt?.toISOString() ?? null }, now);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ token: created.token, id: created.info.id, name: created.info.name, role: created.info.role, expiresAt: expiresAt?.toISOString() ?? null })}\n`);
      } else {
        process.stdout.write(
          `Token for "${created.info.name}" (${created.info.role}${expiresAt ? `, expires ${expiresAt.toISOString()}` : ''}):\n\n  ${created.token}\n\n` +
            'It is shown this once; keep it in a secret store. Use it as "Authorization: Bearer <token>" or to log in to the dashboard (/dashboard/).\n',
        );
      }
    } finally {
      await inventory.close();
    }
  });

  withStoreOptions(token.command('list').description('List tokens (never their secrets).').option('--json', 'print JSON')).action(async (opts: StoreOpts & { json?: boolean }) => {
    const { TokenStore } = await lazy.tokens();
    const { inventory } = await openInventoryOf(opts);
    try {
      const list = await new TokenStore(inventory.db).list();
      if (opts.json) process.stdout.write(`${JSON.stringify(list)}\n`);
      else if (list.length === 0) process.stdout.write('no tokens; create one with "anvil token create --name NAME --role admin"\n');
      else {
        for (const t of list) {
          const state = t.revokedAt ? `revoked ${t.revokedAt.toISOString()}` : t.expiresAt && t.expiresAt.getTime() <= Date.now() ? 'expired' : 'active';
          process.stdout.write(
            `${t.id}  ${t.name.padEnd(20)}  ${t.role.padEnd(8)}  ${state}  created ${t.createdAt.toISOString()} by ${t.createdBy}` +
              `${t.expiresAt ? `  expires ${t.expiresAt.toISOString()}` : ''}${t.lastUsedAt ? `  last used ${t.lastUsedAt.toISOString()}` : ''}\n`,
          );
        }
      }
    } finally {
      await inventory.close();
    }
  });

  withStoreOptions(token.command('revoke').description('Revoke a token at once (by id or name).').argument('<id-or-name>')).action(async (idOrName: string, opts: StoreOpts) => {
    const { TokenError, TokenStore } = await lazy.tokens();
    const { config, inventory } = await openInventoryOf(opts);
    try {
      const now = new Date();
      const audit = await auditOf(config, inventory.db, true);
      let t;
      try {
        t = await new TokenStore(inventory.db).revoke(idOrName, now);
      } catch (e) {
        if (e instanceof TokenError) throw new ManageUsageError(e.message);
        throw e;
      }
      if (t.changed) await audit.append(cliActor(), 'token.revoke', `token:${t.name}`, { id: t.id }, now);
      process.stdout.write(`Token "${t.name}" (${t.id}) revoked\n`);
    } finally {
      await inventory.close();
    }
  });

  const audit = program.command('audit').description('The append-only, hash-chained audit log of every change made through the management API and these commands.');

  withStoreOptions(
    audit
      .command('verify')
      .description('Check the whole chain; exit 1 if an entry was changed, removed, inserted or reordered.')
      .option('--expect-head <seq:hash>', 'a head recorded earlier ("anvil audit head"): also catches entries cut off the end', head)
      .option('--json', 'print JSON'),
  ).action(async (opts: StoreOpts & { expectHead?: { seq: number; hash: string }; json?: boolean }) => {
    const { config, inventory } = await openInventoryOf(opts);
    try {
      const r = await (await auditOf(config, inventory.db, false)).verify(opts.expectHead ? { expectHead: opts.expectHead } : {});
      if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else if (r.ok) process.stdout.write(`audit log intact: ${r.entries} entries${r.head ? `, head ${r.head.seq}:${r.head.hash}` : ''}\n`);
      else {
        process.stdout.write(`AUDIT LOG BROKEN: ${r.entries} entries\n`);
        for (const p of r.problems) process.stdout.write(`  entry ${p.seq}: ${p.problem}\n`);
      }
      if (!r.ok) process.exitCode = 1;
    } finally {
      await inventory.close();
    }
  });

  withStoreOptions(audit.command('head').description('Print the newest entry as SEQ:HASH, to record elsewhere and check later with verify --expect-head.')).action(
    async (opts: StoreOpts) => {
      const { AuditLog } = await lazy.audit();
      const { inventory } = await openInventoryOf(opts);
      try {
        const h = await new AuditLog(inventory.db, null).head();
        process.stdout.write(h ? `${h.seq}:${h.hash}\n` : 'the audit log is empty\n');
      } finally {
        await inventory.close();
      }
    },
  );

  withStoreOptions(
    audit
      .command('list')
      .description('The newest entries first.')
      .option('--limit <n>', 'how many (default 50)', (v) => {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n < 1 || n > 1000) throw new InvalidArgumentError('expected a number from 1 to 1000');
        return n;
      })
      .option('--json', 'print JSON'),
  ).action(async (opts: StoreOpts & { limit?: number; json?: boolean }) => {
    const { AuditLog } = await lazy.audit();
    const { printable } = await import('../inventory/report.js');
    const { inventory } = await openInventoryOf(opts);
    try {
      const list = await new AuditLog(inventory.db, null).list({ limit: opts.limit ?? 50 });
      if (opts.json) process.stdout.write(`${JSON.stringify(list)}\n`);
      else if (list.length === 0) process.stdout.write('the audit log is empty\n');
      else for (const e of list) process.stdout.write(`${String(e.seq).padStart(6)}  ${e.at.toISOString()}  ${printable(e.actor).padEnd(22)}  ${e.action.padEnd(18)}  ${printable(e.target)}  ${printable(JSON.stringify(e.detail))}\n`);
    } finally {
      await inventory.close();
    }
  });

  program
    .command('dashboard')
    .description('Serve the management API and the web dashboard on a listener of their own (read-only for the CA: revocations need anvil server).')
    .option('-c, --config <file>', 'server config file (where the CA and the inventory are)')
    .option('-d, --data-dir <dir>', 'data directory (default ./data)')
    .option('--listen <host:port>', 'where to listen (default 127.0.0.1:8480)', '127.0.0.1:8480')
    .action(async (opts: StoreOpts & { listen: string }) => {
      const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(opts.listen);
      if (!m || Number(m[2]) > 65535) throw new ManageUsageError('--listen is host:port, e.g. 127.0.0.1:8480 or [::1]:8480');
      const host = m[1]!.replace(/^\[|\]$/g, '');
      const { serveDashboard } = await import('../web/standalone.js');
      const config = await configOf(opts);
      const running = await serveDashboard(config, { host, port: Number(m[2]) });
      process.stdout.write(`anvil dashboard: ${running.url}/dashboard/\n`);
      const stop = () => void running.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}

export function manageErrorExit(e: unknown): { message: string; code: number } | null {
  if (e instanceof ManageUsageError) return { message: e.message, code: 2 };
  return null;
}
