/** The renewal decision, rule by rule (docs/renewal.md), with fixed time and randomness. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LineageConfig } from '../store.js';
import { applyRenewalInfo, decide, type CertFacts, type DecideInput } from './decide.js';
import { freshState, type AriState, type IssuedState, type RenewalState } from './state.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (days: number) => new Date(T0 + days * DAY);

/** A certificate valid from day 0 for `days`. */
function cert(days = 90, o: Partial<CertFacts> = {}): CertFacts {
  return { serial: 'AA01', notBefore: at(0), notAfter: at(days), identifiers: ['dns:example.com', 'dns:www.example.com'], keyType: 'ecdsa-p256', ...o };
}

const config: DecideInput['config'] = {
  identifiers: [
    { type: 'dns', value: 'example.com' },
    { type: 'dns', value: 'www.example.com' },
  ],
  keyType: 'ecdsa-p256',
};

function state(o: Partial<RenewalState> = {}): RenewalState {
  return { ...freshState(), ...o };
}

function ari(start: Date, end: Date, o: Partial<AriState> = {}): AriState {
  return {
    serial: 'AA01',
    certId: 'k.AKoB',
    server: 'https://ca.example/dir',
    window: { start: start.toISOString(), end: end.toISOString() },
    chosen: new Date((start.getTime() + end.getTime()) / 2).toISOString(),
    nextFetch: new Date(start.getTime() - DAY).toISOString(),
    ...o,
  };
}

function run(o: Partial<DecideInput> & { now: Date }): ReturnType<typeof decide> {
  return decide({ cert: cert(), config, state: state(), random: () => 0.5, ...o });
}

describe('decide: rules that renew at once', () => {
  const cases: Array<{ name: string; input: Partial<DecideInput> & { now: Date }; rule: string; reason: RegExp }> = [
    { name: 'no live certificate', input: { now: at(1), cert: null }, rule: 'missing', reason: /no live certificate/ },
    { name: 'forced', input: { now: at(1), options: { force: true } }, rule: 'forced', reason: /forced/ },
    {
      name: 'the certificate is revoked (OCSP/CRL), early in its life',
      input: { now: at(1), state: state({ revocation: { serial: 'AA01', status: 'revoked', source: 'ocsp', checkedAt: at(1).toISOString(), nextCheck: at(2).toISOString(), revokedAt: at(0.5).toISOString() } }) },
      rule: 'revoked',
      reason: /^revoked at 2026-01-01T12:00:00Z \(OCSP\)/,
    },
    {
      name: 'a name was added in the config',
      input: { now: at(1), config: { ...config, identifiers: [...config.identifiers, { type: 'dns', value: 'api.example.com' }] } },
      rule: 'names',
      reason: /^names changed/,
    },
    {
      name: 'a name was removed in the config',
      input: { now: at(1), config: { ...config, identifiers: [{ type: 'dns', value: 'example.com' }] } },
      rule: 'names',
      reason: /^names changed/,
    },
    { name: 'the key type changed in the config', input: { now: at(1), config: { ...config, keyType: 'rsa-2048' } }, rule: 'key-type', reason: /^key type changed \(ecdsa-p256 -> rsa-2048\)/ },
    {
      name: 'the profile changed in the config',
      input: { now: at(1), config: { ...config, profile: 'shortlived' }, state: state({ issued: { serial: 'AA01', at: at(0).toISOString(), server: 'https://ca.example/dir', caIndex: 0, profile: 'classic' } }) },
      rule: 'profile',
      reason: /^profile changed \(classic -> shortlived\)/,
    },
    { name: 'expired', input: { now: at(91) }, rule: 'expired', reason: /^expired at 2026-04-01T00:00:00Z/ },
    { name: 'less than 1/20 of the lifetime left', input: { now: at(86) }, rule: 'last-twentieth', reason: /^less than 1\/20 of lifetime left/ },
  ];
  for (const c of cases) {
    test(`${c.name}: due (${c.rule})`, () => {
      const d = run(c.input);
      assert.equal(d.due, true);
      assert.equal(d.rule, c.rule);
      assert.match(d.reason, c.reason);
    });
  }

  test('a revocation result about another serial is ignored', () => {
    const d = run({ now: at(1), state: state({ revocation: { serial: 'FF', status: 'revoked', source: 'crl', checkedAt: at(1).toISOString(), nextCheck: at(2).toISOString() } }) });
    assert.equal(d.due, false);
  });

  test('no key type in the config (a CSR the user brought) never means "key type changed"', () => {
    assert.equal(run({ now: at(1), config: { ...config, keyType: null }, cert: cert(90, { keyType: null }) }).due, false);
  });

  test('a certificate from a fallback CA is compared with that CA\'s profile', () => {
    const cfg = { ...config, profile: 'classic', fallback: [{ server: 'https://other.example/dir', account: 'default', profile: 'tlsserver' }] };
    const s = state({ issued: { serial: 'AA01', at: at(0).toISOString(), server: 'https://other.example/dir', caIndex: 1, profile: 'tlsserver' } });
    assert.equal(run({ now: at(1), config: cfg, state: s }).due, false);
  });

  test('without a record of the profile (obtained before anvil kept state) nothing is assumed', () => {
    assert.equal(run({ now: at(1), config: { ...config, profile: 'shortlived' } }).due, false);
  });
});

