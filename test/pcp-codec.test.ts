import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildPcpAnnounceResponse,
  buildPcpErrorResponse,
  buildPcpMapResponse,
  parsePcpRequest,
} from '../broker/pcp/pcp-codec.js';
import { errorLifetimeSeconds, PcpResultCode } from '../broker/pcp/pcp-constants.js';
import { parsePcpOptions } from '../broker/pcp/pcp-options.js';

const CLIENT = '10.200.0.2';
const CLIENT_MAPPED = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 200, 0, 2];
const NONCE = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/** RFC 6887 §7.1 header followed by §11.1 MAP data, as a client builds it. */
function mapRequest(
  fields: { lifetime?: number; protocol?: number; internalPort?: number; options?: number[] } = {},
): Uint8Array {
  const bytes = [
    0x02, // Version = 2
    0x01, // R = 0, Opcode = MAP
    0x00,
    0x00, // Reserved
    ...u32(fields.lifetime ?? 3600), // Requested Lifetime
    ...CLIENT_MAPPED, // PCP Client's IP Address
    ...NONCE, // Mapping Nonce
    fields.protocol ?? 6, // Protocol = TCP
    0,
    0,
    0, // Reserved
    ...u16(fields.internalPort ?? 8080), // Internal Port
    ...u16(8080), // Suggested External Port
    ...new Array(16).fill(0), // Suggested External IP Address: none
    ...(fields.options ?? []),
  ];
  return Uint8Array.from(bytes);
}

function u16(value: number): number[] {
  return [(value >>> 8) & 0xff, value & 0xff];
}

function u32(value: number): number[] {
  return [...u16(Math.floor(value / 0x10000)), ...u16(value & 0xffff)];
}

function expectError(bytes: Uint8Array, resultCode: number, source = CLIENT): void {
  const result = parsePcpRequest(bytes, source);
  expect(result.ok).toBe(false);
  if (!result.ok) {
    expect(result.error).toMatchObject({ kind: 'error-response', resultCode });
  }
}

function expectDrop(bytes: Uint8Array): void {
  const result = parsePcpRequest(bytes, CLIENT);
  expect(result).toMatchObject({ ok: false, error: { kind: 'drop' } });
}

