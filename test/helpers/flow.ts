/** Multi-step ACME flows on top of RawAcme, for protocol tests. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RawAcme, Response } from './raw-acme.js';

const run = promisify(execFile);

export async function waitFor(acme: RawAcme, url: string, done: (body: any) => boolean, timeoutMs = 10_000): Promise<any> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await acme.post(url, { payload: null });
    if (r.status !== 200) throw new Error(`polling ${url}: ${r.status} ${r.text}`);
    if (done(r.body)) return r.body;
    if (Date.now() > end) throw new Error(`timed out waiting on ${url}: ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Creates an order and answers one challenge per authorization; returns the ready order. */
export async function readyOrder(
  acme: RawAcme,
  identifiers: Array<{ type: string; value: string }>,
  challengeType = 'http-01',
  extra: Record<string, unknown> = {},
  /** Called before each challenge is answered (a real responder serves it; a fake validator needs none). */
  present?: (token: string, keyAuthorization: string) => void,
): Promise<{ url: string; order: any }> {
  const r = await acme.post(acme.directory.newOrder!, { payload: { identifiers, ...extra } });
  if (r.status !== 201) throw new Error(`newOrder: ${r.status} ${r.text}`);
  const url = r.headers.get('location')!;
  for (const az of r.body.authorizations as string[]) {
    const a = await acme.post(az, { payload: null });
    if (a.body.status === 'valid') continue;
    const ch = (a.body.challenges as any[]).find((c) => c.type === challengeType) ?? a.body.challenges[0];
    present?.(ch.token, `${ch.token}.${acme.thumbprint()}`);
    const c = await acme.post(ch.url, { payload: {} });
    if (c.status !== 200) throw new Error(`challenge: ${c.status} ${c.text}`);
    await waitFor(acme, az, (b) => b.status !== 'pending');
  }
  const order = await waitFor(acme, url, (b) => b.status !== 'pending');
  return { url, order };
}

/** A CSR made by openssl (a real peer), with its key. */
export async function makeCsr(
  names: string[],
  opts: { keyAlg?: 'ec' | 'rsa'; digest?: string; keyPem?: string } = {},
): Promise<{ der: Buffer; keyPem: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-csr-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    if (opts.keyPem) await writeFile(keyFile, opts.keyPem, { mode: 0o600 });
    else if (opts.keyAlg === 'rsa') await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile]);
    else await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile]);
    const san = names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    const args = ['req', '-new', '-key', keyFile, '-subj', '/', '-addext', `subjectAltName=${san}`, '-outform', 'DER', '-out', path.join(dir, 'csr.der')];
    if (opts.digest) args.push(`-${opts.digest}`);
    await run('openssl', args);
    return { der: await readFile(path.join(dir, 'csr.der')), keyPem: await readFile(keyFile, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function finalize(acme: RawAcme, order: any, csrDer: Buffer): Promise<Response> {
  return acme.post(order.finalize, { payload: { csr: csrDer.toString('base64url') } });
}

/** Full issuance: order, challenges, finalize, download. Returns the PEM chain and the order. */
export async function issue(
  acme: RawAcme,
  names: string[],
  extra: Record<string, unknown> = {},
  present?: (token: string, keyAuthorization: string) => void,
): Promise<{ chain: string; order: any; certUrl: string; keyPem: string }> {
  const ids = names.map((n) => ({ type: /^[0-9.]+$|:/.test(n) ? 'ip' : 'dns', value: n }));
  const { url, order } = await readyOrder(acme, ids, names.some((n) => n.startsWith('*.')) ? 'dns-01' : 'http-01', extra, present);
  if (order.status !== 'ready') throw new Error(`order not ready: ${JSON.stringify(order)}`);
  const csr = await makeCsr(names);
  const f = await finalize(acme, order, csr.der);
  if (f.status !== 200) throw new Error(`finalize: ${f.status} ${f.text}`);
  const done = await waitFor(acme, url, (b) => b.status === 'valid' || b.status === 'invalid');
  const c = await acme.post(done.certificate, { payload: null });
  if (c.status !== 200) throw new Error(`download: ${c.status} ${c.text}`);
  return { chain: c.text, order: done, certUrl: done.certificate, keyPem: csr.keyPem };
}
