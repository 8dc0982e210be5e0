import type { MappingProtocol, ParseResult } from '../upstream-types.js';
import { formatIpv4, parsed, parseError, parseIpv4 } from '../upstream-types.js';

/**
 * PCP (RFC 6887) wire format for ANNOUNCE and MAP: pure builders and
 * parsers. All fields are in network byte order. Only IPv4 mappings are
 * built, with addresses carried as IPv4-mapped IPv6 (::ffff:a.b.c.d).
 */

export const PCP_VERSION = 2;
export const PCP_HEADER_BYTES = 24;
export const PCP_MAP_DATA_BYTES = 36;
export const PCP_NONCE_BYTES = 12;
/** RFC 6887 section 7: a PCP message is at most 1100 bytes. */
export const PCP_MAX_MESSAGE_BYTES = 1100;
/** Bit 7 of byte 1 is set in responses (RFC 6887 section 7.2). */
export const PCP_RESPONSE_BIT = 0x80;

export enum PcpOpcode {
  Announce = 0,
  Map = 1,
}

/** RFC 6887 section 7.4. */
export enum PcpResultCode {
  Success = 0,
  UnsupportedVersion = 1,
  NotAuthorized = 2,
  MalformedRequest = 3,
  UnsupportedOpcode = 4,
  UnsupportedOption = 5,
  MalformedOption = 6,
  NetworkFailure = 7,
  NoResources = 8,
  UnsupportedProtocol = 9,
  UserExceededQuota = 10,
  CannotProvideExternal = 11,
  AddressMismatch = 12,
  ExcessiveRemotePeers = 13,
}

const IANA_PROTOCOL_NUMBER: Record<MappingProtocol, number> = { tcp: 6, udp: 17 };

/** ::ffff:0.0.0.0, the IPv4 "no preference" external address (RFC 6887 section 11.1). */
export const IPV4_UNSPECIFIED = '0.0.0.0';

export interface PcpResponseHeader {
  opcode: PcpOpcode;
  resultCode: PcpResultCode | number;
  /** On success the granted lifetime; on error how long the error lasts. */
  lifetimeSeconds: number;
  epochSeconds: number;
}

export interface PcpMapData {
  nonce: Uint8Array;
  protocol: MappingProtocol;
  internalPort: number;
  externalPort: number;
  /** Dotted IPv4 address, or the IPv6 text when the server assigned a non-IPv4 address. */
  externalAddress: string;
}

export type PcpReply =
  /** A NAT-PMP-only server answered with its "unsupported version" reply (RFC 6887 section 9). */
  | { kind: 'natpmp-only' }
  | { kind: 'announce'; header: PcpResponseHeader }
  /** map is null when an error response carries no opcode data. */
  | { kind: 'map'; header: PcpResponseHeader; map: PcpMapData | null };

export interface PcpMapRequest {
  clientAddress: string;
  nonce: Uint8Array;
  protocol: MappingProtocol;
  internalPort: number;
  /** 0 lets the server choose. */
  suggestedExternalPort: number;
  /** IPV4_UNSPECIFIED lets the server choose. */
  suggestedExternalAddress: string;
  /** 0 deletes the mapping. */
  lifetimeSeconds: number;
}

/** Writes an IPv4 address as IPv4-mapped IPv6 into 16 bytes at offset. */
function writeIpv4Mapped(target: Uint8Array, offset: number, address: string): void {
  const bytes = parseIpv4(address);
  if (bytes === null)
    throw new RangeError(`invalid IPv4 address "${address}": use dotted decimal like 192.168.1.10`);
  target.fill(0, offset, offset + 10);
  target[offset + 10] = 0xff;
  target[offset + 11] = 0xff;
  target.set(bytes, offset + 12);
}