describe('parsePcpRequest', () => {
  it('parses MAP request', () => {
    const result = parsePcpRequest(mapRequest(), CLIENT);
    expect(result.ok).toBe(true);
    if (result.ok && result.request.opcode === 1) {
      expect(result.request.requestedLifetimeSeconds).toBe(3600);
      expect(Array.from(result.request.map.nonce)).toEqual(NONCE);
      expect(result.request.map.protocolNumber).toBe(6);
      expect(result.request.map.internalPort).toBe(8080);
      expect(result.request.map.suggestedExternalPort).toBe(8080);
      expect(result.request.options.preferFailure).toBe(false);
    }
  });

  it('parses ANNOUNCE request', () => {
    const bytes = Uint8Array.from([2, 0, 0, 0, 0, 0, 0, 0, ...CLIENT_MAPPED]);
    expect(parsePcpRequest(bytes, CLIENT)).toMatchObject({ ok: true, request: { opcode: 0 } });
  });

  it('drops short and response datagrams', () => {
    expectDrop(new Uint8Array(0));
    expectDrop(Uint8Array.from([2]));
    expectDrop(Uint8Array.from([2, 0x81, 0, 0]));
    expectDrop(mapRequest().subarray(0, 20));
  });

  it('answers unsupported versions', () => {
    for (const version of [1, 3, 255]) {
      const bytes = mapRequest();
      bytes[0] = version;
      expectError(bytes, PcpResultCode.unsupportedVersion);
      expectError(bytes.subarray(0, 2), PcpResultCode.unsupportedVersion);
    }
  });

  it('rejects bad lengths as malformed', () => {
    expectError(Uint8Array.from([...mapRequest(), 0, 0]), PcpResultCode.malformedRequest);
    expectError(
      new Uint8Array(1104).fill(0).map((_, index) => [2, 1][index] ?? 0),
      PcpResultCode.malformedRequest,
    );
    expectError(mapRequest().subarray(0, 40), PcpResultCode.malformedRequest);
  });

  it('reports address mismatch', () => {
    expectError(mapRequest(), PcpResultCode.addressMismatch, '10.200.0.3');
  });

  it('rejects PEER and unknown opcodes', () => {
    for (const opcode of [2, 3, 0x7f]) {
      const bytes = mapRequest();
      bytes[1] = opcode;
      expectError(bytes, PcpResultCode.unsupportedOpcode);
    }
  });

  it('rejects protocol 0 with a port', () => {
    expectError(mapRequest({ protocol: 0, internalPort: 80 }), PcpResultCode.malformedRequest);
  });

  it('parses PREFER_FAILURE and FILTER', () => {
    const options = [
      2,
      0,
      0,
      0, // PREFER_FAILURE, length 0
      3,
      0,
      0,
      20,
      0,
      0,
      0,
      0,
      ...new Array(16).fill(0), // FILTER prefix 0
      200,
      0,
      0,
      1,
      0xee,
      0,
      0,
      0, // optional unknown option 200, 1 byte + padding
    ];
    const result = parsePcpRequest(mapRequest({ options }), CLIENT);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.request.options.preferFailure).toBe(true);
      expect(result.request.options.filters).toHaveLength(1);
      expect(result.request.options.known).toHaveLength(2);
    }
  });

  it('rejects bad options', () => {
    expectError(mapRequest({ options: [99, 0, 0, 0] }), PcpResultCode.unsupportedOption);
    expectError(mapRequest({ options: [2, 0, 0, 0, 2, 0, 0, 0] }), PcpResultCode.malformedOption);
    expectError(mapRequest({ options: [2, 0, 0, 4, 0, 0, 0, 0] }), PcpResultCode.malformedOption);
    expectError(mapRequest({ options: [1, 0, 0, 16] }), PcpResultCode.malformedOption);
    const badFilter = [3, 0, 0, 20, 0, 40, 0, 0, ...CLIENT_MAPPED];
    expectError(mapRequest({ options: badFilter }), PcpResultCode.malformedOption);
  });

  it('rejects MAP options in ANNOUNCE', () => {
    const bytes = Uint8Array.from([2, 0, 0, 0, 0, 0, 0, 0, ...CLIENT_MAPPED, 2, 0, 0, 0]);
    expectError(bytes, PcpResultCode.unsupportedOption);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        const result = parsePcpRequest(bytes, CLIENT);
        expect(typeof result.ok).toBe('boolean');
        if (!result.ok && result.error.kind === 'error-response') {
          const reply = buildPcpErrorResponse(bytes, {
            resultCode: result.error.resultCode,
            lifetimeSeconds: errorLifetimeSeconds(result.error.resultCode),
            epochSeconds: 1,
          });
          expect(reply.length % 4).toBe(0);
          expect(reply.length).toBeGreaterThanOrEqual(24);
          expect(reply.length).toBeLessThanOrEqual(1100);
          expect(reply[1] ?? 0).toBeGreaterThanOrEqual(0x80);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated valid requests', () => {
    const base = mapRequest({ options: [2, 0, 0, 0] });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          maxLength: 6,
        }),
        (mutations) => {
          const bytes = Uint8Array.from(base);
          for (const [index, value] of mutations) {
            bytes[index] = value;
          }
          const result = parsePcpRequest(bytes, CLIENT);
          expect(typeof result.ok).toBe('boolean');
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('option parser never throws', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: 0, max: 127 }),
        (bytes, opcode) => {
          const result = parsePcpOptions(bytes, opcode);
          expect(typeof result.ok).toBe('boolean');
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('PCP response builders', () => {
  it('builds error response from request', () => {
    const request = mapRequest();
    const reply = buildPcpErrorResponse(request, {
      resultCode: 2,
      lifetimeSeconds: 1800,
      epochSeconds: 10,
    });
    expect(reply.length).toBe(60);
    expect(Array.from(reply.subarray(0, 24))).toEqual([
      2,
      0x81,
      0,
      2, // version, R|MAP, reserved, NOT_AUTHORIZED
      ...u32(1800), // lifetime
      ...u32(10), // epoch
      ...new Array(12).fill(0), // reserved
    ]);
    expect(Array.from(reply.subarray(24))).toEqual(Array.from(request.subarray(24)));
  });

  it('answers version negotiation with version 2', () => {
    const reply = buildPcpErrorResponse(Uint8Array.from([1, 1]), {
      resultCode: PcpResultCode.unsupportedVersion,
      lifetimeSeconds: 1800,
      epochSeconds: 0,
    });
    expect(reply.length).toBe(24);
    expect(reply[0]).toBe(2);
    expect(reply[1]).toBe(0x81);
    expect(reply[3]).toBe(1);
  });

  it('builds ANNOUNCE response', () => {
    expect(Array.from(buildPcpAnnounceResponse(3))).toEqual([
      2,
      0x80,
      0,
      0,
      0,
      0,
      0,
      0,
      ...u32(3),
      ...new Array(12).fill(0),
    ]);
  });

  it('builds MAP response', () => {
    const reply = buildPcpMapResponse({
      resultCode: 0,
      lifetimeSeconds: 7200,
      epochSeconds: 4,
      nonce: Uint8Array.from(NONCE),
      protocolNumber: 17,
      internalPort: 5000,
      assignedExternalPort: 6000,
      assignedExternalAddressBytes: Uint8Array.from([
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7,
      ]),
      options: [Uint8Array.from([2, 0, 0, 0])],
    });
    expect(Array.from(reply)).toEqual([
      2,
      0x81,
      0,
      0,
      ...u32(7200),
      ...u32(4),
      ...new Array(12).fill(0),
      ...NONCE,
      17,
      0,
      0,
      0,
      ...u16(5000),
      ...u16(6000),
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0xff,
      0xff,
      203,
      0,
      113,
      7,
      2,
      0,
      0,
      0,
    ]);
  });

  it('classifies error lifetimes', () => {
    expect(errorLifetimeSeconds(PcpResultCode.noResources)).toBe(30);
    expect(errorLifetimeSeconds(PcpResultCode.cannotProvideExternal)).toBe(30);
    expect(errorLifetimeSeconds(PcpResultCode.notAuthorized)).toBe(1800);
    expect(errorLifetimeSeconds(PcpResultCode.addressMismatch)).toBe(1800);
  });
});
