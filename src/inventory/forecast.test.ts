import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CertificateFacts } from './certificate.js';
import { healthOf } from './checks.js';
import { byMonth, cabfMaxLifetime, forecast } from './forecast.js';
import type { AssessedCertificate } from './inventory.js';
import type { Installation, InventoryCertificate } from './store.js';

const DAY = 86_400_000;
const NOW = new Date('2026-01-01T12:00:00Z');
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function cert(notBeforeDaysAgo: number, lifetimeDays: number, over: Partial<InventoryCertificate> = {}, extra: Partial<AssessedCertificate> = {}): AssessedCertificate {
  const notBefore = new Date(NOW.getTime() - notBeforeDaysAgo * DAY);
  const facts: CertificateFacts = {
    fingerprint: Math.random().toString(16).slice(2).padEnd(64, '0'),
    subject: '',
    issuer: 'CN=CA',
    serial: '01',
    names: ['a.test'],
    keyType: 'ec',
    keyBits: 256,
    keyDetail: 'prime256v1',
    spkiSha256: '00',
    signatureAlgorithm: 'ecdsa-with-SHA256',
    notBefore,
    notAfter: new Date(notBefore.getTime() + lifetimeDays * DAY),
    isCa: false,
    selfSigned: false,
    knownWeakKey: null,
  };
  const c: InventoryCertificate = { ...facts, der: Buffer.alloc(0), source: 'import', profile: null, revoked: null, firstSeen: NOW, lastSeen: NOW, ...over };
  return { certificate: c, installations: [], renewedBy: null, health: healthOf([]), ...extra };
}

describe('forecast', () => {
  test('the schedule: no cap before 15 March 2026, then 200, 100 and 47 days', () => {
    assert.equal(cabfMaxLifetime(Date.parse('2026-03-14T23:59:59Z')), Infinity);
    assert.equal(cabfMaxLifetime(Date.parse('2026-03-15T00:00:00Z')), 200 * DAY);
    assert.equal(cabfMaxLifetime(Date.parse('2027-03-15T00:00:00Z')), 100 * DAY);
    assert.equal(cabfMaxLifetime(Date.parse('2029-03-15T00:00:00Z')), 47 * DAY);
  });

  test('a 90-day certificate renews at day 60 of its life, then every 60 days', () => {
    const f = forecast([cert(10, 90)], NOW, 365);
    const days = f.current.flatMap((n, d) => (n ? [d] : []));
    // Issued 10 days ago: first renewal in 50 days, then every 60.
    assert.deepEqual(days, [50, 110, 170, 230, 290, 350]);
    assert.deepEqual(f.cabf, f.current, '90 days is under every cap');
    assert.equal(f.certificates, 1);
  });

  test('a 397-day certificate is renewed once this year as it is, and more often under the schedule', () => {
    const f = forecast([cert(100, 397)], NOW, 365);
    // 2/3 of 397 days after issuance: 264.7 days, 164.7 days from now (noon), so on day 165.
    assert.equal(sum(f.current), 1);
    assert.equal(f.current.indexOf(1), 165);
    // That renewal is in June 2026, under the 200-day cap: the next one 133.3 days later (day 298).
    assert.equal(sum(f.cabf), 2);
    assert.equal(f.cabf.indexOf(1), 165);
    assert.equal(f.cabf.lastIndexOf(1), 298);
  });

  test('left out: CA certificates, revoked ones, replaced ones, expired ones deployed nowhere; an expired deployed one is due today', () => {
    const present: Installation = {
      id: 'i', kind: 'endpoint', location: 'h:443', sni: null, status: 'present', chainError: null, hostnameError: null,
      fingerprint: null, error: null, firstSeen: NOW, lastSeen: NOW, lastChecked: NOW,
    };
    const f = forecast(
      [
        cert(10, 90, { isCa: true }),
        cert(10, 90, { revoked: { at: NOW, reason: 1 } }),
        cert(10, 90, {}, { renewedBy: { fingerprint: 'ff', notBefore: NOW } }),
        cert(100, 90),
        cert(100, 90, {}, { installations: [present] }),
      ],
      NOW,
      30,
    );
    assert.equal(f.certificates, 1);
    assert.equal(f.current[0], 1);
    assert.equal(sum(f.current), 1);
  });

  test('six-day certificates renew every 4 days; the series is bounded and sums by month', () => {
    const f = forecast([cert(1, 6)], NOW, 365);
    assert.equal(f.current.length, 365);
    // In 3 days, then every 4, before the series ends 364.5 days from now: 91 renewals.
    assert.equal(sum(f.current), 91);
    const months = byMonth(f);
    assert.equal(months[0]![0], '2026-01');
    assert.equal(months.length, 12, '365 days from 1 January 2026 end on 31 December');
    assert.equal(months[11]![0], '2026-12');
    assert.equal(sum(months.map((m) => m[1])), 91);
  });
});
