import type { TransportProtocol } from '../../rpc/wire-types.js';

/**
 * What every qube-facing protocol server (UPnP IGD, NAT-PMP, PCP, STUN)
 * asks of the broker core. Servers only translate their wire format to these
 * calls and the results back; the core identifies the qube, asks dom0, talks
 * to the home router and keeps the lease table.
 */

export type MappingProtocolName = 'upnp' | 'natpmp' | 'pcp' | 'stun';

export interface MappingRequest {
  /** Source address of the request packet or connection: identifies the qube. */
  clientAddress: string;
  protocol: TransportProtocol;
  /** Address the mapping points at; a qube may only map to itself. */
  internalAddress: string;
  internalPort: number;
  /** Requested external port, or null for "any". */
  suggestedExternalPort: number | null;
  /** When true, a different external port is not acceptable (IGD AddPortMapping). */
  requireSuggestedPort: boolean;
  /** Requested lease; 0 is never passed here (servers map their own "0" meaning first). */
  lifetimeSeconds: number;
  via: MappingProtocolName;
  description: string;
}

export interface Mapping {
  id: string;
  qube: string;
  protocol: TransportProtocol;
  internalAddress: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  lifetimeSeconds: number;
  expiresAtUnixMs: number;
  via: MappingProtocolName;
  description: string;
}

/** Named results; each server maps them to its own result codes. */
export const MappingResultCode = {
  granted: 'granted',
  /** dom0 or its policy refused (SOAP 606, NAT-PMP 2, PCP NOT_AUTHORIZED). */
  notAuthorized: 'not-authorized',
  /** The source address is no qube with NAT traversal enabled. */
  unknownClient: 'unknown-client',
  /** internalAddress is not the requesting qube's own address. */
  addressMismatch: 'address-mismatch',
  /** The required external port is taken (SOAP 718). */
  conflict: 'conflict',
  /** No external port could be had (SOAP 728, NAT-PMP 4, PCP NO_RESOURCES). */
  noResources: 'no-resources',
  /** The request was valid but failed on the way (router unreachable, push failed). */
  failed: 'failed',
} as const;
export type MappingResultCode = (typeof MappingResultCode)[keyof typeof MappingResultCode];

export type MappingResult =
  | { code: typeof MappingResultCode.granted; mapping: Mapping }
  | { code: Exclude<MappingResultCode, 'granted'>; message: string };

export interface MappingRelease {
  clientAddress: string;
  protocol: TransportProtocol;
  /** Release by internal port (NAT-PMP, PCP) or by external port (IGD DeletePortMapping). */
  internalPort?: number;
  externalPort?: number;
}

export interface MappingService {
  /** The address remote peers reach: the router's public address, or sys-net's LAN address without a mapping protocol. */
  externalAddress(): Promise<string>;
  /** Seconds since the broker's mapping state began (NAT-PMP and PCP epoch). */
  epochSeconds(): number;
  /** Asks for a new mapping or renews an existing one (no new prompt for a renewal). */
  request(request: MappingRequest, options?: { signal?: AbortSignal }): Promise<MappingResult>;
  /** Removes mappings of the client; returns how many were removed (0 is not an error). */
  release(release: MappingRelease): Promise<number>;
  /** Live mappings of one client, or of all clients, in creation order. */
  list(clientAddress?: string): Mapping[];
  /** True when the address belongs to a qube with NAT traversal enabled. */
  isEnabledClient(clientAddress: string): boolean;
}
