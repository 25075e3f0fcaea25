/**
 * Profiles (draft-ietf-acme-profiles) and renewal information (RFC 9773): the directory, newOrder
 * "profile" and "replaces", the suggested windows, alreadyReplaced, operator windows. Time is a
 * fake clock, so windows are checked without waiting.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as x509 from '../../src/lib/x509.js';
import { FakeClock } from '../../src/lib/clock.js';
import { issue } from '../helpers/flow.js';
import { startTestServer, type TestServer } from '../helpers/in-process.js';
import { assertProblem } from '../helpers/problems.js';
import { RawAcme } from '../helpers/raw-acme.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** RFC 9773 §4.1, computed independently of the server with @peculiar/x509. */
function certId(pem: string): string {
  const c = new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!);
  const aki = c.getExtension('2.5.29.35') as x509.AuthorityKeyIdentifierExtension;
  let serial = c.serialNumber;
  if (serial.length % 2) serial = `0${serial}`;
  if (parseInt(serial.slice(0, 2), 16) >= 0x80) serial = `00${serial}`;
  return `${Buffer.from(aki.keyId!, 'hex').toString('base64url')}.${Buffer.from(serial, 'hex').toString('base64url')}`;
}

function leaf(chain: string): X509Certificate {
  return new X509Certificate(chain.split(/(?<=-----END CERTIFICATE-----)/)[0]!);
}

