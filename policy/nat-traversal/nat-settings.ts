import type { PortRange, TransportProtocol } from '../../rpc/wire-types.js';
import type { AdminApiReader } from '../network/qube-inventory.js';

/**
 * Per-qube NAT traversal settings, kept in qube features:
 *
 *   qvm-features work nat-traversal 1                     enable (default: off)
 *   qvm-features work nat-traversal-ports 1024-65535      allowed internal and uplink ports (N or N-M, comma-separated)
 *   qvm-features work nat-traversal-protocols tcp,udp     allowed protocols
 *   qvm-features work nat-traversal-max-lease 3600        longest lease in seconds
 *
 * A feature with an invalid value disables NAT traversal for that qube
 * (default deny), and the reason is reported.
 */

export const NAT_TRAVERSAL_FEATURE = 'nat-traversal';
export const NAT_TRAVERSAL_PORTS_FEATURE = 'nat-traversal-ports';
export const NAT_TRAVERSAL_PROTOCOLS_FEATURE = 'nat-traversal-protocols';
export const NAT_TRAVERSAL_MAX_LEASE_FEATURE = 'nat-traversal-max-lease';
/** Feature of the broker VM (`qvm-features sys-nat nat-broker 1`): dom0 redirects to it and accepts its calls. */
export const NAT_BROKER_FEATURE = 'nat-broker';
/**
 * Feature of the broker VM: the UDP ports whose traffic from enabled qubes
 * the netvms send to the broker as STUN (`qvm-features sys-nat
 * nat-traversal-stun-ports 3478,19302`); the broker's QNB_STUN_PORTS must match.
 */
export const NAT_TRAVERSAL_STUN_PORTS_FEATURE = 'nat-traversal-stun-ports';
/** Most STUN ports a netvm redirects, the bound of the agent state. */
export const MAX_STUN_PORTS = 8;

/** Ports below 1024 are privileged services; a qube gets them only when its feature lists them. */
export const DEFAULT_ALLOWED_PORTS: PortRange[] = [{ first: 1024, last: 65535 }];
export const DEFAULT_MAX_LEASE_SECONDS = 3600;
/** IGD v2's longest lease (604800 s, one week) bounds every lease. */
export const MAX_LEASE_SECONDS = 604_800;

export interface NatTraversalSettings {
  enabled: boolean;
  allowedPorts: PortRange[];
  allowedProtocols: TransportProtocol[];
  maxLeaseSeconds: number;
  /** Reason NAT traversal is off despite `nat-traversal=1`; null when it is on or simply not enabled. */
  problem: string | null;
}

export function disabledSettings(problem: string | null = null): NatTraversalSettings {
  return {
    enabled: false,
    allowedPorts: [],
    allowedProtocols: [],
    maxLeaseSeconds: 0,
    problem,
  };
}

export async function readNatTraversalSettings(
  adminApi: AdminApiReader,
  qube: string,
): Promise<NatTraversalSettings> {
  const [enabled, ports, protocols, maxLease] = await Promise.all([
    adminApi.getFeature(qube, NAT_TRAVERSAL_FEATURE),
    adminApi.getFeature(qube, NAT_TRAVERSAL_PORTS_FEATURE),
    adminApi.getFeature(qube, NAT_TRAVERSAL_PROTOCOLS_FEATURE),
    adminApi.getFeature(qube, NAT_TRAVERSAL_MAX_LEASE_FEATURE),
  ]);
  return parseNatTraversalSettings({ enabled, ports, protocols, maxLease });
}

/** Parses the feature values (null = feature not set). */
export function parseNatTraversalSettings(features: {
  enabled: string | null;
  ports: string | null;
  protocols: string | null;
  maxLease: string | null;
}): NatTraversalSettings {
  // Qubes reads an empty feature value as false, any other as true; we want an explicit 1.
  if (features.enabled !== '1' && features.enabled !== 'True' && features.enabled !== 'true') {
    return disabledSettings();
  }

  const allowedPorts =
    features.ports === null ? DEFAULT_ALLOWED_PORTS : parsePortList(features.ports);
  if (allowedPorts === null) {
    return disabledSettings(
      `invalid ${NAT_TRAVERSAL_PORTS_FEATURE}=${JSON.stringify(features.ports)}: use N or N-M, comma-separated, e.g. 1024-65535`,
    );
  }

  const allowedProtocols = parseProtocolList(features.protocols ?? 'tcp,udp');
  if (allowedProtocols === null) {
    return disabledSettings(
      `invalid ${NAT_TRAVERSAL_PROTOCOLS_FEATURE}=${JSON.stringify(features.protocols)}: use tcp, udp or tcp,udp`,
    );
  }

  const maxLeaseSeconds =
    features.maxLease === null ? DEFAULT_MAX_LEASE_SECONDS : Number(features.maxLease);
  if (
    !/^\d{1,7}$/.test(features.maxLease ?? '0') ||
    maxLeaseSeconds < 1 ||
    maxLeaseSeconds > MAX_LEASE_SECONDS
  ) {
    return disabledSettings(
      `invalid ${NAT_TRAVERSAL_MAX_LEASE_FEATURE}=${JSON.stringify(features.maxLease)}: use seconds from 1 to ${MAX_LEASE_SECONDS}`,
    );
  }

  return { enabled: true, allowedPorts, allowedProtocols, maxLeaseSeconds, problem: null };
}

export function portAllowed(settings: NatTraversalSettings, port: number): boolean {
  return settings.allowedPorts.some((range) => port >= range.first && port <= range.last);
}

function parsePortList(text: string): PortRange[] | null {
  const ranges: PortRange[] = [];
  for (const part of text.split(',')) {
    const match = /^\s*(\d{1,5})(?:-(\d{1,5}))?\s*$/.exec(part);
    if (match === null) {
      return null;
    }
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (first < 1 || last > 65535 || first > last) {
      return null;
    }
    ranges.push({ first, last });
  }
  return ranges.length > 0 ? ranges : null;
}

function parseProtocolList(text: string): TransportProtocol[] | null {
  const protocols = new Set<TransportProtocol>();
  for (const part of text.split(',')) {
    const protocol = part.trim().toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') {
      return null;
    }
    protocols.add(protocol);
  }
  return [...protocols];
}

/**
 * Parses the STUN port feature: single ports, comma-separated, at most
 * MAX_STUN_PORTS. Returns the ports or an error naming the value and the fix.
 */
export function parseStunPorts(text: string): { ports: number[] } | { problem: string } {
  const ranges = parsePortList(text);
  if (
    ranges === null ||
    ranges.some((range) => range.first !== range.last) ||
    ranges.length > MAX_STUN_PORTS
  ) {
    return {
      problem: `invalid ${NAT_TRAVERSAL_STUN_PORTS_FEATURE}=${JSON.stringify(text)}: use up to ${MAX_STUN_PORTS} single ports, comma-separated, e.g. 3478,19302`,
    };
  }
  return { ports: [...new Set(ranges.map((range) => range.first))] };
}
