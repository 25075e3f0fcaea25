/**
 * The DNS transports of `anvil dns`: UDP (one datagram per query) and TCP (RFC 1035 §4.2.2: each
 * message preceded by its 2-byte length; RFC 7766: several queries per connection). Limits: query
 * size, concurrent TCP connections, idle timeout per connection, bytes buffered per connection.
 * A socket error or a bad query never takes the process down.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../../lib/logger.js';
import { handleQuery } from './wire.js';
import type { Zone } from './zone.js';

export interface DnsListenerOptions {
  host: string;
  port: number;
  maxUdpPayload: number;
  maxTcpConnections: number;
  tcpIdleTimeoutMs: number;
  maxQueryBytes: number;
  log: Logger;
}

export interface DnsListener {
  /** The address UDP and TCP both listen on (same port). */
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Binds UDP and TCP on the same port. With port 0, TCP picks the port and UDP binds the same
 * number (retried a few times if that UDP port is taken).
 */
export async function startDnsListener(zone: Zone, o: DnsListenerOptions): Promise<DnsListener> {
  const wire = { maxUdpPayload: o.maxUdpPayload, onError: (e: unknown) => o.log.error({ err: e }, 'dns: lookup failed') };
  const type = net.isIPv6(o.host) ? 'udp6' : 'udp4';
  for (let attempt = 0; ; attempt++) {
    const tcp = await listenTcp(zone, o, wire);
    const port = (tcp.address() as net.AddressInfo).port;
    try {
      const udp = await bindUdp(zone, o, wire, type, port);
      const sockets = new Set<net.Socket>();
      tcp.on('connection', (s) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
      });
      return {
        host: o.host,
        port,
        async close() {
          await new Promise<void>((r) => udp.close(() => r()));
          for (const s of sockets) s.destroy();
          await new Promise<void>((r) => tcp.close(() => r()));
        },
      };
    } catch (e) {
      await new Promise<void>((r) => tcp.close(() => r()));
      if (o.port !== 0 || attempt >= 5 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
}

function bindUdp(zone: Zone, o: DnsListenerOptions, wire: Parameters<typeof handleQuery>[3], type: 'udp4' | 'udp6', port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type, reuseAddr: false });
    s.once('error', reject);
    s.on('message', (msg, rinfo) => {
      if (msg.length > o.maxQueryBytes) return;
      handleQuery(msg, 'udp', zone, wire).then(
        (out) => {
          if (out) s.send(out, rinfo.port, rinfo.address, () => undefined);
        },
        (e: unknown) => o.log.error({ err: e }, 'dns: query failed'),
      );
    });
    s.bind(port, o.host, () => {
      s.off('error', reject);
      s.on('error', (e) => o.log.warn({ err: e }, 'dns: UDP socket error'));
      resolve(s);
    });
  });
}

function listenTcp(zone: Zone, o: DnsListenerOptions, wire: Parameters<typeof handleQuery>[3]): Promise<net.Server> {
  const server = net.createServer((sock) => serveTcp(sock, zone, o, wire));
  server.maxConnections = o.maxTcpConnections;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      server.on('error', (e) => o.log.warn({ err: e }, 'dns: TCP server error'));
      resolve(server);
    });
  });
}

function serveTcp(sock: net.Socket, zone: Zone, o: DnsListenerOptions, wire: Parameters<typeof handleQuery>[3]): void {
  let buf: Buffer = Buffer.alloc(0);
  // Responses go out in query order, one at a time (a slow lookup does not reorder them).
  let chain: Promise<void> = Promise.resolve();
  let pending = 0;
  sock.setNoDelay(true);
  sock.setTimeout(o.tcpIdleTimeoutMs, () => sock.destroy());
  sock.on('error', () => sock.destroy());
  sock.on('data', (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (len > o.maxQueryBytes || len < 12) {
        sock.destroy();
        return;
      }
      if (buf.length < 2 + len) break;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      // Bounded pipelining: a client that queues many queries without reading is cut off.
      if (++pending > 64) {
        sock.destroy();
        return;
      }
      chain = chain.then(async () => {
        try {
          const out = await handleQuery(msg, 'tcp', zone, wire);
          if (out && out.length <= 65_535 && !sock.destroyed) {
            const len2 = Buffer.alloc(2);
            len2.writeUInt16BE(out.length);
            sock.write(Buffer.concat([len2, out]));
          }
        } catch (e) {
          o.log.error({ err: e }, 'dns: query failed');
        } finally {
          pending--;
        }
      });
    }
    if (buf.length > o.maxQueryBytes + 2) sock.destroy();
  });
}
