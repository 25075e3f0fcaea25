/**
 * The client half of `anvil`: `issue`, `account ...`, `certs ...`, `revoke`. Progress lines go to
 * stderr on a terminal only; `--json` prints one JSON document on stdout. Exit codes (also in
 * `anvil issue --help` and docs/client.md): see EXIT below.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { Command, InvalidArgumentError, Option } from 'commander';
import { canonicalIdentifier } from '../protocol/identifiers.js';
import type { Identifier } from '../protocol/types.js';
import { AcmeApi, type ExternalAccountBinding } from '../client/api.js';
import { KNOWN_CAS } from '../client/directories.js';
import { AcmeClientError, AcmeProblemError } from '../client/errors.js';
import { parseHookCommand, runHooks, type HookContext } from '../client/hooks.js';
import { openAccount, rolloverAccount, type OpenAccountOptions } from '../client/flows/account.js';
import { issueToLineage } from '../client/flows/lineage.js';
import { decideLineage } from '../client/renewal/runner.js';
import { AcmeHttp } from '../client/http.js';
import { ACCOUNT_KEY_ALGS, accountSigner, CERT_KEY_TYPES, keyTypeOf, parseCertKeyType, readCsr, readPrivateKey, type AccountKeyAlg, type CertKeyType } from '../client/keys.js';
import { StandaloneHttp01, WebrootHttp01 } from '../client/solvers/http01.js';
import { StandaloneTlsAlpn01 } from '../client/solvers/tls-alpn01.js';
import type { Solver } from '../client/solvers/types.js';
import { AccountStore, checkName, defaultLineageName, defaultStoreRoot, LineageStore, type LineageConfig, type SolverConfig } from '../client/store.js';
import { DnsProviderError } from '../dns/provider.js';
import { DNS_PROVIDER_NAMES } from '../dns/names.js';

/** Exit codes of the client commands. */
export const EXIT = {
  ok: 0,
  /** Anything not listed below. */
  failure: 1,
  /** A flag, file or config the user gave is wrong. */
  usage: 2,
  /** The CA refused a request (its problem document is printed). */
  refused: 3,
  /** A challenge failed: the CA could not validate a name, or DNS records did not propagate. */
  validation: 4,
  /** The CA or a DNS provider could not be reached, or did not answer in time. */
  network: 5,
  /** The CA answered something unusable or unsafe (nothing was installed). */
  badResponse: 6,
  /** Another anvil process is working on the same certificate. */
  locked: 7,
} as const;

const EXIT_HELP = `
Exit codes:
  0  success (or nothing to do)
  1  other failure
  2  a flag, file or config is wrong
  3  the CA refused the request (its problem is printed)
  4  a challenge failed (validation by the CA, or DNS propagation)
  5  the CA or DNS provider could not be reached or timed out
  6  the CA's answer was unusable or unsafe; nothing was installed
  7  another anvil process holds the certificate's lock`;

