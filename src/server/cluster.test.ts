/**
 * What the --workers primary sends its workers: the whole config, secrets included (the storage
 * URL's password), although the same config prints without them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configForWorkers } from './cluster.js';
import { parseServerConfig } from './config.js';

test('workers get the PostgreSQL password that logs and config-check never show', () => {
  const config = parseServerConfig({ storage: { type: 'postgres', url: 'postgres://anvil:s3cret@db.internal:5432/anvil' } });
  assert.doesNotMatch(JSON.stringify(config), /s3cret/, 'printed without the password');
  const sent = configForWorkers(config) as { storage: { url: string } };
  // The cluster channel serialises with JSON: what arrives is what JSON.stringify makes of it.
  const received = JSON.parse(JSON.stringify(sent)) as { storage: { url: string } };
  assert.equal(received.storage.url, 'postgres://anvil:s3cret@db.internal:5432/anvil');
  assert.deepEqual(parseServerConfig(received).storage, config.storage);
});
