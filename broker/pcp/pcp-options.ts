import {
  PCP_FIRST_OPTIONAL_OPTION_CODE,
  PcpOpcode,
  PcpOptionCode,
  PcpResultCode,
} from './pcp-constants.js';

/** One FILTER option (RFC 6887 §13.3). */
export interface PcpFilter {
  prefixLength: number;
  remotePeerPort: number;
  remotePeerAddressBytes: Uint8Array;
}

export interface PcpOptions {
  /** Internal IP Address of a THIRD_PARTY option, when present. */
  thirdPartyAddressBytes: Uint8Array | null;
  preferFailure: boolean;
  filters: PcpFilter[];
  /** Known options as they appeared (header, data and padding), for echoing in a success response. */
  known: Uint8Array[];
}

export type PcpOptionsResult =
  | { ok: true; options: PcpOptions }
  | {
      ok: false;
      resultCode: typeof PcpResultCode.malformedOption | typeof PcpResultCode.unsupportedOption;
      message: string;
    };

interface OptionRule {
  name: string;
  /** Exact Option Length in bytes, padding excluded. */
  dataBytes: number;
  /** Most times the option may appear, or null for no limit. */
  maxCount: number | null;
  validOpcodes: readonly number[];
}

const OPTION_RULES: ReadonlyMap<number, OptionRule> = new Map([
  [
    PcpOptionCode.thirdParty,
    {
      name: 'THIRD_PARTY',
      dataBytes: 16,
      maxCount: 1,
      validOpcodes: [PcpOpcode.map, PcpOpcode.peer],
    },
  ],
  [
    PcpOptionCode.preferFailure,
    { name: 'PREFER_FAILURE', dataBytes: 0, maxCount: 1, validOpcodes: [PcpOpcode.map] },
  ],
  [
    PcpOptionCode.filter,
    { name: 'FILTER', dataBytes: 20, maxCount: null, validOpcodes: [PcpOpcode.map] },
  ],
]);

/**
 * Parses the options that follow the opcode-specific data.
 *
 * RFC 6887 §7.3 (each option):
 *
 * | offset | size | field                                           |
 * |--------|------|-------------------------------------------------|
 * | 0      | 1    | Option Code                                     |
 * | 1      | 1    | Reserved                                        |
 * | 2      | 2    | Option Length (data bytes, padding excluded)    |
 * | 4      | n    | data, zero-padded to a multiple of 4 bytes      |
 *
 * An option that does not fit, has the wrong length for its code or
 * appears too often gives MALFORMED_OPTION. An unknown option in the
 * mandatory range (0-127), or a known one used with an opcode it is not
 * defined for, gives UNSUPP_OPTION; unknown optional options are skipped.
 */
export function parsePcpOptions(bytes: Uint8Array, opcode: number): PcpOptionsResult {
  const options: PcpOptions = {
    thirdPartyAddressBytes: null,
    preferFailure: false,
    filters: [],
    known: [],
  };
  const counts = new Map<number, number>();
  let offset = 0;

  while (offset < bytes.length) {
    if (bytes.length - offset < 4) {
      return malformed(
        `option header at byte ${offset} is cut short: ${bytes.length - offset} bytes remain, 4 needed`,
      );
    }

    const code = bytes[offset] ?? 0;
    const dataBytes = ((bytes[offset + 2] ?? 0) << 8) | (bytes[offset + 3] ?? 0);
    const paddedBytes = (dataBytes + 3) & ~3;
    const end = offset + 4 + paddedBytes;
    if (end > bytes.length) {
      return malformed(
        `option ${code} declares ${dataBytes} data bytes but only ${bytes.length - offset - 4} remain`,
      );
    }

    const rule = OPTION_RULES.get(code);
    if (rule === undefined) {
      if (code < PCP_FIRST_OPTIONAL_OPTION_CODE) {
        return {
          ok: false,
          resultCode: PcpResultCode.unsupportedOption,
          message: `option ${code} is mandatory to process (code below 128) and not supported`,
        };
      }
      offset = end;
      continue;
    }

    if (!rule.validOpcodes.includes(opcode)) {
      return {
        ok: false,
        resultCode: PcpResultCode.unsupportedOption,
        message: `option ${rule.name} is not defined for opcode ${opcode}`,
      };
    }
    if (dataBytes !== rule.dataBytes) {
      return malformed(`option ${rule.name} has length ${dataBytes}, expected ${rule.dataBytes}`);
    }
    const count = (counts.get(code) ?? 0) + 1;
    counts.set(code, count);
    if (rule.maxCount !== null && count > rule.maxCount) {
      return malformed(
        `option ${rule.name} appears ${count} times, at most ${rule.maxCount} allowed`,
      );
    }

    const data = bytes.subarray(offset + 4, offset + 4 + dataBytes);
    if (code === PcpOptionCode.thirdParty) {
      options.thirdPartyAddressBytes = Uint8Array.from(data);
    } else if (code === PcpOptionCode.preferFailure) {
      options.preferFailure = true;
    } else {
      const filter = parseFilter(data);
      if (typeof filter === 'string') {
        return malformed(filter);
      }
      options.filters.push(filter);
    }
    // Reserved fields are sent as 0 in the echo (RFC 6887 §7.3, §13.3).
    const echo = Uint8Array.from(bytes.subarray(offset, end));
    echo[1] = 0;
    if (code === PcpOptionCode.filter) {
      echo[4] = 0;
    }
    options.known.push(echo);
    offset = end;
  }

  return { ok: true, options };
}

/**
 * FILTER option data, RFC 6887 §13.3 (20 bytes):
 *
 * | offset | size | field                 |
 * |--------|------|-----------------------|
 * | 0      | 1    | Reserved              |
 * | 1      | 1    | Prefix Length         |
 * | 2      | 2    | Remote Peer Port      |
 * | 4      | 16   | Remote Peer IP Address |
 *
 * A prefix length above 128, or between 1 and 95 for an IPv4-mapped
 * address, is malformed. Returns the filter or an error message.
 */
function parseFilter(data: Uint8Array): PcpFilter | string {
  const prefixLength = data[1] ?? 0;
  const remotePeerAddressBytes = Uint8Array.from(data.subarray(4, 20));
  const isMapped =
    remotePeerAddressBytes.subarray(0, 10).every((byte) => byte === 0) &&
    remotePeerAddressBytes[10] === 0xff &&
    remotePeerAddressBytes[11] === 0xff;
  if (prefixLength > 128 || (isMapped && prefixLength !== 0 && prefixLength < 96)) {
    return `FILTER prefix length ${prefixLength} is invalid: use 0, or 96-128 for an IPv4-mapped address, or at most 128`;
  }
  return {
    prefixLength,
    remotePeerPort: ((data[2] ?? 0) << 8) | (data[3] ?? 0),
    remotePeerAddressBytes,
  };
}

function malformed(message: string): PcpOptionsResult {
  return { ok: false, resultCode: PcpResultCode.malformedOption, message };
}
