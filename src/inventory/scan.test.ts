/**
 * scan against TLS and TCP servers this file starts on 127.0.0.1 (and ::1 when there is one), with
 * certificates made here: root, intermediate and leaves. parseTargets as a table.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { FakeClock } from '../lib/clock.js';
import { freePort } from '../lib/free-port.js';
import { toPem } from '../lib/pem.js';
import * as x509 from '../lib/x509.js';
import { classifyError, parseTargets, scan, ScanError, TokenBucket, type ScanObservation, type ScanTarget } from './scan.js';

// ---------------------------------------------------------------------------------------------
// Fixtures

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const HOUR = 3600_000;

interface Issued {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  pem: string;
  der: Buffer;
  keyPem: string;
}

let serial = 1;
async function issue(o: {
  subject: string;
  issuer?: Issued;
  ca?: boolean;
  names?: Array<{ type: 'dns' | 'ip'; value: string }>;
  notBefore?: Date;
  notAfter?: Date;
}): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = o.ca
    ? [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)]
    : [new x509.SubjectAlternativeNameExtension(o.names ?? []), new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth])];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject: `CN=${o.subject}`,
    issuer: o.issuer ? o.issuer.cert.subject : `CN=${o.subject}`,
    notBefore: o.notBefore ?? new Date(Date.now() - HOUR),
    notAfter: o.notAfter ?? new Date(Date.now() + 24 * HOUR),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: (o.issuer?.keys ?? keys).privateKey,
    extensions,
  });
  const keyPem = toPem('PRIVATE KEY', new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)));
  return { cert, keys, pem: cert.toString('pem') + '\n', der: Buffer.from(cert.rawData), keyPem };
}

const closers: Array<() => Promise<void>> = [];
after(() => Promise.all(closers.map((close) => close())));

/** Listens on port 0 and registers the server (and its open connections) for closing in `after`. */
async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

/** A TLS server presenting `chain` (leaf first) with the leaf's key. */
async function tlsServer(chain: Issued[], options: tls.TlsOptions = {}, host = '127.0.0.1'): Promise<number> {
  const server = tls.createServer({ cert: chain.map((c) => c.pem).join(''), key: chain[0]!.keyPem, ...options });
  server.on('tlsClientError', () => {});
  return listen(server, host);
}

function timerCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

function one(observations: ScanObservation[]): ScanObservation {
  assert.equal(observations.length, 1);
  return observations[0]!;
}

let root: Issued;
let inter: Issued;
let leaf: Issued;
let expired: Issued;
let otherName: Issued;
let selfSigned: Issued;
let leafA: Issued;
let leafB: Issued;

before(async () => {
  root = await issue({ subject: 'Scan Test Root', ca: true });
  inter = await issue({ subject: 'Scan Test Intermediate', ca: true, issuer: root });
  const local: Array<{ type: 'dns' | 'ip'; value: string }> = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
  ];
  leaf = await issue({ subject: 'localhost', issuer: inter, names: local });
  expired = await issue({ subject: 'localhost', issuer: inter, names: local, notBefore: new Date(Date.now() - 48 * HOUR), notAfter: new Date(Date.now() - 24 * HOUR) });
  otherName = await issue({ subject: 'other.test', issuer: inter, names: [{ type: 'dns', value: 'other.test' }] });
  selfSigned = await issue({ subject: 'localhost', names: local });
  leafA = await issue({ subject: 'a.test', issuer: inter, names: [{ type: 'dns', value: 'a.test' }] });
  leafB = await issue({ subject: 'b.test', issuer: inter, names: [{ type: 'dns', value: 'b.test' }] });
});

// ---------------------------------------------------------------------------------------------
// What a handshake records

