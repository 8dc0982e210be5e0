import { isIPv4, isIPv6 } from 'node:net';
import { readUint16, readUint32, writeUint16, writeUint32 } from '../byte-order.js';
import {
  STUN_CHANGE_IP_FLAG,
  STUN_CHANGE_PORT_FLAG,
  STUN_MAGIC_COOKIE,
  StunAddressFamily,
  type StunErrorCode,
} from './stun-constants.js';

/**
 * Encoders and decoders of single attribute values (RFC 8489 §14, RFC 5780
 * §7). Decoders are total and return a typed error. Encoders expect
 * validated values, and the address encoder returns null for text that is
 * neither IPv4 nor IPv6.
 */

export interface StunTransportAddress {
  family: 'ipv4' | 'ipv6';
  address: string;
  port: number;
}

export type StunAttributeDecodeResult<T> = { ok: true; value: T } | { ok: false; message: string };

/**
 * Encodes MAPPED-ADDRESS, or XOR-MAPPED-ADDRESS when `transactionId` is
 * given.
 *
 * RFC 8489 §14.1 (MAPPED-ADDRESS) and §14.2 (XOR-MAPPED-ADDRESS), 8 bytes
 * for IPv4 and 20 for IPv6:
 *
 * | offset | size    | field                                             |
 * |--------|---------|---------------------------------------------------|
 * | 0      | 1       | zero                                              |
 * | 1      | 1       | family: 0x01 IPv4, 0x02 IPv6                      |
 * | 2      | 2       | port (XOR: port XOR the top 16 bits of the cookie)|
 * | 4      | 4 or 16 | address (XOR: IPv4 XOR cookie; IPv6 XOR cookie and transaction ID) |
 */
export function encodeAddressAttribute(
  address: string,
  port: number,
  transactionId?: Uint8Array,
): Uint8Array | null {
  const addressBytes = addressToBytes(address);
  if (addressBytes === null) {
    return null;
  }

  const value = new Uint8Array(4 + addressBytes.length);
  value[1] = addressBytes.length === 4 ? StunAddressFamily.ipv4 : StunAddressFamily.ipv6;
  if (transactionId === undefined) {
    writeUint16(value, 2, port);
    value.set(addressBytes, 4);
    return value;
  }

  writeUint16(value, 2, port ^ (STUN_MAGIC_COOKIE >>> 16));
  const mask = xorMask(transactionId);
  for (let index = 0; index < addressBytes.length; index += 1) {
    value[4 + index] = (addressBytes[index] ?? 0) ^ (mask[index] ?? 0);
  }
  return value;
}

/** Decodes MAPPED-ADDRESS, or XOR-MAPPED-ADDRESS when `transactionId` is given. */
export function decodeAddressAttribute(
  value: Uint8Array,
  transactionId?: Uint8Array,
): StunAttributeDecodeResult<StunTransportAddress> {
  const family = value[1];
  let expectedBytes: number | null = null;
  if (family === StunAddressFamily.ipv4) {
    expectedBytes = 8;
  } else if (family === StunAddressFamily.ipv6) {
    expectedBytes = 20;
  }
  if (expectedBytes === null) {
    return {
      ok: false,
      message: `address family 0x${(family ?? 0).toString(16)} is neither IPv4 (0x01) nor IPv6 (0x02)`,
    };
  }
  if (value.length !== expectedBytes) {
    return {
      ok: false,
      message: `address attribute has ${value.length} bytes, expected ${expectedBytes} for its family`,
    };
  }

  const addressBytes = value.slice(4);
  let port = readUint16(value, 2);
  if (transactionId !== undefined) {
    port ^= STUN_MAGIC_COOKIE >>> 16;
    const mask = xorMask(transactionId);
    for (let index = 0; index < addressBytes.length; index += 1) {
      addressBytes[index] = (addressBytes[index] ?? 0) ^ (mask[index] ?? 0);
    }
  }

  return {
    ok: true,
    value:
      addressBytes.length === 4
        ? { family: 'ipv4', address: Array.from(addressBytes).join('.'), port }
        : { family: 'ipv6', address: ipv6BytesToText(addressBytes), port },
  };
}

/**
 * Encodes ERROR-CODE.
 *
 * RFC 8489 §14.8:
 *
 * | offset | size | field                                         |
 * |--------|------|-----------------------------------------------|
 * | 0      | 2    | reserved, zero                                |
 * | 2      | 1    | 5 bits zero, 3 bits class (hundreds digit)    |
 * | 3      | 1    | number (code modulo 100)                      |
 * | 4      | n    | reason phrase, UTF-8, at most 763 bytes       |
 */
export function encodeErrorCode(code: StunErrorCode, reasonPhrase: string): Uint8Array {
  const phrase = truncateUtf8(reasonPhrase, 763);
  const value = new Uint8Array(4 + phrase.length);
  value[2] = Math.floor(code / 100) & 0x07;
  value[3] = code % 100;
  value.set(phrase, 4);
  return value;
}

export function decodeErrorCode(
  value: Uint8Array,
): StunAttributeDecodeResult<{ code: number; reasonPhrase: string }> {
  if (value.length < 4) {
    return { ok: false, message: `ERROR-CODE has ${value.length} bytes, expected at least 4` };
  }
  const errorClass = (value[2] ?? 0) & 0x07;
  const number = value[3] ?? 0;
  if (errorClass < 3 || errorClass > 6 || number > 99) {
    return {
      ok: false,
      message: `ERROR-CODE class ${errorClass} number ${number} is outside 300-699`,
    };
  }
  return {
    ok: true,
    value: {
      code: errorClass * 100 + number,
      reasonPhrase: new TextDecoder('utf-8', { fatal: false }).decode(value.subarray(4)),
    },
  };
}

