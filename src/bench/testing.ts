/**
 * Test double for the load generator's tests (used by tests only): FakeAcmeServer, a small ACME
 * server over plain HTTP on 127.0.0.1 that keeps everything in memory, validates http-01 against
 * the generator's responder for real, issues real (tiny) certificates from a throw-away CA, and
 * misbehaves on request so that error accounting can be tested. It checks nonces but not
 * signatures: it is a fake, not a CA.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { toPem } from '../lib/pem.js';
import { ipBytes, p256Spki } from './csr.js';
import { bytesOf, childrenOf, oid, readTlv, seq, set, tlv } from '../lib/der.js';

export interface FakeFaults {
  /** Answer the first signed request of every account with badNonce (RFC 8555 §6.5). */
  badNonceFirst?: boolean;
  /** Every n-th newOrder is answered 429 rateLimited with Retry-After: 1. */
  rateLimitEvery?: number;
  /** Expect a wrong key authorization, so that every validation fails with incorrectResponse. */
  failValidation?: boolean;
  /** Put another key than the CSR's into certificates. */
  wrongCertificateKey?: boolean;
  /** Never finish validations: authorizations stay pending. */
  neverValidate?: boolean;
}

const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

function utcTime(ms: number): Buffer {
  const iso = new Date(ms).toISOString(); // 2026-01-02T03:04:05.678Z
  return tlv(0x17, Buffer.from(`${iso.slice(2, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`, 'latin1'));
}

const cnName = (cn: string) => seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn)))));

/** A DER certificate (RFC 5280 §4.1), ECDSA P-256 signed. Exported for the certificate check's tests. */
export function makeCertificate(o: {
  issuer: string;
  subject: string | null;
  spki: Buffer;
  names: Array<{ type: 'dns' | 'ip'; value: string }>;
  notBefore: number;
  notAfter: number;
  signer: KeyObject;
}): Buffer {
  const names = o.names.map((n) => (n.type === 'ip' ? tlv(0x87, ipBytes(n.value)) : tlv(0x82, Buffer.from(n.value, 'ascii'))));
  const extensions = names.length ? [tlv(0xa3, seq(seq(oid('2.5.29.17'), tlv(0x04, seq(...names)))))] : [];
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))),
    tlv(0x02, Buffer.concat([Buffer.from([0x01]), randomBytes(8)])),
    seq(oid(OID_ECDSA_WITH_SHA256)),
    cnName(o.issuer),
    seq(utcTime(o.notBefore), utcTime(o.notAfter)),
    o.subject === null ? seq() : cnName(o.subject),
    o.spki,
    ...extensions,
  );
  return seq(tbs, seq(oid(OID_ECDSA_WITH_SHA256)), tlv(0x03, Buffer.from([0]), sign('sha256', tbs, o.signer)));
}

/** A throw-away CA: its key and self-signed certificate. */
export function makeFakeCa(name = 'Fake Bench CA'): { key: KeyObject; der: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const der = makeCertificate({ issuer: name, subject: name, spki: p256Spki(publicKey), names: [], notBefore: now - 60_000, notAfter: now + 86_400_000, signer: privateKey });
  return { key: privateKey, der };
}

interface Account {
  id: string;
  thumbprint: string;
  sawFirst: boolean;
}
interface Authz {
  id: string;
  accountId: string;
  identifier: { type: 'ip' | 'dns'; value: string };
  status: 'pending' | 'valid' | 'invalid';
  token: string;
  challengeStatus: 'pending' | 'processing' | 'valid' | 'invalid';
  error?: { type: string; detail: string };
}
interface Order {
  id: string;
  accountId: string;
  identifiers: Array<{ type: 'ip' | 'dns'; value: string }>;
  authzIds: string[];
  status: 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
  certPem?: string;
}

export class FakeAcmeServer {
  readonly #server: http.Server;
  readonly #ca = makeFakeCa();
  readonly #caPem: string;
  readonly #nonces = new Set<string>();
  readonly #accounts = new Map<string, Account>();
  readonly #authzs = new Map<string, Authz>();
  readonly #orders = new Map<string, Order>();
  #newOrders = 0;
  #base = '';
  /** Requests received, by path prefix ("new-order", "authz", ...). */
  readonly counts = new Map<string, number>();

