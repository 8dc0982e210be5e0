/**
 * Types shared by the upstream clients: what the sys-net agent reports about
 * the home router, the transport protocols a mapping can carry, and the
 * clock every component takes.
 */

/**
 * The home router as sys-net sees it on its uplink. The broker in sys-nat
 * cannot run SSDP discovery itself (multicast does not cross sys-firewall and
 * sys-net), so sys-net reports this and the broker's clients use it.
 */
export interface RouterInfo {
  /** The router's LAN address: sys-net's default gateway. */
  gatewayAddress: string;
  /** sys-net's own LAN address, which the router sees and maps to. */
  lanAddress: string;
  /** LOCATION of the router's IGD root description; null when SSDP found none. */
  igdLocation: string | null;
}

/** Transport protocol of one mapping. TCP and UDP are always mapped separately. */
export type MappingProtocol = 'tcp' | 'udp';

/** The upstream protocol that created a mapping. */
export type UpstreamVia = 'pcp' | 'natpmp' | 'igd2' | 'igd1';

export const ALL_UPSTREAM_VIAS: readonly UpstreamVia[] = ['pcp', 'natpmp', 'igd2', 'igd1'];

/** Wall-clock time and timers, injectable so tests can drive renewals. */
export interface UpstreamClock {
  nowMs(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemUpstreamClock: UpstreamClock = {
  nowMs: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Result of a total parser: a typed value, or an error message naming the bad value. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function parsed<T>(value: T): ParseResult<T> {
  return { ok: true, value };
}

export function parseError<T>(error: string): ParseResult<T> {
  return { ok: false, error };
}

/** Formats 4 bytes as a dotted IPv4 address. */
export function formatIpv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Parses a dotted IPv4 address into 4 bytes, or returns null when it is not one. */
export function parseIpv4(text: string): Uint8Array | null {
  if (!IPV4_PATTERN.test(text)) return null;
  return Uint8Array.from(text.split('.').map(Number));
}
