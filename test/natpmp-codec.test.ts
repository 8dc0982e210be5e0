import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildNatPmpExternalAddressResponse,
  buildNatPmpMappingResponse,
  buildNatPmpUnsupportedOpcodeResponse,
  buildNatPmpUnsupportedVersionResponse,
  NatPmpResultCode,
  parseNatPmpRequest,
} from '../broker/natpmp/natpmp-codec.js';

describe('parseNatPmpRequest', () => {
  it('parses external address request', () => {
    // RFC 6886 §3.2: Vers = 0, OP = 0.
    const result = parseNatPmpRequest(Uint8Array.from([0x00, 0x00]));
    expect(result).toEqual({ ok: true, request: { kind: 'external-address' } });
  });

  it('parses TCP mapping request', () => {
    const bytes = Uint8Array.from([
      0x00, // Vers = 0
      0x02, // OP = 2 (TCP)
      0x00,
      0x00, // Reserved
      0x04,
      0xd2, // Internal Port = 1234
      0x16,
      0x2e, // Suggested External Port = 5678
      0x00,
      0x00,
      0x0e,
      0x10, // Requested Lifetime = 3600 s
    ]);
    const result = parseNatPmpRequest(bytes);
    expect(result).toEqual({
      ok: true,
      request: {
        kind: 'mapping',
        protocol: 'tcp',
        internalPort: 1234,
        suggestedExternalPort: 5678,
        requestedLifetimeSeconds: 3600,
      },
    });
  });

  it('parses UDP deletion with full lifetime range', () => {
    const bytes = Uint8Array.from([0, 1, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    const result = parseNatPmpRequest(bytes);
    expect(result.ok).toBe(true);
    if (result.ok && result.request.kind === 'mapping') {
      expect(result.request.protocol).toBe('udp');
      expect(result.request.internalPort).toBe(0);
      expect(result.request.requestedLifetimeSeconds).toBe(0xffff_ffff);
    }
  });

  it('drops datagrams shorter than 2 bytes', () => {
    for (const bytes of [new Uint8Array(0), Uint8Array.from([0])]) {
      const result = parseNatPmpRequest(bytes);
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.error.kind).toBe('drop');
      }
    }
  });

  it('drops responses', () => {
    const result = parseNatPmpRequest(Uint8Array.from([0, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
    expect(result).toMatchObject({ ok: false, error: { kind: 'drop', reason: 'is-response' } });
  });

  it('drops wrong lengths for supported opcodes', () => {
    const cases = [
      Uint8Array.from([0, 0, 0]),
      new Uint8Array(11).fill(0).map((_, index) => (index === 1 ? 1 : 0)),
      new Uint8Array(13).fill(0).map((_, index) => (index === 1 ? 2 : 0)),
    ];
    for (const bytes of cases) {
      const result = parseNatPmpRequest(bytes);
      expect(result).toMatchObject({ ok: false, error: { kind: 'drop', reason: 'wrong-length' } });
    }
  });

  it('reports unsupported version', () => {
    const result = parseNatPmpRequest(Uint8Array.from([1, 0]));
    expect(result).toMatchObject({
      ok: false,
      error: { kind: 'unsupported-version', version: 1, opcode: 0 },
    });
  });

  it('reports unsupported opcode', () => {
    const result = parseNatPmpRequest(Uint8Array.from([0, 3, 0, 0]));
    expect(result).toMatchObject({ ok: false, error: { kind: 'unsupported-opcode', opcode: 3 } });
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const result = parseNatPmpRequest(bytes);
        expect(typeof result.ok).toBe('boolean');
        if (result.ok && result.request.kind === 'mapping') {
          expect(bytes.length).toBe(12);
          expect(result.request.internalPort).toBeLessThanOrEqual(0xffff);
          expect(result.request.requestedLifetimeSeconds).toBeLessThanOrEqual(0xffff_ffff);
        }
        if (result.ok && result.request.kind === 'external-address') {
          expect(bytes.length).toBe(2);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips mapping fields', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (opcode, internalPort, externalPort, lifetimeSeconds) => {
          const bytes = new Uint8Array(12);
          const view = new DataView(bytes.buffer);
          bytes[1] = opcode;
          view.setUint16(4, internalPort);
          view.setUint16(6, externalPort);
          view.setUint32(8, lifetimeSeconds);
          const result = parseNatPmpRequest(bytes);
          expect(result).toEqual({
            ok: true,
            request: {
              kind: 'mapping',
              protocol: opcode === 1 ? 'udp' : 'tcp',
              internalPort,
              suggestedExternalPort: externalPort,
              requestedLifetimeSeconds: lifetimeSeconds,
            },
          });
        },
      ),
    );
  });
});

describe('NAT-PMP response builders', () => {
  it('builds external address response', () => {
    const bytes = buildNatPmpExternalAddressResponse({
      resultCode: NatPmpResultCode.success,
      epochSeconds: 0x01020304,
      externalAddressBytes: Uint8Array.from([203, 0, 113, 7]),
    });
    expect(Array.from(bytes)).toEqual([
      0x00,
      0x80, // Vers, OP = 128
      0x00,
      0x00, // Result Code = success
      0x01,
      0x02,
      0x03,
      0x04, // epoch
      203,
      0,
      113,
      7, // External IPv4 Address
    ]);
  });

  it('zeroes the address on error', () => {
    const bytes = buildNatPmpExternalAddressResponse({
      resultCode: NatPmpResultCode.networkFailure,
      epochSeconds: 5,
      externalAddressBytes: Uint8Array.from([1, 2, 3, 4]),
    });
    expect(Array.from(bytes.subarray(8))).toEqual([0, 0, 0, 0]);
    expect(bytes[3]).toBe(3);
  });

  it('builds mapping response', () => {
    const bytes = buildNatPmpMappingResponse({
      protocol: 'udp',
      resultCode: NatPmpResultCode.success,
      epochSeconds: 7,
      internalPort: 1234,
      externalPort: 40000,
      lifetimeSeconds: 7200,
    });
    expect(Array.from(bytes)).toEqual([
      0x00,
      0x81, // Vers, OP = 128 + 1
      0x00,
      0x00, // success
      0x00,
      0x00,
      0x00,
      0x07, // epoch
      0x04,
      0xd2, // internal port 1234
      0x9c,
      0x40, // mapped external port 40000
      0x00,
      0x00,
      0x1c,
      0x20, // lifetime 7200
    ]);
  });

  it('builds unsupported version response', () => {
    const bytes = buildNatPmpUnsupportedVersionResponse(1, 9);
    expect(Array.from(bytes)).toEqual([0, 0x81, 0, 1, 0, 0, 0, 9]);
  });

  it('echoes request for unsupported opcode', () => {
    const request = Uint8Array.from([0, 9, 0, 0, 0xaa, 0xbb]);
    expect(Array.from(buildNatPmpUnsupportedOpcodeResponse(request))).toEqual([
      0, 0x89, 0, 5, 0xaa, 0xbb,
    ]);
    expect(Array.from(buildNatPmpUnsupportedOpcodeResponse(Uint8Array.from([0, 9])))).toEqual([
      0, 0x89, 0, 5,
    ]);
    expect(buildNatPmpUnsupportedOpcodeResponse(new Uint8Array(5000)).length).toBe(1100);
  });
});
