import { readUint16, readUint32, writeUint16, writeUint32 } from '../byte-order.js';
import { ipv4ToMappedBytes } from '../port-control/ipv4-bytes.js';
import {
  PCP_HEADER_BYTES,
  PCP_MAP_DATA_BYTES,
  PCP_MAX_PACKET_BYTES,
  PCP_NONCE_BYTES,
  PCP_RESPONSE_FLAG,
  PCP_VERSION,
  PcpOpcode,
  PcpResultCode,
} from './pcp-constants.js';
import { type PcpOptions, parsePcpOptions } from './pcp-options.js';

/**
 * PCP (RFC 6887) wire format: request parser and response builders. All
 * multi-byte fields are big-endian; addresses are 16 bytes, IPv4 ones in
 * IPv4-mapped form. Functions are pure and never throw on input bytes.
 */

export interface PcpMapData {
  nonce: Uint8Array;
  /** IANA protocol number; 0 means all protocols. */
  protocolNumber: number;
  internalPort: number;
  suggestedExternalPort: number;
  suggestedExternalAddressBytes: Uint8Array;
}

export type PcpRequest =
  | { opcode: typeof PcpOpcode.announce; requestedLifetimeSeconds: number; options: PcpOptions }
  | {
      opcode: typeof PcpOpcode.map;
      requestedLifetimeSeconds: number;
      map: PcpMapData;
      options: PcpOptions;
    };

export type PcpParseError =
  | { kind: 'drop'; message: string }
  /** The RFC requires an error response built from the request bytes. */
  | { kind: 'error-response'; resultCode: PcpResultCode; message: string };

export type PcpParseResult =
  | { ok: true; request: PcpRequest }
  | { ok: false; error: PcpParseError };

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}

function errorResponse(resultCode: PcpResultCode, message: string): PcpParseResult {
  return { ok: false, error: { kind: 'error-response', resultCode, message } };
}

/**
 * Parses a request that arrived from `sourceAddress` (dotted-quad IPv4).
 *
 * RFC 6887 §7.1 (request header, 24 bytes):
 *
 * | offset | size | field                                  |
 * |--------|------|----------------------------------------|
 * | 0      | 1    | Version = 2                            |
 * | 1      | 1    | R (top bit, 0 = request) and Opcode    |
 * | 2      | 2    | Reserved                               |
 * | 4      | 4    | Requested Lifetime (seconds)           |
 * | 8      | 16   | PCP Client's IP Address                |
 * | 24     | ...  | opcode-specific data, then options     |
 *
 * RFC 6887 §11.1 (MAP opcode data, 36 bytes):
 *
 * | offset | size | field                            |
 * |--------|------|----------------------------------|
 * | 0      | 12   | Mapping Nonce                    |
 * | 12     | 1    | Protocol                         |
 * | 13     | 3    | Reserved                         |
 * | 16     | 2    | Internal Port                    |
 * | 18     | 2    | Suggested External Port          |
 * | 20     | 16   | Suggested External IP Address    |
 *
 * Checks in the order of RFC 6887 §8.3, as OpenBSD natpmpd applies them:
 * shorter than 2 bytes or R bit set: drop; version other than 2:
 * UNSUPP_VERSION; shorter than 24 bytes: drop; longer than 1100 bytes or
 * not a multiple of 4: MALFORMED_REQUEST; client address not the source:
 * ADDRESS_MISMATCH; opcode other than ANNOUNCE or MAP: UNSUPP_OPCODE;
 * opcode data cut short: MALFORMED_REQUEST; then the options.
 */
