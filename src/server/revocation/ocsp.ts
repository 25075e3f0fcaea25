/**
 * OCSP responder (RFC 6960) for the intermediate's certificates, with responses signed by the
 * intermediate itself (§4.2.2.2: the CA that issued the certificate signs; no delegated responder).
 * It answers from the store, so it is as fresh as the database and every replica says the same.
 * No HTTP here: server/api/revocation-routes.ts carries requests in and answers out.
 */
import { createHash } from 'node:crypto';
import {
  BasicOCSPResponse,
  CertStatus,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
  KeyHash,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
  type CertID,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { CRLReason, Extension } from '@peculiar/asn1-x509';
import { systemClock, type Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { Store } from '../../storage/store.js';
import { floorToSecond, issuerIdentity, serialFromOctets, signatureAlgorithm, signDer, type IssuerIdentity, type RevocationIssuer } from './issuer.js';

const HOUR = 3_600_000;

export type OcspStore = Pick<Store, 'getCertificateBySerial'>;

/** RFC 6960 §4.2.1 OCSPResponseStatus, by name. */
export type OcspResponseStatusName = 'successful' | 'malformedRequest' | 'internalError' | 'tryLater' | 'sigRequired' | 'unauthorized';

export type CertStatusName = 'good' | 'revoked' | 'unknown';

export interface OcspAnswer {
  status: OcspResponseStatusName;
  /** The DER OCSPResponse to send, whatever the status. */
  der: Buffer;
  /** For a successful answer: when it was signed, and the earliest nextUpdate among its responses. */
  producedAt?: Date;
  nextUpdate?: Date;
  /** False when the answer echoes a nonce: it is for this requester only (no shared HTTP caching). */
  cacheable: boolean;
  /** The status of each certificate asked about, for logs and tests. */
  certStatuses?: CertStatusName[];
}

export interface OcspResponderOptions {
  store: OcspStore;
  issuer: RevocationIssuer;
  logger: Logger;
  clock?: Clock;
  /** nextUpdate of responses is this long after thisUpdate. */
  validityHours: number;
  /** Most CertIDs one request may ask about (more: malformedRequest). */
  maxRequests?: number;
  /** Most signed responses kept for reuse. */
  cacheSize?: number;
}

interface Cached {
  /** The status the response states ('good', or 'revoked:<time>:<reason>'): reused only while it still holds. */
  statusKey: string;
  der: Buffer;
  producedAt: Date;
  thisUpdate: Date;
  nextUpdate: Date;
}

const STATUS_NAMES: Record<number, OcspResponseStatusName> = {
  [OCSPResponseStatus.successful]: 'successful',
  [OCSPResponseStatus.malformedRequest]: 'malformedRequest',
  [OCSPResponseStatus.internalError]: 'internalError',
  [OCSPResponseStatus.tryLater]: 'tryLater',
  [OCSPResponseStatus.sigRequired]: 'sigRequired',
  [OCSPResponseStatus.unauthorized]: 'unauthorized',
};

/** An OCSPResponse without responseBytes (§4.2.1: only a successful response carries a body). */
function bare(status: OCSPResponseStatus): OcspAnswer {
  return { status: STATUS_NAMES[status]!, der: Buffer.from(AsnConvert.serialize(new OCSPResponse({ responseStatus: status }))), cacheable: true };
}

export const MALFORMED = bare(OCSPResponseStatus.malformedRequest);
const UNAUTHORIZED = bare(OCSPResponseStatus.unauthorized);
export const INTERNAL_ERROR = bare(OCSPResponseStatus.internalError);

class Malformed extends Error {}

export class OcspResponder {
  readonly #store: OcspStore;
  readonly #issuer: RevocationIssuer;
  readonly #identity: IssuerIdentity;
  readonly #responderKeyHash: Buffer;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #validityMs: number;
  readonly #maxRequests: number;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, Cached>();

  constructor(o: OcspResponderOptions) {
    this.#store = o.store;
    this.#issuer = o.issuer;
    this.#identity = issuerIdentity(o.issuer);
    // §4.2.1 ResponderID byKey: SHA-1 of the responder's public key bits.
    this.#responderKeyHash = createHash('sha1').update(this.#identity.keyBits).digest();
    this.#log = o.logger;
    this.#clock = o.clock ?? systemClock;
    this.#validityMs = o.validityHours * HOUR;
    this.#maxRequests = o.maxRequests ?? 16;
    this.#cacheSize = o.cacheSize ?? 10_000;
  }

  /** Answers one DER OCSPRequest. Never throws: failures are OCSP error statuses. */
  async respond(requestDer: Uint8Array): Promise<OcspAnswer> {
    let req: OCSPRequest;
    let nonce: Extension | undefined;
    try {
      req = AsnConvert.parse(requestDer, OCSPRequest);
      nonce = this.#nonce(req);
    } catch {
      return MALFORMED;
    }
    const list = req.tbsRequest.requestList;
    if (list.length === 0 || list.length > this.#maxRequests) return MALFORMED;
    for (const r of list) {
      // §2.3: "unauthorized" when the responder is not authoritative for the certificate asked about.
      if (!this.#isOurs(r.reqCert)) return UNAUTHORIZED;
    }
    try {
      const singleKey = list.length === 1 && !nonce ? this.#cacheKey(list[0]!.reqCert) : null;
      const statuses = await Promise.all(list.map((r) => this.#status(r.reqCert)));
      if (singleKey) {
        const hit = this.#cache.get(singleKey);
        const now = this.#clock.now().getTime();
        // Reused while the status is unchanged and less than half its validity has passed.
        if (hit && hit.statusKey === statuses[0]!.key && now - hit.thisUpdate.getTime() < this.#validityMs / 2 && now >= hit.thisUpdate.getTime()) {
          return { status: 'successful', der: hit.der, producedAt: hit.producedAt, nextUpdate: hit.nextUpdate, cacheable: true, certStatuses: [statuses[0]!.name] };
        }
      }
      const producedAt = floorToSecond(this.#clock.now());
      const nextUpdate = new Date(producedAt.getTime() + this.#validityMs);
      const responses = list.map(
        (r, i) =>
          new SingleResponse({
            // §4.2.2.3: the CertID of the response is the one asked about, as sent.
            certID: r.reqCert,
            certStatus: statuses[i]!.certStatus,
            thisUpdate: producedAt,
            nextUpdate,
          }),
      );
      const data = new ResponseData({
        responderID: new ResponderID({ byKey: new KeyHash(this.#responderKeyHash) }),
        producedAt,
        responses,
        // RFC 9654 §2.1: a responder that supports nonces echoes the request's nonce.
        ...(nonce ? { responseExtensions: [nonce] } : {}),
      });
      const tbs = AsnConvert.serialize(data);
      const basic = new BasicOCSPResponse({ tbsResponseData: data, signatureAlgorithm: signatureAlgorithm(this.#issuer), signature: signDer(this.#issuer, tbs) });
      const der = Buffer.from(
        AsnConvert.serialize(
          new OCSPResponse({
            responseStatus: OCSPResponseStatus.successful,
            responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
          }),
        ),
      );
      if (singleKey && statuses[0]!.name !== 'unknown') {
        if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
        this.#cache.delete(singleKey);
        this.#cache.set(singleKey, { statusKey: statuses[0]!.key, der, producedAt, thisUpdate: producedAt, nextUpdate });
      }
      return { status: 'successful', der, producedAt, nextUpdate, cacheable: !nonce, certStatuses: statuses.map((s) => s.name) };
    } catch (e) {
      this.#log.error({ err: e }, 'OCSP: answering a request failed');
      return INTERNAL_ERROR;
    }
  }

  /** The nonce extension to echo, if the request has one; throws Malformed for a bad one. */
  #nonce(req: OCSPRequest): Extension | undefined {
    const ext = req.tbsRequest.requestExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
    if (!ext) return undefined;
    // RFC 9654 §2.1: Nonce ::= OCTET STRING (SIZE(1..128)); other lengths are malformedRequest.
    const value = AsnConvert.parse(ext.extnValue.buffer, OctetString);
    if (value.byteLength < 1 || value.byteLength > 128) throw new Malformed('nonce length');
    return new Extension({ extnID: id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(ext.extnValue.buffer) });
  }

  #isOurs(id: CertID): boolean {
    const ours = this.#identity.hashes.get(id.hashAlgorithm.algorithm);
    if (!ours) return false;
    return ours.name.equals(Buffer.from(id.issuerNameHash.buffer)) && ours.key.equals(Buffer.from(id.issuerKeyHash.buffer));
  }

  /** The CertID as sent (its encoding is echoed in the response, so it is part of the key). */
  #cacheKey(id: CertID): string {
    return Buffer.from(AsnConvert.serialize(id)).toString('base64');
  }

  async #status(id: CertID): Promise<{ name: CertStatusName; key: string; certStatus: CertStatus }> {
    const serial = serialFromOctets(id.serialNumber);
    const rec = serial ? await this.#store.getCertificateBySerial(serial) : null;
    // §2.2: "unknown" for a serial this CA never issued. A 'pending' record is a certificate that
    // was recorded but not (yet) signed: it has not been issued either.
    if (!rec || rec.status !== 'issued') return { name: 'unknown', key: 'unknown', certStatus: new CertStatus({ unknown: null }) };
    if (rec.revokedAt) {
      const reason = rec.revocationReason ?? 0;
      const info = new RevokedInfo({ revocationTime: floorToSecond(rec.revokedAt) });
      if (reason) info.revocationReason = new CRLReason(reason);
      return { name: 'revoked', key: `revoked:${rec.revokedAt.getTime()}:${reason}`, certStatus: new CertStatus({ revoked: info }) };
    }
    return { name: 'good', key: 'good', certStatus: new CertStatus({ good: null }) };
  }
}