describe('scan records what the server presented', () => {
  interface Case {
    name: string;
    chain: () => Issued[];
    ca?: () => string | Buffer;
    sni?: string;
    expect: () => { chain: Buffer[]; authorized: boolean; authorizationError?: string; hostnameError?: RegExp };
  }
  const cases: Case[] = [
    {
      name: 'a leaf and intermediate verify against the given root and are reported as sent, leaf first',
      chain: () => [leaf, inter],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der, inter.der], authorized: true }),
    },
    {
      name: 'an IP target is checked against the IP SANs of the leaf',
      chain: () => [leaf, inter],
      ca: () => root.pem,
      expect: () => ({ chain: [leaf.der, inter.der], authorized: true }),
    },
    {
      name: 'ca may be a DER buffer',
      chain: () => [leaf, inter],
      ca: () => root.der,
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der, inter.der], authorized: true }),
    },
    {
      name: 'without ca the system roots are used, so a private chain is not authorized',
      chain: () => [leaf, inter],
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der, inter.der], authorized: false, authorizationError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' }),
    },
    {
      name: 'a root the server sends is left out when it is a trust root (Node appends it anyway when the server does not)',
      chain: () => [leaf, inter, root],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der, inter.der], authorized: true }),
    },
    {
      name: 'a root the server sends that is not trusted stays in the chain',
      chain: () => [leaf, inter, root],
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der, inter.der, root.der], authorized: false, authorizationError: 'SELF_SIGNED_CERT_IN_CHAIN' }),
    },
    {
      name: 'a leaf served without its intermediate is not authorized',
      chain: () => [leaf],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [leaf.der], authorized: false, authorizationError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }),
    },
    {
      name: 'an expired leaf is not authorized, with CERT_HAS_EXPIRED',
      chain: () => [expired, inter],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [expired.der, inter.der], authorized: false, authorizationError: 'CERT_HAS_EXPIRED' }),
    },
    {
      name: 'a good chain for another name is authorized but has a hostnameError',
      chain: () => [otherName, inter],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [otherName.der, inter.der], authorized: true, hostnameError: /localhost.*other\.test/ }),
    },
    {
      name: 'a self-signed leaf is reported once, with DEPTH_ZERO_SELF_SIGNED_CERT',
      chain: () => [selfSigned],
      ca: () => root.pem,
      sni: 'localhost',
      expect: () => ({ chain: [selfSigned.der], authorized: false, authorizationError: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const port = await tlsServer(c.chain());
      const clock = new FakeClock(Date.UTC(2030, 5, 1));
      const target: ScanTarget = c.sni ? { host: '127.0.0.1', port, sni: c.sni } : { host: '127.0.0.1', port };
      const o = one(await scan([target], { clock, ...(c.ca ? { ca: c.ca() } : {}) }));
      const want = c.expect();
      assert.equal(o.error, undefined, o.error?.message);
      assert.deepEqual(o.target, target);
      assert.deepEqual(o.at, clock.now());
      assert.ok(o.durationMs >= 0);
      assert.equal(o.address, '127.0.0.1');
      assert.match(o.protocol ?? '', /^TLSv1\.[23]$/);
      assert.equal(o.chain.length, want.chain.length, 'chain length');
      o.chain.forEach((der, i) => assert.ok(der.equals(want.chain[i]!), `chain[${i}]`));
      assert.equal(o.authorized, want.authorized);
      assert.equal(o.authorizationError, want.authorizationError);
      if (want.hostnameError) assert.match(o.hostnameError ?? '', want.hostnameError);
      else assert.equal(o.hostnameError, undefined);
    });
  }

  test('an IPv6 target is connected without brackets and checked against the IP SANs', async (t) => {
    let port: number;
    try {
      port = await tlsServer([leaf, inter], {}, '::1');
    } catch {
      t.skip('no IPv6 loopback on this machine');
      return;
    }
    const o = one(await scan([{ host: '::1', port }], { ca: root.pem }));
    assert.equal(o.error, undefined, o.error?.message);
    assert.equal(o.address, '::1');
    assert.equal(o.authorized, true);
    assert.equal(o.hostnameError, undefined);
  });
});

