/**
 * renewal/NAME.json checked before a renewal uses it. Regression (review of the renewal engine,
 * finding 3): a malformed field (an identifier `{"value":5}`, `"fallback":{}`) threw deep inside
 * the runner and rejected the whole run, so that no lineage was renewed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AcmeClientError } from '../errors.js';
import { parseLineageConfig } from './config.js';

const good = {
  version: 1,
  name: 'www',
  server: 'https://acme.example/directory',
  account: 'default',
  identifiers: [{ type: 'dns', value: 'www.example.com' }],
  keyType: 'ecdsa-p256',
  reuseKey: false,
  solver: { type: 'http', port: 80 },
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
};

describe('parseLineageConfig', () => {
  test('a config as anvil issue writes it is accepted as it is', () => {
    assert.deepEqual(parseLineageConfig(good, 'www'), good);
  });

  test('fields anvil does not know are kept; later optional fields get their defaults', () => {
    const { keyType: _k, reuseKey: _r, version: _v, ...old } = good;
    const c = parseLineageConfig({ ...old, futureField: { x: 1 } }, 'www');
    assert.equal(c.keyType, 'ecdsa-p256');
    assert.equal(c.reuseKey, false);
    assert.equal(c.version, 1);
    assert.deepEqual((c as unknown as { futureField: unknown }).futureField, { x: 1 });
  });

  test('every optional section in its right shape is accepted', () => {
    const full = {
      ...good,
      keyType: null,
      csrFile: '/etc/anvil/www.csr',
      solver: { type: 'dns', provider: 'exec', configFile: '/etc/anvil/dns.json', resolvers: ['127.0.0.1:53'], authoritative: { 'example.com': ['ns1'] } },
      hooks: { pre: [['systemctl', 'stop', 'nginx']], post: [], deploy: [['systemctl', 'reload', 'nginx']] },
      profile: 'classic',
      fallback: [{ server: 'https://other.example/dir', account: 'default', caBundle: '/etc/anvil/root.pem', profile: 'tlsserver' }],
      installers: [{ type: 'nginx', conf: '/etc/nginx/sites-enabled/www', verify: '127.0.0.1:443' }],
      notify: [['mail', '-s', 'renewal failed', 'root']],
      caBundle: '/etc/anvil/root.pem',
    };
    assert.deepEqual(parseLineageConfig(full, 'www'), full);
  });

  const bad: Array<{ name: string; raw: unknown; message: RegExp }> = [
    { name: 'an identifier whose value is a number', raw: { ...good, identifiers: [{ value: 5 }] }, message: /^renewal\/www\.json: identifiers\[0\]\.type: .*; renewal\/www\.json: identifiers\[0\]\.value: .*expected string/ },
    { name: 'fallback as an object instead of a list', raw: { ...good, fallback: {} }, message: /^renewal\/www\.json: fallback: .*expected array/ },
    { name: 'a fallback without a server', raw: { ...good, fallback: [{ account: 'default' }] }, message: /^renewal\/www\.json: fallback\[0\]\.server: / },
    { name: 'no identifiers at all', raw: { ...good, identifiers: [] }, message: /^renewal\/www\.json: identifiers: must name at least one identifier/ },
    { name: 'identifiers missing', raw: { ...good, identifiers: undefined }, message: /^renewal\/www\.json: identifiers: / },
    { name: 'a server that is not a URL', raw: { ...good, server: 'acme.example' }, message: /^renewal\/www\.json: server: must be an absolute URL/ },
    { name: 'an unknown solver type', raw: { ...good, solver: { type: 'carrier-pigeon' } }, message: /^renewal\/www\.json: solver\.type: / },
    { name: 'a webroot solver without its path', raw: { ...good, solver: { type: 'webroot' } }, message: /^renewal\/www\.json: solver\.path: / },
    { name: 'an unknown key type', raw: { ...good, keyType: 'rsa-1024' }, message: /^renewal\/www\.json: keyType: / },
    { name: 'a hook as a shell string', raw: { ...good, hooks: { deploy: 'systemctl reload nginx' } }, message: /^renewal\/www\.json: hooks\.deploy: / },
    { name: 'notify as a list of strings', raw: { ...good, notify: ['mail root'] }, message: /^renewal\/www\.json: notify\[0\]: / },
    { name: 'installers without their conf', raw: { ...good, installers: [{ type: 'nginx' }] }, message: /^renewal\/www\.json: installers\[0\]\.conf: / },
    { name: 'a name that is not the file\'s', raw: { ...good, name: 'api' }, message: /^renewal\/www\.json: name: is "api", not "www"/ },
    { name: 'a list instead of an object', raw: [good], message: /^renewal\/www\.json: \(the whole file\): / },
  ];
  for (const c of bad) {
    test(`${c.name}: BAD_INPUT naming the file and the field`, () => {
      assert.throws(
        () => parseLineageConfig(c.raw, 'www'),
        (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT' && c.message.test(e.message),
      );
    });
  }
});
