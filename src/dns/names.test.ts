import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DNS_PROVIDER_NAMES } from './names.js';
import { listDnsProviders } from './registry.js';

test('the provider names used in help texts are exactly the registry', () => {
  assert.deepEqual([...DNS_PROVIDER_NAMES].sort(), listDnsProviders().map((p) => p.name).sort());
});
