import { isIPv4 } from 'node:net';
import { z } from 'zod';

/**
 * Field types shared by every message schema: qube names, IPv4 addresses,
 * CIDR prefixes, transport protocols and port ranges.
 */

/** Qube names as qubesd accepts them: a letter first, then letters, digits, `_`, `.` and `-`, 31 characters at most. */
export const QUBE_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

export const qubeNameSchema = z
  .string()
  .regex(QUBE_NAME_PATTERN, 'must be a Qubes VM name (a letter, then letters, digits, _ . -)');

export const ipv4AddressSchema = z
  .string()
  .refine((value) => isIPv4(value), 'must be a dotted-quad IPv4 address');

/** An IPv4 prefix such as `192.168.77.0/24`; host bits must be zero. */
export const ipv4CidrSchema = z.string().refine(isCanonicalIpv4Cidr, {
  message: 'must be an IPv4 prefix a.b.c.d/len with zero host bits',
});

export const transportProtocolSchema = z.enum(['tcp', 'udp']);
export type TransportProtocol = z.infer<typeof transportProtocolSchema>;

export const portSchema = z.number().int().min(1).max(65535);

export const portRangeSchema = z
  .strictObject({ first: portSchema, last: portSchema })
  .refine((range) => range.first <= range.last, 'first port must not be above last port');
export type PortRange = z.infer<typeof portRangeSchema>;

/** UNIX time in whole seconds. */
export const unixSecondsSchema = z
  .number()
  .int()
  .min(0)
  .max(2 ** 40);

export function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

export function isCanonicalIpv4Cidr(value: string): boolean {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(value);
  if (match === null) {
    return false;
  }

  const [, address = '', lengthText = ''] = match;
  const prefixLength = Number(lengthText);
  if (!isIPv4(address) || prefixLength > 32) {
    return false;
  }

  const hostBits = 32 - prefixLength;
  const hostMask = hostBits === 32 ? 0xffffffff : 2 ** hostBits - 1;
  return (ipv4ToNumber(address) & hostMask) >>> 0 === 0;
}

export function formatPortRange(range: PortRange): string {
  return range.first === range.last ? String(range.first) : `${range.first}-${range.last}`;
}
