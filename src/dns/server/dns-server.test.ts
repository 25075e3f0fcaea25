/** `anvil dns` answering real `dig` queries over UDP and TCP on a loopback port. */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { dig, startTestDnsServer, txtValue, ZONE, type TestDnsServer } from './testing.js';

let srv: TestDnsServer;
let sub: string;
let emptySub: string;

before(async () => {
  srv = await startTestDnsServer({
    records: [
      { name: `www.${ZONE}`, type: 'A', value: '192.0.2.80' },
      { name: `v6.deep.${ZONE}`, type: 'AAAA', value: '2001:db8::80' },
      { name: `alias.${ZONE}`, type: 'CNAME', value: 'target.example.net' },
      // Twelve 200-byte TXT strings: more than 512 bytes, for truncation.
      ...Array.from({ length: 12 }, (_, i) => ({ name: `big.${ZONE}`, type: 'TXT', value: String(i).padEnd(200, 'x') })),
      ...Array.from({ length: 4 }, (_, i) => ({ name: `mid.${ZONE}`, type: 'TXT', value: String(i).padEnd(200, 'y') })),
    ],
  });
  const a = await srv.registry.register([]);
  sub = a.subdomain;
  await srv.store.putTxt(sub, txtValue('a'), new Date());
  await srv.store.putTxt(sub, txtValue('b'), new Date());
  emptySub = (await srv.registry.register([])).subdomain;
});
after(async () => srv?.cleanup());

for (const transport of ['udp', 'tcp'] as const) {
  const more = transport === 'tcp' ? ['+tcp'] : [];
  describe(`over ${transport}`, () => {
    test('the apex answers SOA with the AA flag', async () => {
      const r = await dig(srv.dns.port, ZONE, 'SOA', more);
      assert.equal(r.status, 'NOERROR');
      assert.ok(r.flags.includes('aa'), r.out);
      assert.equal(r.answer.length, 1);
      assert.match(r.answer[0]!, /SOA\s+ns1\.acme\.example\.com\. hostmaster\.acme\.example\.com\. \d+ 3600 600 604800 1$/);
    });

    test('the apex answers NS with glue for the in-zone name server only', async () => {
      const r = await dig(srv.dns.port, ZONE, 'NS', more);
      assert.equal(r.status, 'NOERROR');
      assert.equal(r.answer.length, 2);
      assert.ok(r.answer.some((l) => /NS\s+ns1\.acme\.example\.com\.$/.test(l)));
      assert.ok(r.answer.some((l) => /NS\s+ns\.other\.example\.net\.$/.test(l)));
      assert.ok(r.additional.some((l) => /^ns1\.acme\.example\.com\.\s+3600\s+IN\s+A\s+192\.0\.2\.53$/.test(l)), r.out);
      assert.ok(r.additional.some((l) => /AAAA\s+2001:db8::53$/.test(l)), r.out);
    });

    test('a registration subdomain answers its TXT values with the short TTL', async () => {
      const r = await dig(srv.dns.port, `${sub}.${ZONE}`, 'TXT', more);
      assert.equal(r.status, 'NOERROR');
      assert.ok(r.flags.includes('aa'));
      const values = r.answer.map((l) => /TXT\s+"([^"]+)"$/.exec(l)?.[1]).sort();
      assert.deepEqual(values, [txtValue('a'), txtValue('b')]);
      assert.ok(r.answer.every((l) => /\s1\s+IN\s+TXT/.test(l)), r.out);
    });

    test('names are matched case-insensitively and answered in the question\'s case', async () => {
      const mixed = `${sub.toUpperCase()}.AcMe.Example.COM`;
      const r = await dig(srv.dns.port, mixed, 'TXT', more);
      assert.equal(r.status, 'NOERROR');
      assert.equal(r.answer.length, 2);
      assert.ok(r.answer.every((l) => l.startsWith(`${mixed}.`)), r.out);
    });

    test('an unknown name in the zone is NXDOMAIN with the SOA for negative caching', async () => {
      const r = await dig(srv.dns.port, `nope.${ZONE}`, 'TXT', more);
      assert.equal(r.status, 'NXDOMAIN');
      assert.ok(r.flags.includes('aa'));
      assert.equal(r.authority.length, 1);
      assert.match(r.authority[0]!, /^acme\.example\.com\.\s+1\s+IN\s+SOA/);
    });

    test('an existing name without the asked type is NODATA (NOERROR, no answer, SOA)', async () => {
      for (const [name, type] of [
        [ZONE, 'TXT'],
        [`${sub}.${ZONE}`, 'A'],
        [`${emptySub}.${ZONE}`, 'TXT'],
        [`deep.${ZONE}`, 'A'], // an empty non-terminal
        [`www.${ZONE}`, 'AAAA'],
      ] as const) {
        const r = await dig(srv.dns.port, name, type, more);
        assert.equal(r.status, 'NOERROR', `${name} ${type}`);
        assert.equal(r.answer.length, 0, `${name} ${type}`);
        assert.equal(r.authority.length, 1, `${name} ${type}`);
      }
    });

    test('static A, AAAA and CNAME records are answered', async () => {
      assert.match((await dig(srv.dns.port, `www.${ZONE}`, 'A', more)).answer[0]!, /A\s+192\.0\.2\.80$/);
      assert.match((await dig(srv.dns.port, `v6.deep.${ZONE}`, 'AAAA', more)).answer[0]!, /AAAA\s+2001:db8::80$/);
      const c = await dig(srv.dns.port, `alias.${ZONE}`, 'A', more);
      assert.equal(c.status, 'NOERROR');
      assert.match(c.answer[0]!, /CNAME\s+target\.example\.net\.$/);
    });

    test('names outside the zone are REFUSED, without AA', async () => {
      for (const name of ['example.com', 'example.org', `x${ZONE}`]) {
        const r = await dig(srv.dns.port, name, 'A', more);
        assert.equal(r.status, 'REFUSED', name);
        assert.ok(!r.flags.includes('aa'), name);
      }
    });
  });
}