describe('scan sends SNI only when the target has one', () => {
  test('each SNI name gets its own certificate, and an IP target without sni sends none', async () => {
    const asked: string[] = [];
    const contexts = new Map([
      ['a.test', tls.createSecureContext({ cert: leafA.pem + inter.pem, key: leafA.keyPem })],
      ['b.test', tls.createSecureContext({ cert: leafB.pem + inter.pem, key: leafB.keyPem })],
    ]);
    const port = await tlsServer([leaf, inter], {
      SNICallback: (name, cb) => {
        asked.push(name);
        cb(null, contexts.get(name));
      },
    });
    const targets = [...parseTargets([`127.0.0.1:${port}`], { sni: ['a.test', 'b.test'] }), { host: '127.0.0.1', port }];
    const got = await scan(targets, { ca: root.pem, concurrency: 1 });
    assert.deepEqual(
      got.map((o) => o.target),
      targets,
    );
    assert.deepEqual(asked, ['a.test', 'b.test']);
    assert.deepEqual(
      got.map((o) => o.chain[0]),
      [leafA.der, leafB.der, leaf.der],
    );
    for (const o of got) {
      assert.equal(o.authorized, true);
      assert.equal(o.hostnameError, undefined, `${o.target.sni ?? o.target.host}`);
    }
  });
});

