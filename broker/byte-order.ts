/**
 * Big-endian (network byte order) reads and writes of unsigned integers in
 * wire buffers, shared by the NAT-PMP, PCP and STUN codecs. A read past the
 * end counts the missing bytes as zero; callers check lengths first.
 */

export function readUint16(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);
}

export function readUint32(bytes: Uint8Array, offset: number): number {
  return readUint16(bytes, offset) * 0x10000 + readUint16(bytes, offset + 2);
}

export function writeUint16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = (value >>> 8) & 0xff;
  bytes[offset + 1] = value & 0xff;
}

export function writeUint32(bytes: Uint8Array, offset: number, value: number): void {
  writeUint16(bytes, offset, Math.floor(value / 0x10000) & 0xffff);
  writeUint16(bytes, offset + 2, value & 0xffff);
}
