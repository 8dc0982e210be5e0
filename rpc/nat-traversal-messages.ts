import { z } from 'zod';
import {
  ipv4AddressSchema,
  portSchema,
  qubeNameSchema,
  transportProtocolSchema,
  unixSecondsSchema,
} from './wire-types.js';

/**
 * Messages between the broker VM and dom0. The broker calls dom0's services
 * with a JSON payload; anything the dom0 user approves in a prompt is in the
 * qrexec argument (`QUBE+PROTO+PORT`), because the prompt shows only the
 * source, the service with its argument and the target, never the payload.
 * dom0 checks that payload and argument agree.
 *
 * A STUN request asks for a mapping of whatever source port the application
 * used, so its grant argument names the class of request instead of a port
 * (`QUBE+udp+stun`): one policy line then allows peer-to-peer use without a
 * prompt per call. The port travels in the payload (`internalPort`), and dom0
 * checks it against the qube's allowed ports. Renewals and releases always
 * name the port.
 *
 * | service                          | policy | payload → reply |
 * | -------------------------------- | ------ | --------------- |
 * | qubes.NatTraversal+Q+PROTO+PORT  | ask    | MappingGrantRequest → MappingGrantReply |
 * | qubes.NatTraversal+Q+udp+stun    | ask    | MappingGrantRequest with internalPort → MappingGrantReply |
 * | qubes.NatTraversalRenew+Q+P+PORT | allow  | MappingRenewRequest → MappingGrantReply |
 * | qubes.NatTraversalRelease+Q+P+PORT | allow | (empty) → ReleaseReply |
 * | qubes.NatTraversalClients        | allow  | (empty) → ClientsReply |
 * | qubes.NatTraversalLeases         | allow  | (empty) → LeasesReply |
 */

export const NAT_TRAVERSAL_SERVICE = 'qubes.NatTraversal';
export const NAT_TRAVERSAL_RENEW_SERVICE = 'qubes.NatTraversalRenew';
export const NAT_TRAVERSAL_RELEASE_SERVICE = 'qubes.NatTraversalRelease';
export const NAT_TRAVERSAL_CLIENTS_SERVICE = 'qubes.NatTraversalClients';
export const NAT_TRAVERSAL_LEASES_SERVICE = 'qubes.NatTraversalLeases';

/** The word that stands for the port in the grant argument of a STUN request. */
export const STUN_REQUEST_CLASS = 'stun';

/**
 * `QUBE+PROTO+PORT`, for example `work+tcp+51413`; with `requestClass`
 * 'stun' the formatted argument is `QUBE+udp+stun` and the port is left out.
 */
export interface MappingArgument {
  qube: string;
  protocol: 'tcp' | 'udp';
  internalPort: number;
  requestClass?: 'port' | 'stun';
}

/** A parsed argument: `internalPort` is null for `QUBE+udp+stun`, whose port is in the payload. */
export type ParsedMappingArgument =
  | { qube: string; protocol: 'tcp' | 'udp'; internalPort: number; requestClass: 'port' }
  | { qube: string; protocol: 'udp'; internalPort: null; requestClass: 'stun' };

export function formatMappingArgument(argument: MappingArgument): string {
  if (argument.requestClass === 'stun') {
    return `${argument.qube}+udp+${STUN_REQUEST_CLASS}`;
  }
  return `${argument.qube}+${argument.protocol}+${argument.internalPort}`;
}

/**
 * Parses `QUBE+PROTO+PORT` or `QUBE+udp+stun`; returns null when any part is
 * invalid. STUN runs over UDP only, so `QUBE+tcp+stun` is invalid.
 */
export function parseMappingArgument(text: string): ParsedMappingArgument | null {
  const parts = text.split('+');
  if (parts.length !== 3) {
    return null;
  }
  const [qube = '', protocol = '', portText = ''] = parts;
  if (portText === STUN_REQUEST_CLASS) {
    const parsed = qubeNameSchema.safeParse(qube);
    return parsed.success && protocol === 'udp'
      ? { qube: parsed.data, protocol: 'udp', internalPort: null, requestClass: 'stun' }
      : null;
  }
  const parsed = z
    .strictObject({
      qube: qubeNameSchema,
      protocol: transportProtocolSchema,
      internalPort: portSchema,
    })
    .safeParse({
      qube,
      protocol,
      internalPort: /^[1-9]\d{0,4}$/.test(portText) ? Number(portText) : Number.NaN,
    });
  return parsed.success ? { ...parsed.data, requestClass: 'port' } : null;
}

export const mappingViaSchema = z.enum(['upnp', 'natpmp', 'pcp', 'stun']);

