/**
 * STUN (RFC 8489) and RFC 5780 code points used by the broker's STUN server.
 * Values come from the RFCs named at each constant and the IANA "STUN
 * Attributes" and "STUN Error Codes" registries.
 */

/** Fixed value of header bytes 4..7 since RFC 5389 (RFC 8489 §5). */
export const STUN_MAGIC_COOKIE = 0x2112a442;

/** Value XORed into the CRC-32 of the FINGERPRINT attribute (RFC 8489 §14.7). */
export const STUN_FINGERPRINT_XOR = 0x5354554e;

export const STUN_HEADER_BYTES = 20;
export const STUN_ATTRIBUTE_HEADER_BYTES = 4;
/** Transaction ID after the magic cookie (RFC 8489 §5): 96 bits. */
export const STUN_TRANSACTION_ID_BYTES = 12;

/**
 * Largest datagram the server parses. RFC 8489 §6.1 tells senders to keep
 * messages over UDP at or below 576 bytes of IPv4 datagram when the path MTU
 * is unknown, which leaves 548 bytes of UDP payload. A Binding request to a
 * server carries at most a few short attributes (SOFTWARE, FINGERPRINT,
 * CHANGE-REQUEST), so anything larger is not a request this server serves
 * and is dropped unparsed.
 */
export const STUN_MAX_REQUEST_BYTES = 548;

/** Message classes (RFC 8489 §5): the C1 and C0 bits of the message type. */
export const StunClass = {
  request: 0b00,
  indication: 0b01,
  successResponse: 0b10,
  errorResponse: 0b11,
} as const;
export type StunClass = (typeof StunClass)[keyof typeof StunClass];

/** STUN methods; the server implements Binding only. */
export const StunMethod = {
  binding: 0x001,
} as const;
export type StunMethod = (typeof StunMethod)[keyof typeof StunMethod];

/**
 * Attribute types. Types 0x0000-0x7FFF are comprehension-required and
 * 0x8000-0xFFFF comprehension-optional (RFC 8489 §14).
 */
export const StunAttributeType = {
  mappedAddress: 0x0001,
  /** RFC 3489 §11.2.2; removed by RFC 5389 and unsupported here. */
  responseAddress: 0x0002,
  /** RFC 5780 §7.2. */
  changeRequest: 0x0003,
  username: 0x0006,
  messageIntegrity: 0x0008,
  errorCode: 0x0009,
  unknownAttributes: 0x000a,
  realm: 0x0014,
  nonce: 0x0015,
  messageIntegritySha256: 0x001c,
  passwordAlgorithm: 0x001d,
  userhash: 0x001e,
  xorMappedAddress: 0x0020,
  /** ICE (RFC 8445 §16.1). */
  priority: 0x0024,
  /** ICE (RFC 8445 §16.1). */
  useCandidate: 0x0025,
  /** RFC 5780 §7.6. */
  padding: 0x0026,
  /** RFC 5780 §7.5. */
  responsePort: 0x0027,
  passwordAlgorithms: 0x8002,
  alternateDomain: 0x8003,
  software: 0x8022,
  alternateServer: 0x8023,
  fingerprint: 0x8028,
  iceControlled: 0x8029,
  iceControlling: 0x802a,
  /** RFC 5780 §7.3. */
  responseOrigin: 0x802b,
  /** RFC 5780 §7.4. */
  otherAddress: 0x802c,
} as const;
export type StunAttributeType = (typeof StunAttributeType)[keyof typeof StunAttributeType];

/** True for types 0x0000-0x7FFF, which a receiver must understand (RFC 8489 §14). */
export function isComprehensionRequired(attributeType: number): boolean {
  return attributeType < 0x8000;
}

/**
 * Error codes. 300-500 are RFC 8489 §14.8. 403 and 508 are TURN codes
 * (RFC 8656) from the same IANA registry, used here because RFC 8489 has no
 * code for "refused by policy" or "out of ports".
 */
export const StunErrorCode = {
  tryAlternate: 300,
  badRequest: 400,
  unauthenticated: 401,
  forbidden: 403,
  unknownAttribute: 420,
  staleNonce: 438,
  serverError: 500,
  insufficientCapacity: 508,
} as const;
export type StunErrorCode = (typeof StunErrorCode)[keyof typeof StunErrorCode];

/** Reason phrases the RFCs recommend for each code. */
export const STUN_REASON_PHRASES: Record<StunErrorCode, string> = {
  [StunErrorCode.tryAlternate]: 'Try Alternate',
  [StunErrorCode.badRequest]: 'Bad Request',
  [StunErrorCode.unauthenticated]: 'Unauthenticated',
  [StunErrorCode.forbidden]: 'Forbidden',
  [StunErrorCode.unknownAttribute]: 'Unknown Attribute',
  [StunErrorCode.staleNonce]: 'Stale Nonce',
  [StunErrorCode.serverError]: 'Server Error',
  [StunErrorCode.insufficientCapacity]: 'Insufficient Capacity',
};

/** CHANGE-REQUEST flag bits (RFC 5780 §7.2). */
export const STUN_CHANGE_IP_FLAG = 0x04;
export const STUN_CHANGE_PORT_FLAG = 0x02;

/** Address family byte of (XOR-)MAPPED-ADDRESS (RFC 8489 §14.1). */
export const StunAddressFamily = {
  ipv4: 0x01,
  ipv6: 0x02,
} as const;
export type StunAddressFamily = (typeof StunAddressFamily)[keyof typeof StunAddressFamily];
