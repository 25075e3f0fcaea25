/**
 * The HTTP face of revocation: GET <crl> (RFC 5280 §4.2.1.13 distribution point, DER, RFC 2585
 * media type) and the OCSP responder, POST <ocsp> and GET <ocsp>/<url-encoded base64 request>
 * (RFC 6960 Appendix A.1). Registered on the API's Fastify instance by server/main.ts. It only
 * translates: all decisions are in server/revocation/crl.ts and ocsp.ts.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { systemClock, type Clock } from '../../lib/clock.js';
import type { CrlService } from '../revocation/crl.js';
import { INTERNAL_ERROR, MALFORMED, type OcspAnswer, type OcspResponder } from '../revocation/ocsp.js';

export interface RevocationRoutesOptions {
  /** Absent: no CRL route (revocation.crl.enabled false). */
  crl?: CrlService;
  /** Absent: no OCSP routes (revocation.ocsp.enabled false). */
  ocsp?: OcspResponder;
  paths: { crl: string; ocsp: string };
  clock?: Clock;
  /** Seconds a shared cache may keep the CRL (capped by its nextUpdate). */
  crlMaxAgeSeconds: number;
  /** Seconds a shared cache may keep a GET OCSP response (capped by its nextUpdate). */
  ocspMaxAgeSeconds?: number;
  /** Largest OCSP request body accepted (POST). */
  maxOcspRequestBytes?: number;
}

const OCSP_RESPONSE = 'application/ocsp-response';

function maxAge(limit: number, until: Date | undefined, now: Date): number {
  const left = until ? Math.floor((until.getTime() - now.getTime()) / 1000) : 0;
  return Math.max(0, Math.min(limit, left));
}

export async function registerRevocationRoutes(app: FastifyInstance, o: RevocationRoutesOptions): Promise<void> {
  const clock = o.clock ?? systemClock;
  const { crl, ocsp } = o;

  if (crl) {
    app.get(o.paths.crl, async (req: FastifyRequest, reply: FastifyReply) => {
      const c = await crl.current();
      const now = clock.now();
      const etag = `"crl-${c.number}"`;
      reply
        .header('Content-Type', 'application/pkix-crl')
        .header('Cache-Control', `public, max-age=${maxAge(o.crlMaxAgeSeconds, c.nextUpdate, now)}, no-transform`)
        .header('Last-Modified', c.thisUpdate.toUTCString())
        .header('Expires', c.nextUpdate.toUTCString())
        .header('ETag', etag);
      const inm = req.headers['if-none-match'];
      const ims = req.headers['if-modified-since'];
      if ((inm && inm.split(',').some((t) => t.trim() === etag)) || (!inm && ims && Date.parse(ims) >= c.thisUpdate.getTime())) {
        return reply.code(304).send();
      }
      return reply.send(c.der);
    });
  }

  if (ocsp) {
    const limit = o.maxOcspRequestBytes ?? 16 * 1024;
    const ocspMaxAge = o.ocspMaxAgeSeconds ?? 3600;
    // Its own scope: its body type and its error answers (OCSP responses, not problem documents).
    await app.register(async (scope) => {
      scope.addContentTypeParser('application/ocsp-request', { parseAs: 'buffer', bodyLimit: limit }, (_req, body, done) => done(null, body));
      scope.setErrorHandler(async (err: unknown, req, reply) => {
        // Wrong media type (415), a body over the limit (413), a bad length: malformedRequest.
        // Anything else is internalError (respond() itself never throws).
        const e = err as { statusCode?: number; status?: number };
        const status = e.statusCode ?? e.status ?? 500;
        const client = status >= 400 && status < 500;
        if (!client) req.log.error({ err, reqId: req.id }, 'OCSP request failed');
        return reply
          .code(client ? status : 500)
          .header('Content-Type', OCSP_RESPONSE)
          .header('Cache-Control', 'no-store')
          .send((client ? MALFORMED : INTERNAL_ERROR).der);
      });

      const send = (reply: FastifyReply, a: OcspAnswer, get: boolean) => {
        reply.code(200).header('Content-Type', OCSP_RESPONSE);
        if (get && a.status === 'successful' && a.cacheable) {
          // RFC 5019 §6.2: caching headers for GET, max-age within the response's validity.
          reply
            .header('Cache-Control', `public, max-age=${maxAge(ocspMaxAge, a.nextUpdate, clock.now())}, no-transform, must-revalidate`)
            .header('Last-Modified', a.producedAt!.toUTCString())
            .header('Expires', a.nextUpdate!.toUTCString())
            .header('ETag', `"${createHash('sha256').update(a.der).digest('hex').slice(0, 32)}"`);
        } else {
          reply.header('Cache-Control', 'no-store');
        }
        return reply.send(a.der);
      };

      // RFC 6960 A.1: POST with Content-Type application/ocsp-request and the DER as body.
      scope.post(o.paths.ocsp, async (req, reply) => {
        if (!Buffer.isBuffer(req.body)) return send(reply, MALFORMED, false);
        return send(reply, await ocsp.respond(req.body), false);
      });

      // RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}. Read from
      // the raw URL: the base64 text may hold '/' (not always percent-encoded) and exceeds the
      // router's parameter length.
      const prefix = `${o.paths.ocsp}/`;
      scope.get(`${o.paths.ocsp}/*`, async (req, reply) => {
        const raw = req.url.slice(req.url.indexOf(prefix) + prefix.length).split('?')[0] ?? '';
        let b64: string;
        try {
          b64 = decodeURIComponent(raw).replace(/ /g, '+');
        } catch {
          return send(reply, MALFORMED, true);
        }
        if (!b64 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(b64)) return send(reply, MALFORMED, true);
        return send(reply, await ocsp.respond(Buffer.from(b64, 'base64')), true);
      });
    });
  }
}
