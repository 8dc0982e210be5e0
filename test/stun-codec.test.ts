import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeAddressAttribute,
  decodeChangeRequest,
  decodeErrorCode,
  decodeUnknownAttributes,
  encodeAddressAttribute,
  encodeChangeRequest,
  encodeErrorCode,
  encodeUnknownAttributes,
} from '../broker/stun/stun-attributes.js';
import {
  buildBindingRequest,
  buildBindingSuccessResponse,
  buildStunErrorResponse,
  buildStunMessage,
} from '../broker/stun/stun-builder.js';
import {
  decodeMessageType,
  encodeMessageType,
  findAttribute,
  fingerprintOf,
  parseStunMessage,
  type StunMessage,
} from '../broker/stun/stun-codec.js';
import {
  STUN_MAGIC_COOKIE,
  StunAttributeType,
  StunClass,
  StunErrorCode,
  StunMethod,
} from '../broker/stun/stun-constants.js';

/** Turns annotated hex lines ("00 01  -- type") into bytes; text after "--" is a comment. */
function hex(...lines: string[]): Uint8Array {
  const digits = lines.map((line) => line.split('--')[0] ?? '').join(' ');
  const pairs = digits.split(/\s+/).filter((pair) => pair !== '');
  return Uint8Array.from(pairs.map((pair) => Number.parseInt(pair, 16)));
}

function ascii(text: string): string {
  return Array.from(new TextEncoder().encode(text), (byte) =>
    byte.toString(16).padStart(2, '0'),
  ).join(' ');
}

function parsedMessage(bytes: Uint8Array): StunMessage {
  const result = parseStunMessage(bytes);
  if (!result.ok) {
    throw new Error(`expected a STUN message: ${result.error.message}`);
  }
  return result.message;
}

const RFC5769_TRANSACTION_ID = hex('b7 e7 a7 01 bc 34 d6 86 fa 87 df ae');

/** RFC 5769 §2.1 sample request (short-term credentials, FINGERPRINT). */
const RFC5769_REQUEST = hex(
  '00 01 00 58                       -- Binding request, length 88',
  '21 12 a4 42                       -- magic cookie',
  'b7 e7 a7 01 bc 34 d6 86 fa 87 df ae -- transaction ID',
  '80 22 00 10                       -- SOFTWARE, length 16',
  ascii('STUN test client'),
  '00 24 00 04                       -- PRIORITY, length 4',
  '6e 00 01 ff',
  '80 29 00 08                       -- ICE-CONTROLLED, length 8',
  '93 2f f9 b1 51 26 3b 36',
  '00 06 00 09                       -- USERNAME, length 9',
  `${ascii('evtj:h6vY')} 20 20 20    -- "evtj:h6vY" plus 3 bytes of padding (spaces)`,
  '00 08 00 14                       -- MESSAGE-INTEGRITY, length 20',
  '9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2',
  '80 28 00 04                       -- FINGERPRINT, length 4',
  'e5 7a 3b cf',
);

/** RFC 5769 §2.2 sample IPv4 response: 192.0.2.1:32853. */
const RFC5769_IPV4_RESPONSE = hex(
  '01 01 00 3c                       -- Binding success response, length 60',
  '21 12 a4 42                       -- magic cookie',
  'b7 e7 a7 01 bc 34 d6 86 fa 87 df ae -- transaction ID',
  '80 22 00 0b                       -- SOFTWARE, length 11',
  `${ascii('test vector')} 20        -- "test vector" plus 1 byte of padding (space)`,
  '00 20 00 08                       -- XOR-MAPPED-ADDRESS, length 8',
  '00 01 a1 47 e1 12 a6 43           -- IPv4, port 32853 ^ 0x2112, 192.0.2.1 ^ cookie',
  '00 08 00 14                       -- MESSAGE-INTEGRITY, length 20',
  '2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7',
  '80 28 00 04                       -- FINGERPRINT, length 4',
  'c0 7d 4c 96',
);

