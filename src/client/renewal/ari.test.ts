/** RFC 9773 pieces: the certificate identifier, RenewalInfo validation, Retry-After clamping, the fetch. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Directory } from '../../protocol/types.js';
import { AcmeClientError } from '../errors.js';
import type { AcmeHttp } from '../http.js';
import { AriError, ARI_DEFAULT_RETRY_MS, certIdOf, clampRetryAfter, fetchRenewalInfo, parseRenewalInfo, serialDerBytes } from './ari.js';

/** RFC 9773 Appendix A. */
const APPENDIX_A = `-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----`;

const NOW = new Date('2026-01-01T00:00:00Z');

describe('certIdOf', () => {
  test('gives the identifier of RFC 9773 Appendix A (leading zero byte of the serial kept)', async () => {
    assert.equal(await certIdOf(APPENDIX_A), 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE');
  });

  test('serial content octets are minimal, with 0x00 before a high bit', () => {
    const cases: Array<[string, string]> = [
      ['87654321', '0087654321'],
      ['0087654321', '0087654321'],
      ['7F', '7f'],
      ['1', '01'],
      ['0', '00'],
      ['00:FF', '00ff'],
    ];
    for (const [hex, want] of cases) assert.equal(serialDerBytes(hex).toString('hex'), want, hex);
  });
});

describe('parseRenewalInfo', () => {
  const ok = { suggestedWindow: { start: '2026-02-01T00:00:00Z', end: '2026-02-03T00:00:00Z' }, explanationURL: 'https://ca.example/ari' };

  test('accepts a valid window and keeps an http(s) explanationURL', () => {
    const r = parseRenewalInfo(ok, 3600, NOW);
    assert.equal(r.start.toISOString(), '2026-02-01T00:00:00.000Z');
    assert.equal(r.end.toISOString(), '2026-02-03T00:00:00.000Z');
    assert.equal(r.explanationURL, 'https://ca.example/ari');
    assert.equal(r.retryAfterMs, 3_600_000);
  });

  test('drops an explanationURL that is not http(s), or that holds control characters (terminal escapes)', () => {
    assert.equal(parseRenewalInfo({ ...ok, explanationURL: 'javascript:alert(1)' }, 60, NOW).explanationURL, undefined);
    assert.equal(parseRenewalInfo({ ...ok, explanationURL: 'https://ca.example/\u001b[2J' }, 60, NOW).explanationURL, undefined);
  });

  const bad: Array<[string, unknown]> = [
    ['no suggestedWindow', {}],
    ['a body that is not an object', 'window'],
    ['an end before the start', { suggestedWindow: { start: '2026-02-03T00:00:00Z', end: '2026-02-01T00:00:00Z' } }],
    ['an end equal to the start (RFC 9773 §4.2)', { suggestedWindow: { start: '2026-02-01T00:00:00Z', end: '2026-02-01T00:00:00Z' } }],
    ['a start that is not RFC 3339', { suggestedWindow: { start: 'tomorrow', end: '2026-02-01T00:00:00Z' } }],
    ['a number instead of a timestamp', { suggestedWindow: { start: 1, end: '2026-02-01T00:00:00Z' } }],
    ['a window longer than a year', { suggestedWindow: { start: '2026-02-01T00:00:00Z', end: '2027-03-01T00:00:00Z' } }],
    ['a window decades away', { suggestedWindow: { start: '2090-02-01T00:00:00Z', end: '2090-02-02T00:00:00Z' } }],
  ];
  for (const [name, body] of bad) {
    test(`refuses ${name} as a long-term error`, () => {
      assert.throws(
        () => parseRenewalInfo(body, 60, NOW),
        (e: unknown) => e instanceof AriError && e.code === 'BAD_RESPONSE' && !e.temporary,
      );
    });
  }
});

describe('clampRetryAfter', () => {
  const cases: Array<[number | undefined, number]> = [
    [undefined, ARI_DEFAULT_RETRY_MS],
    [-5, ARI_DEFAULT_RETRY_MS],
    [0, 60_000],
    [30, 60_000],
    [21600, 21_600_000],
    [86400 * 30, 86_400_000],
  ];
  for (const [given, want] of cases) {
    test(`Retry-After ${given} becomes ${want} ms (RFC 9773 §4.3.2: at least a minute, at most a day, 6 h when absent)`, () => {
      assert.equal(clampRetryAfter(given), want);
    });
  }
});

describe('fetchRenewalInfo', () => {
  function fakeHttp(d: Partial<Directory>): AcmeHttp {
    const origin = 'https://ca.example';
    return {
      directoryUrl: `${origin}/directory`,
      directory: async () => ({ newNonce: '', newAccount: '', newOrder: '', revokeCert: '', keyChange: '', ...d }),
      checkOrigin: (u: string) => {
        if (new URL(u).origin !== origin) throw new AcmeClientError('CROSS_ORIGIN', 'other origin');
        return u;
      },
    } as unknown as AcmeHttp;
  }

  test('is null when the directory has no renewalInfo', async () => {
    assert.equal(await fetchRenewalInfo(fakeHttp({}), 'a.b', { now: NOW, get: async () => assert.fail('no request expected') }), null);
  });

  test('asks <renewalInfo>/<certID> and parses the answer', async () => {
    const seen: string[] = [];
    const r = await fetchRenewalInfo(fakeHttp({ renewalInfo: 'https://ca.example/ari/' }), 'aYhb.AIdl', {
      now: NOW,
      get: async (url) => {
        seen.push(url);
        return { status: 200, body: { suggestedWindow: { start: '2026-02-01T00:00:00Z', end: '2026-02-02T00:00:00Z' } }, retryAfter: undefined };
      },
    });
    assert.deepEqual(seen, ['https://ca.example/ari/aYhb.AIdl']);
    assert.equal(r?.retryAfterMs, ARI_DEFAULT_RETRY_MS);
  });

  test('refuses a renewalInfo URL on another origin', async () => {
    await assert.rejects(
      fetchRenewalInfo(fakeHttp({ renewalInfo: 'https://evil.example/ari' }), 'a.b', { now: NOW, get: async () => assert.fail('no request expected') }),
      (e: unknown) => e instanceof AcmeClientError && e.code === 'CROSS_ORIGIN',
    );
  });

  test('a 5xx is a temporary error, a 404 a long-term one, a refused connection long-term', async () => {
    const http = fakeHttp({ renewalInfo: 'https://ca.example/ari' });
    const at = (status: number) => fetchRenewalInfo(http, 'a.b', { now: NOW, get: async () => ({ status, body: {}, retryAfter: undefined }) });
    await assert.rejects(at(503), (e: unknown) => e instanceof AriError && e.temporary);
    await assert.rejects(at(404), (e: unknown) => e instanceof AriError && !e.temporary);
    await assert.rejects(
      fetchRenewalInfo(http, 'a.b', {
        now: NOW,
        get: async () => {
          throw new AcmeClientError('NETWORK', 'connect ECONNREFUSED 127.0.0.1:1');
        },
      }),
      (e: unknown) => e instanceof AriError && !e.temporary && e.code === 'NETWORK',
    );
  });

  test('refuses a certID that is not base64url "." base64url', async () => {
    await assert.rejects(fetchRenewalInfo(fakeHttp({ renewalInfo: 'https://ca.example/ari' }), '../x', { now: NOW }), (e: unknown) => e instanceof AcmeClientError && e.code === 'BAD_INPUT');
  });
});
