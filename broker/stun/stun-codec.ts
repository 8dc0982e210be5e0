import { readUint16, readUint32 } from '../byte-order.js';
import {
  STUN_ATTRIBUTE_HEADER_BYTES,
  STUN_FINGERPRINT_XOR,
  STUN_HEADER_BYTES,
  STUN_MAGIC_COOKIE,
  STUN_TRANSACTION_ID_BYTES,
  StunAttributeType,
  type StunClass,
} from './stun-constants.js';
import { crc32 } from './stun-crc32.js';

/**
 * STUN message parser (RFC 8489 §5, §14). Pure and total: every input gives
 * a typed result, and nothing in it throws on input bytes. Attribute values
 * stay raw here; stun-attributes.ts decodes the ones the server reads.
 */

export interface StunHeader {
  /** 12-bit method (RFC 8489 §5). */
  method: number;
  messageClass: StunClass;
  /** Value of bytes 4..7; not STUN_MAGIC_COOKIE for RFC 3489 clients. */
  magicCookie: number;
  /** True when the magic cookie is absent: an RFC 3489 client (RFC 5389 §12.2). */
  isRfc3489: boolean;
  /** Bytes 8..19. An RFC 3489 transaction ID is bytes 4..19, so the cookie field is part of it. */
  transactionId: Uint8Array;
}

export interface StunAttribute {
  type: number;
  /** Value without padding. */
  value: Uint8Array;
}

export interface StunMessage extends StunHeader {
  attributes: StunAttribute[];
  /** 'valid' when a FINGERPRINT attribute was present and matched; a mismatch is a parse error. */
  fingerprint: 'absent' | 'valid';
}

/**
 * Parse failure of a datagram. `drop` errors get no reply
 * (RFC 8489 §6.3: "the message is silently discarded"). `bad-request` errors
 * have a sound header, so a request can get 400 Bad Request.
 */
export type StunParseError =
  | {
      kind: 'drop';
      reason:
        | 'too-short'
        | 'not-stun'
        | 'length-not-multiple-of-4'
        | 'length-mismatch'
        | 'fingerprint-not-last'
        | 'fingerprint-invalid-length'
        | 'fingerprint-mismatch';
      message: string;
    }
  | {
      kind: 'bad-request';
      reason: 'truncated-attribute-header' | 'attribute-past-end';
      header: StunHeader;
      message: string;
    };

export type StunParseResult =
  | { ok: true; message: StunMessage }
  | { ok: false; error: StunParseError };

/** Rounds an attribute value length up to the 4-byte boundary (RFC 8489 §14). */
export function paddedLength(valueBytes: number): number {
  return (valueBytes + 3) & ~3;
}

/**
 * Encodes method and class into the 14-bit message type (RFC 8489 §5):
 *
 * ```
 *  13 12 11 10  9  8  7  6  5  4  3  2  1  0
 * +--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 * |M11|M10|M9|M8|M7|C1|M6|M5|M4|C0|M3|M2|M1|M0|
 * +--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 * ```
 */
export function encodeMessageType(method: number, messageClass: StunClass): number {
  return (
    ((method & 0xf80) << 2) |
    ((method & 0x070) << 1) |
    (method & 0x00f) |
    ((messageClass & 0b10) << 7) |
    ((messageClass & 0b01) << 4)
  );
}

export function decodeMessageType(messageType: number): {
  method: number;
  messageClass: StunClass;
} {
  const method =
    ((messageType & 0x3e00) >> 2) | ((messageType & 0x00e0) >> 1) | (messageType & 0x000f);
  const messageClass = (((messageType >> 7) & 0b10) | ((messageType >> 4) & 0b01)) as StunClass;
  return { method, messageClass };
}

/**
 * Parses one STUN message that fills the whole datagram.
 *
 * RFC 8489 §5 header (20 bytes), followed by attributes:
 *
 * | offset | size | field                                           |
 * |--------|------|-------------------------------------------------|
 * | 0      | 2    | 0b00 + 14-bit message type (method and class)   |
 * | 2      | 2    | message length: bytes after the header, 4n      |
 * | 4      | 4    | magic cookie 0x2112A442                         |
 * | 8      | 12   | transaction ID                                  |
 *
 * RFC 8489 §14 attribute (repeated until the end of the message):
 *
 * | offset | size         | field                                   |
 * |--------|--------------|-----------------------------------------|
 * | 0      | 2            | type                                    |
 * | 2      | 2            | value length L, without padding         |
 * | 4      | L            | value                                   |
 * | 4 + L  | 0 to 3       | padding to a multiple of 4, any content |
 *
 * Checks in the order of RFC 8489 §6.3: first two bits zero, length a
 * multiple of 4 and equal to the datagram, attributes inside the message,
 * FINGERPRINT last and matching (RFC 8489 §14.7). A missing magic cookie is
 * no error: such a message comes from an RFC 3489 client (RFC 5389 §12.2).
 */
