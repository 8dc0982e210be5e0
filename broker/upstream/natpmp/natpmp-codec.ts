import type { MappingProtocol, ParseResult } from '../upstream-types.js';
import { formatIpv4, parsed, parseError } from '../upstream-types.js';

/**
 * NAT-PMP (RFC 6886) wire format: pure builders and parsers. All fields are
 * in network byte order.
 */

export const NATPMP_VERSION = 0;

export enum NatPmpOpcode {
  ExternalAddress = 0,
  MapUdp = 1,
  MapTcp = 2,
}

/** A reply's opcode is the request's opcode plus 128 (RFC 6886 section 3.2). */
export const NATPMP_REPLY_OPCODE_OFFSET = 128;

/** RFC 6886 section 3.5. */
export enum NatPmpResultCode {
  Success = 0,
  UnsupportedVersion = 1,
  NotAuthorized = 2,
  NetworkFailure = 3,
  OutOfResources = 4,
  UnsupportedOpcode = 5,
}

export const NATPMP_EXTERNAL_ADDRESS_REPLY_BYTES = 12;
export const NATPMP_MAP_REQUEST_BYTES = 12;
export const NATPMP_MAP_REPLY_BYTES = 16;
/** An error reply carries at least version, opcode, result code and epoch (RFC 6886 section 3.5). */
export const NATPMP_ERROR_REPLY_MIN_BYTES = 8;

export interface NatPmpExternalAddressReply {
  resultCode: NatPmpResultCode | number;
  epochSeconds: number;
  /** Dotted IPv4 address; null when the result code is not Success. */
  externalAddress: string | null;
}

export interface NatPmpMapReply {
  protocol: MappingProtocol;
  resultCode: NatPmpResultCode | number;
  epochSeconds: number;
  /** The next three are null when the result code is not Success. */
  internalPort: number | null;
  externalPort: number | null;
  lifetimeSeconds: number | null;
}

export function mapOpcode(protocol: MappingProtocol): NatPmpOpcode {
  return protocol === 'udp' ? NatPmpOpcode.MapUdp : NatPmpOpcode.MapTcp;
}

/**
 * Builds the external address request (RFC 6886 section 3.2):
 *
 *   0: version = 0
 *   1: opcode = 0
 */
export function buildExternalAddressRequest(): Uint8Array {
  return Uint8Array.of(NATPMP_VERSION, NatPmpOpcode.ExternalAddress);
}

export interface NatPmpMapRequest {
  protocol: MappingProtocol;
  internalPort: number;
  /** 0 lets the server choose; a delete sends 0 (RFC 6886 section 3.4). */
  suggestedExternalPort: number;
  /** 0 deletes the mapping. */
  lifetimeSeconds: number;
}

/**
 * Builds a mapping request (RFC 6886 section 3.3), 12 bytes:
 *
 *    0: version = 0
 *    1: opcode = 1 (UDP) or 2 (TCP)
 *    2: reserved, 2 bytes = 0
 *    4: internal port, 2 bytes
 *    6: suggested external port, 2 bytes
 *    8: requested lifetime in seconds, 4 bytes
 */
export function buildMapRequest(request: NatPmpMapRequest): Uint8Array {
  checkPort('internal port', request.internalPort, false);
  checkPort('suggested external port', request.suggestedExternalPort, true);
  if (
    !Number.isInteger(request.lifetimeSeconds) ||
    request.lifetimeSeconds < 0 ||
    request.lifetimeSeconds > 0xffffffff
  ) {
    throw new RangeError(
      `invalid NAT-PMP lifetime ${request.lifetimeSeconds} s: use an integer from 0 to 4294967295`,
    );
  }
  const bytes = new Uint8Array(NATPMP_MAP_REQUEST_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, NATPMP_VERSION);
  view.setUint8(1, mapOpcode(request.protocol));
  view.setUint16(4, request.internalPort);
  view.setUint16(6, request.suggestedExternalPort);
  view.setUint32(8, request.lifetimeSeconds);
  return bytes;
}

