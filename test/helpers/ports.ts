/** Free loopback ports, chosen by binding to port 0 (TCP and UDP both free). */
import dgram from 'node:dgram';
import net from 'node:net';

async function tcpFree(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function freePort(opts: { udp?: boolean } = {}): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await tcpFree(0);
    if (!opts.udp || (await udpFree(p))) return p;
  }
  throw new Error('no free port');
}