export const mappingGrantRequestSchema = z.strictObject({
  internalAddress: ipv4AddressSchema,
  /** Requested lease; dom0 clamps it to the qube's maximum. */
  lifetimeSeconds: z.number().int().min(1).max(604_800),
  via: mappingViaSchema,
  /** Client-supplied text such as the IGD NewPortMappingDescription; shown in listings only. */
  description: z.string().max(256),
  /**
   * The port in the qube. Required when the argument is `QUBE+udp+stun`;
   * otherwise optional and, when present, equal to the argument's port.
   */
  internalPort: portSchema.optional(),
});
export type MappingGrantRequest = z.infer<typeof mappingGrantRequestSchema>;

export const upstreamMappingSchema = z.strictObject({
  externalAddress: ipv4AddressSchema,
  externalPort: portSchema,
  via: z.string().max(16),
});
export type UpstreamMapping = z.infer<typeof upstreamMappingSchema>;

export const mappingRenewRequestSchema = z.strictObject({
  lifetimeSeconds: z.number().int().min(1).max(604_800),
  /** The router mapping, once the broker has one; null when the router offers none. */
  upstream: upstreamMappingSchema.nullable(),
  /** When present, equal to the argument's port; renewals always name the port in the argument. */
  internalPort: portSchema.optional(),
});
export type MappingRenewRequest = z.infer<typeof mappingRenewRequestSchema>;

export const grantResultSchema = z.enum([
  'granted',
  'not-enabled',
  'not-allowed',
  'address-mismatch',
  'no-lease',
  'no-free-port',
  'failed',
]);
export type GrantResult = z.infer<typeof grantResultSchema>;

export const mappingGrantReplySchema = z.discriminatedUnion('result', [
  z.strictObject({
    result: z.literal('granted'),
    leaseId: z.string(),
    /** Port forwarded on sys-net's uplink: the router mapping must point at it. */
    uplinkPort: portSchema,
    lifetimeSeconds: z.number().int().min(1),
    expiresAtUnixSeconds: unixSecondsSchema,
  }),
  z.strictObject({
    result: grantResultSchema.exclude(['granted']),
    message: z.string(),
  }),
]);
export type MappingGrantReply = z.infer<typeof mappingGrantReplySchema>;

export const releaseReplySchema = z.strictObject({ removed: z.number().int().min(0) });

export const natTraversalClientSchema = z.strictObject({
  qube: qubeNameSchema,
  address: ipv4AddressSchema,
  /** The address the qube uses as gateway; SSDP LOCATION URLs point at it. */
  gatewayAddress: ipv4AddressSchema,
});
export type NatTraversalClient = z.infer<typeof natTraversalClientSchema>;

export const clientsReplySchema = z.strictObject({
  clients: z.array(natTraversalClientSchema).max(4096),
  /** sys-net's uplink: the LAN address the home router sees for every qube. */
  uplinkVm: qubeNameSchema.nullable(),
});
export type ClientsReply = z.infer<typeof clientsReplySchema>;

export const leaseSummarySchema = z.strictObject({
  leaseId: z.string(),
  qube: qubeNameSchema,
  protocol: transportProtocolSchema,
  internalPort: portSchema,
  uplinkPort: portSchema,
  expiresAtUnixSeconds: unixSecondsSchema,
});
export const leasesReplySchema = z.strictObject({
  leases: z.array(leaseSummarySchema).max(65_536),
});
export type LeasesReply = z.infer<typeof leasesReplySchema>;

/**
 * dom0 → broker (`qubes.NatBrokerControl`, callable by dom0 only): map or
 * unmap a manual forward's uplink port on the home router, or read the list
 * of NAT traversal clients again after a qube's features changed.
 */
export const NAT_BROKER_CONTROL_SERVICE = 'qubes.NatBrokerControl';

export const upstreamControlRequestSchema = z.discriminatedUnion('action', [
  z.strictObject({
    action: z.literal('map'),
    protocol: transportProtocolSchema,
    /** Port on sys-net's LAN address; the router is asked for the same external port. */
    uplinkPort: portSchema,
    lifetimeSeconds: z.number().int().min(1).max(604_800),
  }),
  z.strictObject({
    action: z.literal('unmap'),
    protocol: transportProtocolSchema,
    uplinkPort: portSchema,
  }),
  z.strictObject({ action: z.literal('refresh-clients') }),
]);
export type UpstreamControlRequest = z.infer<typeof upstreamControlRequestSchema>;

export const upstreamControlReplySchema = z.discriminatedUnion('result', [
  z.strictObject({ result: z.literal('mapped'), mapping: upstreamMappingSchema }),
  z.strictObject({ result: z.literal('unmapped') }),
  z.strictObject({ result: z.literal('refreshed'), clients: z.number().int().min(0) }),
  z.strictObject({ result: z.enum(['unavailable', 'failed']), message: z.string().max(1024) }),
]);
export type UpstreamControlReply = z.infer<typeof upstreamControlReplySchema>;
