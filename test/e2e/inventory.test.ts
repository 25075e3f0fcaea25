/**
 * Issue 6 (inventory): `anvil scan` and `anvil inventory` as a user runs them, against TLS servers
 * this test starts on loopback: a real nginx from Debian serving a sound certificate of a private
 * CA, and a node TLS server answering per SNI name with an expired certificate, one for another
 * name, one whose chain lacks its intermediate, and an old one still served after its renewal;
 * and a folder of certificate files (PEM, DER, PKCS#12 made by openssl). Then a rescan after
 * nginx stops marks its certificate missing.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { testCa, testLeaf } from '../../src/inventory/test-certs.js';
import { ANVIL_BIN } from '../helpers/anvil-process.js';
import { startNginx, type Nginx } from '../helpers/nginx.js';
import { missingTools, runTool } from '../helpers/run.js';

const DAY = 86_400_000;

interface ListedCert {
  fingerprint: string;
  names: string[];
  isCa: boolean;
  health: { level: string; findings: Array<{ check: string; severity: string }> };
  installations: Array<{ kind: string; location: string; sni: string | null; status: string }>;
}

describe('anvil scan and anvil inventory (real nginx, node TLS servers, files)', { timeout: 180_000, skip: missingTools('nginx', 'openssl') }, () => {
  let dir: string;
  let data: string;
  let nginx: Nginx | undefined;
  let node: tls.Server;
  let nodePort: number;
  let rootPem: string;
  const fp: Record<string, string> = {};

  const anvil = (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, ...args, '--data-dir', data]);
  async function listed(): Promise<ListedCert[]> {
    const r = await anvil('inventory', 'list', '--json');
    assert.equal(r.code, 0, r.out);
    return (JSON.parse(r.stdout) as { certificates: ListedCert[] }).certificates;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-inventory-e2e-'));
    data = path.join(dir, 'data');
    const root = await testCa('Inventory E2E Root');
    const inter = await testCa('Inventory E2E Intermediate', root);
    rootPem = path.join(dir, 'root.pem');
    await writeFile(rootPem, root.cert.toString('pem'));
    const now = Date.now();
    const good = await testLeaf({ ca: root, names: ['good.anvil.test'] });
    const expired = await testLeaf({ ca: root, names: ['expired.anvil.test'], notBefore: new Date(now - 100 * DAY), notAfter: new Date(now - 10 * DAY) });
    const wrong = await testLeaf({ ca: root, names: ['other.anvil.test'] });
    const broken = await testLeaf({ ca: inter, names: ['broken.anvil.test'] });
    const stale = await testLeaf({ ca: root, names: ['stale.anvil.test'], notBefore: new Date(now - 40 * DAY), notAfter: new Date(now + 50 * DAY) });
    const renewed = await testLeaf({ ca: root, names: ['stale.anvil.test'], notBefore: new Date(now - 2 * DAY) });
    for (const [k, v] of Object.entries({ good, expired, wrong, broken, stale, renewed })) fp[k] = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: v.pem }).toString().split('=')[1]!.trim().replaceAll(':', '').toLowerCase();

    // nginx serving the sound certificate (its own prefix, a loopback port).
    nginx = await startNginx(path.join(dir, 'nginx'), 'good.anvil.test');
    await writeFile(path.join(nginx.prefix, 'before.pem'), good.pem);
    await writeFile(path.join(nginx.prefix, 'before.key'), good.keyPem, { mode: 0o600 });
    execFileSync('nginx', [...nginx.flags, '-s', 'reload']);

    // A node TLS server choosing its certificate by SNI name.
    const contexts: Record<string, tls.SecureContext> = {
      'expired.anvil.test': tls.createSecureContext({ cert: expired.pem, key: expired.keyPem }),
      'wrong.anvil.test': tls.createSecureContext({ cert: wrong.pem, key: wrong.keyPem }),
      'broken.anvil.test': tls.createSecureContext({ cert: broken.pem, key: broken.keyPem }),
      'stale.anvil.test': tls.createSecureContext({ cert: stale.pem, key: stale.keyPem }),
    };
    node = tls.createServer({ SNICallback: (name, cb) => cb(null, contexts[name] ?? contexts['expired.anvil.test']!) }, (s) => s.destroy());
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    nodePort = (node.address() as { port: number }).port;

    // A folder of files: the renewal as PEM in a nested directory, the sound one as DER, a
    // PKCS#12 with a password, and files that are no certificates at all.
    const files = path.join(dir, 'files');
    await mkdir(path.join(files, 'live', 'stale'), { recursive: true });
    await writeFile(path.join(files, 'live', 'stale', 'fullchain.pem'), renewed.pem + renewed.keyPem);
    await writeFile(path.join(files, 'good.der'), good.der);
    await writeFile(path.join(files, 'k.pem'), wrong.keyPem, { mode: 0o600 });
    await writeFile(path.join(files, 'w.pem'), wrong.pem);
    execFileSync('openssl', ['pkcs12', '-export', '-in', path.join(files, 'w.pem'), '-inkey', path.join(files, 'k.pem'), '-out', path.join(files, 'wrong.p12'), '-passout', 'pass:s3cret']);
    await rm(path.join(files, 'k.pem'));
    await rm(path.join(files, 'w.pem'));
    await writeFile(path.join(files, 'notes.txt'), 'not a certificate\n');
  });

  after(async () => {
    await nginx?.stop();
    await new Promise((r) => node?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  test('a network scan records what each endpoint serves, with the chain and name checked', async () => {
    const names = ['expired', 'wrong', 'broken', 'stale'].map((n) => `${n}.anvil.test`);
    const r = await anvil('scan', `127.0.0.1:${nodePort}`, ...names.flatMap((n) => ['--sni', n]), '--ca-bundle', rootPem, '--json');
    assert.equal(r.code, 0, r.out);
    const report = JSON.parse(r.stdout) as { scanned: number; recorded: { certificates: number }; observations: Array<{ sni: string; authorizationError: string | null; hostnameError: string | null; chain: Array<{ fingerprint: string }> }> };
    assert.equal(report.scanned, 4);
    assert.equal(report.recorded.certificates, 4);
    const bySni = Object.fromEntries(report.observations.map((o) => [o.sni, o]));
    assert.equal(bySni['expired.anvil.test']?.authorizationError, 'CERT_HAS_EXPIRED');
    assert.equal(bySni['broken.anvil.test']?.chain[0]?.fingerprint, fp.broken);
    assert.ok(bySni['broken.anvil.test']?.authorizationError, 'a chain without its intermediate does not verify');
    assert.equal(bySni['wrong.anvil.test']?.authorizationError, null);
    assert.match(bySni['wrong.anvil.test']?.hostnameError ?? '', /wrong\.anvil\.test/);
    assert.equal(bySni['stale.anvil.test']?.hostnameError, null);

    const text = await anvil('scan', `127.0.0.1:${nginx!.port}`, '--sni', 'good.anvil.test', '--ca-bundle', rootPem);
    assert.equal(text.code, 0, text.out);
    assert.match(text.stdout, new RegExp(`127\\.0\\.0\\.1:${nginx!.port} \\(SNI good\\.anvil\\.test\\)  ${fp.good!.slice(0, 16)}  good\\.anvil\\.test`));
    assert.match(text.stdout, /1 of 1 targets scanned, 1 presented a certificate; recorded: 1 certificate\(s\), 1 new/);
  });

  test('file discovery finds PEM, DER and PKCS#12 certificates and nothing else', async () => {
    const files = path.join(dir, 'files');
    const without = await anvil('inventory', 'scan-files', files, '--json');
    assert.equal(without.code, 0, without.out);
    const a = JSON.parse(without.stdout) as { recorded: { newCertificates: number }; files: Array<{ path: string; format: string | null; certificates: number; error: { code: string } | null }> };
    const byName = Object.fromEntries(a.files.map((f) => [path.relative(files, f.path), f]));
    assert.deepEqual(Object.keys(byName).sort(), ['good.der', 'live/stale/fullchain.pem', 'wrong.p12']);
    assert.equal(byName['wrong.p12']?.error?.code, 'pkcs12-password');
    assert.equal(a.recorded.newCertificates, 1, 'the renewal is new; the DER one was scanned on nginx');
    const r = await anvil('inventory', 'scan-files', files, '--password', 's3cret');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /3 file\(s\), 3 certificate\(s\) \(0 new\), 0 file\(s\) with errors/);
    assert.doesNotMatch(r.out + without.out, /PRIVATE KEY/);
  });

  test('the list and each certificate say what is wrong, and where', async () => {
    const certs = await listed();
    const of = (k: string) => certs.find((c) => c.fingerprint === fp[k])!;
    const checks = (k: string) => of(k).health.findings.map((f) => `${f.check}:${f.severity}`).sort();
    assert.deepEqual(checks('good'), []);
    assert.equal(of('good').health.level, 'good');
    assert.deepEqual(of('good').installations.map((i) => `${i.kind}:${i.status}`).sort(), ['endpoint:present', 'file:present']);
    assert.deepEqual(checks('expired'), ['chain-invalid:critical', 'expired:critical']);
    assert.deepEqual(checks('wrong'), ['hostname-mismatch:warning']);
    assert.deepEqual(checks('broken'), ['chain-invalid:critical']);
    assert.deepEqual(checks('stale'), ['stale-after-renewal:warning']);
    assert.deepEqual(checks('renewed'), []);
    assert.equal(certs.length, 6);

    const critical = await anvil('inventory', 'list', '--level', 'critical');
    assert.equal(critical.code, 0, critical.out);
    assert.deepEqual(
      critical.stdout.trim().split('\n').slice(1).map((l) => l.slice(0, 16)).sort(),
      [fp.expired!.slice(0, 16), fp.broken!.slice(0, 16)].sort(),
    );
    const search = await anvil('inventory', 'list', '--search', 'STALE.anvil', '--json');
    assert.equal((JSON.parse(search.stdout) as { certificates: unknown[] }).certificates.length, 2);

    const show = await anvil('inventory', 'show', fp.stale!.slice(0, 10));
    assert.equal(show.code, 0, show.out);
    assert.match(show.stdout, /health {7}poor/);
    assert.match(show.stdout, new RegExp(`renewed by   ${fp.renewed}`));
    assert.match(show.stdout, new RegExp(`present  endpoint 127\\.0\\.0\\.1:${nodePort} \\(SNI stale\\.anvil\\.test\\)`));
    assert.match(show.stdout, /history\n.*discovered/);
    const pem = await anvil('inventory', 'show', fp.good!, '--pem');
    assert.equal(execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem.stdout }).toString().split('=')[1]!.trim().replaceAll(':', '').toLowerCase(), fp.good);

    const health = await anvil('inventory', 'health', '--json');
    const estate = JSON.parse(health.stdout) as { level: string; certificates: number; byLevel: Record<string, number> };
    assert.equal(estate.level, 'critical');
    assert.deepEqual(estate.byLevel, { good: 2, fair: 0, poor: 2, critical: 2 });
  });

  test('the forecast counts the live leaves: the expired one still served is due today', async () => {
    const r = await anvil('inventory', 'forecast', '--json', '--days', '400');
    assert.equal(r.code, 0, r.out);
    const f = JSON.parse(r.stdout) as { days: number; certificates: number; current: number[]; cabf: number[] };
    // good, expired (served), wrong, broken, renewed; not the stale one (replaced), not the CA.
    assert.equal(f.certificates, 5);
    assert.equal(f.days, 400);
    assert.equal(f.current[0], 1);
    const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.ok(total(f.cabf) >= total(f.current), `${total(f.cabf)} >= ${total(f.current)}`);
    const text = await anvil('inventory', 'forecast');
    assert.match(text.stdout, /5 certificate\(s\) in the forecast, 365 days/);
    assert.match(text.stdout, /MONTH {4}AS IS {2}UNDER THE SCHEDULE/);
  });

  test('a rescan after nginx stops marks its certificate missing there', async () => {
    await nginx!.stop();
    const port = nginx!.port;
    nginx = undefined;
    const r = await anvil('scan', `127.0.0.1:${port}`, '--sni', 'good.anvil.test', '--timeout', '2000');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /refused/);
    assert.match(r.stdout, /1 endpoint\(s\) now missing/);
    const good = (await listed()).find((c) => c.fingerprint === fp.good)!;
    assert.deepEqual(good.installations.map((i) => `${i.kind}:${i.status}`).sort(), ['endpoint:missing', 'file:present']);
    assert.deepEqual(good.health.findings.map((f) => f.check), ['missing']);
  });

  test('bad input is refused with a message that says what to fix, and writes nothing', async () => {
    const cidr = await anvil('scan', '10.0.0.0/33');
    assert.equal(cidr.code, 2, cidr.out);
    assert.match(cidr.stderr, /10\.0\.0\.0\/33/);
    const port = await anvil('scan', '127.0.0.1', '-p', '70000');
    assert.equal(port.code, 2, port.out);
    assert.match(port.stderr, /70000/);
    const big = await anvil('scan', '10.0.0.0/8');
    assert.equal(big.code, 2, big.out);
    assert.match(big.stderr, /--max-targets|too many|65536/i);
    const show = await anvil('inventory', 'show', 'zz');
    assert.equal(show.code, 2, show.out);
    assert.match(show.stderr, /4 hex digits/);
    const none = await anvil('inventory', 'show', '0000000000');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no certificate/);
    const imp = await anvil('inventory', 'import', path.join(dir, 'files', 'notes.txt'));
    assert.equal(imp.code, 2, imp.out);
    assert.match(imp.stderr, /no certificate in it/);
    assert.equal((await listed()).length, 6);
  });
});