// Regression (review of the renewal engine, finding 1): a config-change rule whose renewal could
// not bring the certificate in line with the config (a reused key of the old type, a CSR's key)
// renewed again at every run, forever.
describe('decide: config-change rules do not loop', () => {
  const p384 = { ...config, keyType: 'ecdsa-p384' as const };
  const issued = (o: Partial<IssuedState>): IssuedState => ({ serial: 'AA01', at: at(1).toISOString(), server: 'https://ca.example/dir', caIndex: 0, ...o });
  /** What the runner records with a renewal (wantedOf): the config's names, key type and profile. */
  const wantedOf = (c: DecideInput['config'], _caIndex: number) => ({
    names: c.identifiers.map((i) => `${i.type}:${i.value}`).sort(),
    keyType: c.keyType,
    profile: c.profile ?? '',
  });

  test('a lineage from the user\'s CSR never renews for its key type, whatever keyType the config names', () => {
    const d = run({ now: at(2), config: { ...p384, csrFile: '/etc/anvil/www.csr' } });
    assert.equal(d.due, false);
    assert.equal(d.rule, 'lifetime');
  });

  const cases: Array<{ name: string; input: Partial<DecideInput> & { now: Date }; due: boolean; rule: string; note?: RegExp }> = [
    {
      name: 'the key type rule does not fire again on the certificate it produced, for the same config',
      input: { now: at(2), config: p384, state: state({ issued: issued({ trigger: 'key-type', wanted: wantedOf(p384, 0) }) }) },
      due: false,
      rule: 'lifetime',
      note: /^key type changed \(ecdsa-p256 -> ecdsa-p384\), but certificate AA01 was obtained for that very change at 2026-01-02T00:00:00Z; not renewing for it again$/,
    },
    {
      name: '... but fires when the config asks for yet another key type since',
      input: { now: at(2), config: { ...config, keyType: 'rsa-2048' }, state: state({ issued: issued({ trigger: 'key-type', wanted: wantedOf(p384, 0) }) }) },
      due: true,
      rule: 'key-type',
    },
    {
      name: '... and a certificate obtained for another reason is renewed for its key type',
      input: { now: at(2), config: p384, state: state({ issued: issued({ trigger: 'lifetime', wanted: wantedOf(p384, 0) }) }) },
      due: true,
      rule: 'key-type',
    },
    {
      name: 'a state without the config of that renewal (an older anvil) still stops the loop',
      input: { now: at(2), config: p384, state: state({ issued: issued({ trigger: 'key-type' }) }) },
      due: false,
      rule: 'lifetime',
      note: /^key type changed/,
    },
    {
      name: 'the names rule does not fire again on the certificate it produced, for the same names',
      input: {
        now: at(2),
        config: { ...config, identifiers: [{ type: 'dns', value: 'example.com' }] },
        state: state({ issued: issued({ trigger: 'names', wanted: wantedOf({ ...config, identifiers: [{ type: 'dns', value: 'example.com' }] }, 0) }) }),
      },
      due: false,
      rule: 'lifetime',
      note: /^names changed \(config: example\.com; certificate: example\.com, www\.example\.com\), but certificate AA01 was obtained/,
    },
    {
      name: '... but fires when the names changed again since',
      input: { now: at(2), config: { ...config, identifiers: [{ type: 'dns', value: 'api.example.com' }] }, state: state({ issued: issued({ trigger: 'names', wanted: wantedOf({ ...config, identifiers: [{ type: 'dns', value: 'example.com' }] }, 0) }) }) },
      due: true,
      rule: 'names',
    },
    {
      name: 'the profile rule does not fire again on the certificate it produced, for the same profile',
      input: { now: at(2), config: { ...config, profile: 'tlsserver' }, state: state({ issued: issued({ profile: 'classic', trigger: 'profile', wanted: wantedOf({ ...config, profile: 'tlsserver' }, 0) }) }) },
      due: false,
      rule: 'lifetime',
      note: /^profile changed \(classic -> tlsserver\), but/,
    },
    {
      name: '... but fires when the profile changed again since',
      input: { now: at(2), config: { ...config, profile: 'shortlived' }, state: state({ issued: issued({ profile: 'classic', trigger: 'profile', wanted: wantedOf({ ...config, profile: 'tlsserver' }, 0) }) }) },
      due: true,
      rule: 'profile',
    },
    {
      name: 'the other rules still apply to such a certificate (expired)',
      input: { now: at(91), config: p384, state: state({ issued: issued({ trigger: 'key-type', wanted: wantedOf(p384, 0) }) }) },
      due: true,
      rule: 'expired',
      note: /^key type changed/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const d = run(c.input);
      assert.equal(d.due, c.due);
      assert.equal(d.rule, c.rule);
      if (c.note) assert.match(d.notes?.join('\n') ?? '', c.note);
      else assert.equal(d.notes, undefined);
    });
  }
});

