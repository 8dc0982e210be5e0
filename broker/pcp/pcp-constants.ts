/** Port Control Protocol (RFC 6887) numbers shared by the codec and the handler. */

export const PCP_VERSION = 2;
export const PCP_SERVER_PORT = 5351;
/** Requests and responses are at most 1100 bytes (RFC 6887 §7). */
export const PCP_MAX_PACKET_BYTES = 1100;
export const PCP_HEADER_BYTES = 24;
export const PCP_MAP_DATA_BYTES = 36;
export const PCP_NONCE_BYTES = 12;
export const PCP_RESPONSE_FLAG = 0x80;

/** Opcodes (RFC 6887 §19.2). */
export const PcpOpcode = {
  announce: 0,
  map: 1,
  peer: 2,
} as const;
export type PcpOpcode = (typeof PcpOpcode)[keyof typeof PcpOpcode];

/** Result codes (RFC 6887 §7.4). */
export const PcpResultCode = {
  success: 0,
  unsupportedVersion: 1,
  notAuthorized: 2,
  malformedRequest: 3,
  unsupportedOpcode: 4,
  unsupportedOption: 5,
  malformedOption: 6,
  networkFailure: 7,
  noResources: 8,
  unsupportedProtocol: 9,
  userExceededQuota: 10,
  cannotProvideExternal: 11,
  addressMismatch: 12,
  excessiveRemotePeers: 13,
} as const;
export type PcpResultCode = (typeof PcpResultCode)[keyof typeof PcpResultCode];

/** Option codes (RFC 6887 §13); codes 0-127 are mandatory to process, 128-255 optional. */
export const PcpOptionCode = {
  thirdParty: 1,
  preferFailure: 2,
  filter: 3,
} as const;
export type PcpOptionCode = (typeof PcpOptionCode)[keyof typeof PcpOptionCode];

export const PCP_FIRST_OPTIONAL_OPTION_CODE = 128;

/** IANA protocol numbers used in the MAP Protocol field; 0 means "all protocols". */
export const PcpProtocolNumber = {
  all: 0,
  tcp: 6,
  udp: 17,
} as const;

/**
 * Lifetimes of error responses, telling clients how long the same request
 * will fail (RFC 6887 §7.4 marks each result code as a long or short
 * lifetime error). The values are those of OpenBSD natpmpd and miniupnpd:
 * 30 minutes and 30 seconds.
 */
export const PCP_LONG_ERROR_LIFETIME_SECONDS = 1800;
export const PCP_SHORT_ERROR_LIFETIME_SECONDS = 30;

const SHORT_LIFETIME_ERRORS: ReadonlySet<number> = new Set([
  PcpResultCode.networkFailure,
  PcpResultCode.noResources,
  PcpResultCode.userExceededQuota,
  PcpResultCode.cannotProvideExternal,
]);

export function errorLifetimeSeconds(resultCode: PcpResultCode): number {
  return SHORT_LIFETIME_ERRORS.has(resultCode)
    ? PCP_SHORT_ERROR_LIFETIME_SECONDS
    : PCP_LONG_ERROR_LIFETIME_SECONDS;
}

export function pcpResultName(resultCode: number): string {
  const entry = Object.entries(PcpResultCode).find(([, value]) => value === resultCode);
  return entry === undefined ? `result ${resultCode}` : entry[0];
}