export function parsePcpRequest(bytes: Uint8Array, sourceAddress: string): PcpParseResult {
  if (bytes.length < 2) {
    return {
      ok: false,
      error: {
        kind: 'drop',
        message: `PCP datagram of ${bytes.length} bytes is shorter than 2 bytes`,
      },
    };
  }

  const version = bytes[0] ?? 0;
  const opcodeByte = bytes[1] ?? 0;
  if ((opcodeByte & PCP_RESPONSE_FLAG) !== 0) {
    return {
      ok: false,
      error: {
        kind: 'drop',
        message: 'PCP datagram has the R bit set: it is a response, not a request',
      },
    };
  }
  if (version !== PCP_VERSION) {
    return errorResponse(
      PcpResultCode.unsupportedVersion,
      `PCP version ${version} is not supported: only version 2 is`,
    );
  }
  if (bytes.length < PCP_HEADER_BYTES) {
    return {
      ok: false,
      error: {
        kind: 'drop',
        message: `PCP request of ${bytes.length} bytes is shorter than the 24-byte header`,
      },
    };
  }
  if (bytes.length > PCP_MAX_PACKET_BYTES || bytes.length % 4 !== 0) {
    return errorResponse(
      PcpResultCode.malformedRequest,
      `PCP request length ${bytes.length} is invalid: it must be a multiple of 4 and at most 1100 bytes`,
    );
  }

  const expectedClientBytes = ipv4ToMappedBytes(sourceAddress);
  const clientBytes = bytes.subarray(8, 24);
  if (expectedClientBytes === null || !sameBytes(clientBytes, expectedClientBytes)) {
    return errorResponse(
      PcpResultCode.addressMismatch,
      `PCP client address field does not match the source address ${sourceAddress}: a NAT between client and server rewrote it`,
    );
  }

  const opcode = opcodeByte & 0x7f;
  const requestedLifetimeSeconds = readUint32(bytes, 4);

  if (opcode === PcpOpcode.announce) {
    const options = parsePcpOptions(bytes.subarray(PCP_HEADER_BYTES), opcode);
    if (!options.ok) {
      return errorResponse(options.resultCode, options.message);
    }
    return { ok: true, request: { opcode, requestedLifetimeSeconds, options: options.options } };
  }

  if (opcode !== PcpOpcode.map) {
    return errorResponse(
      PcpResultCode.unsupportedOpcode,
      `PCP opcode ${opcode} is not supported: use 0 (ANNOUNCE) or 1 (MAP)`,
    );
  }

  const optionsOffset = PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES;
  if (bytes.length < optionsOffset) {
    return errorResponse(
      PcpResultCode.malformedRequest,
      `PCP MAP request of ${bytes.length} bytes is shorter than the ${optionsOffset} bytes of header and MAP data`,
    );
  }

  const mapBytes = bytes.subarray(PCP_HEADER_BYTES, optionsOffset);
  const map: PcpMapData = {
    nonce: Uint8Array.from(mapBytes.subarray(0, PCP_NONCE_BYTES)),
    protocolNumber: mapBytes[12] ?? 0,
    internalPort: readUint16(mapBytes, 16),
    suggestedExternalPort: readUint16(mapBytes, 18),
    suggestedExternalAddressBytes: Uint8Array.from(mapBytes.subarray(20, 36)),
  };
  // RFC 6887 §11.1 requires Internal Port 0 with Protocol 0; miniupnpd and
  // OpenBSD natpmpd both answer MALFORMED_REQUEST otherwise.
  if (map.protocolNumber === 0 && map.internalPort !== 0) {
    return errorResponse(
      PcpResultCode.malformedRequest,
      `PCP MAP with protocol 0 (all protocols) has internal port ${map.internalPort}: it must be 0`,
    );
  }

  const options = parsePcpOptions(bytes.subarray(optionsOffset), opcode);
  if (!options.ok) {
    return errorResponse(options.resultCode, options.message);
  }
  return { ok: true, request: { opcode, requestedLifetimeSeconds, map, options: options.options } };
}

