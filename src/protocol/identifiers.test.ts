import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalIdentifier, canonicalIp, dnsNameError, ipToBytes, reverseDnsName, sameIdentifierSet, sortIdentifiers } from './identifiers.js';
import { AcmeProblem } from './problems.js';

const refused: Array<[string, unknown, string]> = [
  ['an empty name', { type: 'dns', value: '' }, 'rejectedIdentifier'],
  ['an empty label', { type: 'dns', value: 'a..example.com' }, 'rejectedIdentifier'],
  ['a label over 63 characters', { type: 'dns', value: `${'a'.repeat(64)}.example.com` }, 'rejectedIdentifier'],
  ['a name over 253 characters', { type: 'dns', value: `${'abcdefghi.'.repeat(26)}com` }, 'rejectedIdentifier'],
  ['bad characters', { type: 'dns', value: 'exa_mple.com' }, 'rejectedIdentifier'],
  ['spaces', { type: 'dns', value: 'exa mple.com' }, 'rejectedIdentifier'],
  ['bad punycode', { type: 'dns', value: 'xn--zz.example.com' }, 'rejectedIdentifier'],
  ['a trailing dot', { type: 'dns', value: 'example.com.' }, 'rejectedIdentifier'],
  ['an IP address as dns', { type: 'dns', value: '192.0.2.1' }, 'rejectedIdentifier'],
  ['a double wildcard', { type: 'dns', value: '*.*.example.com' }, 'rejectedIdentifier'],
  ['an inner wildcard', { type: 'dns', value: 'a.*.example.com' }, 'rejectedIdentifier'],
  ['a partial wildcard label', { type: 'dns', value: 'a*.example.com' }, 'rejectedIdentifier'],
  ['a wildcard on a TLD', { type: 'dns', value: '*.com' }, 'rejectedIdentifier'],
  ['a single label', { type: 'dns', value: 'localhost' }, 'rejectedIdentifier'],
  ['a leading hyphen', { type: 'dns', value: '-a.example.com' }, 'rejectedIdentifier'],
  ['an all-numeric TLD', { type: 'dns', value: 'example.123' }, 'rejectedIdentifier'],
  ['an IPv4 address with leading zeros', { type: 'ip', value: '010.0.0.1' }, 'rejectedIdentifier'],
  ['a name as ip', { type: 'ip', value: 'example.com' }, 'rejectedIdentifier'],
  ['an IPv6 zone id', { type: 'ip', value: 'fe80::1%eth0' }, 'rejectedIdentifier'],
  ['an unknown type', { type: 'email', value: 'a@example.com' }, 'unsupportedIdentifier'],
  ['a missing value', { type: 'dns' }, 'malformed'],
  ['a non-object', 'example.com', 'malformed'],
];

for (const [name, input, type] of refused) {
  test(`an identifier with ${name} is refused as ${type}`, () => {
    assert.throws(
      () => canonicalIdentifier(input),
      (e: unknown) => e instanceof AcmeProblem && e.type === type,
    );
  });
}

test('refused identifiers carry the identifier for subproblems', () => {
  try {
    canonicalIdentifier({ type: 'dns', value: 'bad_name.example' });
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof AcmeProblem);
    assert.deepEqual(e.identifier, { type: 'dns', value: 'bad_name.example' });
  }
});

test('accepted identifiers are canonicalised', () => {
  assert.deepEqual(canonicalIdentifier({ type: 'dns', value: 'WWW.Example.COM' }), { type: 'dns', value: 'www.example.com' });
  assert.deepEqual(canonicalIdentifier({ type: 'dns', value: '*.example.com' }), { type: 'dns', value: '*.example.com' });
  assert.deepEqual(canonicalIdentifier({ type: 'dns', value: 'xn--bcher-kva.example' }), { type: 'dns', value: 'xn--bcher-kva.example' });
  assert.deepEqual(canonicalIdentifier({ type: 'ip', value: '2001:DB8:0:0:0:0:0:1' }), { type: 'ip', value: '2001:db8::1' });
  assert.deepEqual(canonicalIdentifier({ type: 'ip', value: '192.0.2.7' }), { type: 'ip', value: '192.0.2.7' });
});

test('a name of exactly 253 characters and labels of 63 are accepted', () => {
  const label = 'a'.repeat(63);
  const name = `${label}.${label}.${label}.${'b'.repeat(57)}.com`;
  assert.equal(name.length, 253);
  assert.equal(dnsNameError(name), null);
});

test('IP addresses become SAN bytes', () => {
  assert.deepEqual([...ipToBytes('192.0.2.1')], [192, 0, 2, 1]);
  assert.equal(ipToBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
  assert.equal(ipToBytes('::1').toString('hex'), '00000000000000000000000000000001');
  assert.equal(canonicalIp('::ffff:192.0.2.1'), '::ffff:c000:201');
});

test('identifier sets compare without order or duplicates', () => {
  const a = [{ type: 'dns' as const, value: 'b.example' }, { type: 'dns' as const, value: 'a.example' }];
  const b = sortIdentifiers([...a, a[0]!]);
  assert.equal(b.length, 2);
  assert.equal(b[0]!.value, 'a.example');
  assert.ok(sameIdentifierSet(a, b));
  assert.ok(!sameIdentifierSet(a, [a[0]!]));
  assert.ok(!sameIdentifierSet(a, [{ type: 'ip', value: 'a.example' } as never, a[1]!]));
});

test('reverse-DNS names of IP addresses follow RFC 8738 §6', () => {
  assert.equal(reverseDnsName('192.0.2.1'), '1.2.0.192.in-addr.arpa');
  assert.equal(reverseDnsName('::1'), `1.${'0.'.repeat(31)}ip6.arpa`);
  assert.equal(reverseDnsName('2001:db8::567:89ab'), 'b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
});
