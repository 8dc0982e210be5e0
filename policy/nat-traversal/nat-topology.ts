import type { AgentState } from '../../rpc/agent-state.js';
import type { NatTraversalClient } from '../../rpc/nat-traversal-messages.js';
import type { AdminApiReader, InventorySnapshot } from '../network/qube-inventory.js';
import {
  NAT_BROKER_FEATURE,
  NAT_TRAVERSAL_STUN_PORTS_FEATURE,
  parseStunPorts,
  readNatTraversalSettings,
} from './nat-settings.js';

/**
 * The qubes with NAT traversal enabled and their broker VM: the part
 * of every VM's desired state that redirects NAT traversal requests.
 */

/** TCP port of the broker's IGD HTTP server; the netvm redirects the qube's gateway:port to it. */
export const IGD_HTTP_PORT = 2189;
export const NATPMP_PORT = 5351;
export const SSDP_PORT = 1900;
/**
 * STUN ports redirected to the broker by default: the IANA STUN port and the
 * one Google's public servers use. The broker VM's feature
 * nat-traversal-stun-ports replaces them.
 *
 * NOTE: only these destination ports are redirected, so an ICE connectivity
 * check (a STUN request with USERNAME and MESSAGE-INTEGRITY) to a peer whose
 * candidate port is one of them reaches the broker instead of the peer. The
 * broker cannot pass it on: the original destination is known only to the
 * netvm's conntrack, and Node has no SO_ORIGINAL_DST.
 */
export const DEFAULT_STUN_PORTS = [3478, 19302];

export interface NatTraversalTopology {
  broker: { name: string; address: string } | null;
  clients: Array<NatTraversalClient & { netvm: string }>;
  stunPorts: number[];
}

export const EMPTY_TOPOLOGY: NatTraversalTopology = { broker: null, clients: [], stunPorts: [] };

/** Reads the broker VM and the enabled qubes from features. */
export async function readNatTraversalTopology(
  adminApi: AdminApiReader,
  inventory: InventorySnapshot,
): Promise<NatTraversalTopology> {
  let broker: NatTraversalTopology['broker'] = null;
  let stunPorts = DEFAULT_STUN_PORTS;
  const clients: NatTraversalTopology['clients'] = [];

  for (const qube of inventory.qubes.values()) {
    if (qube.klass === 'AdminVM' || qube.ip === null) {
      continue;
    }
    if ((await adminApi.getFeature(qube.name, NAT_BROKER_FEATURE)) === '1') {
      if (broker === null) {
        broker = { name: qube.name, address: qube.ip };
        stunPorts = await readStunPorts(adminApi, qube.name);
      }
      continue;
    }

    const settings = await readNatTraversalSettings(adminApi, qube.name);
    if (!settings.enabled || qube.netvm === null) {
      continue;
    }
    const gateway = await adminApi.getProperty(qube.name, 'visible_gateway');
    if (gateway.value === null) {
      continue;
    }
    clients.push({
      qube: qube.name,
      address: qube.ip,
      gatewayAddress: gateway.value,
      netvm: qube.netvm,
    });
  }
  return { broker, clients, stunPorts };
}

/**
 * Reads the broker VM's STUN ports. An invalid feature value returns no
 * ports, so no STUN traffic is redirected (default deny).
 */
async function readStunPorts(adminApi: AdminApiReader, broker: string): Promise<number[]> {
  const text = await adminApi.getFeature(broker, NAT_TRAVERSAL_STUN_PORTS_FEATURE);
  if (text === null) {
    return DEFAULT_STUN_PORTS;
  }
  const parsed = parseStunPorts(text);
  return 'ports' in parsed ? parsed.ports : [];
}

/** Returns the VMs whose state the topology touches: enabled qubes, their netvms and the broker. */
export function vmsOfTopology(topology: NatTraversalTopology): string[] {
  if (topology.broker === null) {
    return [];
  }
  const vms = new Set([topology.broker.name]);
  for (const client of topology.clients) {
    vms.add(client.qube);
    vms.add(client.netvm);
  }
  return [...vms];
}

/**
 * Adds the redirect, SSDP reply and broker accept entries to the states.
 * Without a broker VM nothing is redirected: a qube then sees no change.
 */
export function addNatTraversalEntries(
  stateOf: (vm: string) => AgentState,
  topology: NatTraversalTopology,
): void {
  const broker = topology.broker;
  if (broker === null) {
    return;
  }

  for (const client of topology.clients) {
    stateOf(client.netvm).natTraversalRedirects.push({
      clientAddress: client.address,
      gatewayAddress: client.gatewayAddress,
      brokerAddress: broker.address,
      igdHttpPort: IGD_HTTP_PORT,
      stunPorts: topology.stunPorts,
    });
    stateOf(client.qube).ssdpReplySources.push(broker.address);

    const accept = (protocol: 'tcp' | 'udp', port: number, name: string) =>
      stateOf(broker.name).inputAccept.push({
        forwardId: `nt-${name}-${client.address.replaceAll('.', '-')}`,
        protocol,
        sourceCidr: `${client.address}/32`,
        ports: { first: port, last: port },
        expiresAtUnixSeconds: null,
      });
    accept('udp', NATPMP_PORT, 'pmp');
    accept('udp', SSDP_PORT, 'ssdp');
    accept('tcp', IGD_HTTP_PORT, 'igd');
    for (const port of topology.stunPorts) {
      accept('udp', port, `stun${port}`);
    }
  }
}
