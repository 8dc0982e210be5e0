import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EpochTracker } from '../broker/upstream/epoch-tracker.js';
import {
  buildExternalAddressRequest,
  buildMapRequest as buildNatPmpMap,
  NatPmpResultCode,
  parseExternalAddressReply,
  parseMapReply,
} from '../broker/upstream/natpmp/natpmp-codec.js';
import {
  buildAnnounceRequest,
  buildMapRequest as buildPcpMap,
  PcpResultCode,
  parsePcpReply,
} from '../broker/upstream/pcp/pcp-codec.js';
import { portCandidates } from '../broker/upstream/upstream-mapper.js';

const hex = (text: string): Uint8Array =>
  Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

describe('NAT-PMP codec', () => {
  it('builds the external address request', () => {
    expect(buildExternalAddressRequest()).toEqual(hex('00 00'));
  });

  it('builds a TCP map request', () => {
    const bytes = buildNatPmpMap({
      protocol: 'tcp',
      internalPort: 8080,
      suggestedExternalPort: 18080,
      lifetimeSeconds: 7200,
    });
    // version 0, opcode 2 (TCP), reserved, internal 8080, external 18080, lifetime 7200
    expect(bytes).toEqual(hex('00 02 0000 1f90 46a0 00001c20'));
  });

  it('builds a UDP delete request', () => {
    const bytes = buildNatPmpMap({
      protocol: 'udp',
      internalPort: 5000,
      suggestedExternalPort: 0,
      lifetimeSeconds: 0,
    });
    expect(bytes).toEqual(hex('00 01 0000 1388 0000 00000000'));
  });

  it('rejects out-of-range request fields', () => {
    expect(() =>
      buildNatPmpMap({
        protocol: 'tcp',
        internalPort: 0,
        suggestedExternalPort: 1,
        lifetimeSeconds: 1,
      }),
    ).toThrow(/internal port 0/);
    expect(() =>
      buildNatPmpMap({
        protocol: 'tcp',
        internalPort: 1,
        suggestedExternalPort: 70000,
        lifetimeSeconds: 1,
      }),
    ).toThrow(/70000/);
    expect(() =>
      buildNatPmpMap({
        protocol: 'tcp',
        internalPort: 1,
        suggestedExternalPort: 1,
        lifetimeSeconds: -1,
      }),
    ).toThrow(/lifetime/);
  });

  it('parses an external address reply', () => {
    // version 0, opcode 128, result 0, epoch 981, address 203.0.113.1
    const reply = parseExternalAddressReply(hex('00 80 0000 000003d5 cb007101'));
    expect(reply).toEqual({
      ok: true,
      value: { resultCode: 0, epochSeconds: 981, externalAddress: '203.0.113.1' },
    });
  });

  it('parses a TCP map reply', () => {
    // version 0, opcode 130, result 0, epoch 10, internal 8080, external 18080, lifetime 3600
    const reply = parseMapReply(hex('00 82 0000 0000000a 1f90 46a0 00000e10'), 'tcp');
    expect(reply.ok && reply.value).toEqual({
      protocol: 'tcp',
      resultCode: 0,
      epochSeconds: 10,
      internalPort: 8080,
      externalPort: 18080,
      lifetimeSeconds: 3600,
    });
  });

  it('parses a short error reply', () => {
    // RFC 6886 section 3.5: version 0, opcode 129, result 2 (not authorized), epoch 5
    const reply = parseMapReply(hex('00 81 0002 00000005'), 'udp');
    expect(reply.ok && reply.value.resultCode).toBe(NatPmpResultCode.NotAuthorized);
    expect(reply.ok && reply.value.externalPort).toBeNull();
  });

  it('rejects hostile replies', () => {
    const cases: Array<[string, Uint8Array]> = [
      ['empty', hex('')],
      ['truncated success', hex('00 82 0000 0000000a 1f90 46a0 0000')],
      ['padded success', hex('00 82 0000 0000000a 1f90 46a0 00000e10 00')],
      ['wrong opcode', hex('00 81 0000 0000000a 1f90 46a0 00000e10')],
      ['request echoed back', hex('00 02 0000 1f90 46a0 00001c20 00000000')],
      ['PCP version', hex('02 82 0000 0000000a 1f90 46a0 00000e10')],
      ['error too long', hex('00 82 0003 0000000a 1f90 46a0 00000e10 0000')],
    ];
    for (const [name, bytes] of cases) {
      expect(parseMapReply(bytes, 'tcp').ok, name).toBe(false);
    }
    expect(parseExternalAddressReply(hex('00 80 0000 000003d5 cb0071')).ok).toBe(false);
  });

  it('parsers are total on random bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 40 }),
        fc.constantFrom('tcp' as const, 'udp' as const),
        (bytes, protocol) => {
          const map = parseMapReply(bytes, protocol);
          const address = parseExternalAddressReply(bytes);
          if (map.ok) expect([8, 9, 10, 11, 12, 13, 14, 15, 16]).toContain(bytes.length);
          if (address.ok && address.value.resultCode === 0) expect(bytes.length).toBe(12);
        },
      ),
    );
  });

  it('map reply round-trips random fields', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.nat(),
        fc.nat(),
        (inPort, exPort, life, epoch) => {
          const bytes = new Uint8Array(16);
          const view = new DataView(bytes.buffer);
          view.setUint8(1, 129);
          view.setUint32(4, epoch);
          view.setUint16(8, inPort);
          view.setUint16(10, exPort);
          view.setUint32(12, life);
          const reply = parseMapReply(bytes, 'udp');
          expect(
            reply.ok && [
              reply.value.internalPort,
              reply.value.externalPort,
              reply.value.lifetimeSeconds,
              reply.value.epochSeconds,
            ],
          ).toEqual([inPort, exPort, life, epoch]);
        },
      ),
    );
  });
});

