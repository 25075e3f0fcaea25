/**
 * tls-alpn-01 (RFC 8737): a TLS handshake with ALPN "acme-tls/1" and SNI = the name; the
 * certificate must name exactly that identifier and carry the critical acmeIdentifier extension
 * with SHA-256(keyAuthorization).
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as x509 from '../../lib/x509.js';
import { ipToBytes, reverseDnsName } from '../../protocol/identifiers.js';
import { AcmeProblem } from '../../protocol/problems.js';
import type { Identifier } from '../../protocol/types.js';
import { checkAddress } from './policy.js';
import type { DnsLookup } from './resolver.js';
import type { ValidationConfig, ValidationRecord, ValidationResult } from './types.js';

export const OID_ACME_IDENTIFIER = '1.3.6.1.5.5.7.1.31';
const OID_ACME_IDENTIFIER_OBSOLETE = '1.3.6.1.5.5.7.1.30.1';

/** RFC 8738 §6: the SNI for an IP identifier is its reverse-DNS name. */
export const reverseName = reverseDnsName;

function handshake(address: string, port: number, servername: string | undefined, cfg: ValidationConfig, signal: AbortSignal) {
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const socket = tls.connect({
      host: address,
      port,
      ...(servername ? { servername } : {}),
      ALPNProtocols: ['acme-tls/1'],
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), cfg.connectTimeoutMs);
    const onAbort = () => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }));
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      reject(e);
    });
  });
}

export async function validateTlsAlpn01(
  identifier: Identifier,
  keyAuthorization: string,
  cfg: ValidationConfig,
  dns: DnsLookup,
  signal: AbortSignal,
): Promise<ValidationResult> {
  const record: ValidationRecord = { hostname: identifier.value, port: cfg.tlsPort };
  const records = [record];
  let addresses: string[];
  try {
    addresses = identifier.type === 'ip' ? [identifier.value] : await dns.addresses(identifier.value);
  } catch (e) {
    if (e instanceof AcmeProblem) return { ok: false, problem: e, records };
    throw e;
  }
  record.addressesResolved = addresses;
  const refusal = addresses.map((a) => checkAddress(a, cfg.addressPolicy)).find((r) => r !== null);
  if (refusal) return { ok: false, problem: new AcmeProblem('connection', `refusing to connect to ${identifier.value}: ${refusal}`), records };

  const servername = identifier.type === 'ip' ? reverseName(identifier.value) : identifier.value;
  let socket: tls.TLSSocket | undefined;
  let lastError: unknown;
  for (const address of addresses) {
    record.addressUsed = address;
    try {
      socket = await handshake(address, cfg.tlsPort, servername, cfg, signal);
      break;
    } catch (e) {
      lastError = e;
      if (signal.aborted) break;
    }
  }
  if (!socket) {
    const code = (lastError as { code?: string }).code ?? 'error';
    const isTls = /SSL|TLS|ALERT|PROTOCOL/i.test(code) || /alert|ssl|tls/i.test(String((lastError as Error)?.message));
    const type = isTls ? 'tls' : 'connection';
    return { ok: false, problem: new AcmeProblem(type, `TLS connection to ${identifier.value}:${cfg.tlsPort} failed: ${code === 'ETIMEDOUT' ? 'timeout' : code}`), records };
  }
  try {
    // RFC 8737 §3: the server must have negotiated acme-tls/1.
    if (socket.alpnProtocol !== 'acme-tls/1') {
      return { ok: false, problem: new AcmeProblem('tls', `the server did not negotiate the acme-tls/1 protocol (got ${socket.alpnProtocol || 'none'})`), records };
    }
    const peer = socket.getPeerX509Certificate();
    if (!peer) return { ok: false, problem: new AcmeProblem('tls', 'the server sent no certificate'), records };
    const cert = new x509.X509Certificate(peer.raw);
    if (cert.subject !== cert.issuer) {
      return { ok: false, problem: new AcmeProblem('incorrectResponse', 'the acme-tls/1 certificate is not self-signed'), records };
    }
    // RFC 8737 §3: exactly one SAN, the identifier being validated.
    const san = cert.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
    const names = san?.names.items ?? [];
    const want = identifier.type === 'ip' ? 'ip' : 'dns';
    const sameIp = (v: string) => isIP(v) > 0 && ipToBytes(v).equals(ipToBytes(identifier.value));
    if (names.length !== 1 || names[0]!.type !== want || !(want === 'ip' ? sameIp(names[0]!.value) : names[0]!.value.toLowerCase() === identifier.value)) {
      const got = names.map((n) => `${n.type}:${n.value}`).join(', ') || 'none';
      return { ok: false, problem: new AcmeProblem('incorrectResponse', `the acme-tls/1 certificate must name exactly ${identifier.value} (names: ${got})`), records };
    }
    if (cert.getExtension(OID_ACME_IDENTIFIER_OBSOLETE)) {
      return { ok: false, problem: new AcmeProblem('incorrectResponse', 'the certificate uses the obsolete acmeIdentifier OID 1.3.6.1.5.5.7.1.30.1; use 1.3.6.1.5.5.7.1.31 (RFC 8737)'), records };
    }
    const ext = cert.getExtension(OID_ACME_IDENTIFIER);
    if (!ext) return { ok: false, problem: new AcmeProblem('incorrectResponse', 'the certificate has no acmeIdentifier extension'), records };
    if (!ext.critical) return { ok: false, problem: new AcmeProblem('incorrectResponse', 'the acmeIdentifier extension must be critical'), records };
    // extnValue is the DER of an OCTET STRING of 32 bytes.
    const expected = Buffer.concat([Buffer.from([0x04, 0x20]), createHash('sha256').update(keyAuthorization).digest()]);
    if (!Buffer.from(ext.value).equals(expected)) {
      return { ok: false, problem: new AcmeProblem('incorrectResponse', 'the acmeIdentifier extension does not hold SHA-256 of the key authorization'), records };
    }
    return { ok: true, records };
  } finally {
    socket.destroy();
  }
}