/** Checks version, opcode and length, and reads result code and epoch: the part every reply shares. */
function parseReplyHeader(
  bytes: Uint8Array,
  requestOpcode: NatPmpOpcode,
  successBytes: number,
): ParseResult<{ view: DataView; resultCode: number; epochSeconds: number }> {
  if (bytes.length < 2)
    return parseError(`NAT-PMP reply of ${bytes.length} bytes is shorter than its 2-byte header`);
  const version = bytes[0];
  const opcode = bytes[1];
  if (version !== NATPMP_VERSION)
    return parseError(`NAT-PMP reply has version ${version}, expected ${NATPMP_VERSION}`);
  const expectedOpcode = requestOpcode + NATPMP_REPLY_OPCODE_OFFSET;
  if (opcode !== expectedOpcode)
    return parseError(`NAT-PMP reply has opcode ${opcode}, expected ${expectedOpcode}`);
  if (bytes.length < NATPMP_ERROR_REPLY_MIN_BYTES) {
    return parseError(
      `NAT-PMP reply of ${bytes.length} bytes is shorter than ${NATPMP_ERROR_REPLY_MIN_BYTES}`,
    );
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const resultCode = view.getUint16(2);
  const epochSeconds = view.getUint32(4);
  if (resultCode === NatPmpResultCode.Success && bytes.length !== successBytes) {
    return parseError(
      `NAT-PMP success reply has ${bytes.length} bytes, expected exactly ${successBytes}`,
    );
  }
  if (resultCode !== NatPmpResultCode.Success && bytes.length > successBytes) {
    return parseError(
      `NAT-PMP error reply has ${bytes.length} bytes, expected at most ${successBytes}`,
    );
  }
  return parsed({ view, resultCode, epochSeconds });
}

/**
 * Parses the external address reply (RFC 6886 section 3.2), 12 bytes:
 *
 *    0: version = 0
 *    1: opcode = 128
 *    2: result code, 2 bytes
 *    4: seconds since start of epoch, 4 bytes
 *    8: external IPv4 address, 4 bytes
 */
export function parseExternalAddressReply(
  bytes: Uint8Array,
): ParseResult<NatPmpExternalAddressReply> {
  const header = parseReplyHeader(
    bytes,
    NatPmpOpcode.ExternalAddress,
    NATPMP_EXTERNAL_ADDRESS_REPLY_BYTES,
  );
  if (!header.ok) return header;
  const { resultCode, epochSeconds } = header.value;
  const externalAddress =
    resultCode === NatPmpResultCode.Success ? formatIpv4(bytes.subarray(8, 12)) : null;
  return parsed({ resultCode, epochSeconds, externalAddress });
}

/**
 * Parses a mapping reply (RFC 6886 section 3.3), 16 bytes:
 *
 *    0: version = 0
 *    1: opcode = 129 (UDP) or 130 (TCP)
 *    2: result code, 2 bytes
 *    4: seconds since start of epoch, 4 bytes
 *    8: internal port, 2 bytes
 *   10: mapped external port, 2 bytes
 *   12: mapping lifetime in seconds, 4 bytes
 */
export function parseMapReply(
  bytes: Uint8Array,
  protocol: MappingProtocol,
): ParseResult<NatPmpMapReply> {
  const header = parseReplyHeader(bytes, mapOpcode(protocol), NATPMP_MAP_REPLY_BYTES);
  if (!header.ok) return header;
  const { view, resultCode, epochSeconds } = header.value;
  if (resultCode !== NatPmpResultCode.Success) {
    return parsed({
      protocol,
      resultCode,
      epochSeconds,
      internalPort: null,
      externalPort: null,
      lifetimeSeconds: null,
    });
  }
  return parsed({
    protocol,
    resultCode,
    epochSeconds,
    internalPort: view.getUint16(8),
    externalPort: view.getUint16(10),
    lifetimeSeconds: view.getUint32(12),
  });
}

export function natPmpResultName(code: number): string {
  return NatPmpResultCode[code] ?? `unknown result code ${code}`;
}

function checkPort(name: string, port: number, allowZero: boolean): void {
  const minimum = allowZero ? 0 : 1;
  if (!Number.isInteger(port) || port < minimum || port > 65535) {
    throw new RangeError(
      `invalid NAT-PMP ${name} ${port}: use an integer from ${minimum} to 65535`,
    );
  }
}