describe('profiles and renewal information', () => {
  let ts: TestServer;
  let acme: RawAcme;
  let other: RawAcme;
  const clock = new FakeClock(Date.now());

  before(async () => {
    ts = await startTestServer(
      {
        acme: { nonceLifetimeSeconds: 86400, renewalInfo: { retryAfterSeconds: 1800, explanationUrl: 'https://status.example.com/ari' } },
        issuance: {
          profiles: { 'client-only': { description: 'mTLS client certificates, 1 day', lifetimeDays: 1, extendedKeyUsages: ['clientAuth'] } },
        },
      },
      { clock },
    );
    acme = await new RawAcme(ts.directoryUrl).init();
    await acme.register();
    other = await new RawAcme(ts.directoryUrl).init();
    await other.register();
  });
  after(async () => ts.stop());

  const ari = (id: string) => fetch(`${acme.directory.renewalInfo}/${id}`);

  test('the directory offers renewalInfo and the built-in and operator profiles', async () => {
    assert.match(acme.directory.renewalInfo!, /\/acme\/renewal-info$/);
    const meta = (acme.directory as unknown as { meta: { profiles: Record<string, string> } }).meta;
    assert.deepEqual(Object.keys(meta.profiles).sort(), ['classic', 'client-only', 'mtls', 'shortlived', 'tlsserver']);
    for (const d of Object.values(meta.profiles)) assert.ok(d.length > 10);
  });

  test('each profile sets the lifetime and the extended key usages; the order echoes it', async () => {
    const cases: Array<[string | undefined, number, string[]]> = [
      [undefined, 90 * DAY, [OID_SERVER_AUTH]],
      ['classic', 90 * DAY, [OID_SERVER_AUTH]],
      ['tlsserver', 90 * DAY, [OID_SERVER_AUTH]],
      ['shortlived', 160 * HOUR, [OID_SERVER_AUTH]],
      ['mtls', 90 * DAY, [OID_SERVER_AUTH, OID_CLIENT_AUTH]],
      ['client-only', DAY, [OID_CLIENT_AUTH]],
    ];
    for (const [profile, life, ekus] of cases) {
      const r = await issue(acme, [`p-${profile ?? 'default'}.example.com`], profile ? { profile } : {});
      assert.equal(r.order.profile, profile ?? 'classic');
      const c = leaf(r.chain);
      const got = Date.parse(c.validTo) - Date.parse(c.validFrom);
      // notBefore is backdated by up to 60 s and both are whole seconds.
      assert.ok(Math.abs(got - life) <= 61_000, `${profile}: lifetime ${got} ms, want ${life}`);
      assert.deepEqual([...(c.keyUsage ?? [])].sort(), [...ekus].sort(), `${profile}: EKUs`);
    }
  });

  test('an unknown profile is invalidProfile; a profile that is not a string is malformed', async () => {
    const ids = [{ type: 'dns', value: 'bad-profile.example.com' }];
    const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers: ids, profile: 'nope' } });
    assertProblem(r, 400, 'invalidProfile');
    assert.match(r.body.detail, /classic/);
    assertProblem(await acme.post(acme.directory.newOrder!, { payload: { identifiers: ids, profile: 7 } }), 400, 'malformed');
  });

  test('renewalInfo: the last third of a 90-day lifetime, with Retry-After and explanationURL', async () => {
    const r = await issue(acme, ['ari-90.example.com']);
    const c = leaf(r.chain);
    const res = await ari(certId(r.chain));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('retry-after'), '1800');
    const body = (await res.json()) as { suggestedWindow: { start: string; end: string }; explanationURL?: string };
    const nb = Date.parse(c.validFrom);
    const life = Date.parse(c.validTo) - nb;
    const start = Date.parse(body.suggestedWindow.start);
    const end = Date.parse(body.suggestedWindow.end);
    assert.ok(start < end);
    assert.ok(start >= nb + (life * 2) / 3 - 1000, 'starts in the last third');
    assert.ok(end < Date.parse(c.validTo), 'ends before expiry');
    assert.equal(body.explanationURL, 'https://status.example.com/ari');
  });

  test('renewalInfo: lifetimes under 10 days get a window around the midpoint', async () => {
    const r = await issue(acme, ['ari-short.example.com'], { profile: 'shortlived' });
    const c = leaf(r.chain);
    const body = (await (await ari(certId(r.chain))).json()) as { suggestedWindow: { start: string; end: string } };
    const mid = (Date.parse(c.validFrom) + Date.parse(c.validTo)) / 2;
    assert.ok(Date.parse(body.suggestedWindow.start) < mid && mid < Date.parse(body.suggestedWindow.end));
  });

  test('renewalInfo: malformed ids are 400, unknown serials and other issuers 404', async () => {
    assert.equal((await ari('not-a-cert-id')).status, 400);
    const r = await issue(acme, ['ari-404.example.com']);
    const [aki] = certId(r.chain).split('.');
    assert.equal((await ari(`${aki}.${Buffer.from('1234567890abcdef', 'hex').toString('base64url')}`)).status, 404);
    const [, serial] = certId(r.chain).split('.');
    assert.equal((await ari(`${Buffer.alloc(20, 7).toString('base64url')}.${serial}`)).status, 404);
  });

  test('replaces: echoed in the order; a second replacement of the same certificate is alreadyReplaced', async () => {
    const first = await issue(acme, ['repl.example.com']);
    const id = certId(first.chain);
    const second = await issue(acme, ['repl.example.com'], { replaces: id });
    assert.equal(second.order.replaces, id);
    const again = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [{ type: 'dns', value: 'repl.example.com' }], replaces: id },
    });
    assertProblem(again, 409, 'alreadyReplaced');
    // The newest certificate can itself be replaced.
    const third = await issue(acme, ['repl.example.com'], { replaces: certId(second.chain) });
    assert.equal(third.order.status, 'valid');
  });

  test('replaces: another account\'s certificate is refused, and so is one sharing no name', async () => {
    const mine = await issue(acme, ['repl-mine.example.com']);
    const theirs = await other.post(other.directory.newOrder!, {
      payload: { identifiers: [{ type: 'dns', value: 'repl-mine.example.com' }], replaces: certId(mine.chain) },
    });
    assertProblem(theirs, 403, 'unauthorized');
    const unrelated = await acme.post(acme.directory.newOrder!, {
      payload: { identifiers: [{ type: 'dns', value: 'unrelated.example.com' }], replaces: certId(mine.chain) },
    });
    assertProblem(unrelated, 400, 'malformed');
    assertProblem(
      await acme.post(acme.directory.newOrder!, { payload: { identifiers: [{ type: 'dns', value: 'x.example.com' }], replaces: 42 } }),
      400,
      'malformed',
    );
  });

  test('the operator pulls windows forward (renew-early); a revoked certificate gets a window in the past', async () => {
    const r = await issue(acme, ['early.example.com']);
    const id = certId(r.chain);
    const start = new Date(clock.now().getTime() + HOUR);
    const end = new Date(start.getTime() + 2 * HOUR);
    const serial = leaf(r.chain).serialNumber.toLowerCase().replace(/^0+/, '');
    assert.equal(await ts.srv.authority.setRenewalWindow({ serials: [serial] }, { start, end }), 1);
    let body = (await (await ari(id)).json()) as { suggestedWindow: { start: string; end: string } };
    assert.deepEqual(body.suggestedWindow, { start: start.toISOString(), end: end.toISOString() });

    const der = Buffer.from(leaf(r.chain).raw);
    const rev = await acme.post(acme.directory.revokeCert!, { payload: { certificate: der.toString('base64url'), reason: 1 } });
    assert.equal(rev.status, 200);
    body = (await (await ari(id)).json()) as { suggestedWindow: { start: string; end: string } };
    assert.ok(Date.parse(body.suggestedWindow.end) < clock.now().getTime(), 'a revoked certificate is due now');
  });
});
