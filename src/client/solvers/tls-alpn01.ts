/**
 * tls-alpn-01 (RFC 8737): a listener that answers only ALPN "acme-tls/1" handshakes with a
 * self-signed certificate naming the identifier and carrying the critical acmeIdentifier extension.
 * `secureContextFor` lets a caller wire it into an existing TLS service's SNI/ALPN handling.
 */
import { createHash, webcrypto } from 'node:crypto';
import tls from 'node:tls';
import { toPem } from '../../lib/pem.js';
import { reverseDnsName } from '../../protocol/identifiers.js';
import * as x509 from '../../lib/x509.js';
import { checkToken } from './token.js';
import type { ChallengeInput, Solver } from './types.js';

const OID_ACME_IDENTIFIER = '1.3.6.1.5.5.7.1.31';

/** The SNI the validator sends: the name, or for an IP its reverse-DNS name (RFC 8738 §6). */
export function sniName(ch: ChallengeInput): string {
  return ch.identifier.type === 'dns' ? ch.identifier.value : reverseDnsName(ch.identifier.value);
}

export async function acmeTlsCertificate(ch: ChallengeInput): Promise<{ key: string; cert: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const digest = createHash('sha256').update(ch.keyAuthorization).digest();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: createHash('sha256').update(ch.token).digest('hex').slice(0, 16).replace(/^[89a-f]/, '1'),
    name: 'CN=ACME tls-alpn-01',
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 7 * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: ch.identifier.type === 'ip' ? 'ip' : 'dns', value: ch.identifier.value }]),
      // RFC 8737 §3: critical, an OCTET STRING of the SHA-256 digest of the key authorization.
      new x509.Extension(OID_ACME_IDENTIFIER, true, Buffer.concat([Buffer.from([0x04, 0x20]), digest])),
    ],
  });
  return { cert: cert.toString('pem'), key: toPem('PRIVATE KEY', new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))) };
}

export class StandaloneTlsAlpn01 implements Solver {
  readonly type = 'tls-alpn-01' as const;
  readonly #contexts = new Map<string, tls.SecureContext>();
  #server: tls.Server | undefined;

  constructor(private readonly opts: { host?: string; port?: number } = {}) {}

  /** The acme-tls/1 context for an SNI name, if a challenge for it is being presented. */
  secureContextFor(servername: string): tls.SecureContext | undefined {
    return this.#contexts.get(servername.toLowerCase());
  }

  async present(ch: ChallengeInput): Promise<void> {
    checkToken(ch.token);
    const { cert, key } = await acmeTlsCertificate(ch);
    this.#contexts.set(sniName(ch), tls.createSecureContext({ cert, key }));
    if (this.#server) return;
    const server = tls.createServer({
      // Only acme-tls/1 is offered: a normal client gets no protocol and no certificate.
      ALPNProtocols: ['acme-tls/1'],
      minVersion: 'TLSv1.2',
      SNICallback: (name, cb) => {
        const ctx = this.secureContextFor(name);
        cb(ctx ? null : new Error(`no acme-tls/1 challenge for ${name}`), ctx);
      },
    });
    server.on('tlsClientError', () => undefined);
    server.on('secureConnection', (s) => s.end());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 443, this.opts.host ?? '0.0.0.0', () => resolve());
    });
    this.#server = server;
  }

  async cleanup(ch: ChallengeInput): Promise<void> {
    this.#contexts.delete(sniName(ch));
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) await new Promise((r) => s.close(r));
  }
}
