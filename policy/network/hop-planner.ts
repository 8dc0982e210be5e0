import {
  type AgentState,
  type DnatEntry,
  emptyAgentState,
  type InputAcceptEntry,
  type SnatEntry,
} from '../../rpc/agent-state.js';
import { type ForwardRule, isExpired } from '../forwards/forward-rule.js';
import {
  addNatTraversalEntries,
  EMPTY_TOPOLOGY,
  type NatTraversalTopology,
} from '../nat-traversal/nat-topology.js';
import { mergeInputAccepts } from './input-accept-merge.js';
import { InventoryError, type InventorySnapshot } from './qube-inventory.js';

/**
 * Computes the complete desired state of every VM on the network chains of
 * the given forwards. For `work → sys-firewall → sys-net`, a forward of
 * external port E to `work:P` becomes:
 *
 *   sys-net:      DNAT E (from upstream) → sys-firewall:E
 *   sys-firewall: DNAT E (from upstream) → work:P
 *   work:         accept P in input
 *
 * The external port number is kept on every hop and only the hop next to the
 * qube remaps it, so ports never collide between hops: forwards are unique
 * per uplink, and every hop below it carries a subset of them.
 *
 * A UDP NAT traversal lease also gets a port-keeping source NAT on every
 * netvm: work:P leaves sys-firewall as :E and sys-net as :E, so the qube's
 * packets to any host leave from the port the lease answers on. UDP only:
 * a UDP application that maps a port sends from it to many peers (ICE,
 * BitTorrent DHT), which is what an endpoint-independent mapping is for,
 * while a mapped TCP port is a listening socket whose outgoing connections
 * use other ports. Manual forwards get none: they publish a service.
 */
export function planAgentStates(
  forwards: readonly ForwardRule[],
  inventory: InventorySnapshot,
  options: {
    nowUnixSeconds: number;
    issuedAtUnixMs: number;
    vms: Iterable<string>;
    natTraversal?: NatTraversalTopology;
  },
): Map<string, AgentState> {
  const states = new Map<string, AgentState>();
  const stateOf = (vm: string): AgentState => {
    let state = states.get(vm);
    if (state === undefined) {
      state = emptyAgentState(vm, options.issuedAtUnixMs);
      states.set(vm, state);
    }
    return state;
  };

  for (const vm of options.vms) {
    stateOf(vm);
  }

  addNatTraversalEntries(stateOf, options.natTraversal ?? EMPTY_TOPOLOGY);

  for (const forward of forwards) {
    if (isExpired(forward, options.nowUnixSeconds)) {
      continue;
    }
    for (const [vm, entry] of planForward(forward, inventory)) {
      if ('targetAddress' in entry) {
        stateOf(vm).dnat.push(entry);
      } else {
        stateOf(vm).inputAccept.push(entry);
      }
    }
    for (const [vm, entry] of planSnat(forward, inventory)) {
      const state = stateOf(vm);
      state.snat = [...(state.snat ?? []), entry];
    }
  }

  for (const state of states.values()) {
    state.inputAccept = mergeInputAccepts(state.inputAccept);
  }
  return states;
}

/** The port-keeping source NAT of a UDP NAT traversal lease, one entry per netvm. */
function planSnat(forward: ForwardRule, inventory: InventorySnapshot): Array<[string, SnatEntry]> {
  if (forward.natTraversal == null || forward.protocol !== 'udp') {
    return [];
  }
  const planned: Array<[string, SnatEntry]> = [];
  let below = forward.qube;
  let sourcePort = forward.targetPorts.first;
  for (const netvm of inventory.networkChain(forward.qube)) {
    const sourceAddress = inventory.get(below).ip;
    if (sourceAddress === null) {
      break;
    }
    planned.push([
      netvm,
      {
        forwardId: forward.id,
        protocol: 'udp',
        sourceAddress,
        sourcePort,
        toPort: forward.ports.first,
        expiresAtUnixSeconds: forward.expiresAtUnixSeconds,
      },
    ]);
    below = netvm;
    sourcePort = forward.ports.first;
  }
  return planned;
}

/** Returns the VMs whose state a forward touches: the qube and every netvm on its chain. */
export function vmsOfForward(forward: ForwardRule, inventory: InventorySnapshot): string[] {
  return [forward.qube, ...inventory.networkChain(forward.qube)];
}

function planForward(
  forward: ForwardRule,
  inventory: InventorySnapshot,
): Array<[string, DnatEntry | InputAcceptEntry]> {
  const chain = inventory.networkChain(forward.qube);
  if (chain.length === 0) {
    throw new InventoryError(`qube "${forward.qube}" has no netvm, so nothing can reach it`);
  }

  const planned: Array<[string, DnatEntry | InputAcceptEntry]> = [];
  const common = {
    forwardId: forward.id,
    protocol: forward.protocol,
    sourceCidr: forward.sourceCidr,
    expiresAtUnixSeconds: forward.expiresAtUnixSeconds,
  };

  planned.push([forward.qube, { ...common, ports: forward.targetPorts }]);

  let below = forward.qube;
  for (const netvm of chain) {
    const belowIp = inventory.get(below).ip;
    if (belowIp === null) {
      throw new InventoryError(`"${below}" has no IP address, so "${netvm}" cannot forward to it`);
    }
    planned.push([
      netvm,
      {
        ...common,
        ports: forward.ports,
        targetAddress: belowIp,
        targetPorts: below === forward.qube ? forward.targetPorts : forward.ports,
      },
    ]);
    below = netvm;
  }
  return planned;
}
