/**
 * A tiny authoritative DNS server over UDP on 127.0.0.1, built on dns-packet: a test double for DNS
 * failure modes (SERVFAIL, silence) that a real server will not produce on demand. The end-to-end
 * suite uses a real BIND 9.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export type Behaviour = 'servfail' | 'drop';

export class FakeDns {
  readonly a = new Map<string, string[]>();
  readonly aaaa = new Map<string, string[]>();
  readonly txt = new Map<string, string[]>();
  readonly caa = new Map<string, Array<{ flags: number; tag: string; value: string }>>();
  readonly behaviour = new Map<string, Behaviour>();
  queries = 0;
  #socket = dgram.createSocket('udp4');
  port = 0;

  async start(): Promise<this> {
    this.#socket.on('message', (msg, rinfo) => this.#answer(msg, rinfo));
    await new Promise<void>((r) => this.#socket.bind(0, '127.0.0.1', r));
    this.port = this.#socket.address().port;
    return this;
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  #answer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    this.queries++;
    const question = q.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    const b = this.behaviour.get(name);
    if (b === 'drop') return;
    const answers: dnsPacket.Answer[] = [];
    let rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' = 'NOERROR';
    if (b === 'servfail') rcode = 'SERVFAIL';
    else {
      const known = this.a.has(name) || this.aaaa.has(name) || this.txt.has(name) || this.caa.has(name);
      if (!known) rcode = 'NXDOMAIN';
      if (question.type === 'A') for (const ip of this.a.get(name) ?? []) answers.push({ type: 'A', name, ttl: 5, data: ip });
      if (question.type === 'AAAA') for (const ip of this.aaaa.get(name) ?? []) answers.push({ type: 'AAAA', name, ttl: 5, data: ip });
      if (question.type === 'CAA') for (const c of this.caa.get(name) ?? []) answers.push({ type: 'CAA', name, ttl: 5, data: c } as dnsPacket.Answer);
      if (question.type === 'TXT') for (const t of this.txt.get(name) ?? []) answers.push({ type: 'TXT', name, ttl: 5, data: t });
    }
    const reply = dnsPacket.encode({
      id: q.id,
      type: 'response',
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (rcode === 'SERVFAIL' ? 2 : rcode === 'NXDOMAIN' ? 3 : 0),
      questions: q.questions,
      answers,
    });
    this.#socket.send(reply, rinfo.port, rinfo.address);
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.#socket.close(() => r()));
  }
}
