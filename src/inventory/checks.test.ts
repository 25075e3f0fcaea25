import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeCertificate, type CertificateFacts } from './certificate.js';
import { checkCertificate, estateHealth, healthOf, nextCheckChange, type CheckContext, type Finding, type InstallationState } from './checks.js';
import { testCa, testLeaf } from './test-certs.js';

const DAY = 86_400_000;
const NOW = new Date('2026-11-25T12:00:00Z');

function facts(over: Partial<CertificateFacts> = {}): CertificateFacts {
  return {
    fingerprint: 'ab'.repeat(32),
    subject: 'CN=www.example.test',
    issuer: 'CN=Test CA',
    serial: '01',
    names: ['www.example.test'],
    keyType: 'ec',
    keyBits: 256,
    keyDetail: 'prime256v1',
    spkiSha256: 'cd'.repeat(32),
    signatureAlgorithm: 'ecdsa-with-SHA256',
    notBefore: new Date(NOW.getTime() - 10 * DAY),
    notAfter: new Date(NOW.getTime() + 80 * DAY),
    isCa: false,
    selfSigned: false,
    knownWeakKey: null,
    ...over,
  };
}

function endpoint(over: Partial<InstallationState> = {}): InstallationState {
  return { id: 'i1', kind: 'endpoint', location: '127.0.0.1:443', sni: 'www.example.test', status: 'present', chainError: null, hostnameError: null, ...over };
}

const ctx = (over: Partial<CheckContext> = {}): CheckContext => ({ now: NOW, installations: [endpoint()], ...over });
const ids = (fs: Finding[]) => fs.map((f) => `${f.check}:${f.severity}`).sort();

