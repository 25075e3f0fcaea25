/**
 * The only HTTP code of the CA (Boulder's WFE): routes, JWS and nonce checks, JSON rendering of
 * records, problem documents. Everything below it is plain functions and objects.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { JWK } from 'jose';
import type { Logger } from '../../lib/logger.js';
import type { Random } from '../../lib/random.js';
import {
  checkAlgFitsKey,
  importAccountKey,
  jwkThumbprint,
  parseJws,
  parsePayload,
  verifyEab,
  verifyJws,
  type ParsedJws,
} from '../../protocol/jws.js';
import { AcmeProblem } from '../../protocol/problems.js';
import type { AuthorizationJson, ChallengeJson, Directory, OrderJson } from '../../protocol/types.js';
import type { AccountRecord, AuthzRecord, ChallengeRecord, OrderRecord } from '../../storage/store.js';
import { KeyInUseProblem, type Authority } from '../authority/authority.js';
import { chance, type TestingFaults } from '../authority/testing-faults.js';

export interface ApiOptions {
  authority: Authority;
  logger: Logger;
  /** External base URL, without trailing slash; a function because port 0 is known only after listen. */
  baseUrl: () => string;
  meta: Directory['meta'];
  maxBodyBytes: number;
  /** HMAC key lookup for EAB (null if unknown or used up). */
  eabKey: (kid: string) => Promise<Buffer | null>;
  rootPem: string;
  intermediateDer: Buffer;
  trustProxy?: boolean;
  https?: { key: string; cert: string };
  health?: () => Promise<Record<string, unknown>>;
  /** TEST ONLY (config `testing`): refuse valid nonces and answer 503 on purpose, drawing from `random`. */
  testing?: { faults: Pick<TestingFaults, 'nonceRejectPercent' | 'serverErrorPercent'>; random: Random };
  /** Told of every answered request (metrics): the route pattern (undefined when no route matched), method, status, seconds. */
  requestMetrics?: { observe(route: string | undefined, method: string, status: number, seconds: number): void };
}

/** Seconds a client should wait before polling a pending resource again. */
const RETRY_AFTER_SECONDS = 1;

type Key = { kind: 'jwk'; jwk: JWK } | { kind: 'kid'; account: AccountRecord };

interface Verified {
  payload: Record<string, unknown> | null;
  key: Key;
  jws: ParsedJws;
}

