/** A minimal http-01 responder for protocol tests: serves the key authorizations it is given. */
import http from 'node:http';

export interface Http01Responder {
  /** Serve `keyAuthorization` at /.well-known/acme-challenge/<token>. */
  set(token: string, keyAuthorization: string): void;
  close(): Promise<void>;
}

export async function startHttp01Responder(port: number, host = '127.0.0.1'): Promise<Http01Responder> {
  const tokens = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    const ka = m ? tokens.get(m[1]!) : undefined;
    res.writeHead(ka ? 200 : 404, { 'content-type': 'application/octet-stream' }).end(ka ?? '');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    set: (token, ka) => void tokens.set(token, ka),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
