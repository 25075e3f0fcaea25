/** Which addresses the validator may connect to (SECURITY.md "Validation"). */
import { BlockList, isIP } from 'node:net';
import type { AddressPolicy } from './types.js';

function list(entries: Array<[string, number, 'ipv4' | 'ipv6']>): BlockList {
  const b = new BlockList();
  for (const [net, prefix, family] of entries) b.addSubnet(net, prefix, family);
  return b;
}

// Never: unspecified, broadcast, multicast, reserved, and cloud metadata services.
const ALWAYS = list([
  ['0.0.0.0', 8, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['240.0.0.0', 4, 'ipv4'],
  ['169.254.169.254', 32, 'ipv4'],
  ['100.100.100.200', 32, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
  ['fd00:ec2::254', 128, 'ipv6'],
]);
const LOOPBACK = list([
  ['127.0.0.0', 8, 'ipv4'],
  ['::1', 128, 'ipv6'],
]);
const PRIVATE = list([
  ['10.0.0.0', 8, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['fc00::', 7, 'ipv6'],
]);
const LINK_LOCAL = list([
  ['169.254.0.0', 16, 'ipv4'],
  ['fe80::', 10, 'ipv6'],
]);

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else the input. */
function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1]!;
  const h = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (h) {
    const a = parseInt(h[1]!, 16);
    const b = parseInt(h[2]!, 16);
    return `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  return ip;
}

/** Why connecting to `ip` is refused, or null if it is allowed. */
export function checkAddress(ip: string, policy: AddressPolicy): string | null {
  const addr = unmap(ip);
  const fam = isIP(addr);
  if (!fam) return `"${ip}" is not an IP address`;
  const type = fam === 4 ? 'ipv4' : 'ipv6';
  if (ALWAYS.check(addr, type)) return `${ip} is a reserved, multicast or cloud metadata address`;
  if (LOOPBACK.check(addr, type) && !policy.allowLoopback) return `${ip} is a loopback address`;
  if (PRIVATE.check(addr, type) && !policy.allowPrivate) return `${ip} is a private address`;
  if (LINK_LOCAL.check(addr, type) && !policy.allowLinkLocal) return `${ip} is a link-local address`;
  if (policy.deny.length) {
    const deny = new BlockList();
    for (const cidr of policy.deny) {
      const [net, len] = cidr.split('/');
      const f = isIP(net ?? '');
      if (!f) continue;
      deny.addSubnet(net!, Number(len ?? (f === 4 ? 32 : 128)), f === 4 ? 'ipv4' : 'ipv6');
    }
    if (deny.check(addr, type)) return `${ip} is in a range the operator denies`;
  }
  return null;
}
