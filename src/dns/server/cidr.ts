/** CIDR parsing and address matching for acme-dns `allowfrom` lists and registration limits. */
import net from 'node:net';

export interface Cidr {
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
}

/** "192.0.2.0/24" or "2001:db8::/32" (brackets around IPv6 tolerated, as acme-dns does); null if malformed. */
export function parseCidr(s: string): Cidr | null {
  const m = /^\[?([0-9a-fA-F:.]+)\]?\/(\d{1,3})$/.exec(s.trim());
  if (!m) return null;
  const address = m[1]!;
  const prefix = Number(m[2]);
  const v = net.isIP(address);
  if (v === 4 && prefix <= 32) return { family: 'ipv4', address, prefix };
  if (v === 6 && prefix <= 128) return { family: 'ipv6', address, prefix };
  return null;
}

/** "::ffff:192.0.2.1" (an IPv4 client on a dual-stack socket) becomes "192.0.2.1". */
export function normalizeAddress(a: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}

/** Whether `address` is inside one of `cidrs` (malformed entries never match). An empty list matches nothing. */
export function addressInCidrs(address: string, cidrs: readonly string[]): boolean {
  const a = normalizeAddress(address);
  const family = net.isIP(a);
  if (family === 0) return false;
  const list = new net.BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c);
    if (p) list.addSubnet(p.address, p.prefix, p.family);
  }
  return list.check(a, family === 4 ? 'ipv4' : 'ipv6');
}