export function resolveServer(s: string): string {
  const known = KNOWN_CAS[s.toLowerCase()];
  if (known) return known;
  if (/^https?:\/\//i.test(s)) return s;
  throw new InvalidArgumentError(`"${s}" is neither a URL nor one of ${Object.keys(KNOWN_CAS).join(', ')}`);
}

/** Errors the CLI turns into a message and an exit code. */
export class UsageError extends Error {
  readonly code = 'USAGE';
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port number (1-65535)');
  return n;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number of seconds');
  return n;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
}

export interface ClientOpts {
  server: string;
  caBundle?: string;
  store?: string;
  account: string;
  json?: boolean;
  quiet?: boolean;
  insecureLocalhost?: boolean;
}

export function addClientOptions(c: Command): Command {
  return c
    .addOption(
      new Option('-s, --server <url|name>', `ACME directory URL, or one of: ${Object.keys(KNOWN_CAS).join(', ')}`)
        .env('ANVIL_SERVER')
        .default(KNOWN_CAS.letsencrypt!, 'letsencrypt')
        .argParser(resolveServer),
    )
    .addOption(new Option('--ca-bundle <file>', 'extra trusted root certificates (PEM) for a private CA').env('ANVIL_CA_BUNDLE'))
    .addOption(new Option('--store <dir>', `where accounts and certificates live (default ${defaultStoreRoot()})`).env('ANVIL_HOME'))
    .option('--account <name>', 'account name in the store, to keep several per CA', 'default')
    .option('--json', 'print the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output')
    .addOption(new Option('--insecure-localhost', 'allow an http:// directory on localhost (tests and labs only)').hideHelp());
}

/** Progress for multi-step work: on a terminal only, on stderr. */
export function progress(o: ClientOpts): (msg: string) => void {
  if (o.quiet || o.json || !process.stderr.isTTY) return () => undefined;
  return (msg) => process.stderr.write(`  ${msg}\n`);
}

export async function makeHttp(o: ClientOpts, caBundle?: string): Promise<AcmeHttp> {
  const bundle = caBundle ?? o.caBundle;
  let ca: string | undefined;
  if (bundle) {
    ca = await readFile(bundle, 'utf8').catch((e: Error) => {
      throw new UsageError(`cannot read --ca-bundle ${bundle}: ${e.message}`);
    });
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca-bundle ${bundle} holds no PEM certificate`);
  }
  // The bundle is added to the system's roots, not put in their place.
  if (ca) ca = `${tls.rootCertificates.join('\n')}\n${ca}`;
  return new AcmeHttp(o.server, { ...(ca ? { ca } : {}), allowInsecure: Boolean(o.insecureLocalhost), userAgent: 'anvil/0.1' });
}

export function storeRoot(o: ClientOpts): string {
  return o.store ? path.resolve(o.store) : defaultStoreRoot();
}

export function out(o: ClientOpts, json: unknown, text: string): void {
  process.stdout.write(o.json ? `${JSON.stringify(json, null, 2)}\n` : text);
}

async function eabFrom(o: { eabKid?: string; eabHmacKey?: string; eabHmacKeyFile?: string }): Promise<ExternalAccountBinding | undefined> {
  let key = o.eabHmacKey;
  if (o.eabHmacKeyFile) key = (await readFile(o.eabHmacKeyFile, 'utf8')).trim();
  if (!o.eabKid && !key) return undefined;
  if (!o.eabKid || !key) throw new UsageError('External Account Binding needs both --eab-kid and --eab-hmac-key (or --eab-hmac-key-file)');
  if (!/^[A-Za-z0-9_=+/-]+$/.test(key)) throw new UsageError('--eab-hmac-key must be base64url, as the CA handed it out');
  return { kid: o.eabKid, hmacKey: key.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_') };
}

/** `-m ops@example.com` as an ACME contact URL (RFC 8555 §7.3: mailto:). */
function mailtos(emails: string[] = []): string[] {
  return emails.map((e) => (e.startsWith('mailto:') ? e : `mailto:${e}`));
}

/** What a new account is registered with, from the command's flags (EAB only for the CA that gave it). */
async function newAccountFrom(
  o: { email?: string[]; agreeTos?: boolean; eabKid?: string; eabHmacKey?: string; eabHmacKeyFile?: string },
  alg: AccountKeyAlg,
  withEab = true,
): Promise<NonNullable<OpenAccountOptions['create']>> {
  const eab = withEab ? await eabFrom(o) : undefined;
  return { contact: mailtos(o.email), agreeTos: Boolean(o.agreeTos), ...(eab ? { eab } : {}), alg };
}

function parseIdentifiers(values: string[]): Identifier[] {
  const out: Identifier[] = [];
  for (const v of values) {
    const type = /^[0-9.]+$|:/.test(v) ? 'ip' : 'dns';
    try {
      const id = canonicalIdentifier({ type, value: type === 'ip' ? v.replace(/^\[|\]$/g, '') : v.toLowerCase() });
      if (!out.some((x) => x.type === id.type && x.value === id.value)) out.push(id);
    } catch (e) {
      throw new UsageError(`-d ${v}: ${(e as Error).message}`);
    }
  }
  return out;
}

function daysLeft(cert: X509Certificate, now = Date.now()): number {
  return Math.floor((new Date(cert.validTo).getTime() - now) / 86_400_000);
}

// ---------------------------------------------------------------------------------------------
// anvil issue

interface IssueOpts extends ClientOpts {
  domain?: string[];
  certName?: string;
  http?: boolean;
  httpPort: number;
  httpAddress?: string;
  webroot?: string;
  tlsAlpn?: boolean;
  tlsPort: number;
  tlsAddress?: string;
  dns?: string;
  dnsConfig?: string;
  dnsResolver?: string[];
  dnsTimeout?: number;
  dnsNsPort?: number;
  dnsAuthoritative?: string[];
  dnsNoPropagationCheck?: boolean;
  keyType: string;
  reuseKey?: boolean;
  csr?: string;
  email?: string[];
  agreeTos?: boolean;
  eabKid?: string;
  eabHmacKey?: string;
  eabHmacKeyFile?: string;
  accountKeyType: AccountKeyAlg;
  force?: boolean;
  timeout?: number;
  profile?: string;
  fallback?: string[];
  preHook?: string[];
  postHook?: string[];
  deployHook?: string[];
}

/** --pre-hook, --post-hook, --deploy-hook (each repeatable) over the lineage's saved hooks, kind by kind. */
function hooksFrom(o: IssueOpts, saved: LineageConfig['hooks']): LineageConfig['hooks'] {
  const parse = (flag: string, vs: string[] | undefined) => {
    if (!vs?.length) return undefined;
    try {
      return vs.map((v) => parseHookCommand(v));
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`);
    }
  };
  const hooks = {
    ...saved,
    ...(o.preHook?.length ? { pre: parse('--pre-hook', o.preHook) } : {}),
    ...(o.postHook?.length ? { post: parse('--post-hook', o.postHook) } : {}),
    ...(o.deployHook?.length ? { deploy: parse('--deploy-hook', o.deployHook) } : {}),
  };
  return hooks.pre?.length || hooks.post?.length || hooks.deploy?.length ? hooks : undefined;
}

