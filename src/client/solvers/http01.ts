/**
 * http-01 solvers (RFC 8555 §8.3): a standalone listener, and webroot (a file under
 * <root>/.well-known/acme-challenge/, removed afterwards).
 */
import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { checkToken } from './token.js';
import type { ChallengeInput, Solver } from './types.js';

const PREFIX = '/.well-known/acme-challenge/';

/** Answers http-01 on its own listener (address and port configurable; port 80 by default). */
export class StandaloneHttp01 implements Solver {
  readonly type = 'http-01' as const;
  readonly #tokens = new Map<string, string>();
  #server: http.Server | undefined;

  constructor(private readonly opts: { host?: string; port?: number } = {}) {}

  async #listen(): Promise<void> {
    if (this.#server) return;
    const server = http.createServer((req, res) => {
      const u = req.url ?? '';
      const token = u.startsWith(PREFIX) ? u.slice(PREFIX.length) : '';
      const ka = this.#tokens.get(token);
      if (req.method !== 'GET' || !ka) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/plain' }).end(ka);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 80, this.opts.host ?? '0.0.0.0', () => resolve());
    });
    this.#server = server;
  }

  async present(ch: ChallengeInput): Promise<void> {
    this.#tokens.set(checkToken(ch.token), ch.keyAuthorization);
    await this.#listen();
  }

  async cleanup(ch: ChallengeInput): Promise<void> {
    this.#tokens.delete(ch.token);
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
}

/** Writes the key authorization under a web server's document root. */
export class WebrootHttp01 implements Solver {
  readonly type = 'http-01' as const;
  constructor(private readonly root: string) {}

  #file(token: string): string {
    return path.join(this.root, '.well-known', 'acme-challenge', checkToken(token));
  }

  async present(ch: ChallengeInput): Promise<void> {
    const file = this.#file(ch.token);
    // World-readable (the web server must read it), nothing secret in it.
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    await writeFileAtomic(file, ch.keyAuthorization, { mode: 0o644 });
  }

  async cleanup(ch: ChallengeInput): Promise<void> {
    await rm(this.#file(ch.token), { force: true });
  }
}
