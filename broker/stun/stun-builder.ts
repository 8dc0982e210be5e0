import { writeUint16, writeUint32 } from '../byte-order.js';
import {
  encodeAddressAttribute,
  encodeErrorCode,
  encodeSoftware,
  encodeUnknownAttributes,
} from './stun-attributes.js';
import {
  encodeMessageType,
  fingerprintOf,
  paddedLength,
  type StunAttribute,
  type StunHeader,
} from './stun-codec.js';
import {
  STUN_ATTRIBUTE_HEADER_BYTES,
  STUN_HEADER_BYTES,
  STUN_MAGIC_COOKIE,
  STUN_REASON_PHRASES,
  StunAttributeType,
  StunClass,
  type StunErrorCode,
  StunMethod,
} from './stun-constants.js';

/**
 * STUN message builders. Responses copy method, magic cookie field and
 * transaction ID from the request (RFC 8489 §6.3.1.1; RFC 5389 §12.2 for the
 * cookie field of RFC 3489 clients).
 */

export interface StunMessageFields {
  method: number;
  messageClass: StunClass;
  /** STUN_MAGIC_COOKIE, or the 4 bytes an RFC 3489 client sent there. */
  magicCookie: number;
  /** 12 bytes. */
  transactionId: Uint8Array;
  attributes: StunAttribute[];
  /** Appends FINGERPRINT (RFC 8489 §14.7) after the attributes. */
  fingerprint: boolean;
}

/**
 * Builds a message: the 20-byte header of RFC 8489 §5 (see
 * parseStunMessage), then each attribute as type, length, value and zero
 * padding to 4 bytes (RFC 8489 §14), then FINGERPRINT when asked. The
 * FINGERPRINT CRC covers the message up to the attribute, with the length
 * field already counting its 8 bytes.
 */
export function buildStunMessage(fields: StunMessageFields): Uint8Array {
  const attributesBytes = fields.attributes.reduce(
    (total, attribute) =>
      total + STUN_ATTRIBUTE_HEADER_BYTES + paddedLength(attribute.value.length),
    0,
  );
  const fingerprintBytes = fields.fingerprint ? STUN_ATTRIBUTE_HEADER_BYTES + 4 : 0;
  const message = new Uint8Array(STUN_HEADER_BYTES + attributesBytes + fingerprintBytes);

  writeUint16(message, 0, encodeMessageType(fields.method, fields.messageClass));
  writeUint16(message, 2, attributesBytes + fingerprintBytes);
  writeUint32(message, 4, fields.magicCookie);
  message.set(fields.transactionId.subarray(0, 12), 8);

  let offset = STUN_HEADER_BYTES;
  for (const attribute of fields.attributes) {
    writeUint16(message, offset, attribute.type);
    writeUint16(message, offset + 2, attribute.value.length);
    message.set(attribute.value, offset + STUN_ATTRIBUTE_HEADER_BYTES);
    offset += STUN_ATTRIBUTE_HEADER_BYTES + paddedLength(attribute.value.length);
  }

  if (fields.fingerprint) {
    writeUint16(message, offset, StunAttributeType.fingerprint);
    writeUint16(message, offset + 2, 4);
    writeUint32(message, offset + 4, fingerprintOf(message.subarray(0, offset)));
  }
  return message;
}

/**
 * Builds a Binding success response carrying the mapped transport address.
 * RFC 5389+ clients get XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT. RFC
 * 3489 clients get MAPPED-ADDRESS only (RFC 5389 §12.2), because they
 * predate XOR-MAPPED-ADDRESS and FINGERPRINT. Returns null when `mappedAddress` is no IP address.
 *
 * RFC 5780 §7.3 and §7.4 attributes are left out on purpose. OTHER-ADDRESS
 * needs a second server address, which the broker lacks. RESPONSE-ORIGIN
 * needs the address the request was sent to, which a Node dgram socket bound
 * to 0.0.0.0 does not report, and the qube sent it to its gateway anyway.
 */
export function buildBindingSuccessResponse(
  request: StunHeader,
  mappedAddress: string,
  mappedPort: number,
  software: string,
): Uint8Array | null {
  const attributes: StunAttribute[] = [];
  if (request.isRfc3489) {
    const value = encodeAddressAttribute(mappedAddress, mappedPort);
    if (value === null) {
      return null;
    }
    attributes.push({ type: StunAttributeType.mappedAddress, value });
  } else {
    const value = encodeAddressAttribute(mappedAddress, mappedPort, request.transactionId);
    if (value === null) {
      return null;
    }
    attributes.push({ type: StunAttributeType.xorMappedAddress, value });
    attributes.push({ type: StunAttributeType.software, value: encodeSoftware(software) });
  }

  return buildStunMessage({
    method: request.method,
    messageClass: StunClass.successResponse,
    magicCookie: request.magicCookie,
    transactionId: request.transactionId,
    attributes,
    fingerprint: !request.isRfc3489,
  });
}

/**
 * Builds an error response with ERROR-CODE (RFC 8489 §14.8), plus
 * UNKNOWN-ATTRIBUTES for 420 (RFC 8489 §6.3.1), SOFTWARE and FINGERPRINT
 * for RFC 5389+ clients.
 */
export function buildStunErrorResponse(
  request: StunHeader,
  code: StunErrorCode,
  options: { software: string; reasonPhrase?: string; unknownAttributes?: number[] },
): Uint8Array {
  const attributes: StunAttribute[] = [
    {
      type: StunAttributeType.errorCode,
      value: encodeErrorCode(code, options.reasonPhrase ?? STUN_REASON_PHRASES[code]),
    },
  ];
  if (options.unknownAttributes !== undefined && options.unknownAttributes.length > 0) {
    attributes.push({
      type: StunAttributeType.unknownAttributes,
      value: encodeUnknownAttributes(options.unknownAttributes, request.isRfc3489),
    });
  }
  if (!request.isRfc3489) {
    attributes.push({ type: StunAttributeType.software, value: encodeSoftware(options.software) });
  }

  return buildStunMessage({
    method: request.method,
    messageClass: StunClass.errorResponse,
    magicCookie: request.magicCookie,
    transactionId: request.transactionId,
    attributes,
    fingerprint: !request.isRfc3489,
  });
}

/** Builds a Binding request (tests and clients); FINGERPRINT is optional (RFC 8489 §7). */
export function buildBindingRequest(
  transactionId: Uint8Array,
  options: { attributes?: StunAttribute[]; fingerprint?: boolean; magicCookie?: number } = {},
): Uint8Array {
  return buildStunMessage({
    method: StunMethod.binding,
    messageClass: StunClass.request,
    magicCookie: options.magicCookie ?? STUN_MAGIC_COOKIE,
    transactionId,
    attributes: options.attributes ?? [],
    fingerprint: options.fingerprint ?? false,
  });
}