describe('decide: lifetime rules without ARI', () => {
  test('a 90-day certificate is due at 2/3 of its lifetime, not a second earlier', () => {
    const before = run({ now: new Date(at(60).getTime() - 1000) });
    assert.equal(before.due, false);
    assert.equal(before.rule, 'lifetime');
    assert.equal(before.reason, '2/3 of lifetime');
    assert.equal(before.at.toISOString(), at(60).toISOString());
    assert.equal(before.nextCheck.toISOString(), at(60).toISOString());
    const after = run({ now: at(60) });
    assert.equal(after.due, true);
    assert.equal(after.reason, '2/3 of lifetime');
  });

  test('a 6-day certificate is due at 1/2 of its lifetime', () => {
    assert.equal(run({ now: at(2.9), cert: cert(6) }).due, false);
    const d = run({ now: at(3), cert: cert(6) });
    assert.equal(d.due, true);
    assert.match(d.reason, /^1\/2 of lifetime/);
  });

  test('a 10-day certificate is not "short": 2/3', () => {
    assert.equal(run({ now: at(6), cert: cert(10) }).due, false);
    assert.equal(run({ now: at(10 * (2 / 3)), cert: cert(10) }).due, true);
  });

  test('a backdated notBefore does not make a fresh certificate due: the lifetime counts from when it was obtained', () => {
    // notBefore 60 days ago, 30 days left: by its notBefore it is at 2/3 already.
    const c = cert(90);
    const now = at(60);
    const s = state({ issued: { serial: 'AA01', at: now.toISOString(), server: 'https://ca.example/dir', caIndex: 0 } });
    const d = run({ now, cert: c, state: s });
    assert.equal(d.due, false);
    assert.equal(d.at.toISOString(), at(80).toISOString());
    assert.equal(run({ now: at(80), cert: c, state: s }).due, true);
  });
});

