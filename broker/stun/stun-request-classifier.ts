import { decodeChangeRequest } from './stun-attributes.js';
import { buildStunErrorResponse } from './stun-builder.js';
import {
  findAttribute,
  parseStunMessage,
  type StunHeader,
  type StunMessage,
} from './stun-codec.js';
import {
  isComprehensionRequired,
  STUN_MAX_REQUEST_BYTES,
  StunAttributeType,
  StunClass,
  StunErrorCode,
  StunMethod,
} from './stun-constants.js';

/**
 * Decides what the server does with one datagram, before any mapping is
 * asked for. Pure: the socket layer in stun-server.ts carries the decision
 * out.
 */

export type StunDropReason =
  | 'too-large'
  | 'malformed'
  | 'response-received'
  | 'unsupported-method'
  | 'ice-connectivity-check';

export type StunRequestDecision =
  /** No reply. `warn` is true for malformed or unexpected input, false for traffic that is simply not for this server. */
  | { kind: 'drop'; reason: StunDropReason; warn: boolean; message: string }
  /** An error response that needs no mapping (400, 420). */
  | { kind: 'reply'; code: StunErrorCode; response: Uint8Array; message: string }
  /** A Binding indication (a keepalive): processed without a response (RFC 8489 §6.3.2). */
  | { kind: 'indication' }
  /** A Binding request that gets the client's mapping in its response. */
  | { kind: 'binding'; request: StunMessage };

/**
 * Comprehension-required attributes the server understands in a request.
 * The credential attributes are listed so that their presence reaches the
 * ICE check below instead of a 420. Every other type below 0x8000, such as
 * RESPONSE-ADDRESS, PRIORITY, USE-CANDIDATE, PADDING and RESPONSE-PORT, gets
 * 420 (RFC 8489 §6.3.1); RFC 5389 §12.2 expects exactly that for the RFC 3489
 * attributes.
 */
const UNDERSTOOD_REQUIRED_ATTRIBUTES: ReadonlySet<number> = new Set([
  StunAttributeType.mappedAddress,
  StunAttributeType.changeRequest,
  StunAttributeType.username,
  StunAttributeType.messageIntegrity,
  StunAttributeType.errorCode,
  StunAttributeType.unknownAttributes,
  StunAttributeType.realm,
  StunAttributeType.nonce,
  StunAttributeType.messageIntegritySha256,
  StunAttributeType.passwordAlgorithm,
  StunAttributeType.userhash,
  StunAttributeType.xorMappedAddress,
]);

/** Attributes that make a request an authenticated one (RFC 8489 §9), such as an ICE connectivity check. */
const CREDENTIAL_ATTRIBUTES: readonly number[] = [
  StunAttributeType.username,
  StunAttributeType.userhash,
  StunAttributeType.messageIntegrity,
  StunAttributeType.messageIntegritySha256,
];

export function classifyStunDatagram(bytes: Uint8Array, software: string): StunRequestDecision {
  if (bytes.length > STUN_MAX_REQUEST_BYTES) {
    return {
      kind: 'drop',
      reason: 'too-large',
      warn: true,
      message: `STUN datagram of ${bytes.length} bytes exceeds the ${STUN_MAX_REQUEST_BYTES}-byte limit for Binding requests`,
    };
  }

  const parsed = parseStunMessage(bytes);
  if (!parsed.ok) {
    const error = parsed.error;
    if (error.kind === 'bad-request' && error.header.messageClass === StunClass.request) {
      return badRequest(error.header, error.message, software);
    }
    return { kind: 'drop', reason: 'malformed', warn: true, message: error.message };
  }

  const message = parsed.message;
  if (
    message.messageClass === StunClass.successResponse ||
    message.messageClass === StunClass.errorResponse
  ) {
    return {
      kind: 'drop',
      reason: 'response-received',
      warn: true,
      message: 'STUN response sent to the server; only requests and indications are accepted',
    };
  }
  if (message.method !== StunMethod.binding) {
    // RFC 8489 §6.3 lists an unsupported method among the checks whose
    // failure makes the message "silently discarded".
    return {
      kind: 'drop',
      reason: 'unsupported-method',
      warn: true,
      message: `STUN method 0x${message.method.toString(16).padStart(3, '0')} is not supported: only Binding (0x001) is`,
    };
  }
  if (message.messageClass === StunClass.indication) {
    return { kind: 'indication' };
  }

  // A Binding request with credentials is an ICE connectivity check
  // (RFC 8445 §7) or another authenticated usage. It is meant for the peer
  // that owns those credentials, not for a STUN server, so it gets no
  // response. Such packets reach the broker only when a peer uses one of the
  // redirected STUN server ports.
  const credential = CREDENTIAL_ATTRIBUTES.find(
    (type) => findAttribute(message, type) !== undefined,
  );
  if (credential !== undefined) {
    return {
      kind: 'drop',
      reason: 'ice-connectivity-check',
      warn: false,
      message: `STUN Binding request carries credential attribute 0x${credential.toString(16).padStart(4, '0')}: an ICE connectivity check, not a request for this server`,
    };
  }

  return checkRequestAttributes(message, software);
}

/**
 * Applies the attribute rules to a Binding request: 420 for unknown
 * comprehension-required attributes, 400 for a CHANGE-REQUEST of the wrong
 * size.
 *
 * CHANGE-REQUEST (RFC 5780 §7.2) requests the response from another address
 * or port. This server has no alternate address (and sends no OTHER-ADDRESS),
 * so a request with either flag set gets 420 listing CHANGE-REQUEST, as RFC
 * 5780 §7.2 and RFC 5389 §12.2 ask. A CHANGE-REQUEST with both flags clear
 * asks for no change, which the server fulfils, so it is served normally.
 */
function checkRequestAttributes(message: StunMessage, software: string): StunRequestDecision {
  const unknown: number[] = [];
  for (const attribute of message.attributes) {
    if (!isComprehensionRequired(attribute.type) || unknown.includes(attribute.type)) {
      continue;
    }
    if (!UNDERSTOOD_REQUIRED_ATTRIBUTES.has(attribute.type)) {
      unknown.push(attribute.type);
      continue;
    }
    if (attribute.type !== StunAttributeType.changeRequest) {
      continue;
    }

    const change = decodeChangeRequest(attribute.value);
    if (!change.ok) {
      return badRequest(message, change.message, software);
    }
    if (change.value.changeIp || change.value.changePort) {
      unknown.push(attribute.type);
    }
  }

  if (unknown.length > 0) {
    const listed = unknown.map((type) => `0x${type.toString(16).padStart(4, '0')}`).join(', ');
    return {
      kind: 'reply',
      code: StunErrorCode.unknownAttribute,
      response: buildStunErrorResponse(message, StunErrorCode.unknownAttribute, {
        software,
        unknownAttributes: unknown,
      }),
      message: `STUN Binding request carries comprehension-required attributes the server does not support: ${listed}`,
    };
  }

  return { kind: 'binding', request: message };
}

function badRequest(header: StunHeader, message: string, software: string): StunRequestDecision {
  return {
    kind: 'reply',
    code: StunErrorCode.badRequest,
    response: buildStunErrorResponse(header, StunErrorCode.badRequest, { software }),
    message,
  };
}
