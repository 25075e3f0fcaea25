/**
 * TSIG against fixed vectors captured from BIND 9.18: each request was signed by `nsupdate -y`
 * (an UPDATE adding vector.anvil.test TXT "tsig-vector"), sent to `named`, which accepted it and
 * signed its answer. So these vectors prove interop both ways: our signer reproduces nsupdate's
 * bytes exactly, and our verifier accepts named's answer chained to the request MAC.
 * (test/contract/dns-providers.test.ts also talks to a live named.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { extractTsig, nameToWire, parseTsigAlgorithm, signMessage, TSIG_ERROR, verifyMessage, type TsigKey } from './tsig.js';

interface Vector {
  key: TsigKey;
  /** nsupdate's signed UPDATE request. */
  request: string;
  /** named's signed NOERROR answer to it. */
  response: string;
}

const VECTORS: Vector[] = [
  {
    key: { name: 'vector-key-256', algorithm: 'hmac-sha256', secret: Buffer.from('YW52aWwgdHNpZyB2ZWN0b3Iga2V5LCBzaGEtMjU2ISE=', 'base64') },
    request:
      '99012800000100000001000105616e76696c0474657374000006000106766563746f72c00c001000010000003c000c0b747369672d766563746f720e766563746f722d6b65792d3235360000fa00ff00000000003d0b686d61632d7368613235360000006b06ae0d012c00208f3a9e3c135563517831d673af00b093a2f415b01fbeb6cb667e507d8cd926d8990100000000',
    response:
      '9901a800000100000000000105616e76696c047465737400000600010e766563746f722d6b65792d3235360000fa00ff00000000003d0b686d61632d7368613235360000006b06ae0d012c0020926b2c3ada9e65a0436ce9933e9c6a4534bf565721b1646c96f20fadf8d8f427990100000000',
  },
  {
    key: {
      name: 'vector-key-512',
      algorithm: 'hmac-sha512',
      secret: Buffer.from('YW52aWwgdHNpZyB2ZWN0b3Iga2V5IGZvciBobWFjLXNoYTUxMiwgc2l4dHktZm91ciBieXRlcyBsb25nISEhIQ==', 'base64'),
    },
    request:
      '07cc2800000100000001000105616e76696c0474657374000006000106766563746f72c00c001000010000003c000c0b747369672d766563746f720e766563746f722d6b65792d3531320000fa00ff00000000005d0b686d61632d7368613531320000006b06ae0d012c0040c2e48477da4bbe13658e1562f4c227ad32e958be36c5c43aacd4e3072cdcaaf5dd054b13c0615e1eb0af9e1c2bf0d7567b4a857b672c3cdf7635c44dcb99966d07cc00000000',
    response:
      '07cca800000100000000000105616e76696c047465737400000600010e766563746f722d6b65792d3531320000fa00ff00000000005d0b686d61632d7368613531320000006b06ae0d012c0040a5244cdf0becb3d4830342672c649679b0d50dab0dbd6d497ccb27d9df1aec74b65a74364d128fcc3ecb9bbf376fb183a1471c59db4183da4e8b47056650d5df07cc00000000',
  },
];

/** When BIND signed the vectors (seconds since the epoch). */
const SIGNED_AT = 1795599885;

for (const v of VECTORS) {
  const request = Buffer.from(v.request, 'hex');
  const response = Buffer.from(v.response, 'hex');

  describe(`TSIG ${v.key.algorithm} against BIND's vectors`, () => {
    it('reads the TSIG record nsupdate appended', () => {
      const found = extractTsig(request);
      assert.ok(found);
      assert.equal(found.tsig.keyName, v.key.name);
      assert.equal(found.tsig.algorithm, v.key.algorithm);
      assert.equal(found.tsig.timeSigned, SIGNED_AT);
      assert.equal(found.tsig.fudge, 300);
      assert.equal(found.tsig.originalId, request.readUInt16BE(0));
      assert.equal(found.tsig.error, 0);
      // The unsigned message has one additional record less and is a plain UPDATE.
      assert.equal(found.unsigned.readUInt16BE(10), 0);
      const decoded = dnsPacket.decode(found.unsigned);
      assert.equal(decoded.questions?.[0]?.name, 'anvil.test');
    });

    it('reproduces the request nsupdate signed, byte for byte', () => {
      const found = extractTsig(request)!;
      const signed = signMessage(found.unsigned, v.key, { timeSigned: SIGNED_AT, fudge: 300 });
      assert.equal(signed.message.toString('hex'), v.request);
      assert.deepEqual(signed.mac, found.tsig.mac);
    });

    it("verifies nsupdate's request", () => {
      const r = verifyMessage(request, v.key, { now: SIGNED_AT + 10 });
      assert.equal(r.ok, true, JSON.stringify(r));
    });

    it("verifies named's answer chained to the request MAC (RFC 8945 §4.3.1)", () => {
      const requestMac = extractTsig(request)!.tsig.mac;
      assert.equal(verifyMessage(response, v.key, { requestMac, now: SIGNED_AT }).ok, true);
    });

    it("refuses named's answer without the request MAC, or chained to another one", () => {
      assert.equal(verifyMessage(response, v.key, { now: SIGNED_AT }).ok, false);
      const other = Buffer.alloc(extractTsig(request)!.tsig.mac.length, 7);
      const r = verifyMessage(response, v.key, { requestMac: other, now: SIGNED_AT });
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, 'badsig');
    });

    it('refuses a request with one flipped bit in the message, the MAC or the TSIG variables (not the ID: see the forwarder case)', () => {
      for (const at of [2, 5, 13, 30, request.length - 20, request.length - 3]) {
        const bad = Buffer.from(request);
        bad[at]! ^= 0x01;
        const r = verifyMessage(bad, v.key, { now: SIGNED_AT });
        assert.equal(r.ok, false, `bit flipped at ${at}`);
      }
    });

    it('refuses the wrong secret (badsig) and another key name (badkey)', () => {
      const wrong = { ...v.key, secret: Buffer.from('not the secret') };
      const r1 = verifyMessage(request, wrong, { now: SIGNED_AT });
      assert.equal(!r1.ok && r1.reason, 'badsig');
      const r2 = verifyMessage(request, { ...v.key, name: 'other-key' }, { now: SIGNED_AT });
      assert.equal(!r2.ok && r2.reason, 'badkey');
      const otherAlg = v.key.algorithm === 'hmac-sha256' ? 'hmac-sha512' : 'hmac-sha256';
      const r3 = verifyMessage(request, { ...v.key, algorithm: otherAlg }, { now: SIGNED_AT });
      assert.equal(!r3.ok && r3.reason, 'badkey');
    });

    it('refuses a signature older or newer than the fudge (RFC 8945 §5.2.3)', () => {
      assert.equal(verifyMessage(request, v.key, { now: SIGNED_AT + 300 }).ok, true);
      const late = verifyMessage(request, v.key, { now: SIGNED_AT + 301 });
      assert.equal(!late.ok && late.reason, 'badtime');
      const early = verifyMessage(request, v.key, { now: SIGNED_AT - 301 });
      assert.equal(!early.ok && early.reason, 'badtime');
    });
  });
}