function solverConfigFrom(o: IssueOpts): SolverConfig {
  const chosen = [o.http, o.webroot, o.tlsAlpn, o.dns].filter(Boolean).length;
  if (chosen > 1) throw new UsageError('choose one of --http, --webroot, --tls-alpn and --dns');
  if (o.webroot) return { type: 'webroot', path: path.resolve(o.webroot) };
  if (o.tlsAlpn) return { type: 'tls-alpn', port: o.tlsPort, ...(o.tlsAddress ? { host: o.tlsAddress } : {}) };
  if (o.dns) {
    const authoritative: Record<string, string[]> = {};
    for (const a of o.dnsAuthoritative ?? []) {
      const m = /^([^=]+)=(.+)$/.exec(a);
      if (!m) throw new UsageError(`--dns-authoritative ${a}: expected ZONE=HOST[:PORT][+HOST[:PORT]...]`);
      authoritative[m[1]!.toLowerCase().replace(/\.$/, '')] = m[2]!.split('+');
    }
    return {
      type: 'dns',
      provider: o.dns,
      ...(o.dnsConfig ? { configFile: path.resolve(o.dnsConfig) } : {}),
      ...(o.dnsResolver?.length ? { resolvers: o.dnsResolver } : {}),
      ...(o.dnsTimeout ? { propagationTimeoutMs: o.dnsTimeout * 1000 } : {}),
      ...(o.dnsNsPort ? { nameserverPort: o.dnsNsPort } : {}),
      ...(Object.keys(authoritative).length ? { authoritative } : {}),
      ...(o.dnsNoPropagationCheck ? { skipPropagationCheck: true } : {}),
    };
  }
  if (!o.http) throw new UsageError('choose how to answer challenges: --http, --webroot DIR, --tls-alpn or --dns PROVIDER');
  return { type: 'http', port: o.httpPort, ...(o.httpAddress ? { host: o.httpAddress } : {}) };
}

export interface BuiltSolvers {
  solvers: Solver[];
  /** Releases listeners and DNS provider connections. */
  close(): Promise<void>;
}

function built(solvers: Solver[], extra?: () => Promise<void>): BuiltSolvers {
  return {
    solvers,
    async close() {
      await Promise.all(solvers.map((s) => s.close?.().catch(() => undefined)));
      await extra?.().catch(() => undefined);
    },
  };
}

/** Builds the solvers a lineage's config describes (also used by renewal). */
export async function solversFor(cfg: SolverConfig, onStep?: (msg: string) => void): Promise<BuiltSolvers> {
  switch (cfg.type) {
    case 'http':
      return built([new StandaloneHttp01({ ...(cfg.host ? { host: cfg.host } : {}), ...(cfg.port ? { port: cfg.port } : {}) })]);
    case 'webroot':
      return built([new WebrootHttp01(cfg.path)]);
    case 'tls-alpn':
      return built([new StandaloneTlsAlpn01({ ...(cfg.host ? { host: cfg.host } : {}), ...(cfg.port ? { port: cfg.port } : {}) })]);
    case 'dns': {
      let config: Record<string, unknown> = {};
      if (cfg.configFile) {
        const text = await readFile(cfg.configFile, 'utf8').catch((e: Error) => {
          throw new UsageError(`cannot read the DNS provider config ${cfg.configFile}: ${e.message}`);
        });
        try {
          config = JSON.parse(text) as Record<string, unknown>;
        } catch {
          throw new UsageError(`${cfg.configFile} is not valid JSON`);
        }
      }
      // Loaded only for dns-01, so other commands start faster.
      const [{ createDnsProvider }, { Dns01Solver }] = await Promise.all([import('../dns/registry.js'), import('../client/solvers/dns01.js')]);
      const provider = await createDnsProvider(cfg.provider, config);
      return built(
        [
        new Dns01Solver(provider, {
          ...(cfg.resolvers ? { resolvers: cfg.resolvers } : {}),
          ...(cfg.propagationTimeoutMs ? { propagationTimeoutMs: cfg.propagationTimeoutMs } : {}),
          ...(cfg.nameserverPort ? { nameserverPort: cfg.nameserverPort } : {}),
          ...(cfg.authoritative ? { authoritative: cfg.authoritative } : {}),
          ...(cfg.skipPropagationCheck ? { skipPropagationCheck: true } : {}),
          ...(onStep ? { onStep } : {}),
        }),
        ],
        async () => provider.close?.(),
      );
    }
  }
}