export function paths() {
  return {
    directory: '/directory',
    newNonce: '/acme/new-nonce',
    newAccount: '/acme/new-account',
    newOrder: '/acme/new-order',
    revokeCert: '/acme/revoke-cert',
    keyChange: '/acme/key-change',
    account: (id: string) => `/acme/acct/${id}`,
    orders: (id: string) => `/acme/acct/${id}/orders`,
    order: (id: string) => `/acme/order/${id}`,
    finalize: (id: string) => `/acme/order/${id}/finalize`,
    authz: (id: string) => `/acme/authz/${id}`,
    challenge: (id: string) => `/acme/chall/${id}`,
    certificate: (id: string) => `/acme/cert/${id}`,
    renewalInfo: '/acme/renewal-info',
    root: '/ca/root.pem',
    issuer: '/ca/intermediate.der',
    /** CRL distribution point (RFC 5280 §4.2.1.13), DER. */
    crl: '/ca/crl',
    /** OCSP responder (RFC 6960): POST here, GET <ocsp>/<base64 request>. */
    ocsp: '/ocsp',
  };
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const { authority } = opts;
  const P = paths();
  const url = (p: string) => opts.baseUrl() + p;

  const app = Fastify({
    loggerInstance: opts.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.maxBodyBytes,
    trustProxy: opts.trustProxy ?? false,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    ...(opts.https ? { https: opts.https } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  // RFC 8555 §6.2: the only accepted request body type. Parsed by us (after the size cap).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/jose+json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(new AcmeProblem('malformed', 'the request body is not valid JSON'), undefined);
    }
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => {
    done(new AcmeProblem('malformed', 'Content-Type must be application/jose+json', { status: 415 }), undefined);
  });

  // A pino child logger per request (bindings serialised, redaction set up) costs more than the
  // JSON of the answer, and most requests log nothing: the child is made when a request first logs.
  app.setChildLoggerFactory((logger, bindings, childOpts) => {
    let child: typeof logger | undefined;
    const get = () => (child ??= logger.child(bindings, childOpts));
    const lazy: Record<string, unknown> = { child: (b: never, o: never) => get().child(b, o) };
    Object.defineProperty(lazy, 'level', { get: () => (child ?? logger).level, enumerable: true });
    for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const) {
      lazy[l] = (...a: unknown[]) => (get()[l] as (...x: unknown[]) => void)(...a);
    }
    return lazy as unknown as typeof logger;
  });

  const logRequests = opts.logger.isLevelEnabled('info');
  const timings = new WeakMap<FastifyRequest, bigint>();
  const accountOf = new WeakMap<FastifyRequest, string>();
  if (logRequests) {
    app.addHook('onRequest', async (req) => {
      timings.set(req, process.hrtime.bigint());
    });
    app.addHook('onResponse', async (req, reply) => {
      const t = timings.get(req);
      req.log.info(
        {
          reqId: req.id,
          method: req.method,
          path: req.url,
          status: reply.statusCode,
          account: accountOf.get(req),
          // The order, authorization, challenge or certificate id the route names, if any.
          resource: (req.params as { id?: string } | undefined)?.id,
          ms: t ? Number(process.hrtime.bigint() - t) / 1e6 : undefined,
        },
        'request',
      );
    });
  }

  const requestMetrics = opts.requestMetrics;
  if (requestMetrics) {
    // The route pattern (`/acme/order/:id`), never the URL: the series stay bounded. elapsedTime is
    // fastify's own clock of the request, so this costs no hook at the start of the request.
    app.addHook('onResponse', (req, reply, done) => {
      requestMetrics.observe(req.routeOptions.url, req.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }

  const testing = opts.testing;
  if (testing && testing.faults.serverErrorPercent > 0) {
    // TEST ONLY (testing.serverErrorPercent): a share of POSTs fails before the body is even read,
    // so nothing changes (the nonce is not consumed); clients must honour Retry-After and retry.
    app.addHook('onRequest', async (req) => {
      if (req.method === 'POST' && chance(testing.random, testing.faults.serverErrorPercent)) {
        throw new AcmeProblem('serverInternal', 'the server failed on purpose (testing.serverErrorPercent); retry later', {
          status: 503,
          retryAfter: RETRY_AFTER_SECONDS,
        });
      }
    });
  }

  // Imported account keys, by account and key thumbprint (a rollover changes the thumbprint): the
  // import costs as much as the signature check. Bounded; the oldest entries go first.
  const keyObjects = new Map<string, ReturnType<typeof importAccountKey>>();
  function accountKeyObject(a: AccountRecord): ReturnType<typeof importAccountKey> {
    const k = `${a.id}|${a.thumbprint}`;
    let o = keyObjects.get(k);
    if (!o) {
      o = importAccountKey(a.jwk);
      if (keyObjects.size >= 10_000) keyObjects.delete(keyObjects.keys().next().value!);
      keyObjects.set(k, o);
    }
    return o;
  }

  // Every ACME response carries a fresh nonce and a link to the directory (RFC 8555 §6.5, §7.1).
  async function acmeHeaders(reply: FastifyReply, links: string[] = []): Promise<void> {
    reply.header('Replay-Nonce', await authority.newNonce());
    reply.header('Link', [`<${url(P.directory)}>;rel="index"`, ...links]);
    reply.header('Cache-Control', 'no-store');
  }

  app.setErrorHandler(async (err: unknown, req, reply) => {
    let p: AcmeProblem;
    if (err instanceof AcmeProblem) p = err;
    else {
      const e = err as { statusCode?: number; code?: string; message?: string };
      if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        p = new AcmeProblem('malformed', `the request body is larger than ${opts.maxBodyBytes} bytes`, { status: 413 });
      } else if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || e.code === 'FST_ERR_CTP_EMPTY_TYPE') {
        p = new AcmeProblem('malformed', 'Content-Type must be application/jose+json', { status: 415 });
      } else if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
        p = new AcmeProblem('malformed', 'the request body is empty or its length is wrong');
      } else {
        // STYLE.md rule 2: anything unexpected is logged in full and shown as a bare serverInternal.
        req.log.error({ err, reqId: req.id }, 'internal error');
        p = new AcmeProblem('serverInternal', `internal error; the operator can find it under request id ${req.id}`);
      }
    }
    if (p.status >= 500) req.log.warn({ reqId: req.id, problem: p.type }, p.detail);
    try {
      await acmeHeaders(reply);
    } catch (e) {
      req.log.error({ err: e, reqId: req.id }, 'cannot create a nonce for an error response');
    }
    if (p instanceof KeyInUseProblem) reply.header('Location', url(P.account(p.accountId)));
    if (p.retryAfter !== undefined) reply.header('Retry-After', String(p.retryAfter));
    for (const [k, v] of Object.entries(p.headers ?? {})) reply.header(k, v);
    if (p.status === 405) reply.header('Allow', 'POST');
    reply.code(p.status).header('Content-Type', 'application/problem+json').send(Buffer.from(JSON.stringify(p.toJSON())));
    return reply;
  });

  app.setNotFoundHandler(async (_req, _reply) => {
    throw new AcmeProblem('malformed', 'no such resource', { status: 404 });
  });

  /**
   * RFC 8555 §6.2-§6.5: verifies a POST. `keyMode` says whether this resource takes `jwk`
   * (newAccount, revokeCert) or `kid` (everything else), or either (revokeCert).
   */
  async function verify(req: FastifyRequest, keyMode: 'jwk' | 'kid' | 'either'): Promise<Verified> {
    const jws = parseJws(req.body);
    const h = jws.header;
    let key: Key;
    let keyObj;
    if (h.jwk !== undefined) {
      if (keyMode === 'kid') throw new AcmeProblem('malformed', 'this resource needs "kid" (an account URL), not "jwk"');
      keyObj = importAccountKey(h.jwk);
      checkAlgFitsKey(h.alg, h.jwk);
      key = { kind: 'jwk', jwk: h.jwk };
    } else if (h.kid !== undefined) {
      if (keyMode === 'jwk') throw new AcmeProblem('malformed', 'this resource needs "jwk", not "kid"');
      const prefix = url(P.account(''));
      if (!h.kid.startsWith(prefix)) throw new AcmeProblem('accountDoesNotExist', 'the "kid" is not an account URL of this CA');
      const account = await authority.accountForKid(h.kid.slice(prefix.length));
      checkAlgFitsKey(h.alg, account.jwk);
      keyObj = accountKeyObject(account);
      key = { kind: 'kid', account };
      accountOf.set(req, account.id);
    } else {
      throw new AcmeProblem('malformed', 'the JWS header needs "jwk" or "kid"');
    }
    const payloadBytes = await verifyJws(jws, keyObj);
    // RFC 8555 §6.5: the nonce is checked after the signature, so that forged requests cannot burn it.
    if (h.nonce === undefined) throw new AcmeProblem('badNonce', 'the JWS header has no "nonce"');
    if (!(await authority.consumeNonce(h.nonce))) {
      throw new AcmeProblem('badNonce', 'the nonce is unknown, expired or already used; use the new Replay-Nonce');
    }
    // TEST ONLY (testing.nonceRejectPercent, as Pebble's PEBBLE_WFE_NONCEREJECT): a valid nonce,
    // consumed above, refused anyway. RFC 8555 §6.5: the client retries with the fresh Replay-Nonce.
    if (testing && chance(testing.random, testing.faults.nonceRejectPercent)) {
      throw new AcmeProblem('badNonce', 'the nonce was refused on purpose (testing.nonceRejectPercent); use the new Replay-Nonce');
    }
    // RFC 8555 §6.4: "url" must be the URL the request was sent to.
    const expected = url(req.url);
    if (h.url !== expected) {
      throw new AcmeProblem('unauthorized', `the JWS "url" (${String(h.url)}) is not the request URL (${expected})`, { status: 401 });
    }
    return { payload: parsePayload(payloadBytes), key, jws };
  }

  function account(v: Verified): AccountRecord {
    if (v.key.kind !== 'kid') throw new AcmeProblem('malformed', 'this resource needs "kid"');
    return v.key.account;
  }

  function postAsGet(v: Verified): void {
    // RFC 8555 §6.3: POST-as-GET has an empty payload.
    if (v.payload !== null) throw new AcmeProblem('malformed', 'a POST-as-GET request must have an empty payload');
  }

  function onlyPost(path: string): void {
    app.get(path, async () => {
      throw new AcmeProblem('malformed', 'this resource accepts only POST (POST-as-GET, RFC 8555 §6.3)', { status: 405 });
    });
  }

  // ------------------------------------------------------------ JSON rendering
  const accountJson = (a: AccountRecord) => ({
    status: a.status,
    contact: a.contact,
    termsOfServiceAgreed: a.termsOfServiceAgreed,
    orders: url(P.orders(a.id)),
    ...(a.eabKid ? { externalAccountBinding: { kid: a.eabKid } } : {}),
  });

  const challengeJson = (c: ChallengeRecord): ChallengeJson => ({
    type: c.type,
    url: url(P.challenge(c.id)),
    status: c.status,
    token: c.token,
    ...(c.validated ? { validated: c.validated.toISOString() } : {}),
    ...(c.error ? { error: c.error } : {}),
  });

  const authzJson = (a: AuthzRecord): AuthorizationJson => ({
    identifier: a.identifier,
    status: a.status,
    expires: a.expires.toISOString(),
    // RFC 8555 §7.1.4: once valid, only the challenge that succeeded is listed.
    challenges: (a.status === 'valid' ? a.challenges.filter((c) => c.status === 'valid') : a.challenges).map(challengeJson),
    ...(a.wildcard ? { wildcard: true } : {}),
  });

  const orderJson = (o: OrderRecord): OrderJson => ({
    status: o.status,
    expires: o.expires.toISOString(),
    identifiers: o.identifiers,
    authorizations: o.authzIds.map((id) => url(P.authz(id))),
    finalize: url(P.finalize(o.id)),
    ...(o.notBefore ? { notBefore: o.notBefore.toISOString() } : {}),
    ...(o.notAfter ? { notAfter: o.notAfter.toISOString() } : {}),
    ...(o.error ? { error: o.error } : {}),
    ...(o.certificateId && o.status === 'valid' ? { certificate: url(P.certificate(o.certificateId)) } : {}),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.replaces ? { replaces: o.replaces } : {}),
  });

  async function send(reply: FastifyReply, status: number, body: unknown, extra: Record<string, string> = {}, links: string[] = []) {
    await acmeHeaders(reply, links);
    for (const [k, v] of Object.entries(extra)) reply.header(k, v);
    reply.code(status).type('application/json').send(JSON.stringify(body));
    return reply;
  }

  // ------------------------------------------------------------ routes
  const directory = (): Directory => ({
    newNonce: url(P.newNonce),
    newAccount: url(P.newAccount),
    newOrder: url(P.newOrder),
    revokeCert: url(P.revokeCert),
    keyChange: url(P.keyChange),
    renewalInfo: url(P.renewalInfo),
    meta: opts.meta ?? {},
  });

  app.get(P.directory, async (_req, reply) => {
    reply.header('Cache-Control', 'public, max-age=0, no-cache');
    reply.type('application/json').send(JSON.stringify(directory()));
    return reply;
  });

  // RFC 8555 §7.2: HEAD → 200, GET → 204, both with Cache-Control: no-store.
  app.route({
    method: ['GET', 'HEAD'],
    url: P.newNonce,
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      await acmeHeaders(reply);
      reply.code(req.method === 'HEAD' ? 200 : 204).send();
      return reply;
    },
  });
  app.post(P.newNonce, async (req, reply) => {
    await verify(req, 'kid');
    await acmeHeaders(reply);
    reply.code(200).send();
    return reply;
  });

  app.post(P.newAccount, async (req, reply) => {
    const v = await verify(req, 'jwk');
    if (v.key.kind !== 'jwk') throw new AcmeProblem('malformed', 'newAccount needs "jwk"');
    const jwk = v.key.jwk;
    const { account: a, created } = await authority.newAccount({
      jwk,
      payload: v.payload ?? {},
      verifyEab: (eab) => verifyEab(eab, { url: url(P.newAccount), accountJwk: jwk, macKey: opts.eabKey }),
    });
    accountOf.set(req, a.id);
    return send(reply, created ? 201 : 200, accountJson(a), { Location: url(P.account(a.id)) });
  });

  onlyPost('/acme/acct/:id');
  app.post<{ Params: { id: string } }>('/acme/acct/:id', async (req, reply) => {
    const v = await verify(req, 'kid');
    const a = account(v);
    if (a.id !== req.params.id) throw new AcmeProblem('unauthorized', 'the request is not signed by this account', { status: 403 });
    const updated = await authority.updateAccount(a, v.payload);
    return send(reply, 200, accountJson(updated), { Location: url(P.account(a.id)) });
  });

  onlyPost('/acme/acct/:id/orders');
  app.post<{ Params: { id: string }; Querystring: { cursor?: string } }>('/acme/acct/:id/orders', async (req, reply) => {
    const v = await verify(req, 'kid');
    postAsGet(v);
    const a = account(v);
    if (a.id !== req.params.id) throw new AcmeProblem('unauthorized', "another account's orders", { status: 403 });
    const page = await authority.listOrders(a, typeof req.query.cursor === 'string' ? req.query.cursor : null);
    // RFC 8555 §7.1.2.1: pagination with Link rel="next".
    const links = page.next ? [`<${url(P.orders(a.id))}?cursor=${encodeURIComponent(page.next)}>;rel="next"`] : [];
    return send(reply, 200, { orders: page.items.map((id) => url(P.order(id))) }, {}, links);
  });

  app.post(P.keyChange, async (req, reply) => {
    const v = await verify(req, 'kid');
    const a = account(v);
    const inner = parseJws(v.payload);
    // RFC 8555 §7.3.5: the inner JWS is signed by the new key, carries it as "jwk", has the same
    // "url", no nonce, and its payload names the account and its old key.
    const h = inner.header;
    if (h.jwk === undefined || h.kid !== undefined) throw new AcmeProblem('malformed', 'the inner JWS must carry the new key as "jwk"');
    if (h.nonce !== undefined) throw new AcmeProblem('malformed', 'the inner JWS must not have a nonce');
    if (h.url !== v.jws.header.url) throw new AcmeProblem('malformed', 'the inner JWS "url" must equal the outer one');
    const newKey = importAccountKey(h.jwk);
    checkAlgFitsKey(h.alg, h.jwk);
    const body = parsePayload(await verifyJws(inner, newKey));
    if (!body) throw new AcmeProblem('malformed', 'the inner JWS payload is empty');
    if (body.account !== url(P.account(a.id))) throw new AcmeProblem('malformed', 'the inner payload "account" is not the signing account');
    if (typeof body.oldKey !== 'object' || body.oldKey === null) throw new AcmeProblem('malformed', 'the inner payload has no "oldKey"');
    let oldOk = false;
    try {
      oldOk = (await jwkThumbprint(body.oldKey as JWK)) === a.thumbprint;
    } catch {
      oldOk = false;
    }
    if (!oldOk) throw new AcmeProblem('malformed', 'the inner payload "oldKey" is not the current account key');
    const updated = await authority.changeKey(a, h.jwk);
    return send(reply, 200, accountJson(updated), { Location: url(P.account(a.id)) });
  });

  app.post(P.newOrder, async (req, reply) => {
    const v = await verify(req, 'kid');
    const o = await authority.newOrder(account(v), v.payload);
    return send(reply, 201, orderJson(o), { Location: url(P.order(o.id)) });
  });

  const retryIfPending = (status: string): Record<string, string> =>
    status === 'pending' || status === 'processing' ? { 'Retry-After': String(RETRY_AFTER_SECONDS) } : {};

  onlyPost('/acme/order/:id');
  app.post<{ Params: { id: string } }>('/acme/order/:id', async (req, reply) => {
    const v = await verify(req, 'kid');
    postAsGet(v);
    const o = await authority.getOrder(account(v), req.params.id);
    return send(reply, 200, orderJson(o), retryIfPending(o.status));
  });

  onlyPost('/acme/order/:id/finalize');
  app.post<{ Params: { id: string } }>('/acme/order/:id/finalize', async (req, reply) => {
    const v = await verify(req, 'kid');
    const o = await authority.finalize(account(v), req.params.id, v.payload);
    return send(reply, 200, orderJson(o), { Location: url(P.order(o.id)), ...retryIfPending(o.status) });
  });

  onlyPost('/acme/authz/:id');
  app.post<{ Params: { id: string } }>('/acme/authz/:id', async (req, reply) => {
    const v = await verify(req, 'kid');
    const a = account(v);
    let authz: AuthzRecord;
    if (v.payload === null) authz = await authority.getAuthz(a, req.params.id);
    else if (v.payload.status === 'deactivated' && Object.keys(v.payload).length === 1) {
      authz = await authority.deactivateAuthz(a, req.params.id);
    } else throw new AcmeProblem('malformed', 'an authorization accepts only POST-as-GET or {"status": "deactivated"}');
    return send(reply, 200, authzJson(authz), retryIfPending(authz.status));
  });

  onlyPost('/acme/chall/:id');
  app.post<{ Params: { id: string } }>('/acme/chall/:id', async (req, reply) => {
    const v = await verify(req, 'kid');
    const a = account(v);
    let r: { challenge: ChallengeRecord; authz: AuthzRecord };
    // RFC 8555 §7.5.1: an empty JSON object says "ready"; POST-as-GET reads the challenge.
    if (v.payload === null) r = await authority.getChallenge(a, req.params.id);
    else if (Object.keys(v.payload).length === 0) r = await authority.respondChallenge(a, req.params.id);
    else throw new AcmeProblem('malformed', 'a challenge accepts only POST-as-GET or an empty JSON object');
    return send(reply, 200, challengeJson(r.challenge), retryIfPending(r.challenge.status), [`<${url(P.authz(r.authz.id))}>;rel="up"`]);
  });

  onlyPost('/acme/cert/:id');
  app.post<{ Params: { id: string } }>('/acme/cert/:id', async (req, reply) => {
    const v = await verify(req, 'kid');
    postAsGet(v);
    const c = await authority.getCertificate(account(v), req.params.id);
    // RFC 8555 §7.4.2: PEM chain, Link rel="up" to the issuer certificate.
    await acmeHeaders(reply, [`<${url(P.issuer)}>;rel="up"`]);
    reply.code(200).type('application/pem-certificate-chain').send(c.chainPem);
    return reply;
  });

  app.post(P.revokeCert, async (req, reply) => {
    const v = await verify(req, 'either');
    await authority.revoke(v.key.kind === 'kid' ? { kind: 'account', account: v.key.account } : { kind: 'certKey', jwk: v.key.jwk }, v.payload);
    await acmeHeaders(reply);
    reply.code(200).send();
    return reply;
  });

  // RFC 9773 §4.2: renewal information is fetched with a plain GET (no JWS, no nonce).
  app.get<{ Params: { certid: string } }>(`${P.renewalInfo}/:certid`, async (req, reply) => {
    const info = await authority.renewalInfo(req.params.certid);
    reply.header('Retry-After', String(info.retryAfterSeconds));
    reply.header('Cache-Control', `public, max-age=${Math.min(info.retryAfterSeconds, 3600)}`);
    const body = {
      suggestedWindow: { start: info.start.toISOString(), end: info.end.toISOString() },
      ...(info.explanationUrl ? { explanationURL: info.explanationUrl } : {}),
    };
    return reply.code(200).type('application/json').send(JSON.stringify(body));
  });

  // Trust material, for clients and for the AIA caIssuers URL.
  app.get(P.root, async (_req, reply) => reply.type('application/x-pem-file').send(opts.rootPem));
  app.get(P.issuer, async (_req, reply) => reply.type('application/pkix-cert').send(opts.intermediateDer));

  app.get('/health', async (_req, reply) => {
    const extra = opts.health ? await opts.health() : {};
    reply.header('Cache-Control', 'no-store');
    return reply.send({ status: 'ok', ...extra });
  });

  return app;
}

