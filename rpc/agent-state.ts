import { z } from 'zod';
import {
  ipv4AddressSchema,
  ipv4CidrSchema,
  portRangeSchema,
  portSchema,
  qubeNameSchema,
  transportProtocolSchema,
  unixSecondsSchema,
} from './wire-types.js';

/**
 * The complete desired forwarding state of one VM, as dom0 sends it in the
 * payload of the `qubes.NatBrokerApply` service. The agent in that VM replaces
 * whatever it had with exactly this state, in one nftables transaction.
 */

export const AGENT_STATE_VERSION = 1;

/** Upper bound on entries per list, so a hostile or corrupt payload cannot exhaust memory. */
export const MAX_AGENT_ENTRIES = 4096;

const forwardIdSchema = z.string().regex(/^[a-z0-9-]{1,40}$/, 'must be 1-40 of a-z 0-9 -');

/**
 * One inbound DNAT in a netvm: a new connection that arrives from upstream
 * (not from a downstream vif), is addressed to this VM, comes from
 * `sourceCidr` and goes to `protocol`/`ports` is sent to
 * `targetAddress`/`targetPorts`. A port range keeps its port numbers, so
 * `targetPorts` must then equal `ports`; a single port may be remapped.
 */
export const dnatEntrySchema = z
  .strictObject({
    forwardId: forwardIdSchema,
    protocol: transportProtocolSchema,
    sourceCidr: ipv4CidrSchema,
    ports: portRangeSchema,
    targetAddress: ipv4AddressSchema,
    targetPorts: portRangeSchema,
    expiresAtUnixSeconds: unixSecondsSchema.nullable(),
  })
  .refine(
    (entry) =>
      entry.ports.first === entry.ports.last ||
      (entry.targetPorts.first === entry.ports.first &&
        entry.targetPorts.last === entry.ports.last),
    'a port range cannot be remapped: targetPorts must equal ports',
  )
  .refine(
    (entry) =>
      entry.ports.first !== entry.ports.last || entry.targetPorts.first === entry.targetPorts.last,
    'a single port must map to a single target port',
  );
export type DnatEntry = z.infer<typeof dnatEntrySchema>;

/** One inbound accept in the target qube's input path. */
export const inputAcceptEntrySchema = z.strictObject({
  forwardId: forwardIdSchema,
  protocol: transportProtocolSchema,
  sourceCidr: ipv4CidrSchema,
  ports: portRangeSchema,
  expiresAtUnixSeconds: unixSecondsSchema.nullable(),
});
export type InputAcceptEntry = z.infer<typeof inputAcceptEntrySchema>;

/**
 * In a netvm: the NAT traversal requests of one qube with NAT traversal
 * enabled go to the broker VM. NAT-PMP/PCP (UDP 5351) and IGD HTTP
 * (`igdHttpPort`) addressed to the qube's gateway, unicast SSDP (UDP 1900) to
 * the gateway, and UDP to `stunPorts` on any address are DNATed to the
 * broker; SSDP multicast (239.255.255.250:1900) is rewritten statelessly.
 */
export const natTraversalRedirectSchema = z.strictObject({
  clientAddress: ipv4AddressSchema,
  gatewayAddress: ipv4AddressSchema,
  brokerAddress: ipv4AddressSchema,
  igdHttpPort: portSchema,
  stunPorts: z.array(portSchema).max(8),
});
export type NatTraversalRedirect = z.infer<typeof natTraversalRedirectSchema>;

/**
 * In a netvm: a static source NAT that keeps a NAT traversal lease's port on
 * the way out. A new UDP flow from `sourceAddress`:`sourcePort` (the hop
 * below: the qube or the netvm under this one) that leaves through the
 * uplink gets the source port `toPort` and the outgoing interface's address
 * (`masquerade to :PORT`), so every remote host sees the same address and
 * port, the one the lease's inbound DNAT answers on (endpoint-independent
 * mapping, RFC 4787 REQ-1).
 */
export const snatEntrySchema = z.strictObject({
  forwardId: forwardIdSchema,
  protocol: z.literal('udp'),
  sourceAddress: ipv4AddressSchema,
  sourcePort: portSchema,
  toPort: portSchema,
  expiresAtUnixSeconds: unixSecondsSchema.nullable(),
});
export type SnatEntry = z.infer<typeof snatEntrySchema>;

export const agentStateSchema = z.strictObject({
  version: z.literal(AGENT_STATE_VERSION),
  vm: qubeNameSchema,
  /** When dom0 computed this state; an agent ignores a state older than the one it has. */
  issuedAtUnixMs: z.number().int().min(0),
  dnat: z.array(dnatEntrySchema).max(MAX_AGENT_ENTRIES),
  inputAccept: z.array(inputAcceptEntrySchema).max(MAX_AGENT_ENTRIES),
  /** Netvm only: qubes whose NAT traversal requests go to the broker. */
  natTraversalRedirects: z.array(natTraversalRedirectSchema).max(MAX_AGENT_ENTRIES).default([]),
  /**
   * Qube with NAT traversal only: addresses whose unicast SSDP replies
   * (UDP from source port 1900) the qube accepts; the broker answers an SSDP
   * multicast search from its own address, which conntrack cannot tie to the
   * search.
   */
  ssdpReplySources: z.array(ipv4AddressSchema).max(16).default([]),
  /** Netvm only: port-keeping source NAT of UDP NAT traversal leases; absent means none. */
  snat: z.array(snatEntrySchema).max(MAX_AGENT_ENTRIES).optional(),
});
export type AgentState = z.infer<typeof agentStateSchema>;

export function emptyAgentState(vm: string, issuedAtUnixMs: number): AgentState {
  return {
    version: AGENT_STATE_VERSION,
    vm,
    issuedAtUnixMs,
    dnat: [],
    inputAccept: [],
    natTraversalRedirects: [],
    ssdpReplySources: [],
  };
}
