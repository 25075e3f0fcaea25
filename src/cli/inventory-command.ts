/**
 * `anvil scan` (network discovery) and `anvil inventory` (file discovery, import, sync, list,
 * show, health, forecast, check-revocation): the certificate inventory from the command line
 * (docs/inventory.md). The inventory lives beside the CA's data: <data-dir>/inventory.db, or the
 * CA's PostgreSQL database.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';

const lazy = {
  config: () => import('../server/config.js'),
  inventory: () => import('../inventory/inventory.js'),
  report: () => import('../inventory/report.js'),
  scan: () => import('../inventory/scan.js'),
  files: () => import('../inventory/files.js'),
};

/** A failure the user can fix: printed as `anvil <command>: <message>`, exit code 2. */
class InventoryUsageError extends Error {
  readonly code = 'INVENTORY_USAGE';
}

function intIn(what: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new InvalidArgumentError(`expected ${what} from ${min} to ${max}`);
    return n;
  };
}

function portList(v: string, prev: number[] = []): number[] {
  const out = [...prev];
  for (const part of v.split(',')) {
    const n = Number(part.trim());
    if (!/^\d+$/.test(part.trim()) || n < 1 || n > 65535) throw new InvalidArgumentError(`"${part}" is not a port (1 to 65535); give e.g. 443,8443`);
    out.push(n);
  }
  return out;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

interface StoreOpts {
  config?: string;
  dataDir?: string;
}

/** The server config that says where the inventory (and the CA) are: --config, with --data-dir over it. */
async function configOf(opts: StoreOpts) {
  const o: Record<string, unknown> = {};
  if (opts.dataDir) o.dataDir = path.resolve(opts.dataDir);
  return (await lazy.config()).loadServerConfig(opts.config, o);
}

async function openFrom(opts: StoreOpts, config?: Awaited<ReturnType<typeof configOf>>) {
  const c = config ?? (await configOf(opts));
  const inv = await lazy.inventory();
  return inv.openInventory(inv.inventoryLocationOf(c.storage, c.dataDir));
}

function withStoreOptions(c: Command): Command {
  return c
    .option('-c, --config <file>', 'server config file: its dataDir and storage say where the inventory is')
    .option('-d, --data-dir <dir>', 'data directory (default ./data): the inventory is <dir>/inventory.db');
}

/** A progress line on stderr when it is a terminal: "label done/total (extra)". */
function progress(label: string, enabled: boolean) {
  let last = 0;
  return {
    update(done: number, total: number, extra = '') {
      if (!enabled) return;
      const now = Date.now();
      if (done !== total && now - last < 100) return;
      last = now;
      const width = 30;
      const filled = total ? Math.round((done / total) * width) : width;
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${extra ? ` ${extra}` : ''}\x1b[K`);
      if (done === total) process.stderr.write('\n');
    },
  };
}

const LEVELS = ['good', 'fair', 'poor', 'critical'] as const;

/** PKCS#12 passwords from --password (repeatable) and --password-file (one per line). */
async function passwordsOf(o: { password?: string[]; passwordFile?: string }): Promise<string[]> {
  const passwords = [...(o.password ?? [])];
  if (o.passwordFile) {
    const text = await readFile(o.passwordFile, 'utf8').catch((e: Error) => {
      throw new InventoryUsageError(`cannot read --password-file ${o.passwordFile}: ${e.message}`);
    });
    passwords.push(...text.split(/\r?\n/).filter((l) => l !== ''));
  }
  return passwords;
}

export function registerInventoryCommands(program: Command): void {
  withStoreOptions(
    program
      .command('scan')
      .description('Discover certificates served over TLS: connect to hosts, addresses and CIDR ranges on the given ports, record what each presents in the inventory.')
      .argument('<target...>', 'host, host:port, IPv4/IPv6 address, [v6]:port, or CIDR range (e.g. 10.0.0.0/24)')
      .option('-p, --port <ports>', 'ports to try where a target names none, comma-separated (default 443)', portList)
      .option('--sni <name>', 'server name to send (repeatable: one connection per name); hostnames send their own by default', collect)
      .option('--concurrency <n>', 'connections at a time', intIn('a number', 1, 1024), 32)
      .option('--timeout <ms>', 'per connection: connect and TLS handshake', intIn('milliseconds', 100, 120_000), 5000)
      .option('--rate <n>', 'new connections per second at most (default: no limit)', intIn('a rate', 1, 100_000))
      .option('--max-targets <n>', 'refuse to expand ranges beyond this many targets', intIn('a number', 1, 16_777_216), 65_536)
      .option('--ca-bundle <file>', 'trusted roots (PEM) to verify chains against, instead of the system roots (e.g. your private CA)')
      .option('--no-record', 'only print what was found; leave the inventory alone')
      .option('--no-progress', 'no progress bar (it is shown only on a terminal anyway)')
      .option('--json', 'print the observations as one JSON document'),
  )
    .addHelpText(
      'after',
      `
Nothing is sent after the TLS handshake. An endpoint that answered before and does not now is
marked missing in the inventory; addresses that never answered are not recorded.

Exit codes: 0 the scan ran (whatever it found); 2 usage (bad target, port, option); 1 failure.

Examples:
  anvil scan www.example.com api.example.com:8443
  anvil scan 10.0.0.0/24 -p 443,8443 --rate 200 --ca-bundle data/ca/root.pem
  anvil scan 192.0.2.10 --sni a.example.com --sni b.example.com --json`,
    )
    .action(async (targets: string[], o: StoreOpts & { port?: number[]; sni?: string[]; concurrency: number; timeout: number; rate?: number; maxTargets: number; caBundle?: string; record: boolean; progress: boolean; json?: boolean }) => {
      const s = await lazy.scan();
      let list;
      try {
        list = s.parseTargets(targets, { ports: o.port, sni: o.sni, maxTargets: o.maxTargets });
      } catch (e) {
        throw new InventoryUsageError((e as Error).message);
      }
      let ca: string | undefined;
      if (o.caBundle) {
        ca = await readFile(o.caBundle, 'utf8').catch((e: Error) => {
          throw new InventoryUsageError(`cannot read --ca-bundle ${o.caBundle}: ${e.message}`);
        });
        if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new InventoryUsageError(`--ca-bundle ${o.caBundle} holds no PEM certificate`);
      }
      const store = o.record ? await openFrom(o) : null;
      const startedAt = new Date();
      try {
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        const bar = progress('scanning', o.progress && !o.json && process.stderr.isTTY === true);
        let found = 0;
        let observations: Awaited<ReturnType<typeof s.scan>>;
        try {
          observations = await s.scan(list, {
          concurrency: o.concurrency,
          timeoutMs: o.timeout,
          ratePerSecond: o.rate,
          ca,
          signal: stop.signal,
          onProgress: (done, total, last) => {
            if (last.chain.length) found++;
            bar.update(done, total, `${found} with a certificate`);
          },
        });
        } finally {
          process.removeListener('SIGINT', onSignal);
        }
        const now = new Date();
        const summary = store ? await (await lazy.inventory()).recordEndpointScan(store, observations, now) : null;
        // One row per run in inv_scans, for the metrics (docs/metrics.md).
        if (store) await (await import('../inventory/scan-runs.js')).recordNetworkRun(store, { startedAt, targets: list.length, observations, interrupted: stop.signal.aborted, extra: { recorded: summary } });
        if (o.json) {
          const { describeCertificate } = await import('../inventory/certificate.js');
          process.stdout.write(
            `${JSON.stringify(
              {
                targets: list.length,
                scanned: observations.length,
                interrupted: stop.signal.aborted,
                recorded: summary,
                observations: observations.map((x) => ({
                  host: x.target.host,
                  port: x.target.port,
                  sni: x.target.sni ?? null,
                  address: x.address ?? null,
                  protocol: x.protocol ?? null,
                  durationMs: Math.round(x.durationMs),
                  error: x.error ?? null,
                  authorized: x.authorized ?? null,
                  authorizationError: x.authorizationError ?? null,
                  hostnameError: x.hostnameError ?? null,
                  chain: x.chain.map((d) => {
                    try {
                      const f = describeCertificate(d);
                      return { fingerprint: f.fingerprint, subject: f.subject, issuer: f.issuer, names: f.names, notAfter: f.notAfter.toISOString() };
                    } catch (e) {
                      return { unreadable: (e as Error).message };
                    }
                  }),
                })),
              },
              null,
              2,
            )}\n`,
          );
        } else {
          process.stdout.write(await scanText(observations));
          process.stdout.write(
            `\n${observations.length} of ${list.length} targets scanned${stop.signal.aborted ? ' (interrupted)' : ''}, ${observations.filter((x) => x.chain.length).length} presented a certificate` +
              (summary ? `; recorded: ${summary.certificates} certificate(s), ${summary.newCertificates} new, ${summary.missing} endpoint(s) now missing` : '') +
              '\n',
          );
        }
      } finally {
        await store?.close();
      }
    });

  const inventory = program.command('inventory').description('The certificate inventory: find certificates in files, import bundles, list them with their health, show one.');

  withStoreOptions(
    inventory
      .command('scan-files')
      .description('Find certificates (PEM, DER, PKCS#12) under files and directories and record them with their paths; paths seen before under these roots and gone now are marked missing.')
      .argument('<path...>', 'files or directories (walked recursively)')
      .option('--password <p>', 'a PKCS#12 password to try (repeatable; the empty password is always tried)', collect)
      .option('--password-file <file>', 'PKCS#12 passwords to try, one per line')
      .option('--follow-symlinks', 'follow symbolic links (loops are detected)')
      .option('--max-depth <n>', 'directory depth', intIn('a depth', 0, 256), 32)
      .option('--json', 'print the files found as JSON'),
  ).action(async (paths: string[], o: StoreOpts & { password?: string[]; passwordFile?: string; followSymlinks?: boolean; maxDepth: number; json?: boolean }) => {
    const passwords = await passwordsOf(o);
    const roots = paths.map((p) => path.resolve(p));
    const startedAt = new Date();
    const found = await (await lazy.files()).findCertificateFiles(roots, { pkcs12Passwords: passwords, followSymlinks: o.followSymlinks === true, maxDepth: o.maxDepth });
    const store = await openFrom(o);
    try {
      // A root or directory that could not be read marks nothing under it missing (recordFileScan).
      const summary = await (await lazy.inventory()).recordFileScan(store, found, roots, new Date());
      // One row per run in inv_scans, for the metrics (docs/metrics.md).
      await (await import('../inventory/scan-runs.js')).recordFilesRun(store, { startedAt, files: found, extra: { recorded: summary } });
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({ recorded: summary, files: found.map((f) => ({ path: f.path, format: f.format ?? null, certificates: f.certificates.length, error: f.error ?? null })) }, null, 2)}\n`,
        );
      } else {
        const { printable } = await lazy.report();
        for (const f of found) {
          process.stdout.write(`${f.error ? 'error' : 'ok   '}  ${printable(f.path)}  ${f.format ?? ''}${f.certificates.length ? ` ${f.certificates.length} certificate(s)` : ''}${f.error ? `  ${f.error.code}: ${f.error.message}` : ''}\n`);
        }
        process.stdout.write(
          `\n${found.length} file(s), ${summary.certificates} certificate(s) (${summary.newCertificates} new), ${summary.failed} file(s) with errors, ${summary.missing} place(s) now missing\n`,
        );
      }
    } finally {
      await store.close();
    }
  });

  withStoreOptions(
    inventory
      .command('import')
      .description('Record the certificates of PEM bundles (or DER / PKCS#12 files) in the inventory, without recording where they came from.')
      .argument('<file...>', 'files to import')
      .option('--password <p>', 'a PKCS#12 password to try (repeatable; it shows in ps: prefer --password-file)', collect)
      .option('--password-file <file>', 'PKCS#12 passwords to try, one per line'),
  ).action(async (files: string[], o: StoreOpts & { password?: string[]; passwordFile?: string }) => {
    const { readCertificates } = await lazy.files();
    const passwords = await passwordsOf(o);
    const read = [];
    for (const f of files) {
      const data = await readFile(f).catch((e: Error) => {
        throw new InventoryUsageError(`cannot read ${f}: ${e.message}`);
      });
      const r = readCertificates(path.resolve(f), data, passwords);
      if (r.certificates.length === 0) throw new InventoryUsageError(`${f}: ${r.error ? `${r.error.code}: ${r.error.message}` : 'no certificate in it (PEM, DER or PKCS#12 expected)'}`);
      if (r.error) process.stderr.write(`anvil inventory import: ${f}: ${r.error.code}: ${r.error.message} (the other certificates are imported)\n`);
      read.push(r);
    }
    const store = await openFrom(o);
    try {
      let added = 0;
      let total = 0;
      const now = new Date();
      for (const r of read) {
        for (const der of r.certificates) {
          total++;
          if ((await store.recordCertificate(der, 'import', now)).isNew) added++;
        }
      }
      process.stdout.write(`${total} certificate(s) read, ${added} new in the inventory\n`);
    } finally {
      await store.close();
    }
  });

  withStoreOptions(
    inventory
      .command('list')
      .description('List the certificates with their health, soonest expiry first.')
      .addOption(new Option('--level <level>', 'only this health level or worse').choices([...LEVELS]))
      .option('--search <text>', 'a name, subject, issuer, serial or fingerprint containing this')
      .option('--expiring-within <days>', 'only those expiring within this many days (expired included)', intIn('days', 0, 36_500))
      .option('--leaves-only', 'leave out CA certificates')
      .option('--json', 'print as JSON'),
  ).action(async (o: StoreOpts & { level?: (typeof LEVELS)[number]; search?: string; expiringWithin?: number; leavesOnly?: boolean; json?: boolean }) => {
    const store = await openFrom(o);
    try {
      const now = new Date();
      const { assess } = await lazy.inventory();
      const r = await lazy.report();
      const { certificates, estate } = await assess(store, now);
      const list = r.filterAssessed(certificates, { level: o.level, search: o.search, expiringWithinDays: o.expiringWithin, leavesOnly: o.leavesOnly }, now);
      if (o.json) process.stdout.write(`${JSON.stringify({ estate, certificates: list.map(r.assessedJson) }, null, 2)}\n`);
      else process.stdout.write(r.listText(list, now));
    } finally {
      await store.close();
    }
  });

  withStoreOptions(
    inventory
      .command('show')
      .description('One certificate: its facts, findings, where it is deployed, its history.')
      .argument('<fingerprint>', 'its SHA-256 fingerprint, or a unique prefix of it (at least 4 hex digits)')
      .option('--pem', 'print the certificate as PEM instead')
      .option('--json', 'print as JSON'),
  ).action(async (prefix: string, o: StoreOpts & { pem?: boolean; json?: boolean }) => {
    const p = prefix.toLowerCase().replaceAll(':', '');
    if (!/^[0-9a-f]{4,64}$/.test(p)) throw new InventoryUsageError(`"${prefix}" is not a fingerprint: give at least 4 hex digits of it (see anvil inventory list)`);
    const store = await openFrom(o);
    try {
      const matches = await store.findByPrefix(p, 2);
      if (matches.length === 0) throw new InventoryUsageError(`no certificate in the inventory has a fingerprint starting with ${p}`);
      if (matches.length > 1) throw new InventoryUsageError(`${p} matches several certificates; give more digits`);
      const fp = matches[0]!;
      const now = new Date();
      const { assess } = await lazy.inventory();
      const r = await lazy.report();
      const a = (await assess(store, now)).certificates.find((x) => x.certificate.fingerprint === fp)!;
      const events = await store.listEvents({ fingerprint: fp });
      if (o.pem) {
        const { toPem } = await import('../lib/pem.js');
        process.stdout.write(toPem('CERTIFICATE', a.certificate.der));
      } else if (o.json) {
        process.stdout.write(`${JSON.stringify({ ...r.assessedJson(a), events }, null, 2)}\n`);
      } else process.stdout.write(r.showText(a, events, now));
    } finally {
      await store.close();
    }
  });

  withStoreOptions(
    inventory
      .command('sync')
      .description("Record what the CA issued and revoked since the last sync (anvil server does this every inventory.syncSeconds), and the Anvil client's lineages.")
      .option('--no-ca', "leave the CA's database alone")
      .option('--lineages <dir>', "an Anvil client store (its archive/, live/ and renewal/), e.g. /etc/anvil; repeatable", collect)
      .option('--json', 'print the result as JSON'),
  ).action(async (o: StoreOpts & { ca: boolean; lineages?: string[]; json?: boolean }) => {
    const config = await configOf(o);
    const store = await openFrom(o, config);
    const out: Record<string, unknown> = {};
    try {
      if (o.ca) {
        const { storeConfigOf } = await import('../server/main.js');
        const sc = storeConfigOf(config);
        const { existsSync } = await import('node:fs');
        // Never create a CA database as a side effect of syncing from it.
        if (sc.type === 'sqlite' && !existsSync(sc.path)) {
          out.ca = { skipped: `no CA database at ${sc.path}` };
        } else {
          const { openStore } = await import('../storage/index.js');
          const ca = await openStore(sc);
          try {
            const { syncFromCa } = await import('../inventory/sources.js');
            const total = { read: 0, added: 0, failed: 0 };
            for (let more = true; more; ) {
              const r = await syncFromCa(store, ca, new Date());
              total.read += r.read;
              total.added += r.added;
              total.failed += r.failed;
              more = r.more;
            }
            out.ca = total;
          } finally {
            await ca.close();
          }
        }
      }
      if (o.lineages?.length) {
        const { syncLineages } = await import('../inventory/lineages.js');
        const results = [];
        for (const dir of o.lineages) results.push({ store: path.resolve(dir), ...(await syncLineages(store, dir, new Date())) });
        out.lineages = results;
      }
    } finally {
      await store.close();
    }
    if (o.json) {
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    const ca = out.ca as { skipped?: string; read?: number; added?: number; failed?: number } | undefined;
    if (ca?.skipped) process.stdout.write(`CA: skipped (${ca.skipped})\n`);
    else if (ca) process.stdout.write(`CA: ${ca.read} certificate(s) read, ${ca.added} new${ca.failed ? `, ${ca.failed} unreadable` : ''}\n`);
    for (const l of (out.lineages ?? []) as Array<{ store: string; lineages: number; certificates: number; added: number; renewalFailures: number; problems: Array<{ lineage: string; message: string }> }>) {
      process.stdout.write(`lineages in ${l.store}: ${l.lineages} lineage(s), ${l.certificates} certificate(s), ${l.added} new, ${l.renewalFailures} new renewal failure(s)\n`);
      for (const p of l.problems) process.stdout.write(`  ${p.lineage}: ${p.message}\n`);
    }
  });

  withStoreOptions(
    inventory
      .command('forecast')
      .description('Renewals the estate needs per day over the coming days, as it is and under the CA/Browser Forum schedule (200 days from March 2026, 100 from March 2027, 47 from March 2029).')
      .option('--days <n>', 'length of the forecast', intIn('days', 1, 3650), 365)
      .option('--json', 'print the daily series as JSON'),
  ).action(async (o: StoreOpts & { days: number; json?: boolean }) => {
    const store = await openFrom(o);
    try {
      const now = new Date();
      const { certificates } = await (await lazy.inventory()).assess(store, now);
      const { forecast, byMonth } = await import('../inventory/forecast.js');
      const f = forecast(certificates, now, o.days);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ start: f.start.toISOString(), days: f.days, certificates: f.certificates, current: f.current, cabf: f.cabf }, null, 2)}\n`);
        return;
      }
      const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      const lines = [`${f.certificates} certificate(s) in the forecast, ${f.days} days from ${f.start.toISOString().slice(0, 10)}`, '', 'MONTH    AS IS  UNDER THE SCHEDULE'];
      for (const [m, cur, cab] of byMonth(f)) lines.push(`${m}  ${String(cur).padStart(6)}  ${String(cab).padStart(18)}`);
      lines.push(
        '',
        `total    ${String(total(f.current)).padStart(6)}  ${String(total(f.cabf)).padStart(18)}`,
        `busiest day: ${Math.max(0, ...f.current)} as is, ${Math.max(0, ...f.cabf)} under the schedule`,
      );
      process.stdout.write(`${lines.join('\n')}\n`);
    } finally {
      await store.close();
    }
  });

  withStoreOptions(
    inventory
      .command('alerts')
      .description('Evaluate the inventory against the alert state and send what is due (opened, reminders, resolved) to the channels of alerts.channels in the server config (docs/alerts.md).')
      .option('--dry-run', 'print what would be sent; send nothing, change nothing')
      .option('--test', 'send a test message to every configured channel (checks the wiring; the alert state is left alone)')
      .option('--json', 'print the result as JSON'),
  )
    .addHelpText(
      'after',
      `
The channels, the severity threshold, the reminder stages and the repeat interval come from the
"alerts" section of the server config (--config). anvil server runs the same every
alerts.intervalSeconds; this command is for cron, for a first look (--dry-run), and for --test.
Several runs at once (replicas, cron and the server) send each notification once.

Exit codes: 0 done, everything delivered; 1 a delivery failed (the notifications are kept and sent
at the next run); 2 usage or configuration (no channels, a secret file that cannot be read).`,
    )
    .action(async (o: StoreOpts & { dryRun?: boolean; test?: boolean; json?: boolean }) => {
      if (o.dryRun && o.test) throw new InventoryUsageError('--dry-run and --test exclude each other: --test sends a real test message');
      const config = await configOf(o);
      const alerts = config.alerts;
      if (alerts.channels.length === 0 && !o.dryRun) {
        throw new InventoryUsageError(`no alert channels are configured: add "alerts": {"channels": [...]} to the server config${o.config ? ` ${o.config}` : ' and give it with --config'} (docs/alerts.md)`);
      }
      const { createChannels, AlertConfigError } = await import('../inventory/alert-channels.js');
      const channels = await createChannels(alerts).catch((e: unknown) => {
        throw e instanceof AlertConfigError ? new InventoryUsageError(e.message) : e;
      });
      const { AlertEngine, sendTestMessages } = await import('../inventory/alerts.js');
      const { printable } = await lazy.report();
      const store = o.test ? null : await openFrom(o, config);
      try {
        if (o.test) {
          const results = await sendTestMessages(channels, { source: alerts.source });
          if (o.json) process.stdout.write(`${JSON.stringify({ test: results }, null, 2)}\n`);
          else for (const r of results) process.stdout.write(`${printable(r.ok ? `ok      ${r.channel}  ${r.target}` : `FAILED  ${r.channel}  ${r.target}: ${r.error}`)}\n`);
          if (results.some((r) => !r.ok)) process.exitCode = 1;
          return;
        }
        const report = await new AlertEngine({ store: store!, config: alerts, channels }).run({ dryRun: o.dryRun === true });
        if (report.deliveries.some((d) => !d.ok)) process.exitCode = 1;
        if (o.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const would = o.dryRun ? 'would be ' : '';
        const lines = [`${report.problems} problem(s) at or above ${alerts.minSeverity}, ${report.open} open alert(s)${o.dryRun ? ' (dry run: nothing sent, nothing changed)' : ''}`];
        // The key with its fingerprint and installation id shortened, as `inventory list` shows fingerprints.
        const shortKey = (k: string) => k.replace(/[0-9a-f]{17,}/g, (h) => h.slice(0, 16));
        for (const c of report.created) {
          const names = c.names.length ? `${c.names[0]}${c.names.length > 1 ? ` (+${c.names.length - 1})` : ''}` : '';
          lines.push(`${would}${c.type.padEnd(8)}  ${c.severity.padEnd(8)}  ${c.stage.padEnd(8)}  ${shortKey(c.key)}  ${names ? `${names}: ` : ''}${c.message}`);
        }
        if (!report.created.length) lines.push(`nothing new ${o.dryRun ? 'would be' : 'was'} announced`);
        for (const p of report.plan ?? []) lines.push(`would send to ${p.channel}: ${p.notifications.length} notification(s)`);
        for (const d of report.deliveries) {
          lines.push(d.ok ? `sent to ${d.channel} (${d.target}): ${d.notifications} notification(s) in ${d.messages} message(s)${d.warning ? `; ${d.warning}` : ''}` : `FAILED ${d.channel} (${d.target}): ${d.error}`);
        }
        for (const x of report.dropped) lines.push(`dropped ${x.id} (${x.key}) for ${x.channels.join(', ')}: ${x.why}`);
        if (!o.dryRun && report.pending) lines.push(`${report.pending} notification(s) still to deliver: sent at the next run`);
        // Owed to channels of another config (a server's, a replica's): this run neither sends nor drops them.
        for (const x of report.otherChannels) lines.push(`${x.pending} notification(s) owed to ${x.channel}, a channel this config does not have: left to the evaluators that have it`);
        process.stdout.write(`${lines.map((l) => printable(l)).join('\n')}\n`);
      } finally {
        for (const c of channels) await c.close().catch(() => {});
        await store?.close();
      }
    });

  withStoreOptions(inventory.command('health').description("The estate's health: a level and score, counts per level, and what the findings are.").option('--json', 'print as JSON')).action(
    async (o: StoreOpts & { json?: boolean }) => {
      const store = await openFrom(o);
      try {
        const { estate } = await (await lazy.inventory()).assess(store, new Date());
        const r = await lazy.report();
        process.stdout.write(o.json ? `${JSON.stringify(estate, null, 2)}\n` : r.healthText(estate));
      } finally {
        await store.close();
      }
    },
  );

  withStoreOptions(
    inventory
      .command('check-revocation')
      .description("Ask the OCSP responders and CRLs of the inventory's leaf certificates whether they are revoked (OCSP first, then the CRL); record what they say.")
      .option('--concurrency <n>', 'certificates checked at a time', intIn('a number', 1, 256), 8)
      .option('--timeout-ms <ms>', 'per request: connect, headers, and between body chunks (a certificate gets three times this in all)', intIn('milliseconds', 100, 120_000), 10_000)
      .option('--max-age-hours <n>', 'check certificates not checked within this many hours (0: all of them)', intIn('hours', 0, 8760), 12)
      .option('--crl-max-mib <n>', 'largest CRL read, MiB (default: inventory.revocationCrlMaxMiB of the config, 20)', intIn('MiB', 1, 1024))
      .option('--public-only', 'never fetch from loopback, private or link-local addresses (default: inventory.revocationPrivateAddresses of the config)')
      .option('--include-ca', "also check certificates that came from Anvil's own CA (its sync records their revocations already)")
      .option('--ca-bundle <file>', "roots (PEM) to trust for https URLs, beside Node's bundled ones and the data directory's CA root")
      .option('--json', 'print the summary and every result as JSON'),
  )
    .addHelpText(
      'after',
      `
A certificate is checked when it is a leaf, not expired, not known to be revoked (a hold, reason 6,
that a check found is asked again, and lifted when the answer is good), and not checked within
--max-age-hours. An answer is believed only when signed by the issuer (or a responder it
delegated to), fresh, and about this certificate; otherwise the status stays undetermined
("unknown") and the reason is recorded (anvil inventory show).

Exit codes: 0 the checks ran (whatever they found); 2 usage; 1 failure.`,
    )
    .action(async (o: StoreOpts & { concurrency: number; timeoutMs: number; maxAgeHours: number; crlMaxMib?: number; publicOnly?: boolean; includeCa?: boolean; caBundle?: string; json?: boolean }) => {
      const config = await configOf(o);
      const roots: string[] = [];
      if (o.caBundle) {
        const pem = await readFile(o.caBundle, 'utf8').catch((e: Error) => {
          throw new InventoryUsageError(`cannot read --ca-bundle ${o.caBundle}: ${e.message}`);
        });
        if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new InventoryUsageError(`--ca-bundle ${o.caBundle} holds no PEM certificate`);
        roots.push(pem);
      }
      // The data directory's own CA (its https OCSP, CRL and issuer URLs), when there is one.
      const caRoot = await readFile(path.join((await import('../server/main.js')).caDirOf(config), 'root.pem'), 'utf8').catch(() => null);
      if (caRoot) roots.push(caRoot);
      const store = await openFrom(o, config);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      try {
        const { checkInventoryRevocation, withBundledRoots } = await import('../inventory/revocation.js');
        const summary = await checkInventoryRevocation(store, {
          ...(roots.length ? { ca: withBundledRoots(...roots) } : {}),
          concurrency: o.concurrency,
          timeoutMs: o.timeoutMs,
          maxAgeHours: o.maxAgeHours,
          crlMaxBytes: (o.crlMaxMib ?? config.inventory.revocationCrlMaxMiB) * 1024 * 1024,
          allowPrivateAddresses: o.publicOnly ? false : config.inventory.revocationPrivateAddresses,
          includeCaSourced: o.includeCa === true,
          signal: stop.signal,
        });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
          return;
        }
        const { printable } = await lazy.report();
        const lines: string[] = [];
        for (const r of summary.results) {
          if (r.status === 'good' && !r.released && !r.error) continue;
          const c = await store.getCertificate(r.fingerprint);
          const names = c ? c.names.join(',') || c.subject : '';
          const fp = r.fingerprint.slice(0, 16);
          lines.push(
            r.status === 'revoked'
              ? `${fp}  revoked  ${names}  ${r.revokedAt?.toISOString() ?? ''}${r.reason !== null && r.reason !== undefined ? ` (reason ${r.reason})` : ''} per ${r.source?.toUpperCase()} ${r.url ?? ''}`
              : r.released
                ? `${fp}  released  ${names}  no longer on hold per ${r.source?.toUpperCase()} ${r.url ?? ''}`
                : r.status === 'good'
                  ? `${fp}  inconsistent  ${names}  ${r.error ?? ''}`
                  : `${fp}  unknown  ${names}  ${r.error ?? ''}`,
          );
        }
        const errors = Object.entries(summary.errors)
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${n}`)
          .join(', ');
        if (lines.length) lines.push('');
        lines.push(
          `${summary.checked} certificate(s) checked${summary.interrupted ? ' (interrupted)' : ''}: ${summary.good} good${summary.released ? ` (${summary.released} released from hold)` : ''}, ${summary.revoked} revoked, ${summary.unknown} unknown; ${summary.notDue} not due`,
          `problems by kind: ${errors || 'none'}`,
        );
        process.stdout.write(`${lines.map(printable).join('\n')}\n`);
      } finally {
        process.removeListener('SIGINT', onSignal);
        await store.close();
      }
    });
}