const NONCE = hex('0102030405060708090a0b0c');

/** A MAP response as miniupnpd 2.3.1 sends it: header, then the 36 MAP bytes. */
function pcpMapResponse(fields: {
  result?: number;
  lifetime?: number;
  epoch?: number;
  protocol?: number;
  port?: number;
  nonce?: Uint8Array;
}): Uint8Array {
  const bytes = new Uint8Array(60);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, 2);
  view.setUint8(1, 0x81);
  view.setUint8(3, fields.result ?? 0);
  view.setUint32(4, fields.lifetime ?? 600);
  view.setUint32(8, fields.epoch ?? 42);
  bytes.set(fields.nonce ?? NONCE, 24);
  view.setUint8(36, fields.protocol ?? 6);
  view.setUint16(40, 8080);
  view.setUint16(42, fields.port ?? 18080);
  bytes.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 1], 44);
  return bytes;
}

describe('PCP codec', () => {
  it('builds an ANNOUNCE request', () => {
    // version 2, opcode 0, reserved, lifetime 0, client ::ffff:192.168.77.10
    expect(buildAnnounceRequest('192.168.77.10')).toEqual(
      hex('02 00 0000 00000000 00000000000000000000ffff c0a84d0a'),
    );
  });

  it('builds a MAP request', () => {
    const bytes = buildPcpMap({
      clientAddress: '192.168.77.10',
      nonce: NONCE,
      protocol: 'udp',
      internalPort: 8080,
      suggestedExternalPort: 18080,
      suggestedExternalAddress: '0.0.0.0',
      lifetimeSeconds: 600,
    });
    expect(bytes).toEqual(
      hex(
        '02 01 0000 00000258 00000000000000000000ffff c0a84d0a' + // header: MAP, lifetime 600, client
          '0102030405060708090a0b0c' + // nonce
          '11 000000 1f90 46a0' + // UDP (17), reserved, internal 8080, external 18080
          '00000000000000000000ffff 00000000', // suggested ::ffff:0.0.0.0
      ),
    );
  });

  it('rejects bad request fields', () => {
    const base = {
      clientAddress: '192.168.77.10',
      nonce: NONCE,
      protocol: 'tcp' as const,
      internalPort: 1,
      suggestedExternalPort: 0,
      suggestedExternalAddress: '0.0.0.0',
      lifetimeSeconds: 1,
    };
    expect(() => buildPcpMap({ ...base, nonce: new Uint8Array(11) })).toThrow(/nonce of 11 bytes/);
    expect(() => buildPcpMap({ ...base, clientAddress: 'fe80::1' })).toThrow(/fe80::1/);
    expect(() => buildPcpMap({ ...base, internalPort: 65536 })).toThrow(/65536/);
  });

  it('parses a MAP success response', () => {
    const reply = parsePcpReply(pcpMapResponse({}));
    expect(reply.ok && reply.value.kind).toBe('map');
    if (!reply.ok || reply.value.kind !== 'map') return;
    expect(reply.value.header).toEqual({
      opcode: 1,
      resultCode: 0,
      lifetimeSeconds: 600,
      epochSeconds: 42,
    });
    expect(reply.value.map?.externalAddress).toBe('203.0.113.1');
    expect(reply.value.map?.externalPort).toBe(18080);
    expect(reply.value.map?.protocol).toBe('tcp');
    expect(reply.value.map?.nonce).toEqual(NONCE);
  });

  it('parses a header-only error response', () => {
    const bytes = pcpMapResponse({ result: PcpResultCode.NotAuthorized }).slice(0, 24);
    const reply = parsePcpReply(bytes);
    expect(reply.ok && reply.value.kind === 'map' && reply.value.map).toBeNull();
    expect(reply.ok && reply.value.kind === 'map' && reply.value.header.resultCode).toBe(
      PcpResultCode.NotAuthorized,
    );
  });

  it('recognises a NAT-PMP-only server', () => {
    // version 0, opcode 129, result 1 (unsupported version), epoch 7
    expect(parsePcpReply(hex('00 81 0001 00000007'))).toEqual({
      ok: true,
      value: { kind: 'natpmp-only' },
    });
  });

  it('accepts well-formed options', () => {
    // option code 0x80, length 4, 4 data bytes
    const bytes = new Uint8Array([...pcpMapResponse({}), 0x80, 0, 0, 4, 1, 2, 3, 4]);
    expect(parsePcpReply(bytes).ok).toBe(true);
  });

  it('rejects hostile responses', () => {
    const good = pcpMapResponse({});
    const cases: Array<[string, Uint8Array]> = [
      ['truncated header', good.slice(0, 20)],
      ['truncated MAP data', good.slice(0, 56)],
      ['not a multiple of 4', new Uint8Array([...good, 0])],
      ['R bit clear', Uint8Array.from(good, (byte, index) => (index === 1 ? 0x01 : byte))],
      ['version 1', Uint8Array.from(good, (byte, index) => (index === 0 ? 1 : byte))],
      ['PEER opcode', Uint8Array.from(good, (byte, index) => (index === 1 ? 0x82 : byte))],
      ['unknown protocol', pcpMapResponse({ protocol: 132 })],
      ['option overruns', new Uint8Array([...good, 0x80, 0, 0, 8, 1, 2, 3, 4])],
      ['success without data', good.slice(0, 24)],
      ['oversized', new Uint8Array(1104)],
      ['NAT-PMP success reply', hex('00 81 0000 0000000a 1f90 46a0 00000e10')],
    ];
    for (const [name, bytes] of cases) {
      expect(parsePcpReply(bytes).ok, name).toBe(false);
    }
  });

  it('parser is total on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const reply = parsePcpReply(bytes);
        if (reply.ok && reply.value.kind !== 'natpmp-only') {
          expect(bytes.length % 4).toBe(0);
          expect(bytes.length).toBeGreaterThanOrEqual(24);
        }
      }),
    );
  });

  it('parser is total on mutated MAP responses', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 59 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 64 }),
        (index, value, cut) => {
          const bytes = pcpMapResponse({});
          bytes[index] = value;
          parsePcpReply(bytes.slice(0, 60 - cut));
        },
      ),
    );
  });
});