async function issue(o: IssueOpts): Promise<void> {
  const step = progress(o);
  const solver = solverConfigFrom(o);
  let csr;
  if (o.csr) {
    const data = await readFile(o.csr).catch((e: Error) => {
      throw new UsageError(`cannot read --csr ${o.csr}: ${e.message}`);
    });
    csr = await readCsr(data);
    if (o.reuseKey) throw new UsageError('--reuse-key has no meaning with --csr: the key is yours');
  }
  const identifiers = csr ? csr.identifiers : parseIdentifiers(o.domain ?? []);
  if (identifiers.length === 0) throw new UsageError('name at least one domain with -d NAME (or give --csr FILE)');
  if (o.domain?.length && csr) {
    const want = parseIdentifiers(o.domain).map((i) => `${i.type}:${i.value}`).sort().join();
    if (want !== csr.identifiers.map((i) => `${i.type}:${i.value}`).sort().join()) {
      throw new UsageError(`the names given with -d differ from the CSR's (${csr.identifiers.map((i) => i.value).join(', ')}); drop -d or fix the CSR`);
    }
  }
  const keyType = parseCertKeyType(o.keyType);
  if (!keyType) throw new UsageError(`--key-type ${o.keyType}: use one of ${CERT_KEY_TYPES.join(', ')}`);
  if (identifiers.some((i) => i.value.startsWith('*.')) && solver.type !== 'dns') {
    throw new UsageError('wildcard names can only be validated with dns-01: use --dns PROVIDER');
  }
  const name = o.certName ? checkName(o.certName) : defaultLineageName(identifiers);
  const root = storeRoot(o);
  const lineages = new LineageStore(root);
  const existing = await lineages.readConfig(name);
  if (existing && !o.force) {
    const cur = await lineages.current(name);
    const sameNames =
      existing.identifiers.map((i) => `${i.type}:${i.value}`).sort().join() === identifiers.map((i) => `${i.type}:${i.value}`).sort().join();
    if (cur && sameNames) {
      const cert = new X509Certificate(await readFile(cur.cert));
      const end = new Date(cert.validTo).getTime();
      // The renewal rules of docs/renewal.md, from local files only (ARI as `anvil renew` last saw it).
      const d = await decideLineage(lineages, name, existing);
      if (d && !d.due) {
        out(
          o,
          { name, status: 'not-due', notAfter: new Date(end).toISOString(), dueAt: d.at.toISOString(), reason: d.reason, files: cur },
          `${name}: the certificate is valid until ${new Date(end).toISOString()} and not yet due; nothing done (--force to get a new one now)\n`,
        );
        return;
      }
    }
  }
  // Hooks (docs/install.md): pre before anything binds a port or talks to the CA; deploy once the
  // new version is live; post after everything, whatever the outcome (a failed pre hook too).
  // Data reaches them only through their environment.
  const hooks = hooksFrom(o, existing?.hooks);
  const hookCtx = (event: HookContext['event'], files: HookContext['files'] = null, leaf?: X509Certificate): HookContext => ({
    lineage: name,
    identifiers,
    server: o.server,
    liveDir: path.join(lineages.liveDir, name),
    files,
    event,
    ...(leaf ? { serial: leaf.serialNumber, notAfter: new Date(leaf.validTo) } : {}),
  });
  const hookOpts = { onOutput: (line: string) => (o.quiet ? undefined : process.stderr.write(`${line}\n`)) };
  let http: AcmeHttp | undefined;
  let built: BuiltSolvers | undefined;
  let failed = false;
  try {
    await runHooks(hooks?.pre, hookCtx('pre', await lineages.current(name)), hookOpts);
    http = await makeHttp(o);
    built = await solversFor(solver, step);
    const solvers = built.solvers;
    const { api, account, created } = await openAccount({
      store: new AccountStore(root),
      http,
      name: o.account,
      create: await newAccountFrom(o, o.accountKeyType),
      onStep: step,
    });
    if (created) step(`registered account ${account.url}`);
    if (o.profile) {
      // draft-ietf-acme-profiles: refuse a name the CA does not offer before ordering anything.
      const offered = (await http.directory()).meta?.profiles;
      if (!offered) throw new UsageError(`--profile ${o.profile}: ${o.server} offers no certificate profiles; leave --profile out`);
      if (!Object.hasOwn(offered, o.profile)) {
        throw new UsageError(`--profile ${o.profile}: ${o.server} offers ${Object.keys(offered).join(', ')}`);
      }
    }
    // Fallback CAs get an account now, so that a renewal that needs one does not stop at registering.
    const fallback: NonNullable<LineageConfig['fallback']> = [];
    for (const server of o.fallback ?? []) {
      if (server === o.server) throw new UsageError(`--fallback ${server} is the --server itself`);
      const fbHttp = await makeHttp({ ...o, server });
      try {
        const fb = await openAccount({
          store: new AccountStore(root),
          http: fbHttp,
          name: o.account,
          create: await newAccountFrom(o, o.accountKeyType, false),
          onStep: step,
        });
        if (fb.created) step(`registered account ${fb.account.url} at fallback ${server}`);
      } finally {
        await fbHttp.close();
      }
      fallback.push({ server, account: o.account, ...(o.caBundle ? { caBundle: path.resolve(o.caBundle) } : {}) });
    }
    const config: Omit<LineageConfig, 'version' | 'createdAt' | 'updatedAt'> = {
      name,
      server: o.server,
      account: o.account,
      identifiers,
      keyType: csr ? null : keyType,
      reuseKey: Boolean(o.reuseKey),
      ...(o.csr ? { csrFile: path.resolve(o.csr) } : {}),
      solver,
      ...(o.caBundle ? { caBundle: path.resolve(o.caBundle) } : {}),
      ...(o.profile ? { profile: o.profile } : existing?.profile ? { profile: existing.profile } : {}),
      ...(fallback.length ? { fallback } : existing?.fallback ? { fallback: existing.fallback } : {}),
      // Kept from the saved config: what anvil install and the hooks set up for this lineage.
      ...(hooks ? { hooks } : {}),
      ...(existing?.installers ? { installers: existing.installers } : {}),
      ...(existing?.notify ? { notify: existing.notify } : {}),
    };
    const r = await issueToLineage({
      api,
      store: lineages,
      config,
      solvers,
      ...(csr ? { csr } : {}),
      ...(o.timeout ? { timeoutMs: o.timeout * 1000 } : {}),
      onStep: step,
    });
    const result = {
      name,
      status: 'issued',
      version: r.files.version,
      identifiers: identifiers.map((i) => i.value),
      serial: r.leaf.serialNumber,
      notBefore: new Date(r.leaf.validFrom).toISOString(),
      notAfter: new Date(r.leaf.validTo).toISOString(),
      files: r.files,
      server: o.server,
      account: account.url,
    };
    out(
      o,
      result,
      `Certificate for ${result.identifiers.join(', ')} saved as ${name} (version ${r.files.version}), valid until ${result.notAfter}\n` +
        `  certificate + chain: ${r.files.fullchain}\n` +
        (r.files.privkey ? `  private key:         ${r.files.privkey}\n` : '') +
        `  renewal config:      ${lineages.configFile(name)}\n`,
    );
    // The solvers' ports are free again before deploy hooks run (one may start a web server).
    const solversToClose = built;
    built = undefined;
    await solversToClose.close();
    await runHooks(hooks?.deploy, hookCtx('deploy', r.files, r.leaf), hookOpts);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    await built?.close();
    await http?.close();
    const files = await lineages.current(name).catch(() => null);
    const leaf = files ? await readFile(files.cert).then((b) => new X509Certificate(b)).catch(() => undefined) : undefined;
    try {
      await runHooks(hooks?.post, hookCtx('post', files, leaf), hookOpts);
    } catch (e) {
      // After a failure, that failure is the exit status; the post hook's is reported beside it.
      if (!failed) throw e;
      process.stderr.write(`anvil: ${(e as Error).message}\n`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// anvil account ...

async function withAccount<T>(o: ClientOpts, fn: (api: AcmeApi, store: AccountStore, account: Awaited<ReturnType<typeof openAccount>>['account']) => Promise<T>): Promise<T> {
  const http = await makeHttp(o);
  try {
    const store = new AccountStore(storeRoot(o));
    const { api, account } = await openAccount({ store, http, name: o.account, onStep: progress(o) });
    return await fn(api, store, account);
  } finally {
    await http.close();
  }
}

// ---------------------------------------------------------------------------------------------
// anvil revoke

const REASONS: Record<string, number> = {
  unspecified: 0,
  keycompromise: 1,
  affiliationchanged: 3,
  superseded: 4,
  cessationofoperation: 5,
  privilegewithdrawn: 9,
};

function parseReason(v: string): number {
  if (/^\d+$/.test(v)) return Number(v);
  const n = REASONS[v.toLowerCase().replace(/[-_ ]/g, '')];
  if (n === undefined) throw new InvalidArgumentError(`use one of ${Object.keys(REASONS).join(', ')} or an RFC 5280 reason code`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Registration of the commands

export function registerClientCommands(program: Command): void {
  addClientOptions(
    program
      .command('issue')
      .description('Get a certificate from an ACME CA and save it as a lineage (live/NAME/*.pem).')
      .option('-d, --domain <name>', 'a DNS name or IP address (repeat, or separate with commas); *.name for a wildcard', collect)
      .option('--cert-name <name>', 'lineage name (default: the first name)')
      .option('--http', 'answer http-01 with a built-in web server')
      .option('--http-port <port>', 'port of the built-in http-01 server', port, 80)
      .option('--http-address <addr>', 'address of the built-in http-01 server (default: all)')
      .option('--webroot <dir>', "answer http-01 by writing under DIR/.well-known/acme-challenge (a web server's document root)")
      .option('--tls-alpn', 'answer tls-alpn-01 with a built-in TLS listener')
      .option('--tls-port <port>', 'port of the tls-alpn-01 listener', port, 443)
      .option('--tls-address <addr>', 'address of the tls-alpn-01 listener (default: all)')
      .option('--dns <provider>', `answer dns-01 through a DNS provider: ${DNS_PROVIDER_NAMES.join(', ')}`)
      .option('--dns-config <file>', "the DNS provider's JSON config (else its environment variables)")
      .option('--dns-resolver <host:port>', 'DNS servers for lookups (CNAME, SOA, NS); repeatable', collect)
      .option('--dns-timeout <seconds>', 'how long to wait for every authoritative server to have the record (default 120)', seconds)
      .addOption(new Option('--dns-ns-port <port>', 'port of authoritative name servers (labs and tests)').argParser(port).hideHelp())
      .option('--dns-authoritative <zone=servers>', 'authoritative servers of a zone (ZONE=HOST[:PORT][+HOST...]), instead of its NS records; repeatable', collect)
      .option('--dns-no-propagation-check', 'do not wait for the authoritative servers (when they cannot be reached from here)')
      .option('--key-type <type>', `certificate key: ${CERT_KEY_TYPES.join(', ')}`, 'ecdsa-p256')
      .option('--reuse-key', "keep the previous version's key")
      .option('--csr <file>', 'use this CSR (PEM or DER) instead of generating a key; names come from it')
      .option('-m, --email <address>', 'contact for a new account (repeatable)', collect)
      .option('--agree-tos', "agree to the CA's terms of service (needed when it has some)")
      .option('--eab-kid <kid>', 'External Account Binding key id (from the CA)')
      .addOption(new Option('--eab-hmac-key <key>', 'External Account Binding HMAC key (base64url)').env('ANVIL_EAB_HMAC_KEY'))
      .option('--eab-hmac-key-file <file>', 'read the EAB HMAC key from a file')
      .addOption(new Option('--account-key-type <alg>', 'key of a new account').choices([...ACCOUNT_KEY_ALGS]).default('ES256'))
      .option('--profile <name>', "certificate profile to ask the CA for (its directory's meta.profiles; saved for renewals)")
      .option(
        '--fallback <url|name>',
        'another CA to renew from after repeated failures at --server (repeatable, in order; an account is registered there now)',
        (v: string, prev: string[] = []) => [...prev, resolveServer(v)],
      )
      .option('--force', 'get a new certificate even if the current one is not due')
      .option('--pre-hook <command>', 'run before getting the certificate (repeatable; saved for renewals; no shell: see docs/install.md)', (v: string, prev: string[] = []) => [...prev, v])
      .option('--post-hook <command>', 'run after trying, whatever the outcome (repeatable; saved for renewals)', (v: string, prev: string[] = []) => [...prev, v])
      .option('--deploy-hook <command>', 'run after a new certificate went live, e.g. "systemctl reload nginx" (repeatable; saved for renewals)', (v: string, prev: string[] = []) => [...prev, v])
      .option('--timeout <seconds>', 'give up on validation and finalization after this long (default 300)', seconds),
  )
    .addHelpText(
      'after',
      `
Examples:
  anvil issue -d example.com -d www.example.com --http --agree-tos -m ops@example.com
  anvil issue -d app.internal --webroot /var/www/html --server https://ca.internal:14000/directory --ca-bundle root.pem
  anvil issue -d '*.example.com' -d example.com --dns rfc2136 --dns-config rfc2136.json --server letsencrypt-staging
  anvil issue --csr request.pem --http --server zerossl --eab-kid KID --eab-hmac-key KEY
${EXIT_HELP}`,
    )
    .action(issue);

  const account = program.command('account').description('Manage ACME accounts kept in the store.');
  addClientOptions(
    account
      .command('register')
      .description('Register an account with the CA (or find the one the stored key already has).')
      .option('-m, --email <address>', 'contact (repeatable)', collect)
      .option('--agree-tos', "agree to the CA's terms of service")
      .option('--eab-kid <kid>', 'External Account Binding key id')
      .addOption(new Option('--eab-hmac-key <key>', 'External Account Binding HMAC key (base64url)').env('ANVIL_EAB_HMAC_KEY'))
      .option('--eab-hmac-key-file <file>', 'read the EAB HMAC key from a file')
      .addOption(new Option('--key-type <alg>', 'account key algorithm').choices([...ACCOUNT_KEY_ALGS]).default('ES256')),
  ).action(async (o: ClientOpts & { email?: string[]; agreeTos?: boolean; eabKid?: string; eabHmacKey?: string; eabHmacKeyFile?: string; keyType: AccountKeyAlg }) => {
    const http = await makeHttp(o);
    try {
      const r = await openAccount({
        store: new AccountStore(storeRoot(o)),
        http,
        name: o.account,
        create: await newAccountFrom(o, o.keyType),
        onStep: progress(o),
      });
      out(o, r.account, `${r.created ? 'Registered' : 'Already registered:'} ${r.account.url} (${r.account.alg}) at ${o.server}\n`);
    } finally {
      await http.close();
    }
  });

  addClientOptions(account.command('show').description("Show the stored account and the CA's view of it.")).action(async (o: ClientOpts) => {
    await withAccount(o, async (api, _store, acc) => {
      const remote = await api.find();
      const info = { ...acc, status: remote.body.status, contact: remote.body.contact ?? [] };
      out(o, info, `account:  ${acc.url}\nserver:   ${acc.directoryUrl}\nstatus:   ${info.status}\nkey:      ${acc.alg}\ncontact:  ${info.contact.join(', ') || '(none)'}\ncreated:  ${acc.createdAt}\n`);
    });
  });

  addClientOptions(
    account
      .command('update')
      .description("Replace the account's contacts.")
      .option('-m, --email <address>', 'contact (repeatable); none removes all', collect),
  ).action(async (o: ClientOpts & { email?: string[] }) => {
    await withAccount(o, async (api, store, acc) => {
      const contact = mailtos(o.email);
      const r = await api.updateAccount({ contact });
      const saved = { ...acc, contact: r.body.contact ?? contact };
      await store.save(saved);
      out(o, saved, `Contacts of ${acc.url}: ${saved.contact.join(', ') || '(none)'}\n`);
    });
  });

  addClientOptions(
    account
      .command('rollover')
      .description('Replace the account key (RFC 8555 §7.3.5); the old key stops working.')
      .addOption(new Option('--key-type <alg>', 'algorithm of the new key (default: as before)').choices([...ACCOUNT_KEY_ALGS])),
  ).action(async (o: ClientOpts & { keyType?: AccountKeyAlg }) => {
    await withAccount(o, async (api, store, acc) => {
      const updated = await rolloverAccount({ store, api, account: acc, ...(o.keyType ? { alg: o.keyType } : {}) });
      out(o, updated, `Rolled the key of ${acc.url} over to a new ${updated.alg} key\n`);
    });
  });

  addClientOptions(
    account
      .command('deactivate')
      .description('Deactivate the account at the CA (RFC 8555 §7.3.6). It cannot be undone.')
      .option('--yes', 'confirm'),
  ).action(async (o: ClientOpts & { yes?: boolean }) => {
    if (!o.yes) throw new UsageError('deactivation cannot be undone: pass --yes to confirm');
    await withAccount(o, async (api, store, acc) => {
      await api.deactivateAccount();
      const moved = await store.retire(acc.directoryUrl, acc.name);
      out(o, { ...acc, status: 'deactivated', movedTo: moved }, `Deactivated ${acc.url}; its files moved to ${moved}\n`);
    });
  });

  const certs = program.command('certs').description('Certificates in the store.');
  certs
    .command('list')
    .description('List lineages: names, expiry, key type, CA.')
    .addOption(new Option('--store <dir>', 'store directory').env('ANVIL_HOME'))
    .option('--json', 'print JSON')
    .action(async (o: { store?: string; json?: boolean }) => {
      const lineages = new LineageStore(o.store ? path.resolve(o.store) : defaultStoreRoot());
      const rows = [];
      for (const name of await lineages.names()) rows.push(await describeLineage(lineages, name));
      if (o.json) return void process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      if (rows.length === 0) return void process.stdout.write(`No certificates in ${lineages.root}\n`);
      const table = rows.map((r) => [r.name, r.notAfter ? `${r.notAfter.slice(0, 10)} (${r.daysLeft} d)` : '(none)', r.keyType ?? '?', r.identifiers.join(',')]);
      const head = ['NAME', 'EXPIRES', 'KEY', 'NAMES'];
      const w = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
      const line = (cols: string[]) => `${cols.map((c, i) => (i < cols.length - 1 ? c.padEnd(w[i]!) : c)).join('  ')}\n`;
      process.stdout.write(line(head) + table.map(line).join(''));
    });

  certs
    .command('show')
    .description('Show one lineage: certificate, files, how it was obtained.')
    .argument('<name>', 'lineage name')
    .addOption(new Option('--store <dir>', 'store directory').env('ANVIL_HOME'))
    .option('--json', 'print JSON')
    .action(async (name: string, o: { store?: string; json?: boolean }) => {
      const lineages = new LineageStore(o.store ? path.resolve(o.store) : defaultStoreRoot());
      if (!(await lineages.readConfig(checkName(name)))) throw new UsageError(`no certificate named ${name} in ${lineages.root} ("anvil certs list" shows them)`);
      const d = await describeLineage(lineages, name);
      if (o.json) return void process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
      process.stdout.write(
        [
          `name:        ${d.name}`,
          `names:       ${d.identifiers.join(', ')}`,
          `serial:      ${d.serial ?? ''}`,
          `issuer:      ${d.issuer ?? ''}`,
          `valid:       ${d.notBefore ?? ''} .. ${d.notAfter ?? ''} (${d.daysLeft ?? '?'} days left)`,
          `key:         ${d.keyType ?? ''}`,
          `version:     ${d.version ?? ''}`,
          `server:      ${d.server}`,
          `challenge:   ${d.solver}`,
          `fullchain:   ${d.files?.fullchain ?? ''}`,
          `private key: ${d.files?.privkey ?? '(not stored: CSR brought by the user)'}`,
          '',
        ].join('\n'),
      );
    });

  addClientOptions(
    program
      .command('revoke')
      .description('Revoke a certificate (RFC 8555 §7.6): a lineage of the store, or a PEM file.')
      .argument('[name]', 'lineage name')
      .option('--cert <file>', 'a certificate file instead of a lineage')
      .option('--key <file>', "sign with the certificate's private key instead of the account")
      .option('--reason <reason>', `${Object.keys(REASONS).join(', ')}, or an RFC 5280 code`, parseReason),
  )
    .addHelpText('after', `\nExamples:\n  anvil revoke example.com --reason superseded\n  anvil revoke --cert leaked.pem --key leaked-key.pem --reason keyCompromise --server letsencrypt\n${EXIT_HELP}`)
    .action(async (name: string | undefined, o: ClientOpts & { cert?: string; key?: string; reason?: number }, cmd: Command) => {
      if (!name && !o.cert) throw new UsageError('name a lineage or give --cert FILE');
      if (name && o.cert) throw new UsageError('give either a lineage name or --cert, not both');
      let certPem: string;
      let keyPem: string | null = null;
      let caBundle: string | undefined;
      const opts = { ...o };
      if (name) {
        const lineages = new LineageStore(storeRoot(o));
        const cfg = await lineages.readConfig(checkName(name));
        const cur = await lineages.current(name);
        if (!cfg || !cur) throw new UsageError(`no certificate named ${name} in ${lineages.root}`);
        certPem = await readFile(cur.cert, 'utf8');
        if (cur.privkey) keyPem = await readFile(cur.privkey, 'utf8');
        // The lineage knows its CA and account, unless the user overrode them.
        if (cmd.getOptionValueSource('server') !== 'cli' && cmd.getOptionValueSource('server') !== 'env') opts.server = cfg.server;
        if (cmd.getOptionValueSource('account') !== 'cli') opts.account = cfg.account;
        caBundle = cfg.caBundle;
      } else {
        certPem = await readFile(o.cert!, 'utf8').catch((e: Error) => {
          throw new UsageError(`cannot read --cert ${o.cert}: ${e.message}`);
        });
      }
      if (o.key) keyPem = await readFile(o.key, 'utf8');
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(certPem);
      } catch {
        throw new UsageError('the certificate does not parse (PEM or DER expected)');
      }
      const der = cert.raw;
      const http = await makeHttp(opts, caBundle && !o.caBundle ? caBundle : undefined);
      try {
        const reason = o.reason !== undefined ? { reason: o.reason } : {};
        if (o.key) {
          const certKey = accountSigner(readPrivateKey(keyPem!, '--key'));
          if (!keyTypeOf(certKey.privateKey)) throw new UsageError('--key is not a supported key');
          const api = new AcmeApi(http, certKey);
          await api.revoke(der, { ...reason, certKey });
        } else {
          try {
            const { api } = await openAccount({ store: new AccountStore(storeRoot(opts)), http, name: opts.account, onStep: progress(o) });
            await api.revoke(der, reason);
          } catch (e) {
            // The account may not be the one that ordered it: the certificate's own key can revoke too.
            if (!(e instanceof AcmeProblemError && e.type === 'unauthorized') || !keyPem) throw e;
            const certKey = accountSigner(readPrivateKey(keyPem, 'the lineage key'));
            await new AcmeApi(http, certKey).revoke(der, { ...reason, certKey });
          }
        }
        out(opts, { serial: cert.serialNumber, revoked: true, ...reason }, `Revoked certificate ${cert.serialNumber} (${cert.subjectAltName ?? cert.subject})\n`);
      } finally {
        await http.close();
      }
    });
}

interface LineageSummary {
  name: string;
  identifiers: string[];
  server: string;
  solver: string;
  keyType: CertKeyType | null;
  version: number | null;
  serial: string | null;
  issuer: string | null;
  notBefore: string | null;
  notAfter: string | null;
  daysLeft: number | null;
  files: Awaited<ReturnType<LineageStore['current']>>;
}

async function describeLineage(lineages: LineageStore, name: string): Promise<LineageSummary> {
  const cfg = await lineages.readConfig(name);
  const cur = await lineages.current(name);
  let cert: X509Certificate | null = null;
  if (cur) cert = new X509Certificate(await readFile(cur.cert));
  return {
    name,
    identifiers: cfg?.identifiers.map((i) => i.value) ?? [],
    server: cfg?.server ?? '',
    solver: cfg ? (cfg.solver.type === 'dns' ? `dns-01 via ${cfg.solver.provider}` : cfg.solver.type === 'tls-alpn' ? 'tls-alpn-01' : `http-01 (${cfg.solver.type})`) : '',
    keyType: cert ? (keyTypeOf(cert.publicKey) ?? null) : null,
    version: cur?.version ?? null,
    serial: cert?.serialNumber ?? null,
    issuer: cert?.issuer.replace(/\n/g, ', ') ?? null,
    notBefore: cert ? new Date(cert.validFrom).toISOString() : null,
    notAfter: cert ? new Date(cert.validTo).toISOString() : null,
    daysLeft: cert ? daysLeft(cert) : null,
    files: cur,
  };
}

/** Maps a client-side error to a message and exit code; null when it is not one of ours. */
export function clientErrorExit(e: unknown): { message: string; code: number } | null {
  if (e instanceof UsageError) return { message: e.message, code: EXIT.usage };
  if (e instanceof DnsProviderError) {
    return { message: e.message, code: e.code === 'DNS_PROVIDER_CONFIG' || e.code === 'DNS_PROVIDER_CNAME_REQUIRED' ? EXIT.usage : e.code === 'DNS_PROVIDER_TIMEOUT' ? EXIT.network : EXIT.failure };
  }
  if (e instanceof AcmeProblemError) {
    const sub = e.subproblems.map((s) => `\n  ${s.identifier?.value ?? ''}: ${s.detail ?? s.type}`).join('');
    if (e.identifier) return { message: `validation of ${e.identifier} failed: ${e.type}: ${e.detail}${sub}`, code: EXIT.validation };
    const hint = e.type === 'rateLimited' && e.retryAfter ? ` (try again in ${e.retryAfter} s)` : '';
    return { message: `the CA refused: ${e.type}: ${e.detail}${hint}${sub}`, code: EXIT.refused };
  }
  if (e instanceof AcmeClientError) {
    const code = (
      {
        BAD_INPUT: EXIT.usage,
        INSECURE_DIRECTORY: EXIT.usage,
        NETWORK: EXIT.network,
        TIMEOUT: EXIT.network,
        RETRIES_EXHAUSTED: EXIT.network,
        BAD_RESPONSE: EXIT.badResponse,
        CROSS_ORIGIN: EXIT.badResponse,
        RESPONSE_TOO_LARGE: EXIT.badResponse,
        LOCKED: EXIT.locked,
        DNS_PROPAGATION_TIMEOUT: EXIT.validation,
        DNS_LOOKUP: EXIT.network,
        DNS_CNAME_CHAIN: EXIT.usage,
        STORE: EXIT.failure,
        // A hook failed, or an installer failed and rolled back: the message names which and why.
        HOOK: EXIT.failure,
        INSTALL: EXIT.failure,
      } as Record<string, number>
    )[e.code];
    return { message: e.message, code: code ?? EXIT.failure };
  }
  return null;
}
