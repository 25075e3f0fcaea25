import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseExposition } from '../../test/helpers/exposition.js';
import { escapeHelp, escapeLabelValue, ExpositionWriter, formatValue, labelSet } from './exposition.js';

describe('the text exposition format', () => {
  const cases: Array<[string, string, string]> = [
    ['plain text stays as it is', 'www.example.com', 'www.example.com'],
    ['a double quote is escaped', 'say "hi"', 'say \\"hi\\"'],
    ['a backslash is escaped', 'C:\\certs', 'C:\\\\certs'],
    ['a line feed is escaped', 'a\nb', 'a\\nb'],
    ['all three together, backslash first', '\\"\n', '\\\\\\"\\n'],
    ['UTF-8 is left alone', 'zürich.example ✓', 'zürich.example ✓'],
  ];
  for (const [name, raw, escaped] of cases) {
    test(`label values: ${name}`, () => {
      assert.equal(escapeLabelValue(raw), escaped);
      // And the strict parser reads back exactly the original.
      const text = new ExpositionWriter().family('x', 'gauge', 'h').sample('x', ['v', raw], 1).text();
      assert.equal(parseExposition(text).value('x'), 1);
      assert.equal(parseExposition(text).samples[0]!.labels.v, raw);
    });
  }

  test('HELP escapes backslashes and line feeds, not quotes', () => {
    assert.equal(escapeHelp('a "b" \\ c\nd'), 'a "b" \\\\ c\\nd');
    const f = parseExposition(new ExpositionWriter().family('x', 'gauge', 'a "b" \\ c\nd').sample('x', [], 0).text()).families.get('x')!;
    assert.equal(f.help, 'a "b" \\ c\nd');
  });

  test('values: integers as integers, fractions exactly, NaN and infinities spelled as the format wants', () => {
    assert.equal(formatValue(1767225600), '1767225600');
    assert.equal(formatValue(1767225600.5), '1767225600.5');
    assert.equal(formatValue(NaN), 'NaN');
    assert.equal(formatValue(Infinity), '+Inf');
    assert.equal(formatValue(-Infinity), '-Inf');
  });

  test('a label set is written once and reused', () => {
    const ls = labelSet(['a', '1', 'b', 'x"y']);
    assert.equal(ls, '{a="1",b="x\\"y"}');
    assert.equal(labelSet([]), '');
    const e = parseExposition(new ExpositionWriter().family('m', 'gauge', 'h').sampleWith('m', ls, 2).text());
    assert.deepEqual(e.samples[0]!.labels, { a: '1', b: 'x"y' });
  });

  test('a large exposition comes out whole, past the 64 KiB chunks and the growth of the buffer', () => {
    const w = new ExpositionWriter(1024).family('big', 'gauge', 'many samples');
    for (let i = 0; i < 20_000; i++) w.sample('big', ['i', String(i), 'name', `host-${i}.example ✓`], i);
    const e = parseExposition(w.text());
    assert.equal(e.samples.length, 20_000);
    assert.equal(e.value('big', { i: '19999' }), 19_999);
    assert.equal(e.samples[12_345]!.labels.name, 'host-12345.example ✓');
  });

  test('the strict parser refuses what Prometheus would refuse', () => {
    const bad = [
      'x 1\n', // no TYPE
      '# TYPE x gauge\nx{a="\\t"} 1\n', // bad escape
      '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n', // same series twice
      '# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a="2"} 1\n', // family split
      '# TYPE x gauge\nx one\n', // bad value
      '# TYPE x gauge\nx 1', // no final line feed
    ];
    for (const b of bad) assert.throws(() => parseExposition(b), Error, JSON.stringify(b));
  });
});