  private constructor(
    private readonly httpPort: number,
    private readonly faults: FakeFaults,
  ) {
    this.#caPem = toPem('CERTIFICATE', this.#ca.der);
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          this.#handle(req, res, Buffer.concat(chunks).toString('utf8'));
        } catch (e) {
          this.#problem(res, 500, 'serverInternal', (e as Error).message);
        }
      });
    });
  }

  /** Starts on 127.0.0.1 (a free port); validations go to `httpPort` of each identifier's address. */
  static async start(httpPort: number, faults: FakeFaults = {}): Promise<FakeAcmeServer> {
    const f = new FakeAcmeServer(httpPort, faults);
    await new Promise<void>((r) => f.#server.listen(0, '127.0.0.1', () => r()));
    f.#base = `http://127.0.0.1:${(f.#server.address() as AddressInfo).port}`;
    return f;
  }

  get directoryUrl(): string {
    return `${this.#base}/directory`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }

  #id(): string {
    return randomBytes(9).toString('base64url');
  }

  #nonce(): string {
    const n = randomBytes(12).toString('base64url');
    this.#nonces.add(n);
    return n;
  }

  #send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, {
      'replay-nonce': this.#nonce(),
      'content-type': typeof body === 'string' ? 'application/pem-certificate-chain' : 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  }

  #problem(res: http.ServerResponse, status: number, type: string, detail: string, headers: Record<string, string> = {}): void {
    const text = JSON.stringify({ type: `urn:ietf:params:acme:error:${type}`, detail, status });
    res.writeHead(status, { 'replay-nonce': this.#nonce(), 'content-type': 'application/problem+json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }

  #authzJson(a: Authz) {
    return {
      identifier: a.identifier,
      status: a.status,
      expires: new Date(Date.now() + 86_400_000).toISOString(),
      challenges: [
        { type: 'http-01', url: `${this.#base}/chall/${a.id}`, status: a.challengeStatus, token: a.token, ...(a.error ? { error: a.error } : {}) },
      ],
    };
  }

  #orderJson(o: Order) {
    if (o.status === 'pending' && o.authzIds.every((id) => this.#authzs.get(id)?.status === 'valid')) o.status = 'ready';
    if (o.status === 'pending' && o.authzIds.some((id) => this.#authzs.get(id)?.status === 'invalid')) o.status = 'invalid';
    return {
      status: o.status,
      expires: new Date(Date.now() + 86_400_000).toISOString(),
      identifiers: o.identifiers,
      authorizations: o.authzIds.map((id) => `${this.#base}/authz/${id}`),
      finalize: `${this.#base}/order/${o.id}/finalize`,
      ...(o.status === 'valid' ? { certificate: `${this.#base}/cert/${o.id}` } : {}),
    };
  }

  #validate(a: Authz, account: Account): void {
    const host = a.identifier.value;
    const expected = `${a.token}.${this.faults.failValidation ? 'wrong' : account.thumbprint}`;
    const req = http.get({ host, port: this.httpPort, path: `/.well-known/acme-challenge/${a.token}`, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        const ok = res.statusCode === 200 && body.trim() === expected;
        a.challengeStatus = ok ? 'valid' : 'invalid';
        a.status = ok ? 'valid' : 'invalid';
        if (!ok) a.error = { type: 'urn:ietf:params:acme:error:incorrectResponse', detail: `got HTTP ${res.statusCode} "${body.slice(0, 100)}"` };
      });
    });
    req.on('error', (e) => {
      a.challengeStatus = 'invalid';
      a.status = 'invalid';
      a.error = { type: 'urn:ietf:params:acme:error:connection', detail: e.message };
    });
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const path = (req.url ?? '/').split('?')[0]!;
    const kind = path.split('/')[1] ?? '';
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    if (path === '/directory') {
      return this.#send(res, 200, {
        newNonce: `${this.#base}/new-nonce`,
        newAccount: `${this.#base}/new-account`,
        newOrder: `${this.#base}/new-order`,
        revokeCert: `${this.#base}/revoke`,
        keyChange: `${this.#base}/key-change`,
      });
    }
    if (path === '/new-nonce') {
      res.writeHead(req.method === 'HEAD' ? 200 : 204, { 'replay-nonce': this.#nonce(), 'cache-control': 'no-store', 'content-length': '0' });
      return void res.end();
    }
    if (req.method !== 'POST') return this.#problem(res, 405, 'malformed', 'POST only');
    const jws = JSON.parse(body) as { protected: string; payload: string; signature: string };
    const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString()) as { nonce: string; url: string; kid?: string; jwk?: Record<string, string> };
    const payload = jws.payload === '' ? null : (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as Record<string, unknown>);
    if (!this.#nonces.delete(header.nonce)) return this.#problem(res, 400, 'badNonce', 'unknown nonce');
    if (header.url !== `${this.#base}${path}`) return this.#problem(res, 401, 'unauthorized', 'url mismatch');

    if (path === '/new-account') {
      const jwk = header.jwk!;
      const thumbprint = createHash('sha256').update(`{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`).digest('base64url');
      const account: Account = { id: this.#id(), thumbprint, sawFirst: false };
      this.#accounts.set(account.id, account);
      return this.#send(res, 201, { status: 'valid', orders: `${this.#base}/acct/${account.id}/orders` }, { location: `${this.#base}/acct/${account.id}` });
    }
    const account = this.#accounts.get((header.kid ?? '').split('/').pop() ?? '');
    if (!account) return this.#problem(res, 400, 'accountDoesNotExist', 'no such account');
    if (this.faults.badNonceFirst && !account.sawFirst) {
      account.sawFirst = true;
      return this.#problem(res, 400, 'badNonce', 'refused on purpose');
    }
    account.sawFirst = true;
    const id = path.split('/')[2] ?? '';

    if (path === '/new-order') {
      this.#newOrders++;
      if (this.faults.rateLimitEvery && this.#newOrders % this.faults.rateLimitEvery === 0) {
        return this.#problem(res, 429, 'rateLimited', 'slow down (on purpose)', { 'retry-after': '1' });
      }
      const identifiers = (payload?.identifiers ?? []) as Order['identifiers'];
      const authzIds = identifiers.map((identifier) => {
        const a: Authz = { id: this.#id(), accountId: account.id, identifier, status: 'pending', token: randomBytes(24).toString('base64url'), challengeStatus: 'pending' };
        this.#authzs.set(a.id, a);
        return a.id;
      });
      const o: Order = { id: this.#id(), accountId: account.id, identifiers, authzIds, status: 'pending' };
      this.#orders.set(o.id, o);
      return this.#send(res, 201, this.#orderJson(o), { location: `${this.#base}/order/${o.id}` });
    }
    if (kind === 'authz') {
      const a = this.#authzs.get(id);
      if (!a || a.accountId !== account.id) return this.#problem(res, 404, 'malformed', 'no such authorization');
      return this.#send(res, 200, this.#authzJson(a), a.status === 'pending' ? { 'retry-after': '1' } : {});
    }
    if (kind === 'chall') {
      const a = this.#authzs.get(id);
      if (!a || a.accountId !== account.id) return this.#problem(res, 404, 'malformed', 'no such challenge');
      if (payload && a.challengeStatus === 'pending') {
        a.challengeStatus = 'processing';
        if (!this.faults.neverValidate) this.#validate(a, account);
      }
      const ch = this.#authzJson(a).challenges[0]!;
      return this.#send(res, 200, ch, { 'retry-after': '1', link: `<${this.#base}/authz/${a.id}>;rel="up"` });
    }
    if (kind === 'order') {
      const o = this.#orders.get(id);
      if (!o || o.accountId !== account.id) return this.#problem(res, 404, 'malformed', 'no such order');
      if (path.endsWith('/finalize')) {
        if (this.#orderJson(o).status !== 'ready') return this.#problem(res, 403, 'orderNotReady', `the order is ${o.status}`);
        const csr = Buffer.from(String(payload?.csr ?? ''), 'base64url');
        const [info] = childrenOf(csr, readTlv(csr, 0));
        const spki = bytesOf(csr, childrenOf(csr, info!)[2]!);
        const now = Date.now();
        const leaf = makeCertificate({
          issuer: 'Fake Bench CA',
          subject: null,
          spki: this.faults.wrongCertificateKey ? p256Spki(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey) : spki,
          names: o.identifiers,
          notBefore: now - 60_000,
          notAfter: now + 86_400_000,
          signer: this.#ca.key,
        });
        o.certPem = toPem('CERTIFICATE', leaf) + this.#caPem;
        o.status = 'valid';
        return this.#send(res, 200, this.#orderJson(o), { location: `${this.#base}/order/${o.id}` });
      }
      return this.#send(res, 200, this.#orderJson(o));
    }
    if (kind === 'cert') {
      const o = this.#orders.get(id);
      if (!o?.certPem || o.accountId !== account.id) return this.#problem(res, 404, 'malformed', 'no such certificate');
      return this.#send(res, 200, o.certPem);
    }
    return this.#problem(res, 404, 'malformed', 'no such resource');
  }
}

/** The SubjectPublicKeyInfo of a DER CSR (for tests that compare keys). */
export function csrSpki(csr: Buffer): Buffer {
  const [info] = childrenOf(csr, readTlv(csr, 0));
  return bytesOf(csr, childrenOf(csr, info!)[2]!);
}