describe('checkCertificate', () => {
  const cases: Array<[string, Partial<CertificateFacts>, Partial<CheckContext>, string[]]> = [
    ['a sound certificate has no findings', {}, {}, []],
    ['expired and deployed is critical', { notAfter: new Date(NOW.getTime() - DAY) }, {}, ['expired:critical']],
    ['expired, renewed and deployed nowhere is only a notice', { notAfter: new Date(NOW.getTime() - DAY) }, { installations: [], renewedBy: { fingerprint: 'ff'.repeat(32), notBefore: new Date(NOW.getTime() - 30 * DAY) } }, ['expired:notice']],
    ['expired and never renewed is critical even when deployed nowhere', { notAfter: new Date(NOW.getTime() - DAY) }, { installations: [] }, ['expired:critical']],
    ['20 days left of 90 is a warning', { notBefore: new Date(NOW.getTime() - 70 * DAY), notAfter: new Date(NOW.getTime() + 20 * DAY) }, {}, ['expiring:warning']],
    ['5 days left of 90 is critical', { notBefore: new Date(NOW.getTime() - 85 * DAY), notAfter: new Date(NOW.getTime() + 5 * DAY) }, {}, ['expiring:critical']],
    ['a 6-day certificate with 3 days left is fine (its lifetime scales the thresholds)', { notBefore: new Date(NOW.getTime() - 3 * DAY), notAfter: new Date(NOW.getTime() + 3 * DAY) }, {}, []],
    ['a 6-day certificate with 1.5 days left is a warning', { notBefore: new Date(NOW.getTime() - 4.5 * DAY), notAfter: new Date(NOW.getTime() + 1.5 * DAY) }, {}, ['expiring:warning']],
    ['a 6-day certificate with 12 hours left is critical', { notBefore: new Date(NOW.getTime() - 5.5 * DAY), notAfter: new Date(NOW.getTime() + 0.5 * DAY) }, {}, ['expiring:critical']],
    ['expiring but renewed and deployed nowhere is nothing', { notAfter: new Date(NOW.getTime() + 2 * DAY) }, { installations: [], renewedBy: { fingerprint: 'ff'.repeat(32), notBefore: NOW } }, []],
    ['not yet valid while deployed is critical', { notBefore: new Date(NOW.getTime() + DAY) }, {}, ['not-yet-valid:critical']],
    ['RSA 1024 is critical', { keyType: 'rsa', keyBits: 1024, keyDetail: '65537' }, {}, ['weak-key:critical']],
    ['RSA exponent 3 is critical', { keyType: 'rsa', keyBits: 2048, keyDetail: '3' }, {}, ['weak-key:critical']],
    ['RSA 2048 with 65537 is fine', { keyType: 'rsa', keyBits: 2048, keyDetail: '65537' }, {}, []],
    ['P-224 is critical', { keyType: 'ec', keyBits: 224, keyDetail: 'secp224r1' }, {}, ['weak-key:critical']],
    ['a known-weak key is critical', { keyType: 'rsa', keyBits: 2048, keyDetail: '65537', knownWeakKey: 'ROCA' }, {}, ['weak-key:critical']],
    ['an EC curve Anvil does not know is a warning', { keyType: 'ec', keyBits: 0, keyDetail: '1.3.36.3.3.2.8.1.1.9' }, {}, ['weak-key:warning']],
    ['DSA is a warning', { keyType: 'dsa', keyBits: 2048, keyDetail: null }, {}, ['weak-key:warning']],
    ['SHA-1 signature is a warning', { signatureAlgorithm: 'sha1WithRSAEncryption' }, {}, ['weak-signature:warning']],
    ['MD5 signature is critical', { signatureAlgorithm: 'md5WithRSAEncryption' }, {}, ['weak-signature:critical']],
    ['a self-signed leaf is a notice (its own SHA-1 signature is not judged)', { selfSigned: true, issuer: 'CN=www.example.test', signatureAlgorithm: 'sha1WithRSAEncryption' }, {}, ['self-signed:notice']],
    ['a self-signed CA certificate is not flagged', { selfSigned: true, isCa: true }, {}, []],
    ['a chain that does not verify is critical', {}, { installations: [endpoint({ chainError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })] }, ['chain-invalid:critical']],
    ['a hostname mismatch is a warning', {}, { installations: [endpoint({ hostnameError: "Host: other.test. is not in the cert's altnames" })] }, ['hostname-mismatch:warning']],
    ['served a day and more after its renewal is stale', {}, { renewedBy: { fingerprint: 'ff'.repeat(32), notBefore: new Date(NOW.getTime() - 2 * DAY) } }, ['stale-after-renewal:warning']],
    ['served an hour after its renewal is not yet stale', {}, { renewedBy: { fingerprint: 'ff'.repeat(32), notBefore: new Date(NOW.getTime() - 3_600_000) } }, []],
    ['gone from where it was seen is a warning', {}, { installations: [endpoint({ status: 'missing' })] }, ['missing:warning']],
    ['gone after its renewal is expected', {}, { installations: [endpoint({ status: 'missing' })], renewedBy: { fingerprint: 'ff'.repeat(32), notBefore: NOW } }, []],
    ['revoked and deployed is critical', {}, { revoked: { at: NOW, reason: 1 } }, ['revoked:critical']],
    ['revoked and deployed nowhere is a notice', {}, { installations: [], revoked: { at: NOW, reason: null } }, ['revoked:notice']],
  ];
  for (const [name, over, c, expected] of cases) {
    test(name, () => assert.deepEqual(ids(checkCertificate(facts(over), ctx(c))), expected.sort()));
  }

  test('messages say what and where', () => {
    const [f] = checkCertificate(facts(), ctx({ installations: [endpoint({ chainError: 'CERT_HAS_EXPIRED', location: '10.0.0.1:8443', sni: 'api.test' })] }));
    assert.equal(f?.installation, 'i1');
    assert.match(f!.message, /10\.0\.0\.1:8443 \(SNI api\.test\).*CERT_HAS_EXPIRED/);
  });

  test('real certificates: an expired RSA-1024 SHA-1 leaf collects all three findings', async () => {
    const ca = await testCa();
    const leaf = await testLeaf({ ca, key: 'rsa1024', hash: 'SHA-1', notBefore: new Date(NOW.getTime() - 100 * DAY), notAfter: new Date(NOW.getTime() - 10 * DAY) });
    assert.deepEqual(ids(checkCertificate(describeCertificate(leaf.der), ctx())), ['expired:critical', 'weak-key:critical', 'weak-signature:warning']);
  });
});

describe('printable', () => {
  test('control characters from certificates and servers are shown, not sent to the terminal', async () => {
    const { printable } = await import('./report.js');
    assert.equal(printable('a\u001b]0;x\u0007b\u009bc\u007f'), 'a\\x1b]0;x\\x07b\\x9bc\\x7f');
    assert.equal(printable('été.example, 10.0.0.1'), 'été.example, 10.0.0.1');
  });
});

