/** Serves <dir>/<token> at /.well-known/acme-challenge/<token> on a loopback port (for webroot-style clients). */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export interface Webroot {
  dir: string;
  port: number;
  stop(): Promise<void>;
}

export async function startWebroot(port: number): Promise<Webroot> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-webroot-'));
  const server = http.createServer((req, res) => {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    readFile(path.join(dir, m[1]!)).then(
      (b) => res.writeHead(200, { 'content-type': 'text/plain' }).end(b),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    dir,
    port,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
