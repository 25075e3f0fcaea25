import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import {
  DerError,
  bitStringOf,
  booleanOf,
  childrenOf,
  integerOf,
  namedBits,
  oid,
  oidText,
  readDer,
  readTlv,
  seq,
  smallIntegerOf,
  time,
  timeOf,
  tlv,
  unsignedInteger,
  unsignedIntegerOf,
} from './der.js';

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const rejects = (f: () => unknown, pattern: RegExp) => assert.throws(f, (e: unknown) => e instanceof DerError && pattern.test(e.message));

describe('DER reader', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['an indefinite length', '3080 0500 0000', /indefinite/],
    ['a long-form length that fits the short form', '3081 02 0500', /shortest/],
    ['a long-form length with a leading zero octet', '3082 0002 0500', /shortest/],
    ['a length running past the buffer', '3005 0500', /past/],
    ['a header cut short', '30', /truncated/],
    ['a length cut short', '3082 01', /truncated/],
    ['a high tag number', '1f20 00', /high tag/],
    ['trailing bytes', '3000 00', /trailing/],
    ['a length of five octets', '3085 0000000100', /too large/],
  ];
  for (const [name, h, pattern] of bad) {
    test(`rejects ${name}`, () => rejects(() => readDer(hex(h)), pattern));
  }

  test('accepts a long-form length where the short form cannot hold it', () => {
    const body = Buffer.alloc(200, 0x41);
    const der = tlv(0x04, body);
    assert.deepEqual(der.subarray(0, 3), hex('0481c8'));
    const t = readDer(der);
    assert.equal(t.end - t.contentStart, 200);
  });

  test('a child may not run past its parent even when the buffer goes on', () => {
    // SEQUENCE of length 2 holding an OCTET STRING that claims 3 bytes; the buffer has them.
    const buf = hex('3002 0403 414243');
    rejects(() => childrenOf(buf, readTlv(buf, 0)), /past/);
  });

  test('INTEGERs must be in their shortest form', () => {
    for (const h of ['0200', '0202 0001', '0202 ff80']) rejects(() => integerOf(hex(h), readTlv(hex(h), 0)), /INTEGER/);
    for (const [h, v] of [['020100', 0], ['0201ff', -1], ['0202 0080', 128], ['0202 ff7f', -129]] as const) {
      assert.equal(smallIntegerOf(hex(h), readTlv(hex(h), 0)), v);
    }
    const big = hex('0203 00ff01');
    assert.deepEqual(unsignedIntegerOf(big, readTlv(big, 0)), hex('ff01'));
    rejects(() => unsignedIntegerOf(hex('0201 80'), readTlv(hex('020180'), 0)), /negative/);
  });

  test('BOOLEAN is 0x00 or 0xff only', () => {
    assert.equal(booleanOf(hex('0101ff'), readTlv(hex('0101ff'), 0)), true);
    assert.equal(booleanOf(hex('010100'), readTlv(hex('010100'), 0)), false);
    rejects(() => booleanOf(hex('010101'), readTlv(hex('010101'), 0)), /BOOLEAN/);
  });

  test('BIT STRING unused bits are counted, bounded and zero', () => {
    assert.deepEqual(bitStringOf(hex('030207 80'), readTlv(hex('03020780'), 0)), { unusedBits: 7, bytes: hex('80') });
    for (const h of ['0300', '030108', '030201 81', '030208 00']) rejects(() => bitStringOf(hex(h), readTlv(hex(h), 0)), /BIT STRING/);
  });

  test('OBJECT IDENTIFIERs round-trip, including a first arc above 127', () => {
    for (const o of ['1.2.840.10045.4.3.2', '2.5.29.17', '0.9.2342.19200300.100.1.25', '2.999.3', '1.3.6.1.4.1.311.20.2.3']) {
      const der = oid(o);
      assert.equal(oidText(der.subarray(2)), o);
    }
    assert.deepEqual(oid('2.999.3'), hex('0603 883703'));
  });

  test('OBJECT IDENTIFIERs in a longer than shortest form, or cut short, are rejected', () => {
    rejects(() => oidText(hex('2a80 01')), /shortest/);
    rejects(() => oidText(hex('2a86')), /truncated/);
    rejects(() => oidText(Buffer.alloc(0)), /empty/);
  });
});

describe('DER writer', () => {
  test('positive INTEGERs get a sign octet only when the top bit is set, and lose leading zeros', () => {
    assert.deepEqual(unsignedInteger(hex('7f')), hex('02017f'));
    assert.deepEqual(unsignedInteger(hex('80')), hex('0202 0080'));
    assert.deepEqual(unsignedInteger(hex('0000 12')), hex('0201 12'));
    assert.deepEqual(unsignedInteger(hex('00')), hex('0201 00'));
  });

  test('named-bit BIT STRINGs drop trailing zero bits (X.690 §11.2.2)', () => {
    assert.deepEqual(namedBits([0]), hex('030207 80'));
    assert.deepEqual(namedBits([0, 2]), hex('030205 a0'));
    assert.deepEqual(namedBits([5, 6]), hex('030201 06'));
    assert.deepEqual(namedBits([8]), hex('030307 0080'));
  });

  const times: Array<[string, string]> = [
    ['1950-01-01T00:00:00Z', '170d 3530303130313030303030305a'],
    ['2049-12-31T23:59:59.999Z', '170d 3439313233313233353935395a'],
    ['2050-01-01T00:00:00Z', '180f 32303530303130313030303030305a'],
    ['1949-12-31T23:59:59Z', '180f 31393439313233313233353935395a'],
  ];
  for (const [iso, h] of times) {
    test(`RFC 5280 §4.1.2.5: ${iso} is written as ${h.startsWith('17') ? 'UTCTime' : 'GeneralizedTime'} without fractions`, () => {
      const der = time(new Date(iso));
      assert.deepEqual(der, hex(h));
      assert.equal(timeOf(der, readTlv(der, 0)), Math.floor(Date.parse(iso) / 1000) * 1000);
    });
  }

  test('times that do not exist are rejected', () => {
    for (const s of ['490230000000Z', '491231240000Z', '4912312359']) {
      const der = tlv(0x17, Buffer.from(s));
      rejects(() => timeOf(der, readTlv(der, 0)), /bad time/);
    }
  });

  test('openssl reads what the writer writes', () => {
    const der = seq(unsignedInteger(hex('80ff')), oid('1.2.840.10045.4.3.2'), time(new Date('2050-06-01T12:00:00Z')), namedBits([0, 2]), tlv(0x04, Buffer.alloc(300, 1)));
    const out = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: der }).toString();
    assert.match(out, /INTEGER\s+:80FF/);
    assert.match(out, /ecdsa-with-SHA256/);
    assert.match(out, /GENERALIZEDTIME\s+:20500601120000Z/);
    assert.match(out, /l= 300 prim: OCTET STRING/);
  });
});