describe('sizes and malformed input', () => {
  test('a UDP answer larger than 512 bytes without EDNS0 comes back truncated (TC); TCP carries it whole', async () => {
    const udp = await dig(srv.dns.port, `big.${ZONE}`, 'TXT', ['+noedns', '+ignore']);
    assert.ok(udp.flags.includes('tc'), udp.out);
    assert.equal(udp.answer.length, 0);
    const tcp = await dig(srv.dns.port, `big.${ZONE}`, 'TXT', ['+tcp']);
    assert.equal(tcp.answer.length, 12);
  });

  test('EDNS0: the client\'s buffer size is honoured up to the server\'s cap (1232), with our OPT in the answer', async () => {
    // About 850 bytes: too large for 512, fits in 1232.
    const plain = await dig(srv.dns.port, `mid.${ZONE}`, 'TXT', ['+noedns', '+ignore']);
    assert.ok(plain.flags.includes('tc'), plain.out);
    const edns = await dig(srv.dns.port, `mid.${ZONE}`, 'TXT', ['+bufsize=4096', '+ignore']);
    assert.ok(!edns.flags.includes('tc'), edns.out);
    assert.equal(edns.answer.length, 4);
    assert.match(edns.out, /EDNS: version: 0, flags:; udp: 1232/);
    // About 2,500 bytes: more than the cap, whatever the client offers.
    const big = await dig(srv.dns.port, `big.${ZONE}`, 'TXT', ['+bufsize=4096', '+ignore']);
    assert.ok(big.flags.includes('tc'), big.out);
  });

  test('EDNS version 1 is answered BADVERS', async () => {
    const r = await dig(srv.dns.port, ZONE, 'SOA', ['+edns=1', '+noednsneg']);
    assert.equal(r.status, 'BADVERS', r.out);
  });

  test('garbage packets are dropped or FORMERR, and the server keeps answering', async () => {
    const sock = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, srv.dns.port, '127.0.0.1', () => r()));
    const bad = [
      Buffer.alloc(0),
      Buffer.from([1, 2, 3]),
      Buffer.from('ffffffffffffffffffffffffffffffff', 'hex'),
      // header claiming 1 question, then a compression pointer loop
      Buffer.from('1234000000010000000000000c0c', 'hex'),
      // a response (QR set): never answered
      dnsPacket.encode({ id: 7, type: 'response', questions: [{ name: ZONE, type: 'SOA' }] }),
      // two questions
      dnsPacket.encode({ id: 8, type: 'query', questions: [{ name: ZONE, type: 'SOA' }, { name: ZONE, type: 'NS' }] }),
      // a label with a dot in it, which must not be read as two labels
      Buffer.concat([Buffer.from('000900000001000000000000', 'hex'), Buffer.from([8]), Buffer.from('a.b.acme'), Buffer.from('04616d6500000100 01'.replace(/ /g, ''), 'hex')]),
    ];
    for (let i = 0; i < 200; i++) bad.push(Buffer.from(Array.from({ length: 12 + (i % 60) }, () => Math.floor(Math.random() * 256))));
    for (const b of bad) await send(b);
    // Garbage over TCP too: an absurd length, then a half message and a close.
    await new Promise<void>((resolve) => {
      const c = net.connect(srv.dns.port, '127.0.0.1', () => c.end(Buffer.from([0xff, 0xff, 1, 2, 3])));
      c.on('close', () => resolve());
      c.on('error', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    sock.close();
    for (const m of replies) {
      const flags = m.readUInt16BE(2);
      assert.ok(flags & 0x8000, 'only responses come back');
      if (m.readUInt16BE(0) === 7) assert.fail('a response was answered');
    }
    const formerr = replies.find((m) => m.readUInt16BE(0) === 8);
    assert.ok(formerr, 'two questions get an answer');
    assert.equal(formerr.readUInt16BE(2) & 0xf, 1, 'FORMERR');
    const r = await dig(srv.dns.port, ZONE, 'SOA');
    assert.equal(r.status, 'NOERROR');
  });

  test('TCP: several queries on one connection are answered in order', async () => {
    const c = net.connect(srv.dns.port, '127.0.0.1');
    const frames = [1, 2, 3].map((id) => dnsPacket.streamEncode({ id, type: 'query', questions: [{ name: `${sub}.${ZONE}`, type: 'TXT' }] }));
    c.write(Buffer.concat(frames));
    let buf = Buffer.alloc(0);
    const ids = await new Promise<number[]>((resolve, reject) => {
      const out: number[] = [];
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          out.push(msg.id!);
          assert.equal(msg.answers?.length, 2);
          buf = buf.subarray(2 + buf.readUInt16BE(0));
          if (out.length === 3) resolve(out);
        }
      });
      c.on('error', reject);
    });
    assert.deepEqual(ids, [1, 2, 3]);
    c.destroy();
  });
});