describe('scan resolves host names with the given lookup', () => {
  /** A resolver answering every name with 127.0.0.1 (or failing with `code`), recording the names. */
  function fakeLookup(asked: string[], code?: string): net.LookupFunction {
    return (hostname, options, callback) => {
      asked.push(hostname);
      if (code) callback(Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), { code }), '', 0);
      else if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    };
  }

  test('a host-name target from parseTargets connects to the resolved address and is checked against its name', async () => {
    const port = await tlsServer([otherName, inter]);
    const asked: string[] = [];
    const targets = parseTargets([`other.test:${port}`], {});
    assert.deepEqual(targets, [{ host: 'other.test', port, sni: 'other.test' }]);
    const o = one(await scan(targets, { ca: root.pem, lookup: fakeLookup(asked) }));
    assert.equal(o.error, undefined, o.error?.message);
    assert.deepEqual(asked, ['other.test']);
    assert.equal(o.address, '127.0.0.1');
    assert.equal(o.authorized, true);
    assert.equal(o.hostnameError, undefined);
  });

  test('a name that does not resolve is a dns error', async () => {
    const o = one(await scan([{ host: 'missing.test', port: 443, sni: 'missing.test' }], { lookup: fakeLookup([], 'ENOTFOUND') }));
    assert.equal(o.error?.code, 'dns', JSON.stringify(o.error));
    assert.equal(o.address, undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Failures

describe('scan reports failures as observations', () => {
  test('a closed port is refused', async () => {
    const port = await freePort('127.0.0.1');
    const o = one(await scan([{ host: '127.0.0.1', port }]));
    assert.equal(o.error?.code, 'refused');
    assert.deepEqual(o.chain, []);
    assert.equal(o.authorized, undefined);
  });

  test('a server that accepts and never speaks times out after timeoutMs, and the client hangs up', async () => {
    const closed: Promise<void>[] = [];
    const server = net.createServer((s) => {
      closed.push(new Promise((resolve) => s.on('close', () => resolve())));
      s.resume(); // read the ClientHello, so the client's FIN is seen
    });
    const port = await listen(server);
    const timers = timerCount();
    const o = one(await scan([{ host: '127.0.0.1', port }], { timeoutMs: 300 }));
    assert.equal(o.error?.code, 'timeout');
    assert.match(o.error?.message ?? '', /no TLS handshake within 300 ms/);
    assert.ok(o.durationMs >= 250, `durationMs ${o.durationMs}`);
    assert.equal(o.address, '127.0.0.1');
    assert.deepEqual(o.chain, []);
    assert.equal(timerCount(), timers, 'no timer left behind');
    assert.equal(closed.length, 1);
    await Promise.all(closed);
  });

  test('a server that answers with something other than TLS is a tls error (or a reset)', async () => {
    const server = net.createServer((s) => s.once('data', () => s.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')));
    const port = await listen(server);
    const o = one(await scan([{ host: '127.0.0.1', port }], { timeoutMs: 3000 }));
    assert.ok(o.error?.code === 'tls' || o.error?.code === 'reset', JSON.stringify(o.error));
    assert.ok(o.error.message.length > 0);
  });

  test('a server that hangs up during the handshake is a reset', async () => {
    const server = net.createServer((s) => s.destroy());
    const port = await listen(server);
    const o = one(await scan([{ host: '127.0.0.1', port }], { timeoutMs: 3000 }));
    assert.equal(o.error?.code, 'reset', JSON.stringify(o.error));
  });

  const kinds: Array<[string, object, string]> = [
    ['ECONNREFUSED', { code: 'ECONNREFUSED' }, 'refused'],
    ['ETIMEDOUT', { code: 'ETIMEDOUT' }, 'timeout'],
    ['EHOSTUNREACH', { code: 'EHOSTUNREACH' }, 'unreachable'],
    ['ENETUNREACH', { code: 'ENETUNREACH' }, 'unreachable'],
    ['ENOTFOUND', { code: 'ENOTFOUND' }, 'dns'],
    ['EAI_AGAIN', { code: 'EAI_AGAIN' }, 'dns'],
    ['ECONNRESET', { code: 'ECONNRESET' }, 'reset'],
    ['EPIPE', { code: 'EPIPE' }, 'reset'],
    ['an OpenSSL error', { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }, 'tls'],
    ['a Node TLS error', { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'tls'],
    ['an SSL routines error without a known code', { library: 'SSL routines' }, 'tls'],
    ['an aggregate of connection attempts', { errors: [{ code: 'ECONNREFUSED' }, { code: 'ECONNREFUSED' }] }, 'refused'],
    ['anything else', { code: 'EACCES' }, 'other'],
  ];
  for (const [name, fields, kind] of kinds) {
    test(`classifyError: ${name} is ${kind}`, () => {
      const got = classifyError(Object.assign(new Error('boom'), fields));
      assert.deepEqual(got, { code: kind, message: 'boom' });
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Pool, rate, progress, abort

describe('scan runs a bounded pool', () => {
  test('never more than `concurrency` connections are open at once', async () => {
    let open = 0;
    let max = 0;
    // The server hangs up after 50 ms and counts down only then, so a connection counts until the
    // client can know it is gone; a new one can only start after that.
    const server = net.createServer((s) => {
      open++;
      max = Math.max(max, open);
      setTimeout(() => {
        open--;
        s.destroy();
      }, 50);
    });
    const port = await listen(server);
    const targets = Array.from({ length: 20 }, () => ({ host: '127.0.0.1', port }));
    const got = await scan(targets, { concurrency: 2, timeoutMs: 5000 });
    assert.equal(got.length, 20);
    for (const o of got) assert.equal(o.error?.code, 'reset', JSON.stringify(o.error));
    assert.ok(max <= 2, `max open ${max}`);
    assert.equal(max, 2, 'the two workers ran side by side');
  });

  test('ratePerSecond spaces new connections (lower bounds only)', async () => {
    const port = await freePort('127.0.0.1');
    const targets = Array.from({ length: 10 }, () => ({ host: '127.0.0.1', port }));
    const t0 = performance.now();
    const got = await scan(targets, { ratePerSecond: 20 });
    const elapsed = performance.now() - t0;
    assert.equal(got.length, 10);
    // Burst 1 at 20/s: starts 50 ms apart, so at least 9 * 50 ms in all.
    assert.ok(elapsed >= 400, `elapsed ${elapsed} ms`);
    for (let i = 1; i < got.length; i++) {
      const gap = got[i]!.at.getTime() - got[i - 1]!.at.getTime();
      assert.ok(gap >= 40, `gap ${i}: ${gap} ms`);
    }
  });

  test('onProgress is called once per target with done counting up to total', async () => {
    const port = await freePort('127.0.0.1');
    const targets = Array.from({ length: 5 }, (_, i) => ({ host: '127.0.0.1', port, sni: `t${i}.test` }));
    const calls: Array<[number, number, ScanObservation]> = [];
    const got = await scan(targets, { concurrency: 3, onProgress: (done, total, last) => calls.push([done, total, last]) });
    assert.deepEqual(
      calls.map(([done]) => done),
      [1, 2, 3, 4, 5],
    );
    assert.ok(calls.every(([, total]) => total === 5));
    assert.deepEqual(
      new Set(calls.map(([, , last]) => last)),
      new Set(got),
    );
    assert.deepEqual(
      got.map((o) => o.target),
      targets,
    );
  });

  test('aborting stops new targets; those in flight are finished and returned', async () => {
    const port = await freePort('127.0.0.1');
    const targets = Array.from({ length: 8 }, (_, i) => ({ host: '127.0.0.1', port, sni: `t${i}.test` }));
    const ac = new AbortController();
    let calls = 0;
    const got = await scan(targets, {
      concurrency: 2,
      signal: ac.signal,
      onProgress: () => {
        calls++;
        ac.abort();
      },
    });
    assert.equal(got.length, 2);
    assert.equal(calls, 2);
    assert.deepEqual(
      got.map((o) => o.target),
      targets.slice(0, 2),
    );
  });

  test('an aborted signal starts nothing', async () => {
    let accepted = 0;
    const port = await listen(net.createServer(() => accepted++));
    assert.deepEqual(await scan([{ host: '127.0.0.1', port }], { signal: AbortSignal.abort() }), []);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(accepted, 0);
  });

  test('aborting wakes workers waiting for a token and leaves no timer behind', async () => {
    const port = await freePort('127.0.0.1');
    const targets = Array.from({ length: 5 }, (_, i) => ({ host: '127.0.0.1', port, sni: `t${i}.test` }));
    const timers = timerCount();
    const ac = new AbortController();
    const aborting = setTimeout(() => ac.abort(), 100);
    try {
      // 1 per second: the first starts at once, the next would wait a second.
      const got = await scan(targets, { ratePerSecond: 1, signal: ac.signal });
      assert.equal(got.length, 1);
      assert.deepEqual(got[0]!.target, targets[0]);
    } finally {
      clearTimeout(aborting);
    }
    assert.equal(timerCount(), timers);
  });

  test('an onProgress that throws stops the scan and its error is the rejection', async () => {
    const port = await freePort('127.0.0.1');
    const targets = Array.from({ length: 4 }, (_, i) => ({ host: '127.0.0.1', port, sni: `t${i}.test` }));
    const boom = new Error('progress failed');
    let calls = 0;
    await assert.rejects(
      scan(targets, {
        concurrency: 1,
        onProgress: () => {
          calls++;
          throw boom;
        },
      }),
      (e) => e === boom,
    );
    assert.equal(calls, 1);
  });

  test('no targets is no observations', async () => {
    assert.deepEqual(await scan([]), []);
  });

  const badOptions: Array<[string, Parameters<typeof scan>[1]]> = [
    ['concurrency 0', { concurrency: 0 }],
    ['concurrency 1025', { concurrency: 1025 }],
    ['a fractional concurrency', { concurrency: 1.5 }],
    ['timeoutMs 0', { timeoutMs: 0 }],
    ['ratePerSecond 0', { ratePerSecond: 0 }],
    ['a ca that is not a certificate', { ca: 'not a certificate' }],
    ['a ca DER buffer that does not parse', { ca: Buffer.from([1, 2, 3]) }],
  ];
  for (const [name, opts] of badOptions) {
    test(`refuses ${name} with BAD_OPTION`, async () => {
      await assert.rejects(scan([{ host: '127.0.0.1', port: 443 }], opts), (e: ScanError) => e instanceof ScanError && e.code === 'BAD_OPTION');
    });
  }

  const badTargets: Array<[string, ScanTarget]> = [
    ['port 0', { host: '127.0.0.1', port: 0 }],
    ['port 65536', { host: '127.0.0.1', port: 65536 }],
    ['an empty host', { host: '', port: 443 }],
    ['an IP address as sni', { host: '127.0.0.1', port: 443, sni: '127.0.0.1' }],
  ];
  for (const [name, target] of badTargets) {
    test(`refuses a target with ${name} with BAD_TARGET before connecting`, async () => {
      await assert.rejects(scan([target]), (e: ScanError) => e instanceof ScanError && e.code === 'BAD_TARGET');
    });
  }
});

describe('TokenBucket', () => {
  /**
   * Time that moves only by sleeping: sleep records the wait and resolves on the next turn, moving
   * the time to when it would have woken, unless its signal aborts first. `early` makes the next
   * sleep wake that much too soon, like a libuv timer measured from a stale loop time.
   */
  function fakeTime(early = 0) {
    const time = {
      t: 0,
      early,
      sleeps: [] as number[],
      now: () => time.t,
      sleep: (ms: number, signal?: AbortSignal) => {
        time.sleeps.push(ms);
        const wake = time.t + ms - time.early;
        time.early = 0;
        return new Promise<void>((resolve, reject) => {
          signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
          setImmediate(() => {
            time.t = Math.max(time.t, wake);
            resolve();
          });
        });
      },
    };
    return time;
  }

  test('callers at the same moment are given slots 1/rate apart, in call order', async () => {
    const time = fakeTime();
    const bucket = new TokenBucket(20, 1, time);
    const granted = await Promise.all(Array.from({ length: 10 }, () => bucket.take()));
    assert.ok(granted.every(Boolean));
    assert.deepEqual(
      time.sleeps.map((ms) => Math.round(ms)),
      [50, 100, 150, 200, 250, 300, 350, 400, 450],
    );
    assert.equal(Math.round(time.t), 450);
  });

  test('a timer that fires early is followed by a sleep for the rest', async () => {
    const time = fakeTime(10);
    const bucket = new TokenBucket(20, 1, time);
    await Promise.all([bucket.take(), bucket.take()]);
    assert.deepEqual(time.sleeps.map(Math.round), [50, 10]);
    assert.equal(Math.round(time.t), 50);
  });

  test('an idle bucket refills only up to its burst', async () => {
    const time = fakeTime();
    const bucket = new TokenBucket(10, 3, time);
    for (let i = 0; i < 3; i++) await bucket.take();
    assert.deepEqual(time.sleeps, []);
    await bucket.take();
    assert.deepEqual(time.sleeps.map(Math.round), [100]);
    time.t += 60_000;
    time.sleeps.length = 0;
    for (let i = 0; i < 4; i++) await bucket.take();
    assert.deepEqual(time.sleeps.map(Math.round), [100]);
  });

  test('take resolves false when aborted, before or while waiting', async () => {
    const time = fakeTime();
    const bucket = new TokenBucket(1, 1, time);
    assert.equal(await bucket.take(AbortSignal.abort()), false);
    assert.equal(await bucket.take(), true);
    const ac = new AbortController();
    const waiting = bucket.take(ac.signal);
    ac.abort();
    assert.equal(await waiting, false);
  });
});

// ---------------------------------------------------------------------------------------------
// parseTargets

describe('parseTargets', () => {
  const accepted: Array<[string, string[], Parameters<typeof parseTargets>[1], ScanTarget[]]> = [
    ['a host name is its own SNI on port 443', ['example.com'], {}, [{ host: 'example.com', port: 443, sni: 'example.com' }]],
    ['a host name is lower-cased and loses its trailing dot', ['WWW.Example.COM.'], {}, [{ host: 'www.example.com', port: 443, sni: 'www.example.com' }]],
    ['an IDN becomes its xn-- form', ['bücher.example'], {}, [{ host: 'xn--bcher-kva.example', port: 443, sni: 'xn--bcher-kva.example' }]],
    ['a single-label name is accepted', ['intranet'], {}, [{ host: 'intranet', port: 443, sni: 'intranet' }]],
    ['host:port', ['example.com:8443'], {}, [{ host: 'example.com', port: 8443, sni: 'example.com' }]],
    ['an IPv4 address gets no SNI', ['192.0.2.1'], {}, [{ host: '192.0.2.1', port: 443 }]],
    ['IPv4:port', ['192.0.2.1:8443'], {}, [{ host: '192.0.2.1', port: 8443 }]],
    ['a bare IPv6 address', ['2001:db8::1'], {}, [{ host: '2001:db8::1', port: 443 }]],
    ['an IPv6 address is written in RFC 5952 form', ['2001:DB8:0:0:0:0:0:01'], {}, [{ host: '2001:db8::1', port: 443 }]],
    ['[IPv6]:port', ['[2001:db8::1]:8443'], {}, [{ host: '2001:db8::1', port: 8443 }]],
    ['[IPv6] without a port', ['[::1]'], {}, [{ host: '::1', port: 443 }]],
    ['an IPv4-mapped IPv6 address', ['::ffff:192.0.2.1'], {}, [{ host: '::ffff:c000:201', port: 443 }]],
    ['an IPv6 zone is kept', ['fe80::1%eth0'], {}, [{ host: 'fe80::1%eth0', port: 443 }]],
    [
      'an IPv4 /30 skips network and broadcast',
      ['192.0.2.0/30'],
      {},
      [
        { host: '192.0.2.1', port: 443 },
        { host: '192.0.2.2', port: 443 },
      ],
    ],
    [
      'an IPv4 /31 has both addresses',
      ['192.0.2.0/31'],
      {},
      [
        { host: '192.0.2.0', port: 443 },
        { host: '192.0.2.1', port: 443 },
      ],
    ],
    ['an IPv4 /32 is the address', ['192.0.2.7/32'], {}, [{ host: '192.0.2.7', port: 443 }]],
    [
      'host bits of a range are ignored',
      ['192.0.2.5/30'],
      {},
      [
        { host: '192.0.2.5', port: 443 },
        { host: '192.0.2.6', port: 443 },
      ],
    ],
    [
      'an IPv4 range with its own port',
      ['192.0.2.0/30:8443'],
      { ports: [443, 80] },
      [
        { host: '192.0.2.1', port: 8443 },
        { host: '192.0.2.2', port: 8443 },
      ],
    ],
    [
      'an IPv6 /126 has all four addresses',
      ['2001:db8::/126'],
      {},
      [
        { host: '2001:db8::', port: 443 },
        { host: '2001:db8::1', port: 443 },
        { host: '2001:db8::2', port: 443 },
        { host: '2001:db8::3', port: 443 },
      ],
    ],
    [
      'an IPv6 range in brackets with a port',
      ['[2001:db8::ff:0:0/127]:8443'],
      {},
      [
        { host: '2001:db8::ff:0:0', port: 8443 },
        { host: '2001:db8::ff:0:1', port: 8443 },
      ],
    ],
    [
      'every port of opts.ports, unless the spec has its own',
      ['example.com', '192.0.2.1:80'],
      { ports: [443, 8443] },
      [
        { host: 'example.com', port: 443, sni: 'example.com' },
        { host: 'example.com', port: 8443, sni: 'example.com' },
        { host: '192.0.2.1', port: 80 },
      ],
    ],
    ['an empty ports list means 443', ['192.0.2.1'], { ports: [] }, [{ host: '192.0.2.1', port: 443 }]],
    [
      'one target per SNI name, for names and addresses alike',
      ['192.0.2.1', 'example.com'],
      { sni: ['a.test', 'B.test'] },
      [
        { host: '192.0.2.1', port: 443, sni: 'a.test' },
        { host: '192.0.2.1', port: 443, sni: 'b.test' },
        { host: 'example.com', port: 443, sni: 'a.test' },
        { host: 'example.com', port: 443, sni: 'b.test' },
      ],
    ],
    [
      'identical targets appear once, in first-seen order',
      ['example.com', 'EXAMPLE.com:443', 'example.com.', '192.0.2.0/30', '192.0.2.2', '192.0.2.1:443'],
      { ports: [443, 443], sni: undefined },
      [
        { host: 'example.com', port: 443, sni: 'example.com' },
        { host: '192.0.2.1', port: 443 },
        { host: '192.0.2.2', port: 443 },
      ],
    ],
    [
      'the same address in two IPv6 spellings is one target',
      ['2001:db8::1', '2001:0db8:0:0::1', '[2001:db8::1]:443'],
      {},
      [{ host: '2001:db8::1', port: 443 }],
    ],
  ];
  for (const [name, specs, opts, want] of accepted) {
    test(`accepts ${name}`, () => {
      assert.deepEqual(parseTargets(specs, opts), want);
    });
  }

  test('a /24 is its 254 host addresses', () => {
    const got = parseTargets(['10.1.2.0/24'], {});
    assert.equal(got.length, 254);
    assert.deepEqual(got[0], { host: '10.1.2.1', port: 443 });
    assert.deepEqual(got[253], { host: '10.1.2.254', port: 443 });
    assert.equal(new Set(got.map((t) => t.host)).size, 254);
  });

  test('the limit counts ports and SNI names, and exactly maxTargets is allowed', () => {
    assert.equal(parseTargets(['192.0.2.0/30'], { ports: [443, 8443], maxTargets: 4 }).length, 4);
    assert.throws(() => parseTargets(['192.0.2.0/30'], { ports: [443, 8443], sni: ['a.test'], maxTargets: 3 }), { code: 'TOO_MANY_TARGETS' });
  });

  const tooMany: Array<[string, string[]]> = [
    ['10.0.0.0/8 with the default cap', ['10.0.0.0/8']],
    ['0.0.0.0/0', ['0.0.0.0/0']],
    // Counting first is what keeps this from running forever.
    ['::/0', ['::/0']],
    ['2001:db8::/64', ['2001:db8::/64']],
  ];
  for (const [name, specs] of tooMany) {
    test(`refuses ${name} with TOO_MANY_TARGETS before expanding`, () => {
      assert.throws(
        () => parseTargets(specs, {}),
        (e: ScanError) => e instanceof ScanError && e.code === 'TOO_MANY_TARGETS' && e.message.includes(JSON.stringify(specs[0])) && e.message.includes('65536'),
      );
    });
  }

  const refusedSpecs: Array<[string, string]> = [
    ['port 0', 'example.com:0'],
    ['a port above 65535', 'example.com:65536'],
    ['a port name', 'example.com:https'],
    ['an empty port', 'example.com:'],
    ['an IPv6 port above 65535', '[2001:db8::1]:99999'],
    ['an IPv4 prefix above 32', '10.0.0.0/33'],
    ['an empty prefix', '10.0.0.0/'],
    ['a prefix that is not a number', '10.0.0.0/abc'],
    ['an IPv6 prefix above 128', '2001:db8::/129'],
    ['an IPv6 range with a port but no brackets', '2001:db8::/120:443'],
    ['a range of a name', 'example.com/24'],
    ['an IPv4 octet above 255', '256.1.1.1'],
    ['a dotted name ending in a number', '1.2.3'],
    ['colons that are not IPv6', '1:2:3'],
    ['an IPv4 address in brackets', '[192.0.2.1]:443'],
    ['an empty spec', ''],
    ['a URL', 'https://example.com'],
    ['a label starting with a hyphen', '-bad.example'],
    ['an empty label', 'a..example'],
    ['a space', 'exa mple.com'],
    ['a wildcard', '*.example.com'],
    ['an underscore', 'a_b.example'],
    ['a label longer than 63', `${'x'.repeat(64)}.example`],
  ];
  for (const [name, spec] of refusedSpecs) {
    test(`refuses ${name} with BAD_TARGET naming the spec`, () => {
      assert.throws(
        () => parseTargets([spec], {}),
        (e: ScanError) => e instanceof ScanError && e.code === 'BAD_TARGET' && e.message.includes(JSON.stringify(spec)) && /expected/.test(e.message),
      );
    });
  }

  const refusedOptions: Array<[string, Parameters<typeof parseTargets>[1], string]> = [
    ['a port 0 in opts.ports', { ports: [0] }, 'BAD_TARGET'],
    ['a port above 65535 in opts.ports', { ports: [70000] }, 'BAD_TARGET'],
    ['an IP address as SNI', { sni: ['192.0.2.1'] }, 'BAD_TARGET'],
    ['an invalid SNI name', { sni: ['bad name'] }, 'BAD_TARGET'],
    ['maxTargets 0', { maxTargets: 0 }, 'BAD_OPTION'],
  ];
  for (const [name, opts, code] of refusedOptions) {
    test(`refuses ${name} with ${code}`, () => {
      assert.throws(() => parseTargets(['example.com'], opts), (e: ScanError) => e instanceof ScanError && e.code === code && /expected/.test(e.message));
    });
  }
});