/** Reads 16 bytes as an address: dotted IPv4 when IPv4-mapped, else colon-separated IPv6. */
function readAddress(bytes: Uint8Array): string {
  const mapped =
    bytes.subarray(0, 10).every((byte) => byte === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) return formatIpv4(bytes.subarray(12, 16));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

/**
 * Builds the common request header (RFC 6887 section 7.1), 24 bytes:
 *
 *    0: version = 2
 *    1: R = 0 (bit 7), opcode (bits 0-6)
 *    2: reserved, 2 bytes = 0
 *    4: requested lifetime in seconds, 4 bytes
 *    8: PCP client's IP address, 16 bytes (IPv4-mapped)
 */
function writeRequestHeader(
  target: Uint8Array,
  opcode: PcpOpcode,
  lifetimeSeconds: number,
  clientAddress: string,
): void {
  if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds < 0 || lifetimeSeconds > 0xffffffff) {
    throw new RangeError(
      `invalid PCP lifetime ${lifetimeSeconds} s: use an integer from 0 to 4294967295`,
    );
  }
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  view.setUint8(0, PCP_VERSION);
  view.setUint8(1, opcode);
  view.setUint32(4, lifetimeSeconds);
  writeIpv4Mapped(target, 8, clientAddress);
}

/** Builds an ANNOUNCE request (RFC 6887 section 14.1): the 24-byte header with lifetime 0 and no data. */
export function buildAnnounceRequest(clientAddress: string): Uint8Array {
  const bytes = new Uint8Array(PCP_HEADER_BYTES);
  writeRequestHeader(bytes, PcpOpcode.Announce, 0, clientAddress);
  return bytes;
}

/**
 * Builds a MAP request (RFC 6887 section 11.1): the header, then 36 bytes:
 *
 *   24: mapping nonce, 12 bytes
 *   36: protocol (IANA number: 6 TCP, 17 UDP)
 *   37: reserved, 3 bytes = 0
 *   40: internal port, 2 bytes
 *   42: suggested external port, 2 bytes
 *   44: suggested external IP address, 16 bytes (IPv4-mapped)
 */
export function buildMapRequest(request: PcpMapRequest): Uint8Array {
  if (request.nonce.length !== PCP_NONCE_BYTES) {
    throw new RangeError(
      `invalid PCP nonce of ${request.nonce.length} bytes: use ${PCP_NONCE_BYTES} random bytes`,
    );
  }
  checkPort('internal port', request.internalPort, false);
  checkPort('suggested external port', request.suggestedExternalPort, true);

  const bytes = new Uint8Array(PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES);
  writeRequestHeader(bytes, PcpOpcode.Map, request.lifetimeSeconds, request.clientAddress);
  const view = new DataView(bytes.buffer);
  bytes.set(request.nonce, 24);
  view.setUint8(36, IANA_PROTOCOL_NUMBER[request.protocol]);
  view.setUint16(40, request.internalPort);
  view.setUint16(42, request.suggestedExternalPort);
  writeIpv4Mapped(bytes, 44, request.suggestedExternalAddress);
  return bytes;
}

/**
 * Checks the options after the opcode data (RFC 6887 section 7.3): each is
 * code (1 byte), reserved (1), length (2) and data padded to 4 bytes. The
 * client sends no options, so their content is ignored.
 */
function checkOptions(bytes: Uint8Array, offset: number): string | null {
  let position = offset;
  while (position < bytes.length) {
    if (bytes.length - position < 4) return `PCP option at byte ${position} is truncated`;
    const length = ((bytes[position + 2] ?? 0) << 8) | (bytes[position + 3] ?? 0);
    const padded = Math.ceil(length / 4) * 4;
    if (position + 4 + padded > bytes.length) {
      return `PCP option at byte ${position} declares ${length} bytes but only ${bytes.length - position - 4} follow`;
    }
    position += 4 + padded;
  }
  return null;
}

/**
 * Parses a response (RFC 6887 section 7.2): the 24-byte header, then the
 * opcode data and options.
 *
 *    0: version = 2
 *    1: R = 1 (bit 7), opcode (bits 0-6)
 *    2: reserved, 1 byte
 *    3: result code, 1 byte
 *    4: lifetime in seconds, 4 bytes
 *    8: epoch time in seconds, 4 bytes
 *   12: reserved, 12 bytes
 *   24: opcode data: none for ANNOUNCE, 36 bytes for MAP (see buildMapRequest)
 */
