/**
 * The load generator's http-01 responder (RFC 8555 §8.3): GET /.well-known/acme-challenge/<token>
 * answers the key authorization. One listener per address (127.0.0.1, 127.0.0.2, ... when orders
 * have several IP identifiers), one token table shared by every virtual client: tokens are random,
 * so concurrent validations of the same address never collide.
 */
import http from 'node:http';
import { BenchSetupError } from './errors.js';

const PREFIX = '/.well-known/acme-challenge/';

export class Http01Responder {
  readonly #tokens = new Map<string, string>();
  readonly #servers: http.Server[] = [];
  /** Validation requests answered with a key authorization. */
  served = 0;
  /** Requests for unknown tokens or paths (answered 404). */
  unknown = 0;

  set(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }

  delete(token: string): void {
    this.#tokens.delete(token);
  }

  /** Listens on `port` of every address; fails with a message that says what to change. */
  async listen(addresses: readonly string[], port: number): Promise<void> {
    for (const host of addresses) {
      const server = http.createServer((req, res) => {
        const url = req.url ?? '';
        const ka = req.method === 'GET' && url.startsWith(PREFIX) ? this.#tokens.get(url.slice(PREFIX.length)) : undefined;
        if (ka === undefined) {
          this.unknown++;
          res.writeHead(404, { 'content-length': '0' }).end();
          return;
        }
        this.served++;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(ka)) }).end(ka);
      });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port, backlog: 1024 }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (e) {
        await this.close();
        const code = (e as { code?: string }).code ?? 'error';
        const hint =
          code === 'EACCES'
            ? ' (ports below 1024 need privileges; run the server with validation.httpPort set to a high port and pass the same --http-port)'
            : code === 'EADDRNOTAVAIL'
              ? ' (this address is not on this machine; Linux routes all of 127.0.0.0/8 to loopback, other systems may need an alias)'
              : code === 'EADDRINUSE'
                ? ' (another program listens there; choose another --http-port, and the same validation.httpPort on the server)'
                : '';
        throw new BenchSetupError('RESPONDER', `the http-01 responder cannot listen on ${host}:${port}: ${code}${hint}`, { cause: e });
      }
      this.#servers.push(server);
    }
  }

  async close(): Promise<void> {
    const servers = this.#servers.splice(0);
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((r) => {
            s.closeAllConnections();
            s.close(() => r());
          }),
      ),
    );
  }
}