describe('TSIG signing and verification', () => {
  const key: TsigKey = { name: 'Example-Key.', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) };
  const query = dnsPacket.encode({ id: 4242, type: 'query', questions: [{ name: 'example.com', type: 'SOA', class: 'IN' }] });

  it('signs and verifies every supported algorithm', () => {
    for (const algorithm of ['hmac-sha1', 'hmac-sha224', 'hmac-sha256', 'hmac-sha384', 'hmac-sha512'] as const) {
      const k = { ...key, algorithm };
      const { message, mac } = signMessage(query, k, { timeSigned: 1_000_000 });
      const r = verifyMessage(message, k, { now: 1_000_000 });
      assert.equal(r.ok, true, algorithm);
      assert.equal(mac.length, { 'hmac-sha1': 20, 'hmac-sha224': 28, 'hmac-sha256': 32, 'hmac-sha384': 48, 'hmac-sha512': 64 }[algorithm]);
    }
  });

  it('writes the key name in canonical form: lower case, no trailing dot (RFC 8945 §4.3.3)', () => {
    const { message } = signMessage(query, key, { timeSigned: 1_000_000 });
    assert.equal(extractTsig(message)!.tsig.keyName, 'example-key');
    assert.equal(verifyMessage(message, { ...key, name: 'example-key' }, { now: 1_000_000 }).ok, true);
  });

  it('bumps ARCOUNT and keeps the message decodable by dns-packet', () => {
    const { message } = signMessage(query, key, { timeSigned: 1_000_000 });
    assert.equal(message.readUInt16BE(10), 1);
    const decoded = dnsPacket.decode(message);
    assert.equal(decoded.additionals?.[0]?.type, 'TSIG');
  });

  it('signs a response chained to the request MAC, with a TSIG error and other data', () => {
    const req = signMessage(query, key, { timeSigned: 1_000_000 });
    const answer = Buffer.from(query);
    answer.writeUInt16BE(0x8000, 2);
    const resp = signMessage(answer, key, { timeSigned: 1_000_400, requestMac: req.mac, error: TSIG_ERROR.BADTIME, otherData: Buffer.from([0, 0, 0, 0x0f, 0x42, 0x40]) });
    const r = verifyMessage(resp.message, key, { requestMac: req.mac, now: 1_000_400 });
    assert.equal(r.ok, true);
    assert.equal(r.ok && r.tsig.error, TSIG_ERROR.BADTIME);
    assert.equal(r.ok && r.tsig.otherData.length, 6);
  });

  it('verifies a message whose ID a forwarder changed, using the original ID (RFC 8945 §4.3.2)', () => {
    const { message } = signMessage(query, key, { timeSigned: 1_000_000 });
    message.writeUInt16BE(999, 0);
    assert.equal(verifyMessage(message, key, { now: 1_000_000 }).ok, true);
  });

  it('reports unsigned, truncated-MAC and malformed messages without throwing', () => {
    const unsigned = verifyMessage(query, key);
    assert.equal(!unsigned.ok && unsigned.reason, 'unsigned');
    const { message } = signMessage(query, key, { timeSigned: 1_000_000 });
    const cut = verifyMessage(message.subarray(0, message.length - 3), key);
    assert.equal(!cut.ok && cut.reason, 'malformed');
    assert.equal(verifyMessage(Buffer.alloc(5), key).ok, false);
    // A pointer loop in a name.
    const loop = Buffer.from(query);
    loop.writeUInt16BE(1, 10);
    const bad = Buffer.concat([loop, Buffer.from([0xc0, loop.length])]);
    const r = verifyMessage(bad, key);
    assert.equal(!r.ok && r.reason, 'malformed');
  });

  it('parses algorithm names in lego and BIND spellings', () => {
    assert.equal(parseTsigAlgorithm('hmac-sha256.'), 'hmac-sha256');
    assert.equal(parseTsigAlgorithm('HMAC-SHA512'), 'hmac-sha512');
    assert.equal(parseTsigAlgorithm('hmac-md5.sig-alg.reg.int.'), undefined);
  });

  it('refuses labels longer than 63 octets', () => {
    assert.throws(() => nameToWire(`${'a'.repeat(64)}.example`), { code: 'TSIG_FORMERR' });
  });
});
