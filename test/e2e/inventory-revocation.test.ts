/**
 * Issue 6 (inventory): "revoked (CRL/OCSP)" for discovered certificates, with `anvil inventory
 * check-revocation` against real responders on loopback:
 *
 * - a real `anvil server`: certificates issued by `anvil issue`, found by a file scan (not by the
 *   CA sync, which is off), one revoked with `anvil revoke`: only that one is marked revoked, by
 *   OCSP, its issuer fetched from the AIA caIssuers URL. Then the server restarts without OCSP and
 *   another revocation is found in its CRL.
 * - openssl as the CA and OCSP responder: a CA, a delegated OCSP signer (id-kp-OCSPSigning) and
 *   leaves made with `openssl ca`, one revoked in its index.txt; `openssl ocsp -index` answers the
 *   requests and the CRL is `openssl ca -gencrl`'s. OpenSSL 3.0's `openssl ocsp -port` takes a port
 *   number only and listens on every interface, so the responder runs as `openssl ocsp -reqin
 *   -respout` per request behind a node:http server on 127.0.0.1: the answer is openssl's own.
 *   Then a hold: `openssl ca -revoke -crl_hold` puts a leaf on hold (certificateHold, RFC 5280
 *   §5.3.1), and releasing it (its index.txt line back to valid) lifts it in the inventory.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ANVIL_BIN, type StartedAnvil } from '../helpers/anvil-process.js';
import { startLoopbackCa, type LoopbackCa } from '../helpers/loopback-ca.js';
import { freePort } from '../helpers/ports.js';
import { missingTools, runTool } from '../helpers/run.js';

const run = promisify(execFile);

interface Result {
  fingerprint: string;
  status: string;
  source: string | null;
  url: string | null;
  reason?: number | null;
  released?: boolean;
  error: string | null;
  problems: Array<{ source: string | null; kind: string; message: string }>;
}
interface Summary {
  checked: number;
  good: number;
  revoked: number;
  released: number;
  unknown: number;
  notDue: number;
  errors: Record<string, number>;
  results: Result[];
}

const inventoryOf = (dataDir: string) => (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, 'inventory', ...args, '--data-dir', dataDir], {}, 60_000);

async function checkRevocation(inventory: ReturnType<typeof inventoryOf>, ...args: string[]): Promise<Summary> {
  const r = await inventory('check-revocation', '--json', '--timeout-ms', '5000', ...args);
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout) as Summary;
}

async function fingerprintOf(file: string): Promise<string> {
  const { X509Certificate, createHash } = await import('node:crypto');
  return createHash('sha256').update(new X509Certificate(await readFile(file)).raw).digest('hex');
}

describe('check-revocation against a real anvil server', { timeout: 240_000, skip: missingTools('openssl') }, () => {
  let ca: LoopbackCa;
  let anvil: StartedAnvil;
  let inventory: ReturnType<typeof inventoryOf>;

  before(async () => {
    // A fixed port: the certificates name the server's OCSP and CRL URLs, and it restarts below.
    const port = await freePort();
    ca = await startLoopbackCa('anvil-inv-revocation-', { listen: { host: '127.0.0.1', port }, inventory: { syncSeconds: 0, revocationCheckHours: 0 } });
    anvil = ca.anvil;
    inventory = inventoryOf(anvil.dataDir);
  });
  after(async () => {
    await ca?.cleanup();
  });

  const client = (...args: string[]) => ca.cli([...args, '--server', anvil.directoryUrl, '--ca-bundle', anvil.rootPem]);
  const certFile = (name: string) => path.join(ca.store, 'archive', name, 'cert1.pem');

  test('OCSP marks exactly the revoked certificate; without OCSP the CRL finds the next one', async () => {
    for (const name of ['one', 'two']) {
      const issued = await ca.issue(name);
      assert.equal(issued.code, 0, issued.out);
    }
    const revoke = await client('revoke', 'two', '--reason', 'keyCompromise');
    assert.equal(revoke.code, 0, revoke.out);
    // Found in files: the leaves only, so the issuer comes from their caIssuers URL.
    const scan = await inventory('scan-files', certFile('one'), certFile('two'));
    assert.equal(scan.code, 0, scan.out);
    const [one, two] = [await fingerprintOf(certFile('one')), await fingerprintOf(certFile('two'))];

    const s = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([s.checked, s.good, s.revoked, s.unknown], [2, 1, 1, 0], JSON.stringify(s));
    const byFp = new Map(s.results.map((r) => [r.fingerprint, r]));
    assert.deepEqual([byFp.get(two)?.status, byFp.get(two)?.source, byFp.get(two)?.reason], ['revoked', 'ocsp', 1]);
    assert.deepEqual([byFp.get(one)?.status, byFp.get(one)?.source], ['good', 'ocsp']);
    assert.match(byFp.get(two)?.url ?? '', /^https:\/\/127\.0\.0\.1:\d+\/ocsp$/);

    const shown = await inventory('show', two, '--json');
    assert.equal(shown.code, 0, shown.out);
    const c = JSON.parse(shown.stdout) as {
      revoked: { reason: number } | null;
      revocationCheck: { source: string; error: string | null } | null;
      health: { findings: Array<{ check: string; message: string }> };
      events: Array<{ type: string; detail: Record<string, unknown> }>;
    };
    assert.equal(c.revoked?.reason, 1);
    assert.deepEqual([c.revocationCheck?.source, c.revocationCheck?.error], ['ocsp', null]);
    assert.match(c.health.findings.find((f) => f.check === 'revoked')?.message ?? '', /per OCSP/);
    assert.deepEqual(c.events.filter((e) => e.type === 'revoked').map((e) => e.detail.source), ['ocsp']);
    const text = await inventory('show', two);
    assert.match(text.stdout, /revocation +checked .*: OCSP answered/);
    const health = await inventory('health');
    assert.match(health.stdout, /revoked +1 certificate/);

    // Within the interval nothing is due; the text summary says so.
    const again = await inventory('check-revocation');
    assert.equal(again.code, 0, again.out);
    assert.match(again.stdout, /^0 certificate\(s\) checked: 0 good, 0 revoked, 0 unknown; 1 not due$/m);

    // OCSP goes away (the server restarts without it); the certificates still name it.
    await anvil.stop();
    const config = JSON.parse(await readFile(anvil.configFile, 'utf8')) as Record<string, unknown>;
    await writeFile(anvil.configFile, JSON.stringify({ ...config, revocation: { ocsp: { enabled: false } } }, null, 2));
    await anvil.restart();
    const revokeOne = await client('revoke', 'one', '--reason', 'superseded');
    assert.equal(revokeOne.code, 0, revokeOne.out);
    const fallback = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([fallback.checked, fallback.revoked], [1, 1], JSON.stringify(fallback));
    const r = fallback.results[0]!;
    assert.deepEqual([r.fingerprint, r.status, r.source, r.reason], [one, 'revoked', 'crl', 4]);
    assert.deepEqual(r.problems.map((p) => [p.source, p.kind]), [['ocsp', 'http-status']]);
    assert.equal(fallback.errors['http-status'], 1);
  });
});

describe('check-revocation against openssl as CA and OCSP responder', { timeout: 120_000, skip: missingTools('openssl') }, () => {
  let dir: string;
  let base: string;
  let ocspUp = true;
  let seq = 0;
  const requests = { ocsp: 0, crl: 0 };
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir, env: { ...process.env, LEAF_NAME: 'unused.test' } });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        if (req.url === '/ca.crl') {
          requests.crl++;
          return void res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(await readFile(path.join(dir, 'ca.crl')));
        }
        if (req.url === '/ocsp' && req.method === 'POST') {
          requests.ocsp++;
          if (!ocspUp) return void res.writeHead(503).end();
          const n = seq++;
          const reqFile = path.join(dir, `req-${n}.der`);
          const respFile = path.join(dir, `resp-${n}.der`);
          await writeFile(reqFile, Buffer.concat(chunks));
          // openssl's OCSP responder, one request at a time: signed by the delegated responder.
          await openssl('ocsp', '-index', 'index.txt', '-CA', 'ca.pem', '-rsigner', 'ocsp.pem', '-rkey', 'ocsp.key', '-reqin', reqFile, '-respout', respFile, '-nmin', '60');
          return void res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(await readFile(respFile));
        }
        res.writeHead(404).end();
      })().catch(() => res.writeHead(500).end());
    });
  });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-inv-openssl-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await mkdir(path.join(dir, 'newcerts'));
    await mkdir(path.join(dir, 'found'));
    await writeFile(path.join(dir, 'index.txt'), '');
    await writeFile(path.join(dir, 'serial'), '1000\n');
    await writeFile(path.join(dir, 'crlnumber'), '01\n');
    await writeFile(
      path.join(dir, 'ca.cnf'),
      `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = OpenSSL Inventory Test CA
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$ENV::LEAF_NAME
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/ocsp
crlDistributionPoints = URI:${base}/ca.crl
[ ocsp ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, OCSPSigning
authorityKeyIdentifier = keyid
`,
    );
    await openssl('req', '-x509', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30');
    const issue = async (name: string, ext: string) => {
      await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.test`);
      await run('openssl', ['ca', '-config', 'ca.cnf', '-batch', '-notext', '-extensions', ext, '-in', `${name}.csr`, '-out', `${name}.pem`], { cwd: dir, env: { ...process.env, LEAF_NAME: `${name}.test` } });
    };
    await issue('ocsp', 'ocsp');
    for (const leaf of ['leaf1', 'leaf2', 'leaf3']) {
      await issue(leaf, 'leaf');
      await writeFile(path.join(dir, 'found', `${leaf}.pem`), await readFile(path.join(dir, `${leaf}.pem`)));
    }
    await writeFile(path.join(dir, 'found', 'ca.pem'), await readFile(path.join(dir, 'ca.pem')));
    await openssl('ca', '-config', 'ca.cnf', '-revoke', 'leaf2.pem', '-crl_reason', 'keyCompromise');
    await openssl('ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl.pem');
    await openssl('crl', '-in', 'ca.crl.pem', '-outform', 'DER', '-out', 'ca.crl');
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  test("openssl's OCSP answers (by a delegated signer) and then its CRL decide", async () => {
    const inventory = inventoryOf(path.join(dir, 'data'));
    const scan = await inventory('scan-files', path.join(dir, 'found'));
    assert.equal(scan.code, 0, scan.out);
    const fp = Object.fromEntries(await Promise.all(['leaf1', 'leaf2', 'leaf3'].map(async (l) => [l, await fingerprintOf(path.join(dir, `${l}.pem`))] as const)));

    const s = await checkRevocation(inventory);
    assert.deepEqual([s.checked, s.good, s.revoked, s.unknown], [3, 2, 1, 0], JSON.stringify(s));
    const byFp = new Map(s.results.map((r) => [r.fingerprint, r]));
    assert.deepEqual([byFp.get(fp.leaf2!)?.status, byFp.get(fp.leaf2!)?.source, byFp.get(fp.leaf2!)?.reason], ['revoked', 'ocsp', 1]);
    for (const l of ['leaf1', 'leaf3']) assert.deepEqual([byFp.get(fp[l]!)?.status, byFp.get(fp[l]!)?.source], ['good', 'ocsp'], l);
    assert.equal(requests.crl, 0, 'OCSP answered: no CRL fetched');

    // leaf3 is revoked too; the OCSP responder goes down; the new CRL says so, read once.
    await openssl('ca', '-config', 'ca.cnf', '-revoke', 'leaf3.pem', '-crl_reason', 'superseded');
    await openssl('ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl.pem');
    await openssl('crl', '-in', 'ca.crl.pem', '-outform', 'DER', '-out', 'ca.crl');
    ocspUp = false;
    const t = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([t.checked, t.good, t.revoked, t.unknown], [2, 1, 1, 0], JSON.stringify(t));
    const after3 = t.results.find((r) => r.fingerprint === fp.leaf3)!;
    assert.deepEqual([after3.status, after3.source, after3.reason, after3.url], ['revoked', 'crl', 4, `${base}/ca.crl`]);
    assert.deepEqual(t.results.find((r) => r.fingerprint === fp.leaf1)?.source, 'crl');
    assert.equal(t.errors['http-status'], 2, 'both OCSP attempts were refused (503)');
    assert.equal(requests.crl, 1, 'one CRL fetch for both certificates');

    // A CRL signed by another key under the same name: never "good".
    await openssl('req', '-x509', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '30');
    await openssl('ca', '-config', 'ca.cnf', '-gencrl', '-keyfile', 'other.key', '-cert', 'other.pem', '-out', 'other.crl.pem');
    await openssl('crl', '-in', 'other.crl.pem', '-outform', 'DER', '-out', 'ca.crl');
    const forged = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([forged.checked, forged.good, forged.unknown], [1, 0, 1], JSON.stringify(forged));
    assert.deepEqual(forged.results[0]!.problems.map((p) => [p.source, p.kind]), [['ocsp', 'http-status'], ['crl', 'signature']]);
    const shown = await inventory('show', fp.leaf1!);
    assert.match(shown.stdout, /revocation +checked .*: could not tell: ocsp .*: http-status: HTTP 503; crl .*: signature: the CRL is not signed by the issuer/);
  });

  test("a hold in openssl's index is found by its OCSP responder, and lifted in the inventory once openssl releases it", async () => {
    const inventory = inventoryOf(path.join(dir, 'data'));
    const leaf1 = await fingerprintOf(path.join(dir, 'leaf1.pem'));
    const serial = (await openssl('x509', '-in', 'leaf1.pem', '-noout', '-serial')).stdout.trim().replace(/^serial=/, '').toUpperCase();
    const genCrl = async () => {
      await openssl('ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl.pem');
      await openssl('crl', '-in', 'ca.crl.pem', '-outform', 'DER', '-out', 'ca.crl');
    };
    // leaf1 on hold (openssl writes "certificateHold" in index.txt; its OCSP answer says revoked, reason 6).
    await openssl('ca', '-config', 'ca.cnf', '-revoke', 'leaf1.pem', '-crl_hold', 'holdInstructionNone');
    await genCrl();
    ocspUp = true;
    const held = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([held.checked, held.revoked], [1, 1], JSON.stringify(held));
    assert.deepEqual([held.results[0]!.fingerprint, held.results[0]!.status, held.results[0]!.source, held.results[0]!.reason], [leaf1, 'revoked', 'ocsp', 6]);
    // Still due while on hold (the others, revoked for good, are not).
    const still = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([still.checked, still.revoked, still.released], [1, 0, 0], JSON.stringify(still));

    // openssl releases it: its index line is valid again (what `openssl ca` has no command for).
    const index = await readFile(path.join(dir, 'index.txt'), 'utf8');
    const lines = index.split('\n').map((l) => {
      const f = l.split('\t');
      return f[3] === serial && f[0] === 'R' ? ['V', f[1], '', ...f.slice(3)].join('\t') : l;
    });
    assert.notEqual(lines.join('\n'), index, `leaf1 (serial ${serial}) is on hold in index.txt`);
    await writeFile(path.join(dir, 'index.txt'), lines.join('\n'));
    await genCrl();
    const lifted = await checkRevocation(inventory, '--max-age-hours', '0');
    assert.deepEqual([lifted.checked, lifted.good, lifted.released, lifted.revoked], [1, 1, 1, 0], JSON.stringify(lifted));
    assert.deepEqual([lifted.results[0]!.source, lifted.results[0]!.released], ['ocsp', true]);
    const shown = JSON.parse((await inventory('show', leaf1, '--json')).stdout) as { revoked: unknown; events: Array<{ type: string; detail: Record<string, unknown> }> };
    assert.equal(shown.revoked, null);
    assert.deepEqual(
      shown.events.filter((e) => e.type === 'revoked' || e.type === 'unrevoked').map((e) => [e.type, e.detail.reason, e.detail.source]),
      [
        ['revoked', 6, 'ocsp'],
        ['unrevoked', 6, 'ocsp'],
      ],
    );
    // Good again: due only after --max-age-hours, like any other; the text output says nothing is revoked.
    const text = await inventory('check-revocation', '--max-age-hours', '0');
    assert.equal(text.code, 0, text.out);
    assert.match(text.stdout, /^1 certificate\(s\) checked: 1 good, 0 revoked, 0 unknown; 0 not due$/m);
  });
});
