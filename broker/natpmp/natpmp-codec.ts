import { readUint16, readUint32, writeUint16, writeUint32 } from '../byte-order.js';
/**
 * NAT-PMP (RFC 6886) wire format: request parser and response builders.
 * All multi-byte fields are big-endian. Functions are pure and never throw
 * on input bytes.
 */

export const NATPMP_VERSION = 0;
export const NATPMP_SERVER_PORT = 5351;

/** Request opcodes (RFC 6886 §3.2, §3.3); responses add 128. */
export const NatPmpOpcode = {
  externalAddress: 0,
  mapUdp: 1,
  mapTcp: 2,
} as const;
export type NatPmpOpcode = (typeof NatPmpOpcode)[keyof typeof NatPmpOpcode];

export const NATPMP_RESPONSE_FLAG = 0x80;

/** Result codes (RFC 6886 §3.5). */
export const NatPmpResultCode = {
  success: 0,
  unsupportedVersion: 1,
  /** "Not Authorized/Refused": the gateway refuses this client or this mapping. */
  notAuthorized: 2,
  networkFailure: 3,
  outOfResources: 4,
  unsupportedOpcode: 5,
} as const;
export type NatPmpResultCode = (typeof NatPmpResultCode)[keyof typeof NatPmpResultCode];

export const NATPMP_EXTERNAL_ADDRESS_REQUEST_BYTES = 2;
export const NATPMP_MAPPING_REQUEST_BYTES = 12;
/** Largest datagram the server echoes back for an unsupported opcode. */
export const NATPMP_MAX_ECHO_BYTES = 1100;

export type NatPmpRequest =
  | { kind: 'external-address' }
  | {
      kind: 'mapping';
      protocol: 'udp' | 'tcp';
      internalPort: number;
      /** 0 means "no preference" (and is ignored on deletion). */
      suggestedExternalPort: number;
      /** 0 requests deletion (RFC 6886 §3.4). */
      requestedLifetimeSeconds: number;
    };

/**
 * Reason a datagram is not a request the server acts on. `drop` reasons get no
 * reply; the others name the reply the RFC requires.
 */
export type NatPmpParseError =
  | { kind: 'drop'; reason: 'too-short' | 'is-response' | 'wrong-length'; message: string }
  | { kind: 'unsupported-version'; version: number; opcode: number; message: string }
  | { kind: 'unsupported-opcode'; opcode: number; message: string };

export type NatPmpParseResult =
  | { ok: true; request: NatPmpRequest }
  | { ok: false; error: NatPmpParseError };

/**
 * Parses a request datagram.
 *
 * RFC 6886 §3.2 (external address request, 2 bytes):
 *
 * | offset | size | field        |
 * |--------|------|--------------|
 * | 0      | 1    | Vers = 0     |
 * | 1      | 1    | OP = 0       |
 *
 * RFC 6886 §3.3 (mapping request, 12 bytes):
 *
 * | offset | size | field                        |
 * |--------|------|------------------------------|
 * | 0      | 1    | Vers = 0                     |
 * | 1      | 1    | OP = 1 (UDP) or 2 (TCP)      |
 * | 2      | 2    | Reserved (MUST be 0, ignored)|
 * | 4      | 2    | Internal Port                |
 * | 6      | 2    | Suggested External Port      |
 * | 8      | 4    | Requested Port Mapping Lifetime in Seconds |
 *
 * Order of checks: an opcode of 128 or more is a response and is ignored
 * (§3.5); a version other than 0 gets "Unsupported Version"; an opcode other
 * than 0, 1, 2 gets "Unsupported opcode"; a supported request of the wrong
 * length is dropped, as is any datagram shorter than 2 bytes.
 */
export function parseNatPmpRequest(bytes: Uint8Array): NatPmpParseResult {
  if (bytes.length < 2) {
    return {
      ok: false,
      error: {
        kind: 'drop',
        reason: 'too-short',
        message: `NAT-PMP datagram of ${bytes.length} bytes is too short: a request has at least 2 bytes (version, opcode)`,
      },
    };
  }

  const version = bytes[0] ?? 0;
  const opcode = bytes[1] ?? 0;

  if (opcode >= NATPMP_RESPONSE_FLAG) {
    return {
      ok: false,
      error: {
        kind: 'drop',
        reason: 'is-response',
        message: `NAT-PMP opcode ${opcode} is a response opcode (128 or more); servers ignore responses`,
      },
    };
  }

  if (version !== NATPMP_VERSION) {
    return {
      ok: false,
      error: {
        kind: 'unsupported-version',
        version,
        opcode,
        message: `NAT-PMP version ${version} is not supported: only version 0 is`,
      },
    };
  }

  if (opcode === NatPmpOpcode.externalAddress) {
    if (bytes.length !== NATPMP_EXTERNAL_ADDRESS_REQUEST_BYTES) {
      return wrongLength(opcode, bytes.length, NATPMP_EXTERNAL_ADDRESS_REQUEST_BYTES);
    }
    return { ok: true, request: { kind: 'external-address' } };
  }

  if (opcode === NatPmpOpcode.mapUdp || opcode === NatPmpOpcode.mapTcp) {
    if (bytes.length !== NATPMP_MAPPING_REQUEST_BYTES) {
      return wrongLength(opcode, bytes.length, NATPMP_MAPPING_REQUEST_BYTES);
    }
    return {
      ok: true,
      request: {
        kind: 'mapping',
        protocol: opcode === NatPmpOpcode.mapUdp ? 'udp' : 'tcp',
        internalPort: readUint16(bytes, 4),
        suggestedExternalPort: readUint16(bytes, 6),
        requestedLifetimeSeconds: readUint32(bytes, 8),
      },
    };
  }

  return {
    ok: false,
    error: {
      kind: 'unsupported-opcode',
      opcode,
      message: `NAT-PMP opcode ${opcode} is not supported: use 0 (external address), 1 (map UDP) or 2 (map TCP)`,
    },
  };
}

