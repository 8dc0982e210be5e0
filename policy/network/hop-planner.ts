import {
  type AgentState,
  type DnatEntry,
  emptyAgentState,
  type InputAcceptEntry,
} from '../../rpc/agent-state.js';
import { type ForwardRule, isExpired } from '../forwards/forward-rule.js';
import {
  addNatTraversalEntries,
  EMPTY_TOPOLOGY,
  type NatTraversalTopology,
} from '../nat-traversal/nat-topology.js';
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
  }
  return states;
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