describe('health', () => {
  test('the level is that of the worst finding; the score loses 60/25/5 per finding', () => {
    assert.deepEqual(healthOf([]), { level: 'good', score: 100, findings: [] });
    const notice: Finding = { check: 'self-signed', severity: 'notice', message: '' };
    const warning: Finding = { check: 'expiring', severity: 'warning', message: '' };
    const critical: Finding = { check: 'expired', severity: 'critical', message: '' };
    assert.equal(healthOf([notice]).level, 'fair');
    assert.equal(healthOf([notice]).score, 95);
    assert.equal(healthOf([notice, warning]).level, 'poor');
    assert.equal(healthOf([notice, warning]).score, 70);
    assert.equal(healthOf([warning, critical]).level, 'critical');
    assert.equal(healthOf([critical, critical]).score, 0);
  });

  test('the estate: mean score, worst level, counts per level and per check', () => {
    const warn: Finding = { check: 'expiring', severity: 'warning', message: '' };
    const crit: Finding = { check: 'chain-invalid', severity: 'critical', message: '' };
    const e = estateHealth([healthOf([]), healthOf([]), healthOf([warn]), healthOf([crit, crit])]);
    assert.equal(e.level, 'critical');
    assert.equal(e.certificates, 4);
    assert.equal(e.score, 68.8); // (100 + 100 + 75 + 0) / 4, to one decimal
    assert.deepEqual(e.byLevel, { good: 2, fair: 0, poor: 1, critical: 1 });
    assert.deepEqual(e.byCheck, [
      { check: 'chain-invalid', severity: 'critical', certificates: 1 },
      { check: 'expiring', severity: 'warning', certificates: 1 },
    ]);
    assert.deepEqual(estateHealth([]), { level: 'good', score: 100, certificates: 0, byLevel: { good: 0, fair: 0, poor: 0, critical: 0 }, byCheck: [] });
  });
});

describe('nextCheckChange', () => {
  // A small deterministic generator (no dependency), so a failure can be replayed.
  let seed = 0x2545f491;
  const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

  test('which checks fire, and how severe, does not change before it, and does at the boundary it names', () => {
    let boundaries = 0;
    for (let round = 0; round < 2000; round++) {
      const lifetime = pick([6 * DAY, 47 * DAY, 90 * DAY, 398 * DAY, 3 * 3_600_000]);
      const nb = NOW.getTime() + Math.round((rand() - 0.7) * 2 * lifetime);
      const f = facts({ notBefore: new Date(nb), notAfter: new Date(nb + lifetime) });
      const renewedBy = rand() < 0.4 ? { fingerprint: 'ef'.repeat(32), notBefore: new Date(NOW.getTime() - Math.round(rand() * 2 * DAY)) } : null;
      const installations = rand() < 0.5 ? [endpoint()] : rand() < 0.5 ? [endpoint({ status: 'missing' })] : [];
      const c = ctx({ installations, renewedBy });
      const at = (t: number) => ids(checkCertificate(f, { ...c, now: new Date(t) }));
      const start = at(NOW.getTime());
      const until = nextCheckChange(f, c);
      assert.ok(until > NOW.getTime());
      const end = Number.isFinite(until) ? until : NOW.getTime() + 3 * lifetime;
      // Any instant before the boundary, and the last millisecond before it, give the same checks.
      for (const t of [end - 1, NOW.getTime() + Math.floor(rand() * (end - NOW.getTime()))]) assert.deepEqual(at(t), start, `round ${round}: at ${t - NOW.getTime()} ms, before ${until - NOW.getTime()}`);
      if (Number.isFinite(until) && at(until).join() !== start.join()) boundaries++;
    }
    // Most boundaries are real changes (a few are not: a warning threshold passed while already critical).
    assert.ok(boundaries > 500, `${boundaries} boundaries changed something`);
  });

  test('exactly at notAfter a certificate is not yet expired; a millisecond later it is', () => {
    const f = facts({ notBefore: new Date(NOW.getTime() - 89 * DAY), notAfter: NOW });
    assert.equal(nextCheckChange(f, ctx()), NOW.getTime() + 1);
    assert.ok(!ids(checkCertificate(f, ctx())).includes('expired:critical'));
    assert.ok(ids(checkCertificate(f, ctx({ now: new Date(NOW.getTime() + 1) }))).includes('expired:critical'));
  });
});