function wrongLength(
  opcode: number,
  actualBytes: number,
  expectedBytes: number,
): NatPmpParseResult {
  return {
    ok: false,
    error: {
      kind: 'drop',
      reason: 'wrong-length',
      message: `NAT-PMP opcode ${opcode} request has ${actualBytes} bytes, expected exactly ${expectedBytes}`,
    },
  };
}

/**
 * Builds the external address response.
 *
 * RFC 6886 §3.2 (12 bytes):
 *
 * | offset | size | field                          |
 * |--------|------|--------------------------------|
 * | 0      | 1    | Vers = 0                       |
 * | 1      | 1    | OP = 128                       |
 * | 2      | 2    | Result Code                    |
 * | 4      | 4    | Seconds Since Start of Epoch   |
 * | 8      | 4    | External IPv4 Address (0 unless success) |
 */
export function buildNatPmpExternalAddressResponse(response: {
  resultCode: NatPmpResultCode;
  epochSeconds: number;
  /** Four address bytes; ignored unless the result is success. */
  externalAddressBytes: Uint8Array;
}): Uint8Array {
  const bytes = new Uint8Array(12);
  bytes[0] = NATPMP_VERSION;
  bytes[1] = NATPMP_RESPONSE_FLAG | NatPmpOpcode.externalAddress;
  writeUint16(bytes, 2, response.resultCode);
  writeUint32(bytes, 4, response.epochSeconds);
  if (response.resultCode === NatPmpResultCode.success) {
    bytes.set(response.externalAddressBytes.subarray(0, 4), 8);
  }
  return bytes;
}

/**
 * Builds a mapping response.
 *
 * RFC 6886 §3.3 (16 bytes):
 *
 * | offset | size | field                          |
 * |--------|------|--------------------------------|
 * | 0      | 1    | Vers = 0                       |
 * | 1      | 1    | OP = 128 + 1 (UDP) or 128 + 2 (TCP) |
 * | 2      | 2    | Result Code                    |
 * | 4      | 4    | Seconds Since Start of Epoch   |
 * | 8      | 2    | Internal Port                  |
 * | 10     | 2    | Mapped External Port           |
 * | 12     | 4    | Port Mapping Lifetime in Seconds |
 */
export function buildNatPmpMappingResponse(response: {
  protocol: 'udp' | 'tcp';
  resultCode: NatPmpResultCode;
  epochSeconds: number;
  internalPort: number;
  externalPort: number;
  lifetimeSeconds: number;
}): Uint8Array {
  const bytes = new Uint8Array(16);
  const opcode = response.protocol === 'udp' ? NatPmpOpcode.mapUdp : NatPmpOpcode.mapTcp;
  bytes[0] = NATPMP_VERSION;
  bytes[1] = NATPMP_RESPONSE_FLAG | opcode;
  writeUint16(bytes, 2, response.resultCode);
  writeUint32(bytes, 4, response.epochSeconds);
  writeUint16(bytes, 8, response.internalPort);
  writeUint16(bytes, 10, response.externalPort);
  writeUint32(bytes, 12, response.lifetimeSeconds);
  return bytes;
}

/**
 * Builds the "Unsupported Version" response of RFC 6886 §3.5 (8 bytes):
 * Vers = 0, OP = 128 + request opcode, Result Code = 1, then the epoch.
 */
export function buildNatPmpUnsupportedVersionResponse(
  opcode: number,
  epochSeconds: number,
): Uint8Array {
  const bytes = new Uint8Array(8);
  bytes[0] = NATPMP_VERSION;
  bytes[1] = NATPMP_RESPONSE_FLAG | (opcode & 0x7f);
  writeUint16(bytes, 2, NatPmpResultCode.unsupportedVersion);
  writeUint32(bytes, 4, epochSeconds);
  return bytes;
}

/**
 * Builds the "Unsupported opcode" response of RFC 6886 §3.5: the entire
 * request returned with the top bit of the opcode set and the result code
 * (bytes 2-3) set to 5. Requests shorter than 4 bytes are zero-padded to
 * hold the result code; longer ones are cut at 1100 bytes.
 */
export function buildNatPmpUnsupportedOpcodeResponse(request: Uint8Array): Uint8Array {
  const length = Math.min(Math.max(request.length, 4), NATPMP_MAX_ECHO_BYTES);
  const bytes = new Uint8Array(length);
  bytes.set(request.subarray(0, length));
  bytes[1] = NATPMP_RESPONSE_FLAG | ((bytes[1] ?? 0) & 0x7f);
  writeUint16(bytes, 2, NatPmpResultCode.unsupportedOpcode);
  return bytes;
}
