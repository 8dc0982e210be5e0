import { z } from 'zod';
import { mappingViaSchema, upstreamMappingSchema } from '../../rpc/nat-traversal-messages.js';
import {
  ipv4CidrSchema,
  type PortRange,
  portRangeSchema,
  portSchema,
  qubeNameSchema,
  type TransportProtocol,
  transportProtocolSchema,
  unixSecondsSchema,
} from '../../rpc/wire-types.js';

export const natTraversalLeaseSchema = z.strictObject({
  via: mappingViaSchema,
  /** The port the application inside the qube asked to map. */
  internalPort: portSchema,
  /** The mapping on the home router, once the broker reported one. */
  upstream: upstreamMappingSchema.nullable(),
});
export type NatTraversalLease = z.infer<typeof natTraversalLeaseSchema>;

/**
 * A forward rule as dom0 stores it: inbound `protocol`/`ports` on the uplink
 * of the qube's network chain go to `targetPorts` in the qube, from
 * `sourceCidr` only, until `expiresAtUnixSeconds`.
 */
export const forwardRuleSchema = z.strictObject({
  /** Stable id used in agent states and logs; never reused. */
  id: z.string().regex(/^f-[0-9a-f]{12}$/),
  qube: qubeNameSchema,
  protocol: transportProtocolSchema,
  /** External ports, the same on every hop. */
  ports: portRangeSchema,
  /** Ports inside the qube; differs from `ports` only for a remapped single port. */
  targetPorts: portRangeSchema,
  sourceCidr: ipv4CidrSchema,
  expiresAtUnixSeconds: unixSecondsSchema.nullable(),
  comment: z.string().max(512).nullable(),
  createdAtUnixSeconds: unixSecondsSchema,
  /**
   * Set when the dom0 user asked for the matching mapping on the home router
   * (`upstream=yes`); `mapping` is null until the broker reported one.
   */
  routerMapping: z
    .strictObject({ mapping: upstreamMappingSchema.nullable() })
    .nullable()
    .optional(),
  /** Set when the forward is a NAT traversal lease that the broker requested for the qube. */
  natTraversal: natTraversalLeaseSchema.nullable().optional(),
});
export type ForwardRule = z.infer<typeof forwardRuleSchema>;

/** The fields a user sets; dom0 adds id and creation time. */
export interface ForwardRuleFields {
  protocol: TransportProtocol;
  ports: PortRange;
  targetPorts: PortRange;
  sourceCidr: string;
  expiresAtUnixSeconds: number | null;
  comment: string | null;
  /** Also map the port on the home router through the broker (`upstream=yes`). */
  upstream?: boolean;
}

export const ANY_SOURCE_CIDR = '0.0.0.0/0';

export function isExpired(rule: { expiresAtUnixSeconds: number | null }, nowUnixSeconds: number) {
  return rule.expiresAtUnixSeconds !== null && rule.expiresAtUnixSeconds <= nowUnixSeconds;
}

export function portRangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.first <= b.last && b.first <= a.last;
}
