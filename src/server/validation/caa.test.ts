/** CAA (RFC 8659, RFC 8657): SECURITY.md's CAA row, case by case, against a fake DNS server. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FakeDns } from '../../../test/helpers/fake-dns.js';
import { checkCaa, parseIssueValue } from './caa.js';
import { createDnsLookup } from './resolver.js';

const ME = 'ca.anvil.example';
const ACCT = 'https://ca.anvil.example/acme/acct/abc';

describe('CAA', () => {
  let fake: FakeDns;
  before(async () => {
    fake = await new FakeDns().start();
    const set = (name: string, recs: Array<[number, string, string]>) =>
      fake.caa.set(name, recs.map(([flags, tag, value]) => ({ flags, tag, value })));
    set('allowed.example.com', [[0, 'issue', ME]]);
    set('other-ca.example.com', [[0, 'issue', 'letsencrypt.org']]);
    set('parent.example.com', [[0, 'issue', 'letsencrypt.org']]);
    fake.a.set('child.parent.example.com', ['192.0.2.1']);
    set('nowild.example.com', [[0, 'issue', ME], [0, 'issuewild', ';']]);
    set('critical.example.com', [[128, 'tbs', 'x'], [0, 'issue', ME]]);
    set('acct.example.com', [[0, 'issue', `${ME}; accounturi=${ACCT}`]]);
    set('methods.example.com', [[0, 'issue', `${ME}; validationmethods=dns-01,tls-alpn-01`]]);
    set('iodef-only.example.com', [[0, 'iodef', 'mailto:sec@example.com']]);
    set('empty-issue.example.com', [[0, 'issue', ';']]);
    fake.behaviour.set('broken.example.com', 'servfail');
  });
  after(async () => fake.stop());

  const check = (name: string, o: { wildcard?: boolean; accountUri?: string; method?: string } = {}) =>
    checkCaa(
      { name, wildcard: o.wildcard ?? false, accountUri: o.accountUri ?? ACCT, method: o.method ?? 'http-01' },
      [ME],
      createDnsLookup({ servers: [fake.addr], timeoutMs: 300 }),
    );

  const cases: Array<[string, string, Parameters<typeof check>[1], boolean]> = [
    ['no CAA anywhere', 'nothing.example.com', {}, true],
    ['an issue record for this CA', 'allowed.example.com', {}, true],
    ['an issue record for another CA', 'other-ca.example.com', {}, false],
    ['a parent domain naming another CA', 'child.parent.example.com', {}, false],
    ['issuewild ";" for a wildcard', 'nowild.example.com', { wildcard: true }, false],
    ['issuewild ";" for the plain name', 'nowild.example.com', {}, true],
    ['an unknown critical tag', 'critical.example.com', {}, false],
    ['a matching accounturi', 'acct.example.com', {}, true],
    ['an accounturi of another account', 'acct.example.com', { accountUri: 'https://ca.anvil.example/acme/acct/zzz' }, false],
    ['validationmethods that include the method', 'methods.example.com', { method: 'dns-01' }, true],
    ['validationmethods that exclude the method', 'methods.example.com', { method: 'http-01' }, false],
    ['only an iodef record', 'iodef-only.example.com', {}, true],
    ['issue ";" (nobody)', 'empty-issue.example.com', {}, false],
    ['a failing lookup (SERVFAIL)', 'broken.example.com', {}, false],
  ];
  for (const [what, name, o, allowed] of cases) {
    test(`${what}: ${allowed ? 'permitted' : 'refused with caa'}`, async () => {
      const p = await check(name, o);
      if (allowed) assert.equal(p, null, p?.detail);
      else {
        assert.ok(p, 'refused');
        assert.equal(p.type, 'caa');
        assert.equal(p.status, 403);
      }
    });
  }

  test('issue values parse per RFC 8659 §4.2', () => {
    assert.deepEqual(parseIssueValue(' CA.example ; accounturi=https://x/1 ; validationmethods=dns-01 '), {
      domain: 'ca.example',
      params: new Map([
        ['accounturi', 'https://x/1'],
        ['validationmethods', 'dns-01'],
      ]),
    });
    assert.equal(parseIssueValue(';')?.domain, '');
    assert.equal(parseIssueValue('bad domain!'), null);
  });
});
