/** The acme-dns provider end to end against `anvil dns` on loopback: register, CNAME_REQUIRED, update, dig. */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dig, startTestDnsServer, txtValue, ZONE, type TestDnsServer } from '../server/testing.js';
import { DnsProviderError, type DnsProvider } from '../provider.js';
import { createDnsProvider } from '../registry.js';
import { runDnsProviderContract } from '../../../test/contract/dns-provider-contract.js';
import { acmeDnsProvider, AcmeDnsProvider } from './acme-dns.js';

let srv: TestDnsServer;
before(async () => {
  srv = await startTestDnsServer();
});
after(async () => srv?.cleanup());

const record = (domain: string, value: string, fqdn = `_acme-challenge.${domain}`) => ({ domain, fqdn, value });

describe('acme-dns provider', () => {
  test('first use registers, saves 0600 and asks for the exact CNAME; then updates reach DNS', async () => {
    const storagePath = path.join(srv.dataDir, 'client', 'acme-dns.json');
    const p = await acmeDnsProvider.create({ apiBase: srv.apiUrl, storagePath });
    try {
      const err = await p.createTxtRecord(record('www.example.com', txtValue('a'))).then(
        () => assert.fail('expected CNAME_REQUIRED'),
        (e: unknown) => e as DnsProviderError,
      );
      assert.ok(err instanceof DnsProviderError);
      assert.equal(err.code, 'DNS_PROVIDER_CNAME_REQUIRED');
      const saved = JSON.parse(await readFile(storagePath, 'utf8'));
      const acct = saved['www.example.com'];
      assert.match(acct.fulldomain, new RegExp(`^[0-9a-f-]{36}\\.${ZONE.replace(/\./g, '\\.')}$`));
      assert.ok(err.message.startsWith('acme-dns: '));
      assert.ok(err.message.includes(`_acme-challenge.www.example.com. CNAME ${acct.fulldomain}.`), err.message);
      assert.ok(!err.message.includes(acct.password), 'no secret in the message');
      assert.equal((await stat(storagePath)).mode & 0o777, 0o600);

      // The operator created the CNAME; the wildcard and the base name validate together.
      await p.createTxtRecord(record('www.example.com', txtValue('b')));
      await p.createTxtRecord(record('www.example.com', txtValue('c')));
      await p.deleteTxtRecord(record('www.example.com', txtValue('b')));
      const d = await dig(srv.dns.port, acct.fulldomain, 'TXT');
      assert.deepEqual(d.answer.map((l) => /"([^"]+)"$/.exec(l)?.[1]).sort(), [txtValue('b'), txtValue('c')]);

      // The solver may pass the end of the CNAME chain as fqdn, with another domain spelling.
      await p.createTxtRecord(record('WWW.example.com', txtValue('d'), acct.fulldomain));
      assert.deepEqual(await srv.store.getTxt(acct.subdomain), [txtValue('d'), txtValue('c')]);
    } finally {
      await p.close?.();
    }
  });

  test('two records for a new domain at once register it only once', async () => {
    const storagePath = path.join(srv.dataDir, 'client', 'concurrent.json');
    const p = new AcmeDnsProvider({ apiBase: srv.apiUrl, storagePath });
    try {
      const before = await srv.store.countRegistrations();
      const rs = await Promise.allSettled([p.createTxtRecord(record('example.org', txtValue('a'))), p.createTxtRecord(record('example.org', txtValue('b')))]);
      assert.equal(rs[0]!.status, 'rejected');
      assert.equal(rs[1]!.status, 'fulfilled');
      assert.equal((await srv.store.countRegistrations()) - before, 1);
    } finally {
      await p.close();
    }
  });

  test('allowFrom is sent with the registration', async () => {
    const storagePath = path.join(srv.dataDir, 'client', 'allow.json');
    const p = new AcmeDnsProvider({ apiBase: srv.apiUrl, storagePath, allowFrom: ['127.0.0.0/8'] });
    try {
      await assert.rejects(p.createTxtRecord(record('allow.example', txtValue('a'))), { code: 'DNS_PROVIDER_CNAME_REQUIRED' });
      const acct = JSON.parse(await readFile(storagePath, 'utf8'))['allow.example'];
      assert.deepEqual(acct.allowfrom, ['127.0.0.0/8']);
      assert.deepEqual((await srv.store.getRegistration(acct.username))?.allowFrom, ['127.0.0.0/8']);
    } finally {
      await p.close();
    }
  });

  test('credentials the server refuses fail with DNS_PROVIDER_FAILED, without the password', async () => {
    const storagePath = path.join(srv.dataDir, 'client', 'wrong.json');
    const c = await srv.registry.register([]);
    const password = 'A'.repeat(40);
    await writeFile(storagePath, JSON.stringify({ 'wrong.example': { ...c, password } }), { mode: 0o600 });
    const p = new AcmeDnsProvider({ apiBase: srv.apiUrl, storagePath });
    try {
      const e = (await p.createTxtRecord(record('wrong.example', txtValue('a'))).catch((x: unknown) => x)) as DnsProviderError;
      assert.equal(e.code, 'DNS_PROVIDER_FAILED');
      assert.match(e.message, /HTTP 401 \(forbidden\)/);
      assert.ok(!e.message.includes(password));
    } finally {
      await p.close();
    }
  });

  test('configuration: plain http only to loopback; errors name the field', () => {
    assert.throws(() => new AcmeDnsProvider({ apiBase: 'http://auth.example.com', storagePath: 'x.json' }), (e: DnsProviderError) => e.code === 'DNS_PROVIDER_CONFIG' && /apiBase/.test(e.message));
    assert.throws(() => new AcmeDnsProvider({ apiBase: 'https://auth.example.com' } as never), (e: DnsProviderError) => /storagePath/.test(e.message));
    assert.ok(new AcmeDnsProvider({ apiBase: 'https://auth.example.com', storagePath: 'x.json' }));
    assert.ok(new AcmeDnsProvider({ apiBase: 'http://[::1]:8053', storagePath: 'x.json' }));
    assert.deepEqual(acmeDnsProvider.env, { ACME_DNS_API_BASE: 'apiBase', ACME_DNS_STORAGE_PATH: 'storagePath', ACME_DNS_ALLOWLIST: 'allowFrom' });
  });

  test('redirects are not followed and oversized responses are refused', async () => {
    const evil = http.createServer((req, res) => {
      if (req.url === '/redirect/register') {
        res.writeHead(307, { location: `${srv.apiUrl}/register` });
        return void res.end();
      }
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(`{"pad":"${'x'.repeat(200_000)}"}`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
    try {
      const p1 = new AcmeDnsProvider({ apiBase: `${base}/redirect`, storagePath: path.join(srv.dataDir, 'client', 'r.json') });
      await assert.rejects(p1.createTxtRecord(record('r.example', txtValue('a'))), (e: DnsProviderError) => e.code === 'DNS_PROVIDER_FAILED' && /HTTP 307/.test(e.message));
      await p1.close();
      const p2 = new AcmeDnsProvider({ apiBase: base, storagePath: path.join(srv.dataDir, 'client', 'big.json') });
      await assert.rejects(p2.createTxtRecord(record('big.example', txtValue('a'))), (e: DnsProviderError) => e.code === 'DNS_PROVIDER_FAILED' && /larger than/.test(e.message));
      await p2.close();
    } finally {
      evil.closeAllConnections();
      await new Promise<void>((r) => evil.close(() => r()));
    }
  });
});

// The shared DnsProvider contract. Each case uses a new domain: the setup's provider plays the
// operator, who creates the CNAME the first attempt asks for, and tries again.
runDnsProviderContract('acme-dns', async () => {
  const s = await startTestDnsServer();
  const storagePath = path.join(s.dataDir, 'contract.json');
  const inner = (await createDnsProvider('acme-dns', { apiBase: s.apiUrl, storagePath }, {})) as AcmeDnsProvider;
  const provider: DnsProvider = {
    name: inner.name,
    async createTxtRecord(r) {
      try {
        await inner.createTxtRecord(r);
      } catch (e) {
        if ((e as DnsProviderError).code !== 'DNS_PROVIDER_CNAME_REQUIRED') throw e;
        await inner.createTxtRecord(r);
      }
    },
    deleteTxtRecord: (r) => inner.deleteTxtRecord(r),
    close: () => inner.close(),
  };
  return {
    provider,
    capabilities: { deletes: false, maxValuesPerName: 2 },
    // What a resolver sees at _acme-challenge.<domain>: the TXT at the end of its CNAME.
    async lookup(fqdn) {
      const domain = fqdn.replace(/^_acme-challenge\./, '');
      const acct = JSON.parse(await readFile(storagePath, 'utf8').catch(() => '{}'))[domain];
      if (!acct) return [];
      const d = await dig(s.dns.port, acct.fulldomain, 'TXT');
      return d.answer.map((l) => /"([^"]+)"$/.exec(l)?.[1] ?? '');
    },
    // No failing variant: the contract expects deleteTxtRecord to fail against a failing backend,
    // and acme-dns's delete never calls the backend. The failure cases are tested above.
    cleanup: () => s.cleanup(),
  };
});