export function parsePcpReply(bytes: Uint8Array): ParseResult<PcpReply> {
  if (bytes.length >= 2 && bytes[0] === 0) {
    // A NAT-PMP-only server answers a version 2 request with 8 to 16 bytes:
    // version 0, opcode 128 + request opcode, result 1 (UnsupportedVersion).
    const resultCode = bytes.length >= 4 ? ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0) : -1;
    if (bytes.length >= 8 && bytes.length <= 16 && resultCode === 1)
      return parsed({ kind: 'natpmp-only' });
    return parseError(
      `PCP reply has version 0 with result ${resultCode} and ${bytes.length} bytes, not a NAT-PMP version error`,
    );
  }
  if (bytes.length < PCP_HEADER_BYTES) {
    return parseError(
      `PCP reply of ${bytes.length} bytes is shorter than the ${PCP_HEADER_BYTES}-byte header`,
    );
  }
  if (bytes.length > PCP_MAX_MESSAGE_BYTES || bytes.length % 4 !== 0) {
    return parseError(
      `PCP reply of ${bytes.length} bytes is not a multiple of 4 up to ${PCP_MAX_MESSAGE_BYTES}`,
    );
  }
  if (bytes[0] !== PCP_VERSION)
    return parseError(`PCP reply has version ${bytes[0]}, expected ${PCP_VERSION}`);
  const opcodeByte = bytes[1] ?? 0;
  if ((opcodeByte & PCP_RESPONSE_BIT) === 0)
    return parseError('PCP message has the R bit clear: it is a request, not a response');

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const opcode = opcodeByte & 0x7f;
  const header = {
    opcode,
    resultCode: view.getUint8(3),
    lifetimeSeconds: view.getUint32(4),
    epochSeconds: view.getUint32(8),
  };

  if (opcode === PcpOpcode.Announce) {
    const optionError = checkOptions(bytes, PCP_HEADER_BYTES);
    if (optionError !== null) return parseError(optionError);
    return parsed({ kind: 'announce', header });
  }
  if (opcode !== PcpOpcode.Map)
    return parseError(`PCP reply has opcode ${opcode}, expected ANNOUNCE (0) or MAP (1)`);

  if (bytes.length === PCP_HEADER_BYTES) {
    if (header.resultCode === PcpResultCode.Success)
      return parseError('PCP MAP success reply has no MAP data');
    return parsed({ kind: 'map', header, map: null });
  }
  if (bytes.length < PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES) {
    return parseError(
      `PCP MAP reply of ${bytes.length} bytes is shorter than ${PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES}`,
    );
  }
  const optionError = checkOptions(bytes, PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES);
  if (optionError !== null) return parseError(optionError);

  const protocolNumber = view.getUint8(36);
  const protocol = (Object.keys(IANA_PROTOCOL_NUMBER) as MappingProtocol[]).find(
    (name) => IANA_PROTOCOL_NUMBER[name] === protocolNumber,
  );
  if (protocol === undefined)
    return parseError(`PCP MAP reply has protocol ${protocolNumber}, expected 6 (TCP) or 17 (UDP)`);
  const map: PcpMapData = {
    nonce: bytes.slice(24, 36),
    protocol,
    internalPort: view.getUint16(40),
    externalPort: view.getUint16(42),
    externalAddress: readAddress(bytes.subarray(44, 60)),
  };
  return parsed({ kind: 'map', header, map });
}

export function pcpResultName(code: number): string {
  return PcpResultCode[code] ?? `unknown result code ${code}`;
}

function checkPort(name: string, port: number, allowZero: boolean): void {
  const minimum = allowZero ? 0 : 1;
  if (!Number.isInteger(port) || port < minimum || port > 65535) {
    throw new RangeError(`invalid PCP ${name} ${port}: use an integer from ${minimum} to 65535`);
  }
}