describe('epoch tracker', () => {
  it('accepts an epoch that keeps pace', () => {
    const tracker = new EpochTracker();
    expect(tracker.observe(100, 0)).toBe('first');
    expect(tracker.observe(160, 60_000)).toBe('continuous');
  });

  it('detects an epoch going backwards', () => {
    const tracker = new EpochTracker();
    tracker.observe(1000, 0);
    expect(tracker.observe(5, 1000)).toBe('state-lost');
  });

  it('detects an epoch that fell behind the client clock', () => {
    const tracker = new EpochTracker();
    tracker.observe(1000, 0);
    // 100 s passed on the client but only 10 s on the server: it restarted.
    expect(tracker.observe(1010, 100_000)).toBe('state-lost');
  });

  it('tolerates rounding and drift', () => {
    const tracker = new EpochTracker();
    tracker.observe(1000, 0);
    expect(tracker.observe(1057, 60_000)).toBe('continuous');
  });
});

describe('external port candidates', () => {
  it('uses the hint first', () => {
    expect(
      portCandidates({
        protocol: 'tcp',
        internalPort: 80,
        externalPortHint: 8080,
        lifetimeSeconds: 60,
      })[0],
    ).toBe(8080);
  });

  it('never requests 0 or well-known ports by default', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.option(fc.integer({ min: 0, max: 65535 })),
        (internalPort, hint) => {
          const candidates = portCandidates({
            protocol: 'udp',
            internalPort,
            externalPortHint: hint,
            lifetimeSeconds: 60,
          });
          expect(candidates.length).toBe(5);
          for (const port of candidates) expect(port).toBeGreaterThanOrEqual(1024);
        },
      ),
    );
  });

  it('allows a well-known port when asked', () => {
    const candidates = portCandidates({
      protocol: 'tcp',
      internalPort: 443,
      externalPortHint: 443,
      lifetimeSeconds: 60,
      allowWellKnownPort: true,
    });
    expect(candidates[0]).toBe(443);
  });
});