/**
 * Encodes UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): a list of 16-bit types. RFC
 * 3489 §11.2.10 requires an even count instead, with one type repeated,
 * because RFC 3489 had no padding. `repeatForRfc3489` does that.
 */
export function encodeUnknownAttributes(types: number[], repeatForRfc3489 = false): Uint8Array {
  const list = [...types];
  const last = list[list.length - 1];
  if (repeatForRfc3489 && list.length % 2 === 1 && last !== undefined) {
    list.push(last);
  }
  const value = new Uint8Array(list.length * 2);
  for (const [index, type] of list.entries()) {
    writeUint16(value, index * 2, type);
  }
  return value;
}

export function decodeUnknownAttributes(value: Uint8Array): StunAttributeDecodeResult<number[]> {
  if (value.length % 2 !== 0) {
    return {
      ok: false,
      message: `UNKNOWN-ATTRIBUTES has ${value.length} bytes, not a multiple of 2`,
    };
  }
  const types: number[] = [];
  for (let offset = 0; offset < value.length; offset += 2) {
    types.push(readUint16(value, offset));
  }
  return { ok: true, value: types };
}

/**
 * Decodes CHANGE-REQUEST.
 *
 * RFC 5780 §7.2 (4 bytes): 29 bits zero, then flag A (0x04, change IP),
 * flag B (0x02, change port) and one zero bit.
 */
export function decodeChangeRequest(
  value: Uint8Array,
): StunAttributeDecodeResult<{ changeIp: boolean; changePort: boolean }> {
  if (value.length !== 4) {
    return { ok: false, message: `CHANGE-REQUEST has ${value.length} bytes, expected 4` };
  }
  const flags = readUint32(value, 0);
  return {
    ok: true,
    value: {
      changeIp: (flags & STUN_CHANGE_IP_FLAG) !== 0,
      changePort: (flags & STUN_CHANGE_PORT_FLAG) !== 0,
    },
  };
}

export function encodeChangeRequest(changeIp: boolean, changePort: boolean): Uint8Array {
  const value = new Uint8Array(4);
  writeUint32(
    value,
    0,
    (changeIp ? STUN_CHANGE_IP_FLAG : 0) | (changePort ? STUN_CHANGE_PORT_FLAG : 0),
  );
  return value;
}

/** Encodes SOFTWARE (RFC 8489 §14.14): UTF-8, fewer than 128 characters, at most 763 bytes. */
export function encodeSoftware(description: string): Uint8Array {
  return truncateUtf8(Array.from(description).slice(0, 127).join(''), 763);
}

function truncateUtf8(text: string, maxBytes: number): Uint8Array {
  const encoder = new TextEncoder();
  let bytes = encoder.encode(text);
  let characters = Array.from(text);
  while (bytes.length > maxBytes) {
    characters = characters.slice(0, -1);
    bytes = encoder.encode(characters.join(''));
  }
  return bytes;
}

/** XOR key of XOR-MAPPED-ADDRESS: the magic cookie followed by the transaction ID (RFC 8489 §14.2). */
function xorMask(transactionId: Uint8Array): Uint8Array {
  const mask = new Uint8Array(16);
  writeUint32(mask, 0, STUN_MAGIC_COOKIE);
  mask.set(transactionId.subarray(0, 12), 4);
  return mask;
}

function addressToBytes(address: string): Uint8Array | null {
  if (isIPv4(address)) {
    return Uint8Array.from(address.split('.').map((part) => Number(part)));
  }
  if (!isIPv6(address)) {
    return null;
  }

  const halves = address.split('%')[0]?.split('::') ?? [];
  const toGroups = (part: string | undefined): string[] =>
    part === undefined || part === '' ? [] : part.split(':').flatMap(expandEmbeddedIpv4);
  const head = toGroups(halves[0]);
  const tail = toGroups(halves[1]);
  const zeros = halves.length === 2 ? Array<string>(8 - head.length - tail.length).fill('0') : [];
  const groups = [...head, ...zeros, ...tail];

  const bytes = new Uint8Array(16);
  for (const [index, group] of groups.entries()) {
    writeUint16(bytes, index * 2, Number.parseInt(group, 16));
  }
  return bytes;
}

/** Splits a trailing dotted-quad group (`::ffff:1.2.3.4`) into two hex groups. */
function expandEmbeddedIpv4(group: string): string[] {
  if (!group.includes('.')) {
    return [group];
  }
  const parts = group.split('.').map((part) => Number(part));
  return [
    (((parts[0] ?? 0) << 8) | (parts[1] ?? 0)).toString(16),
    (((parts[2] ?? 0) << 8) | (parts[3] ?? 0)).toString(16),
  ];
}

/** Formats 16 bytes as RFC 5952 text (lower case, longest zero run compressed). */
function ipv6BytesToText(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let offset = 0; offset < 16; offset += 2) {
    groups.push(readUint16(bytes, offset));
  }

  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8; start += 1) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) {
      length += 1;
    }
    if (length > bestLength && length >= 2) {
      bestStart = start;
      bestLength = length;
    }
  }

  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) {
    return hex.join(':');
  }
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}