async function scanText(observations: ReadonlyArray<import('../inventory/scan.js').ScanObservation>): Promise<string> {
  const { describeCertificate } = await import('../inventory/certificate.js');
  const { printable } = await lazy.report();
  const lines: string[] = [];
  for (const x of observations) {
    const host = x.target.host.includes(':') ? `[${x.target.host}]` : x.target.host;
    const where = `${host}:${x.target.port}${x.target.sni ? ` (SNI ${x.target.sni})` : ''}`;
    const leaf = x.chain[0];
    if (!leaf) {
      lines.push(`${where}  ${x.error ? `${x.error.code}: ${x.error.message}` : 'no certificate'}`);
      continue;
    }
    let f;
    try {
      f = describeCertificate(leaf);
    } catch (e) {
      lines.push(`${where}  a certificate the inventory cannot read: ${(e as Error).message}`);
      continue;
    }
    const problems = [x.authorizationError ? `chain: ${x.authorizationError}` : '', x.hostnameError ? 'name mismatch' : ''].filter(Boolean).join(', ');
    lines.push(`${where}  ${f.fingerprint.slice(0, 16)}  ${f.names.join(',') || f.subject}  expires ${f.notAfter.toISOString().slice(0, 10)}${problems ? `  [${problems}]` : ''}`);
  }
  return lines.length ? `${lines.map(printable).join('\n')}\n` : '';
}

export function inventoryErrorExit(e: unknown): { message: string; code: number } | null {
  if (e instanceof InventoryUsageError) return { message: e.message, code: 2 };
  return null;
}