/**
 * Writes the response header (RFC 6887 §7.2, 24 bytes) into `bytes`:
 *
 * | offset | size | field                                 |
 * |--------|------|---------------------------------------|
 * | 0      | 1    | Version = 2                           |
 * | 1      | 1    | R = 1 (top bit) and Opcode            |
 * | 2      | 1    | Reserved                              |
 * | 3      | 1    | Result Code                           |
 * | 4      | 4    | Lifetime (seconds)                    |
 * | 8      | 4    | Epoch Time (seconds)                  |
 * | 12     | 12   | Reserved                              |
 */
function writeResponseHeader(
  bytes: Uint8Array,
  header: {
    opcode: number;
    resultCode: PcpResultCode;
    lifetimeSeconds: number;
    epochSeconds: number;
  },
): void {
  bytes[0] = PCP_VERSION;
  bytes[1] = PCP_RESPONSE_FLAG | (header.opcode & 0x7f);
  bytes[2] = 0;
  bytes[3] = header.resultCode;
  writeUint32(bytes, 4, header.lifetimeSeconds);
  writeUint32(bytes, 8, header.epochSeconds);
  bytes.fill(0, 12, 24);
}

/**
 * Builds an error response from the request bytes (RFC 6887 §7.2, §8.3):
 * the request is copied (cut at 1100 bytes, zero-padded to at least 24
 * bytes and to a multiple of 4), then the response header is written over
 * its first 24 bytes. The opcode data and options stay as the client sent
 * them. The version is always 2, the only version this server speaks,
 * which is also the answer version negotiation (RFC 6887 §9) requires for
 * any other version.
 */
export function buildPcpErrorResponse(
  request: Uint8Array,
  response: { resultCode: PcpResultCode; lifetimeSeconds: number; epochSeconds: number },
): Uint8Array {
  const copiedBytes = Math.min(request.length, PCP_MAX_PACKET_BYTES);
  const length = Math.max(PCP_HEADER_BYTES, (copiedBytes + 3) & ~3);
  const bytes = new Uint8Array(Math.min(length, PCP_MAX_PACKET_BYTES));
  bytes.set(request.subarray(0, Math.min(copiedBytes, bytes.length)));
  writeResponseHeader(bytes, { ...response, opcode: request[1] ?? 0 });
  return bytes;
}

/** Builds the success response to ANNOUNCE (RFC 6887 §14.1): header only, lifetime 0. */
export function buildPcpAnnounceResponse(epochSeconds: number): Uint8Array {
  const bytes = new Uint8Array(PCP_HEADER_BYTES);
  writeResponseHeader(bytes, {
    opcode: PcpOpcode.announce,
    resultCode: PcpResultCode.success,
    lifetimeSeconds: 0,
    epochSeconds,
  });
  return bytes;
}

/**
 * Builds a MAP response (RFC 6887 §11.2): the response header, then the
 * MAP data with the Assigned External Port and Assigned External IP
 * Address in place of the suggested ones (same layout as the request's
 * MAP data), then the options to echo.
 */
export function buildPcpMapResponse(response: {
  resultCode: PcpResultCode;
  lifetimeSeconds: number;
  epochSeconds: number;
  nonce: Uint8Array;
  protocolNumber: number;
  internalPort: number;
  assignedExternalPort: number;
  assignedExternalAddressBytes: Uint8Array;
  options: Uint8Array[];
}): Uint8Array {
  const optionBytes = response.options.reduce((total, option) => total + option.length, 0);
  const bytes = new Uint8Array(PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES + optionBytes);
  writeResponseHeader(bytes, { ...response, opcode: PcpOpcode.map });

  const map = PCP_HEADER_BYTES;
  bytes.set(response.nonce.subarray(0, PCP_NONCE_BYTES), map);
  bytes[map + 12] = response.protocolNumber;
  writeUint16(bytes, map + 16, response.internalPort);
  writeUint16(bytes, map + 18, response.assignedExternalPort);
  bytes.set(response.assignedExternalAddressBytes.subarray(0, 16), map + 20);

  let offset = PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES;
  for (const option of response.options) {
    bytes.set(option, offset);
    offset += option.length;
  }
  return bytes;
}