describe('decide: ARI (RFC 9773)', () => {
  const win = ari(at(70), at(72));

  test('not due before the random time chosen in the window; looked at again at the next fetch', () => {
    const d = run({ now: at(65), state: state({ ari: win }) });
    assert.equal(d.due, false);
    assert.equal(d.rule, 'ari');
    assert.match(d.reason, /^ARI window 2026-03-12T00:00:00Z \.\. 2026-03-14T00:00:00Z/);
    assert.equal(d.at.toISOString(), at(71).toISOString());
    assert.equal(d.nextCheck.toISOString(), at(69).toISOString(), 'the Retry-After time comes first');
  });

  test('ARI wins over 2/3 of the lifetime in both directions', () => {
    assert.equal(run({ now: at(61), state: state({ ari: win }) }).due, false, 'later than 2/3');
    const early = ari(at(30), at(31));
    const d = run({ now: at(30.6), state: state({ ari: early }) });
    assert.equal(d.due, true, 'earlier than 2/3');
    assert.equal(d.rule, 'ari');
  });

  test('an overdue fetch (the CA could not be asked) does not pull the next check into the past', () => {
    const d = run({ now: at(65), state: state({ ari: { ...win, nextFetch: at(64).toISOString() } }) });
    assert.equal(d.nextCheck.toISOString(), at(71).toISOString());
  });

  test('due at the chosen time, and an explanationURL is shown', () => {
    const d = run({ now: at(71), state: state({ ari: { ...win, explanationURL: 'https://ca.example/incident' } }) });
    assert.equal(d.due, true);
    assert.equal(d.at.toISOString(), at(71).toISOString());
    assert.match(d.reason, /see https:\/\/ca\.example\/incident/);
  });

  test('a time within the lookahead (the next wake-up) counts as now (§4.2 step 5)', () => {
    assert.equal(run({ now: at(70.9), state: state({ ari: win }), options: { lookaheadMs: 3 * HOUR } }).due, true);
    assert.equal(run({ now: at(70.9), state: state({ ari: win }) }).due, false);
  });

  test('less than 1/20 of the lifetime left renews even when the ARI window is later', () => {
    const late = ari(at(88), at(89));
    const before = run({ now: at(85), state: state({ ari: late }) });
    assert.equal(before.due, false);
    assert.equal(before.rule, 'last-twentieth');
    assert.equal(before.at.toISOString(), at(85.5).toISOString());
    const d = run({ now: at(85.5), state: state({ ari: late }) });
    assert.equal(d.due, true);
    assert.equal(d.rule, 'last-twentieth');
  });

  test('a window entirely in the past means now', () => {
    const past = ari(at(5), at(6), { chosen: at(5.5).toISOString() });
    const d = run({ now: at(10), state: state({ ari: past }) });
    assert.equal(d.due, true);
    assert.equal(d.rule, 'ari-past');
    assert.match(d.reason, /is in the past/);
  });

  test('... also for a certificate obtained minutes ago (a CA revoking it, an operator pulling windows forward)', () => {
    const obtained = at(10);
    const s = state({ issued: { serial: 'AA01', at: obtained.toISOString(), server: 'https://ca.example/dir', caIndex: 0, trigger: 'lifetime' }, ari: ari(at(5), at(6)) });
    assert.equal(run({ now: new Date(obtained.getTime() + 10 * 60_000), state: s }).due, true);
  });

  test('... but once: a certificate ARI renewed minutes ago is not renewed for ARI again at once', () => {
    const obtained = at(10);
    const s = state({ issued: { serial: 'AA01', at: obtained.toISOString(), server: 'https://ca.example/dir', caIndex: 0, trigger: 'ari-past' }, ari: ari(at(5), at(6)) });
    const d = run({ now: new Date(obtained.getTime() + 10 * 60_000), state: s });
    assert.equal(d.due, false);
    assert.equal(d.rule, 'guard');
    assert.match(d.reason, /not renewing again yet/);
    // The guard is a tenth of the lifetime, at most a day.
    assert.equal(d.at.toISOString(), new Date(obtained.getTime() + DAY).toISOString());
    assert.equal(run({ now: new Date(obtained.getTime() + DAY), state: s }).due, true);
  });

  test('the guard follows minIntervalMs when given', () => {
    const obtained = at(10);
    const s = state({ issued: { serial: 'AA01', at: obtained.toISOString(), server: 'https://ca.example/dir', caIndex: 0, trigger: 'ari' }, ari: ari(at(5), at(6)) });
    assert.equal(run({ now: new Date(obtained.getTime() + 2 * HOUR), state: s, options: { minIntervalMs: HOUR } }).due, true);
  });

  test('ARI facts about another certificate (the one replaced) are ignored', () => {
    const d = run({ now: at(61), state: state({ ari: { ...ari(at(5), at(6)), serial: 'OLD' } }) });
    assert.equal(d.rule, 'lifetime');
    assert.equal(d.due, true);
  });

  test('a window without a stored random time gets one drawn in it, to be persisted', () => {
    const { chosen: _c, ...noChoice } = win;
    const d = run({ now: at(65), state: state({ ari: noChoice as AriState }), random: () => 0.25 });
    assert.equal(d.ariChosen?.toISOString(), at(70.5).toISOString());
    assert.equal(d.at.toISOString(), at(70.5).toISOString());
  });
});

describe('applyRenewalInfo', () => {
  const about = { serial: 'AA01', certId: 'k.AKoB', server: 'https://ca.example/dir' };
  const info = (start: Date, end: Date, retryAfterMs = 6 * HOUR) => ({ start, end, retryAfterMs });

  test('draws a uniform random time in a new window and schedules the next fetch after Retry-After', () => {
    const a = applyRenewalInfo(undefined, info(at(70), at(72), HOUR), about, at(1), () => 0.75);
    assert.equal(a.chosen, at(71.5).toISOString());
    assert.equal(a.nextFetch, new Date(at(1).getTime() + HOUR).toISOString());
    assert.equal(a.fetchedAt, at(1).toISOString());
  });

  test('keeps the chosen time while the window is unchanged', () => {
    const first = applyRenewalInfo(undefined, info(at(70), at(72)), about, at(1), () => 0.1);
    const again = applyRenewalInfo(first, info(at(70), at(72)), about, at(2), () => 0.9);
    assert.equal(again.chosen, first.chosen);
    assert.equal(again.nextFetch, new Date(at(2).getTime() + 6 * HOUR).toISOString());
  });

  test('draws again when the window changes', () => {
    const first = applyRenewalInfo(undefined, info(at(70), at(72)), about, at(1), () => 0.1);
    const moved = applyRenewalInfo(first, info(at(20), at(21)), about, at(2), () => 0.5);
    assert.equal(moved.chosen, at(20.5).toISOString());
  });

  test('draws again for another certificate with the same window', () => {
    const first = applyRenewalInfo(undefined, info(at(70), at(72)), about, at(1), () => 0.1);
    const other = applyRenewalInfo(first, info(at(70), at(72)), { ...about, serial: 'BB02' }, at(2), () => 0.5);
    assert.equal(other.chosen, at(71).toISOString());
  });
});
