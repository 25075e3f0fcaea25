/**
 * Receivers for the inventory's alert channels, on 127.0.0.1 and a port the system picks: an HTTP
 * server that records every request (a JSON webhook, a Slack-compatible one) and answers as told,
 * a black hole (accepts connections and never answers, until told to pass them on), and a real
 * SMTP server (the `smtp-server` package) with STARTTLS or implicit TLS and AUTH
 * PLAIN/LOGIN required, recording each message with its envelope.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

/**
 * What a receiver records, and waiting for it: `waitFor(n)` resolves once `list` holds n items
 * (`arrived()` after each push), or fails after `timeoutMs` naming `what` it counts.
 */
function arrivals(list: readonly unknown[], what: string): { waitFor(n: number, timeoutMs?: number): Promise<void>; arrived(): void } {
  const waiting: Array<{ n: number; resolve: () => void }> = [];
  return {
    waitFor(n, timeoutMs = 10_000) {
      if (list.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${list.length} ${what}(s) arrived within ${timeoutMs} ms, ${n} expected`)), timeoutMs);
        waiting.push({ n, resolve: () => (clearTimeout(t), resolve()) });
      });
    },
    arrived() {
      const still = waiting.splice(0).filter((w) => (list.length >= w.n ? (w.resolve(), false) : true));
      waiting.push(...still);
    },
  };
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface HttpReceiver {
  base: string;
  requests: ReceivedRequest[];
  /** What to answer (default 200 "ok"); may look at the request. */
  respond: (r: ReceivedRequest) => { status: number; body?: string; headers?: Record<string, string> } | 'hang';
  /** Resolves once `n` requests arrived (rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const requests: ReceivedRequest[] = [];
  const requestsArrivals = arrivals(requests, 'request');
  const r: HttpReceiver = {
    base: '',
    requests,
    respond: () => ({ status: 200, body: 'ok' }),
    waitFor: requestsArrivals.waitFor,
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const got: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(got);
      requestsArrivals.arrived();
      const a = r.respond(got);
      if (a === 'hang') return;
      res.writeHead(a.status, { 'content-type': 'text/plain', ...(a.headers ?? {}) });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

export interface BlackHole {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** null: a connection is accepted and never read from or answered. A port: connections are passed to 127.0.0.1 on it. */
  forwardTo: number | null;
  close(): Promise<void>;
}

/** A TCP server that accepts and never answers (a receiver that hangs, a firewall that swallows), until `forwardTo` is set. */
export async function startBlackHole(): Promise<BlackHole> {
  const sockets = new Set<net.Socket>();
  const keep = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const h: BlackHole = { port: 0, accepted: 0, forwardTo: null, close: async () => {} };
  const server = net.createServer((s) => {
    h.accepted++;
    keep(s);
    if (h.forwardTo === null) return;
    const up = net.connect(h.forwardTo, '127.0.0.1');
    keep(up);
    up.on('close', () => s.destroy());
    s.on('close', () => up.destroy());
    s.pipe(up).pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  h.port = (server.address() as AddressInfo).port;
  h.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return h;
}

/** What a receiver does with X-Anvil-Signature: HMAC-SHA256 over "<timestamp>.<body>", compared in constant time. */
export function verifySignature(secret: string, headers: http.IncomingHttpHeaders, body: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const ts = String(headers['x-anvil-timestamp'] ?? '');
  const sig = String(headers['x-anvil-signature'] ?? '');
  if (!/^\d+$/.test(ts) || Math.abs(nowSeconds - Number(ts)) > 300 || !sig.startsWith('v1=')) return false;
  const want = Buffer.from(createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex'));
  const got = Buffer.from(sig.slice(3));
  return got.length === want.length && timingSafeEqual(got, want);
}

export interface ReceivedMail {
  from: string;
  to: string[];
  /** Whether the session was under TLS (implicit, or after STARTTLS) when the message came. */
  secure: boolean;
  /** Who authenticated, and how. */
  user: string | undefined;
  authMethod: string | undefined;
  raw: string;
  headers: Map<string, string>;
  text: string;
}

export interface SmtpReceiver {
  port: number;
  messages: ReceivedMail[];
  /** Failed logins (user names). */
  failedLogins: string[];
  /** Answer DATA with this error (e.g. a 451) instead of accepting the message. */
  dataError: { code: number; message: string } | null;
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startSmtpServer(o: { user: string; password: string; key: string; cert: string; secure?: boolean; noStartTls?: boolean }): Promise<SmtpReceiver> {
  const messages: ReceivedMail[] = [];
  const messagesArrivals = arrivals(messages, 'message');
  const r: SmtpReceiver = {
    port: 0,
    messages,
    failedLogins: [],
    dataError: null,
    waitFor: messagesArrivals.waitFor,
    close: async () => {},
  };
  const options: SMTPServerOptions = {
    secure: o.secure === true,
    key: o.key,
    cert: o.cert,
    // A server without STARTTLS at all (hiding it from EHLO is not enough: a client may still try it).
    ...(o.noStartTls ? { hideSTARTTLS: true, disabledCommands: ['STARTTLS'] } : {}),
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH only under TLS, and required before MAIL FROM.
    allowInsecureAuth: false,
    authOptional: false,
    disableReverseLookup: true,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === o.user && auth.password === o.password) return cb(null, { user: auth.username });
      r.failedLogins.push(auth.username ?? '');
      const e = new Error('Authentication failed') as Error & { responseCode: number };
      e.responseCode = 535;
      cb(e);
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (r.dataError) {
          const e = new Error(r.dataError.message) as Error & { responseCode: number };
          e.responseCode = r.dataError.code;
          return cb(e);
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const parsed = parseMail(raw);
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((a) => a.address),
          secure: session.secure,
          user: typeof session.user === 'string' ? session.user : undefined,
          authMethod: (session as { transmissionType?: string }).transmissionType,
          raw,
          ...parsed,
        });
        messagesArrivals.arrived();
        cb();
      });
    },
  };
  const server = new SMTPServer(options);
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.port = (server.server.address() as AddressInfo).port;
  r.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return r;
}

/** Headers (unfolded, names lower-cased) and the text body (quoted-printable and base64 decoded). */
export function parseMail(raw: string): { headers: Map<string, string>; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const body = raw.slice(split + 4);
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  const cte = (headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  let text: string;
  if (cte === 'quoted-printable') {
    const bytes = body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    text = Buffer.from(bytes, 'latin1').toString('utf8');
  } else if (cte === 'base64') {
    text = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  } else {
    text = body;
  }
  return { headers, text: text.replace(/\r\n/g, '\n') };
}

/** A MIME encoded-word subject (RFC 2047), decoded; plain subjects as they are. */
export function decodeHeader(v: string): string {
  return v.replace(/=\?utf-8\?([BQ])\?([^?]*)\?=\s*/gi, (_, enc: string, data: string) =>
    enc.toUpperCase() === 'B' ? Buffer.from(data, 'base64').toString('utf8') : Buffer.from(data.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'),
  );
}