export function parseStunMessage(bytes: Uint8Array): StunParseResult {
  if (bytes.length < STUN_HEADER_BYTES) {
    return drop(
      'too-short',
      `STUN datagram of ${bytes.length} bytes is shorter than the 20-byte header`,
    );
  }

  const messageType = readUint16(bytes, 0);
  if ((messageType & 0xc000) !== 0) {
    return drop(
      'not-stun',
      `first two bits of the datagram are not zero (type 0x${messageType.toString(16).padStart(4, '0')}): not a STUN message`,
    );
  }

  const messageLength = readUint16(bytes, 2);
  if (messageLength % 4 !== 0) {
    return drop(
      'length-not-multiple-of-4',
      `STUN message length ${messageLength} is not a multiple of 4`,
    );
  }
  if (STUN_HEADER_BYTES + messageLength !== bytes.length) {
    return drop(
      'length-mismatch',
      `STUN message length field says ${messageLength} bytes after the header, but the datagram has ${bytes.length - STUN_HEADER_BYTES}`,
    );
  }

  const magicCookie = readUint32(bytes, 4);
  const header: StunHeader = {
    ...decodeMessageType(messageType),
    magicCookie,
    isRfc3489: magicCookie !== STUN_MAGIC_COOKIE,
    transactionId: bytes.slice(8, 8 + STUN_TRANSACTION_ID_BYTES),
  };

  const attributes: StunAttribute[] = [];
  let fingerprint: StunMessage['fingerprint'] = 'absent';
  let offset = STUN_HEADER_BYTES;
  while (offset < bytes.length) {
    if (fingerprint === 'valid') {
      return drop('fingerprint-not-last', 'STUN attribute follows FINGERPRINT, which must be last');
    }
    if (bytes.length - offset < STUN_ATTRIBUTE_HEADER_BYTES) {
      return badRequest(
        'truncated-attribute-header',
        header,
        `STUN attribute header at offset ${offset} is cut off: ${bytes.length - offset} bytes left, 4 needed`,
      );
    }

    const type = readUint16(bytes, offset);
    const valueLength = readUint16(bytes, offset + 2);
    const valueStart = offset + STUN_ATTRIBUTE_HEADER_BYTES;
    const next = valueStart + paddedLength(valueLength);
    if (next > bytes.length) {
      return badRequest(
        'attribute-past-end',
        header,
        `STUN attribute 0x${type.toString(16).padStart(4, '0')} at offset ${offset} declares ${valueLength} value bytes, which run past the message end at ${bytes.length}`,
      );
    }

    const value = bytes.slice(valueStart, valueStart + valueLength);
    if (type === StunAttributeType.fingerprint) {
      const checked = checkFingerprint(bytes, offset, value);
      if (checked !== null) {
        return { ok: false, error: checked };
      }
      fingerprint = 'valid';
    }
    attributes.push({ type, value });
    offset = next;
  }

  return { ok: true, message: { ...header, attributes, fingerprint } };
}

/** Returns null when the FINGERPRINT value at `attributeOffset` matches the bytes before it. */
function checkFingerprint(
  bytes: Uint8Array,
  attributeOffset: number,
  value: Uint8Array,
): StunParseError | null {
  if (value.length !== 4) {
    return {
      kind: 'drop',
      reason: 'fingerprint-invalid-length',
      message: `STUN FINGERPRINT has ${value.length} value bytes, expected 4`,
    };
  }
  const expected = fingerprintOf(bytes.subarray(0, attributeOffset));
  const actual = readUint32(value, 0);
  if (expected !== actual) {
    return {
      kind: 'drop',
      reason: 'fingerprint-mismatch',
      message: `STUN FINGERPRINT 0x${actual.toString(16)} does not match the message (expected 0x${expected.toString(16)})`,
    };
  }
  return null;
}

/**
 * FINGERPRINT value of the message bytes before the attribute (RFC 8489
 * §14.7). The header length field in those bytes must already count the
 * FINGERPRINT attribute.
 */
export function fingerprintOf(bytesBeforeFingerprint: Uint8Array): number {
  return (crc32(bytesBeforeFingerprint) ^ STUN_FINGERPRINT_XOR) >>> 0;
}

/** Returns the first attribute of a type, or undefined. */
export function findAttribute(message: StunMessage, type: number): StunAttribute | undefined {
  return message.attributes.find((attribute) => attribute.type === type);
}

function drop(
  reason: Extract<StunParseError, { kind: 'drop' }>['reason'],
  message: string,
): StunParseResult {
  return { ok: false, error: { kind: 'drop', reason, message } };
}

function badRequest(
  reason: Extract<StunParseError, { kind: 'bad-request' }>['reason'],
  header: StunHeader,
  message: string,
): StunParseResult {
  return { ok: false, error: { kind: 'bad-request', reason, header, message } };
}
