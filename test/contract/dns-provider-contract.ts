/**
 * The DnsProvider contract (src/dns/provider.ts), as one node:test suite every provider runs
 * against a real or faithfully doubled backend. A provider that cannot do something (acme-dns
 * cannot delete and keeps only the two newest values) declares it in `capabilities`, and the
 * cases that need it are skipped with that reason.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DnsProviderError, type DnsProvider, type TxtRecord } from '../../src/dns/provider.js';
import { createDnsProvider } from '../../src/dns/registry.js';

export interface DnsProviderContractCapabilities {
  /** false when deleteTxtRecord cannot remove a value (it must still resolve). Default true. */
  deletes?: boolean;
  /** How many values one name keeps at most (acme-dns: 2). Default unlimited. */
  maxValuesPerName?: number;
}

export interface DnsProviderContractSetup {
  provider: DnsProvider;
  /** The TXT values actually published at `fqdn` (no trailing dot), as the backend sees them. */
  lookup(fqdn: string): Promise<string[]>;
  capabilities?: DnsProviderContractCapabilities;
  /** The zone names are created under; default "example.com". */
  zone?: string;
  /** A provider of the same kind set up to fail (wrong secret, unreachable endpoint, ...). */
  failing?: () => Promise<DnsProvider>;
  /** Strings that must never appear in an error message (secrets). */
  secrets?: string[];
  cleanup(): Promise<void>;
}

/** A value shaped like ACME's: base64url of 32 random bytes, 43 characters. */
export function acmeTxtValue(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Registers the contract cases for provider `name` (its registry name). `label` tells several runs
 * of one provider apart; `skip` is a reason to skip them all (a missing peer outside CI).
 */
export function runDnsProviderContract(
  name: string,
  setup: () => Promise<DnsProviderContractSetup>,
  options: { label?: string; skip?: string | false } = {},
): void {
  describe(`DnsProvider contract: ${name}${options.label ? ` (${options.label})` : ''}`, { skip: options.skip ?? false }, () => {
    let s: DnsProviderContractSetup;
    const record = (label: string, value = acmeTxtValue()): TxtRecord => {
      const domain = `${label}-${randomBytes(4).toString('hex')}.${s.zone ?? 'example.com'}`;
      return { fqdn: `_acme-challenge.${domain}`, value, domain };
    };

    before(async () => {
      s = await setup();
    });
    after(async () => {
      await s?.provider.close?.();
      await s?.cleanup();
    });

    it('publishes a created value', async () => {
      const r = record('create');
      await s.provider.createTxtRecord(r);
      assert.deepEqual(await s.lookup(r.fqdn), [r.value]);
    });

    it('keeps two values at one name side by side (a wildcard and its base name)', async (t) => {
      if ((s.capabilities?.maxValuesPerName ?? Infinity) < 2) return t.skip(`${name} keeps fewer than 2 values per name`);
      const a = record('two');
      const b = { ...a, value: acmeTxtValue() };
      await s.provider.createTxtRecord(a);
      await s.provider.createTxtRecord(b);
      assert.deepEqual((await s.lookup(a.fqdn)).sort(), [a.value, b.value].sort());
    });

    it('accepts creating a value that is already there', async () => {
      const r = record('twice');
      await s.provider.createTxtRecord(r);
      await s.provider.createTxtRecord(r);
      const values = await s.lookup(r.fqdn);
      assert.ok(values.includes(r.value), `published: ${JSON.stringify(values)}`);
      assert.equal(new Set(values).size, 1);
    });

    it('deletes exactly one value and leaves the other', async (t) => {
      if (s.capabilities?.deletes === false) return t.skip(`${name} cannot delete records (old values age out instead)`);
      const a = record('delete');
      const b = { ...a, value: acmeTxtValue() };
      await s.provider.createTxtRecord(a);
      await s.provider.createTxtRecord(b);
      await s.provider.deleteTxtRecord(a);
      assert.deepEqual(await s.lookup(a.fqdn), [b.value]);
      await s.provider.deleteTxtRecord(b);
      assert.deepEqual(await s.lookup(a.fqdn), []);
    });

    it('accepts deleting a value that is not there (a name without records, or another value)', async () => {
      const r = record('missing');
      await s.provider.deleteTxtRecord(r);
      if (s.capabilities?.deletes === false) return;
      await s.provider.createTxtRecord(r);
      await s.provider.deleteTxtRecord({ ...r, value: acmeTxtValue() });
      assert.deepEqual(await s.lookup(r.fqdn), [r.value]);
    });

    it('reports an invalid configuration as DNS_PROVIDER_CONFIG, prefixed with the provider name', async () => {
      await assert.rejects(createDnsProvider(name, { notAField: true }, {}), (e: unknown) => {
        assert.ok(e instanceof DnsProviderError, String(e));
        assert.equal(e.code, 'DNS_PROVIDER_CONFIG');
        assert.equal(e.provider, name);
        assert.ok(e.message.startsWith(`${name}: `), e.message);
        assert.match(e.message, /notAField/);
        return true;
      });
    });

    it('reports a failing backend as a DnsProviderError prefixed with the provider name, without secrets', async (t) => {
      if (!s.failing) return t.skip(`the ${name} setup has no failing variant`);
      const bad = await s.failing();
      try {
        for (const op of ['createTxtRecord', 'deleteTxtRecord'] as const) {
          await assert.rejects(bad[op](record('fail')), (e: unknown) => {
            assert.ok(e instanceof DnsProviderError, String(e));
            assert.ok(['DNS_PROVIDER_FAILED', 'DNS_PROVIDER_TIMEOUT'].includes(e.code), e.code);
            assert.ok(e.message.startsWith(`${name}: `), e.message);
            for (const secret of s.secrets ?? []) assert.ok(!e.message.includes(secret), `a secret leaked into: ${e.message}`);
            return true;
          });
        }
      } finally {
        await bad.close?.();
      }
    });
  });
}
