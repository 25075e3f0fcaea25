/** `anvil dns` config validation, and the TCP idle timeout. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { parseDnsServerConfig } from './config.js';
import { startTestDnsServer } from './testing.js';

const base = { zone: 'Acme.Example.com.', nsNames: ['ns1.acme.example.com'] };

test('a minimal config gets the documented defaults and normalised names', () => {
  const c = parseDnsServerConfig(base);
  assert.equal(c.zone, 'acme.example.com');
  assert.deepEqual(c.dnsListen, { host: '0.0.0.0', port: 53 });
  assert.deepEqual(c.apiListen, { host: '127.0.0.1', port: 8053 });
  assert.equal(c.txtTtl, 1);
  assert.equal(c.registration.mode, 'open');
  assert.ok(Object.isFrozen(c));
});

test('errors name each bad field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ nsNames: ['ns1.acme.example.com'] }, /zone:/],
    [{ ...base, nsNames: [] }, /nsNames:/],
    [{ ...base, dnsListen: { port: 'x' } }, /dnsListen\.port:/],
    [{ ...base, unknown: 1 }, /unknown/],
    [{ ...base, nsAddresses: { 'ns9.acme.example.com': ['192.0.2.1'] } }, /nsAddresses\.ns9\.acme\.example\.com: not one of nsNames/],
    [{ ...base, nsAddresses: { 'ns1.acme.example.com': ['not-an-ip'] } }, /nsAddresses\.ns1\.acme\.example\.com\.0:/],
    [{ ...base, records: [{ name: 'www.example.org', type: 'A', value: '192.0.2.1' }] }, /records\.0\.name:/],
    [{ ...base, records: [{ name: '@', type: 'CNAME', value: 'x.example.org' }] }, /records\.0\.name: a CNAME cannot be at the zone apex/],
    [{ ...base, records: [{ name: '@', type: 'AAAA', value: '192.0.2.1' }] }, /records\.0\.value: expected an IPv6 address/],
    [{ ...base, registration: { mode: 'sometimes' } }, /registration\.mode:/],
    [{ ...base, registration: { allowFrom: ['10.0.0.1'] } }, /registration\.allowFrom\.0:/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => parseDnsServerConfig(raw), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && re.test(e.message), JSON.stringify(raw));
  }
});

test('an idle TCP connection is closed after dnsLimits.tcpIdleTimeoutMs', async () => {
  const srv = await startTestDnsServer({ dnsLimits: { tcpIdleTimeoutMs: 200 } });
  try {
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(srv.dns.port, '127.0.0.1');
      c.on('close', () => resolve());
      c.on('error', reject);
      setTimeout(() => reject(new Error('not closed')), 5000).unref();
    });
    assert.ok(Date.now() - started >= 150);
  } finally {
    await srv.cleanup();
  }
});