/** RFC 5769 §2.3 sample IPv6 response: [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
const RFC5769_IPV6_RESPONSE = hex(
  '01 01 00 48                       -- Binding success response, length 72',
  '21 12 a4 42                       -- magic cookie',
  'b7 e7 a7 01 bc 34 d6 86 fa 87 df ae -- transaction ID',
  '80 22 00 0b                       -- SOFTWARE, length 11',
  `${ascii('test vector')} 20`,
  '00 20 00 14                       -- XOR-MAPPED-ADDRESS, length 20',
  '00 02 a1 47                       -- IPv6, port 32853 ^ 0x2112',
  '01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9 -- address ^ cookie and transaction ID',
  '00 08 00 14                       -- MESSAGE-INTEGRITY, length 20',
  'a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41',
  '80 28 00 04                       -- FINGERPRINT, length 4',
  'c8 fb 0b 4c',
);

describe('STUN message type', () => {
  it('encodes Binding classes', () => {
    expect(encodeMessageType(StunMethod.binding, StunClass.request)).toBe(0x0001);
    expect(encodeMessageType(StunMethod.binding, StunClass.indication)).toBe(0x0011);
    expect(encodeMessageType(StunMethod.binding, StunClass.successResponse)).toBe(0x0101);
    expect(encodeMessageType(StunMethod.binding, StunClass.errorResponse)).toBe(0x0111);
  });

  it('round-trips every method and class', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xfff }),
        fc.constantFrom(...Object.values(StunClass)),
        (method, messageClass) => {
          const type = encodeMessageType(method, messageClass);
          expect(type & 0xc000).toBe(0);
          expect(decodeMessageType(type)).toEqual({ method, messageClass });
        },
      ),
    );
  });
});

describe('parseStunMessage with RFC 5769 vectors', () => {
  it('parses sample request', () => {
    const message = parsedMessage(RFC5769_REQUEST);
    expect(message.method).toBe(StunMethod.binding);
    expect(message.messageClass).toBe(StunClass.request);
    expect(message.isRfc3489).toBe(false);
    expect(message.transactionId).toEqual(RFC5769_TRANSACTION_ID);
    expect(message.fingerprint).toBe('valid');
    expect(message.attributes.map((attribute) => attribute.type)).toEqual([
      0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028,
    ]);
    const username = findAttribute(message, StunAttributeType.username);
    expect(new TextDecoder().decode(username?.value)).toBe('evtj:h6vY');
  });

  it('decodes IPv4 XOR-MAPPED-ADDRESS', () => {
    const message = parsedMessage(RFC5769_IPV4_RESPONSE);
    expect(message.messageClass).toBe(StunClass.successResponse);
    expect(message.fingerprint).toBe('valid');
    const attribute = findAttribute(message, StunAttributeType.xorMappedAddress);
    expect(attribute).toBeDefined();
    const decoded = decodeAddressAttribute(
      attribute?.value ?? new Uint8Array(),
      message.transactionId,
    );
    expect(decoded).toEqual({
      ok: true,
      value: { family: 'ipv4', address: '192.0.2.1', port: 32853 },
    });
  });

  it('decodes IPv6 XOR-MAPPED-ADDRESS', () => {
    const message = parsedMessage(RFC5769_IPV6_RESPONSE);
    const attribute = findAttribute(message, StunAttributeType.xorMappedAddress);
    const decoded = decodeAddressAttribute(
      attribute?.value ?? new Uint8Array(),
      message.transactionId,
    );
    expect(decoded).toEqual({
      ok: true,
      value: { family: 'ipv6', address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 },
    });
  });

  it('encodes the RFC 5769 XOR-MAPPED-ADDRESS bytes', () => {
    expect(encodeAddressAttribute('192.0.2.1', 32853, RFC5769_TRANSACTION_ID)).toEqual(
      hex('00 01 a1 47 e1 12 a6 43'),
    );
    expect(
      encodeAddressAttribute('2001:db8:1234:5678:11:2233:4455:6677', 32853, RFC5769_TRANSACTION_ID),
    ).toEqual(hex('00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9'));
  });

  it('drops vector with corrupted byte', () => {
    // RFC 5769 negative test as in coturn's rfc5769check: byte 27 changed.
    const corrupted = RFC5769_REQUEST.slice();
    corrupted[27] = 23;
    const result = parseStunMessage(corrupted);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('drop');
    expect(!result.ok && result.error.kind === 'drop' && result.error.reason).toBe(
      'fingerprint-mismatch',
    );
  });
});

describe('STUN builders', () => {
  const transactionId = hex('01 02 03 04 05 06 07 08 09 0a 0b 0c');

  it('builds success response with FINGERPRINT', () => {
    const request = parsedMessage(buildBindingRequest(transactionId));
    const response = buildBindingSuccessResponse(request, '203.0.113.9', 45678, 'test-server');
    expect(response).not.toBeNull();
    const message = parsedMessage(response ?? new Uint8Array());
    expect(message.messageClass).toBe(StunClass.successResponse);
    expect(message.transactionId).toEqual(transactionId);
    expect(message.fingerprint).toBe('valid');
    expect(message.attributes.map((attribute) => attribute.type)).toEqual([
      StunAttributeType.xorMappedAddress,
      StunAttributeType.software,
      StunAttributeType.fingerprint,
    ]);
    const mapped = findAttribute(message, StunAttributeType.xorMappedAddress);
    expect(decodeAddressAttribute(mapped?.value ?? new Uint8Array(), transactionId)).toEqual({
      ok: true,
      value: { family: 'ipv4', address: '203.0.113.9', port: 45678 },
    });
  });

  it('answers RFC 3489 client with MAPPED-ADDRESS', () => {
    const request = parsedMessage(buildBindingRequest(transactionId, { magicCookie: 0xdeadbeef }));
    expect(request.isRfc3489).toBe(true);
    const response = buildBindingSuccessResponse(request, '203.0.113.9', 45678, 'x');
    expect(response).toEqual(
      hex(
        '01 01 00 0c                       -- Binding success response, length 12',
        "de ad be ef                       -- the client's cookie field, echoed",
        '01 02 03 04 05 06 07 08 09 0a 0b 0c -- transaction ID',
        '00 01 00 08                       -- MAPPED-ADDRESS, length 8',
        '00 01 b2 6e cb 00 71 09           -- IPv4, port 45678, 203.0.113.9',
      ),
    );
  });

  it('builds 420 with UNKNOWN-ATTRIBUTES', () => {
    const request = parsedMessage(buildBindingRequest(transactionId));
    const response = buildStunErrorResponse(request, StunErrorCode.unknownAttribute, {
      software: 's',
      unknownAttributes: [0x0003],
    });
    const message = parsedMessage(response);
    expect(message.messageClass).toBe(StunClass.errorResponse);
    const error = findAttribute(message, StunAttributeType.errorCode);
    expect(decodeErrorCode(error?.value ?? new Uint8Array())).toEqual({
      ok: true,
      value: { code: 420, reasonPhrase: 'Unknown Attribute' },
    });
    const unknown = findAttribute(message, StunAttributeType.unknownAttributes);
    expect(decodeUnknownAttributes(unknown?.value ?? new Uint8Array())).toEqual({
      ok: true,
      value: [0x0003],
    });
  });

  it('encodes ERROR-CODE class and number', () => {
    expect(encodeErrorCode(StunErrorCode.forbidden, 'Forbidden')).toEqual(
      hex('00 00 04 03', ascii('Forbidden')),
    );
  });

  it('repeats odd UNKNOWN-ATTRIBUTES for RFC 3489', () => {
    expect(encodeUnknownAttributes([3], true)).toEqual(hex('00 03 00 03'));
    expect(encodeUnknownAttributes([3], false)).toEqual(hex('00 03'));
  });

  it('round-trips CHANGE-REQUEST', () => {
    expect(encodeChangeRequest(true, true)).toEqual(hex('00 00 00 06'));
    expect(decodeChangeRequest(hex('00 00 00 02'))).toEqual({
      ok: true,
      value: { changeIp: false, changePort: true },
    });
    expect(decodeChangeRequest(hex('00 00 02')).ok).toBe(false);
  });

  it('pads attribute values with zeros', () => {
    const bytes = buildStunMessage({
      method: StunMethod.binding,
      messageClass: StunClass.request,
      magicCookie: STUN_MAGIC_COOKIE,
      transactionId,
      attributes: [{ type: StunAttributeType.software, value: hex('61') }],
      fingerprint: false,
    });
    expect(bytes.subarray(20)).toEqual(hex('80 22 00 01 61 00 00 00'));
    expect(bytes[3]).toBe(8);
  });
});

describe('parseStunMessage on hostile input', () => {
  const transactionId = hex('aa bb cc dd ee ff 00 11 22 33 44 55');
  const plainRequest = buildBindingRequest(transactionId);

  function dropReason(bytes: Uint8Array): string | undefined {
    const result = parseStunMessage(bytes);
    return !result.ok && result.error.kind === 'drop' ? result.error.reason : undefined;
  }

  function badRequestReason(bytes: Uint8Array): string | undefined {
    const result = parseStunMessage(bytes);
    return !result.ok && result.error.kind === 'bad-request' ? result.error.reason : undefined;
  }

  it('drops zero-length datagram', () => {
    expect(dropReason(new Uint8Array())).toBe('too-short');
  });

  it('drops truncated header', () => {
    expect(dropReason(plainRequest.subarray(0, 19))).toBe('too-short');
  });

  it('drops non-zero leading bits', () => {
    const bytes = plainRequest.slice();
    bytes[0] = 0x80; // RTP version 2 packets start like this
    expect(dropReason(bytes)).toBe('not-stun');
  });

  it('drops length not multiple of 4', () => {
    const bytes = hex('00 01 00 02 21 12 a4 42', 'aa bb cc dd ee ff 00 11 22 33 44 55', '00 00');
    expect(dropReason(bytes)).toBe('length-not-multiple-of-4');
  });

  it('drops wrong length field', () => {
    const bytes = plainRequest.slice();
    bytes[3] = 8; // declares 8 bytes of attributes, none follow
    expect(dropReason(bytes)).toBe('length-mismatch');
    const trailing = Uint8Array.from([...plainRequest, 0, 0, 0, 0]);
    expect(dropReason(trailing)).toBe('length-mismatch');
  });

  it('accepts missing magic cookie as RFC 3489', () => {
    const bytes = plainRequest.slice();
    bytes.set([1, 2, 3, 4], 4);
    const message = parsedMessage(bytes);
    expect(message.isRfc3489).toBe(true);
    expect(message.magicCookie).toBe(0x01020304);
  });

  it('rejects attribute length past end', () => {
    const bytes = hex(
      '00 01 00 08 21 12 a4 42',
      'aa bb cc dd ee ff 00 11 22 33 44 55',
      '80 22 00 10                       -- SOFTWARE claims 16 bytes',
      '61 62 63 64                       -- only 4 present',
    );
    expect(badRequestReason(bytes)).toBe('attribute-past-end');
  });

  it('rejects padding past end', () => {
    const bytes = hex(
      '00 01 00 08 21 12 a4 42',
      'aa bb cc dd ee ff 00 11 22 33 44 55',
      '80 22 00 05                       -- SOFTWARE, 5 bytes need 3 of padding',
      '61 62 63 64                       -- message ends before the fifth byte',
    );
    expect(badRequestReason(bytes)).toBe('attribute-past-end');
  });

  it('accepts odd padding content', () => {
    const bytes = hex(
      '00 01 00 08 21 12 a4 42',
      'aa bb cc dd ee ff 00 11 22 33 44 55',
      '80 22 00 01                       -- SOFTWARE, 1 byte',
      '61 ff ff ff                       -- padding need not be zero (RFC 8489 §14)',
    );
    const message = parsedMessage(bytes);
    expect(message.attributes).toEqual([{ type: 0x8022, value: hex('61') }]);
  });

  it('drops attribute after FINGERPRINT', () => {
    const withFingerprint = buildBindingRequest(transactionId, { fingerprint: true });
    const bytes = Uint8Array.from([...withFingerprint, 0x80, 0x22, 0x00, 0x00]);
    bytes[3] = (bytes[3] ?? 0) + 4;
    // Recompute the CRC, which covers the changed length field.
    const fingerprintOffset = withFingerprint.length - 8;
    const value = fingerprintOf(bytes.subarray(0, fingerprintOffset));
    bytes.set(
      [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff],
      fingerprintOffset + 4,
    );
    expect(dropReason(bytes)).toBe('fingerprint-not-last');
  });

  it('drops short FINGERPRINT', () => {
    const bytes = hex(
      '00 01 00 04 21 12 a4 42',
      'aa bb cc dd ee ff 00 11 22 33 44 55',
      '80 28 00 00                       -- FINGERPRINT without value',
    );
    expect(dropReason(bytes)).toBe('fingerprint-invalid-length');
  });

  it('parses huge message without throwing', () => {
    const attributes = Array.from({ length: 4000 }, () => ({
      type: StunAttributeType.software,
      value: hex('61 62 63'),
    }));
    const bytes = buildBindingRequest(transactionId, { attributes });
    // The 16-bit length field caps a message at 65535 bytes after the header.
    expect(bytes.length).toBeLessThan(65_556);
    expect(parseStunMessage(bytes).ok).toBe(true);
  });

  it('rejects bad address attributes', () => {
    expect(decodeAddressAttribute(hex('00 03 00 01 01 02 03 04')).ok).toBe(false);
    expect(decodeAddressAttribute(hex('00 01 00 01 01 02 03')).ok).toBe(false);
    expect(decodeAddressAttribute(hex('00 02 00 01 01 02 03 04')).ok).toBe(false);
    expect(decodeErrorCode(hex('00 00 09 03')).ok).toBe(false);
    expect(decodeErrorCode(hex('00 00')).ok).toBe(false);
    expect(decodeUnknownAttributes(hex('00 03 00')).ok).toBe(false);
  });
});

describe('parseStunMessage properties', () => {
  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
        const result = parseStunMessage(bytes);
        expect(typeof result.ok).toBe('boolean');
        if (!result.ok) {
          expect(result.error.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated requests', () => {
    const seed = buildBindingRequest(hex('01 02 03 04 05 06 07 08 09 0a 0b 0c'), {
      attributes: [
        { type: StunAttributeType.changeRequest, value: encodeChangeRequest(false, false) },
      ],
      fingerprint: true,
    });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: seed.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          maxLength: 6,
        }),
        fc.nat({ max: seed.length }),
        (edits, cutAt) => {
          const bytes = seed.slice(0, Math.max(cutAt, 1));
          for (const [offset, value] of edits) {
            if (offset < bytes.length) {
              bytes[offset] = value;
            }
          }
          const result = parseStunMessage(bytes);
          expect(typeof result.ok).toBe('boolean');
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('round-trips built messages', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.array(
          fc.record({
            type: fc.integer({ min: 0, max: 0xffff }).filter((type) => type !== 0x8028),
            value: fc.uint8Array({ maxLength: 40 }),
          }),
          { maxLength: 8 },
        ),
        fc.boolean(),
        (transactionId, attributes, fingerprint) => {
          const bytes = buildBindingRequest(transactionId, { attributes, fingerprint });
          const message = parsedMessage(bytes);
          expect(message.transactionId).toEqual(transactionId);
          expect(message.attributes.slice(0, attributes.length)).toEqual(attributes);
          expect(message.fingerprint).toBe(fingerprint ? 'valid' : 'absent');
        },
      ),
    );
  });

  it('round-trips IPv6 XOR-MAPPED-ADDRESS', () => {
    fc.assert(
      fc.property(
        fc.ipV6(),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        (address, port, transactionId) => {
          const value = encodeAddressAttribute(address, port, transactionId);
          expect(value).not.toBeNull();
          const decoded = decodeAddressAttribute(value ?? new Uint8Array(), transactionId);
          expect(decoded.ok).toBe(true);
          const text = decoded.ok ? decoded.value.address : '';
          // The text form may differ (RFC 5952 compression), the bytes may not.
          expect(encodeAddressAttribute(text, port, transactionId)).toEqual(value);
        },
      ),
    );
  });

  it('round-trips IPv4 XOR-MAPPED-ADDRESS', () => {
    fc.assert(
      fc.property(
        fc.ipV4(),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        (address, port, transactionId) => {
          const value = encodeAddressAttribute(address, port, transactionId);
          expect(value).not.toBeNull();
          expect(decodeAddressAttribute(value ?? new Uint8Array(), transactionId)).toEqual({
            ok: true,
            value: { family: 'ipv4', address, port },
          });
        },
      ),
    );
  });
});
