/**
 * `anvil dns`: Anvil's authoritative DNS server for one zone with an acme-dns compatible API
 * (docs/anvil-dns.md), and `anvil dns register` to create a registration without the API.
 */
import { Command, InvalidArgumentError } from 'commander';
import { parseCidr } from '../dns/server/cidr.js';
// The server, its config schema and the database driver load only when a dns command runs, so
// that every other command starts fast.
const lazy = {
  config: () => import('../dns/server/config.js'),
  main: () => import('../dns/server/main.js'),
  registry: () => import('../dns/server/registry.js'),
  store: () => import('../storage/dns-store.js'),
};

function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65535) throw new InvalidArgumentError('expected host:port, e.g. 0.0.0.0:53 or [::1]:8053');
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

function collectCidr(v: string, prev: string[] = []): string[] {
  if (!parseCidr(v)) throw new InvalidArgumentError('expected a CIDR, e.g. 192.0.2.0/24 or 2001:db8::/32');
  return [...prev, v];
}

interface ServeOpts {
  config?: string;
  dataDir?: string;
  dnsListen?: { host: string; port: number };
  apiListen?: { host: string; port: number };
}

function overridesOf(opts: ServeOpts): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (opts.dataDir) o.dataDir = opts.dataDir;
  if (opts.dnsListen) o.dnsListen = opts.dnsListen;
  if (opts.apiListen) o.apiListen = opts.apiListen;
  return o;
}

const EXAMPLE = `
Example config (anvil-dns.json):
  {
    "zone": "acme.example.com",
    "nsNames": ["ns1.acme.example.com"],
    "nsAddresses": { "ns1.acme.example.com": ["192.0.2.53"] },
    "dnsListen": { "host": "0.0.0.0", "port": 53 },
    "apiListen": { "host": "127.0.0.1", "port": 8053 },
    "registration": { "mode": "closed" }
  }

Examples:
  anvil dns --config anvil-dns.json
  anvil dns register --config anvil-dns.json --domain www.example.com --allow-from 192.0.2.0/24
  ACME_DNS_API_BASE=http://127.0.0.1:8053 ACME_DNS_STORAGE_PATH=acme-dns.json lego --dns acme-dns ...

See docs/anvil-dns.md.`;

export function registerDnsCommand(program: Command): void {
  const dns = program
    .command('dns')
    .description('Anvil\'s authoritative DNS server for one zone, with an acme-dns compatible API for dns-01 (see docs/anvil-dns.md).')
    .addHelpText('after', EXAMPLE);

  dns
    .command('serve', { isDefault: true })
    .description('Run the DNS server (UDP and TCP) and the acme-dns API; stops on SIGTERM/SIGINT. The default subcommand.')
    .option('-c, --config <file>', 'JSON config file (see docs/anvil-dns.md)')
    .option('-d, --data-dir <dir>', 'data directory (the SQLite database)')
    .option('--dns-listen <host:port>', 'DNS address, UDP and TCP (default 0.0.0.0:53)', parseListen)
    .option('--api-listen <host:port>', 'acme-dns API address (default 127.0.0.1:8053)', parseListen)
    .addHelpText('after', EXAMPLE)
    .action(async (opts: ServeOpts) => {
      const config = await (await lazy.config()).loadDnsServerConfig(opts.config, overridesOf(opts));
      const srv = await (await lazy.main()).startDnsServer(config);
      const dnsHost = srv.dns.host.includes(':') ? `[${srv.dns.host}]` : srv.dns.host;
      process.stdout.write(
        [
          `DNS zone: ${srv.zone}`,
          `DNS server: ${dnsHost}:${srv.dns.port} (UDP and TCP)`,
          `acme-dns API: ${srv.apiUrl}`,
          `Registration: ${config.registration.mode}${config.registration.allowFrom.length ? ` from ${config.registration.allowFrom.join(', ')}` : ''}`,
          '',
          `Delegate the zone: NS records for ${srv.zone} in its parent zone, pointing at ${config.nsNames.join(', ')}.`,
          '',
        ].join('\n'),
      );
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`anvil dns: ${signal}, shutting down\n`);
        srv.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });

  dns
    .command('register')
    .description('Create an acme-dns registration directly in the database (works with registration "closed"); prints the credentials as JSON.')
    .option('-c, --config <file>', 'JSON config file of `anvil dns`')
    .option('-d, --data-dir <dir>', 'data directory')
    .option('--allow-from <cidr>', 'only this network may update (repeatable)', collectCidr, [])
    .option('--domain <name>', 'the domain the registration is for (to print the exact CNAME)')
    .addHelpText(
      'after',
      `
The credentials (JSON) go to stdout, the CNAME to create to stderr:
  anvil dns register -c anvil-dns.json --domain www.example.com > www.example.com.acme-dns.json`,
    )
    .action(async (opts: ServeOpts & { allowFrom: string[]; domain?: string }) => {
      const { loadDnsServerConfig, dnsDbPathOf } = await lazy.config();
      const config = await loadDnsServerConfig(opts.config, overridesOf(opts));
      const store = await (await lazy.store()).openSqliteDnsStore(dnsDbPathOf(config));
      try {
        const creds = await new (await lazy.registry()).AcmeDnsRegistry(store, config.zone).register(opts.allowFrom);
        process.stdout.write(`${JSON.stringify(creds, null, 2)}\n`);
        const owner = opts.domain ? `_acme-challenge.${opts.domain.toLowerCase().replace(/^\*\./, '').replace(/\.$/, '')}` : '_acme-challenge.<your domain>';
        process.stderr.write(
          `\nCreate this DNS record in the zone of your domain:\n  ${owner}. CNAME ${creds.fulldomain}.\n` +
            'Keep the password secret: it is shown only now (the server stores a hash).\n',
        );
      } finally {
        await store.close();
      }
    });
}
