import { isIPv4 } from 'node:net';

/** Conversions between dotted-quad IPv4 strings and wire bytes. */

/** Returns the 4 bytes of a dotted-quad address, or null when the text is no IPv4 address. */
export function ipv4ToBytes(address: string): Uint8Array | null {
  if (!isIPv4(address)) {
    return null;
  }
  return Uint8Array.from(address.split('.').map((part) => Number(part)));
}

export function bytesToIpv4(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join('.');
}

/** Returns the IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) as 16 bytes. */
export function ipv4ToMappedBytes(address: string): Uint8Array | null {
  const ipv4 = ipv4ToBytes(address);
  if (ipv4 === null) {
    return null;
  }
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(ipv4, 12);
  return bytes;
}

/** Returns the IPv4 address inside a 16-byte IPv4-mapped address, or null for any other address. */
export function mappedBytesToIpv4(bytes: Uint8Array): string | null {
  if (bytes.length !== 16) {
    return null;
  }
  for (let index = 0; index < 10; index += 1) {
    if (bytes[index] !== 0) {
      return null;
    }
  }
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) {
    return null;
  }
  return bytesToIpv4(bytes.subarray(12, 16));
}

/** True for `::` and `::ffff:0.0.0.0`, which PCP uses for "no preference" (RFC 6887 §11.1). */
export function isUnspecifiedAddressBytes(bytes: Uint8Array): boolean {
  const ipv4 = mappedBytesToIpv4(bytes);
  if (ipv4 === '0.0.0.0') {
    return true;
  }
  return bytes.length === 16 && bytes.every((byte) => byte === 0);
}
