import type { AgentState } from '../../rpc/agent-state.js';
import type { Logger } from '../../rpc/logger.js';
import type { UpstreamMapping } from '../../rpc/nat-traversal-messages.js';
import { formatPortRange } from '../../rpc/wire-types.js';
import {
  EMPTY_TOPOLOGY,
  type NatTraversalTopology,
  vmsOfTopology,
} from '../nat-traversal/nat-topology.js';
import { planAgentStates, vmsOfForward } from '../network/hop-planner.js';
import type { InventorySnapshot, QubeInventory } from '../network/qube-inventory.js';
import { PushError, type RulePusher } from '../network/rule-pusher.js';
import {
  type ForwardRule,
  type ForwardRuleFields,
  isExpired,
  portRangesOverlap,
} from './forward-rule.js';
import { type ForwardStore, type ForwardStoreData, newForwardId } from './forward-store.js';

/**
 * The dom0 service behind `qvm-forward` and the dashboard: validates a
 * change against the inventory and the other forwards, pushes the new
 * complete state to every running VM the change touches, and only then
 * stores it. When any VM fails to apply, the VMs that did apply get their
 * previous state back and the store stays as it was.
 */

/** Marks a change whose result is the list of VMs that applied it. */
const APPLIED_VMS: string[] = [];

export class ForwardRequestError extends Error {
  override name = 'ForwardRequestError';
}

export type ForwardSelector = { index: number } | { fields: ForwardRuleFields };

export interface ForwardManagerOptions {
  store: ForwardStore;
  inventory: QubeInventory;
  pusher: RulePusher;
  logger: Logger;
  nowUnixMs?: () => number;
  /** Reads which qubes have NAT traversal enabled; their redirects are part of every state. */
  readTopology?: (inventory: InventorySnapshot) => Promise<NatTraversalTopology>;
}

export interface ForwardChange<T> {
  forwards: ForwardRule[];
  /** Forwards added or removed: their chains are the VMs to push to. */
  touched: ForwardRule[];
  result: T;
}

export class ForwardManager {
  private readonly store: ForwardStore;
  private readonly inventory: QubeInventory;
  private readonly pusher: RulePusher;
  private readonly logger: Logger;
  private readonly nowUnixMs: () => number;
  private readonly readTopology: (inventory: InventorySnapshot) => Promise<NatTraversalTopology>;

  constructor(options: ForwardManagerOptions) {
    this.store = options.store;
    this.inventory = options.inventory;
    this.pusher = options.pusher;
    this.logger = options.logger;
    this.nowUnixMs = options.nowUnixMs ?? Date.now;
    this.readTopology = options.readTopology ?? (async () => EMPTY_TOPOLOGY);
  }

  /** Returns the forwards that have not expired, of one qube or of all, in store order. */
  async list(qube?: string): Promise<ForwardRule[]> {
    const data = await this.store.read();
    const nowUnixSeconds = Math.floor(this.nowUnixMs() / 1000);
    return data.forwards.filter(
      (forward) =>
        !isExpired(forward, nowUnixSeconds) && (qube === undefined || forward.qube === qube),
    );
  }

  /** Returns every stored forward, expired ones included. */
  async listStored(): Promise<ForwardRule[]> {
    return (await this.store.read()).forwards;
  }

  async add(qube: string, fields: ForwardRuleFields): Promise<ForwardRule> {
    return this.change((live, inventory, nowUnixSeconds) => {
      checkForwardTarget(qube, inventory);
      const conflict = live.find((other) => conflicts(other, qube, fields, inventory));
      if (conflict !== undefined) {
        throw new ForwardRequestError(
          `${fields.protocol} port ${formatPortRange(fields.ports)} is already forwarded to ` +
            `${conflict.qube} (${conflict.protocol} ${formatPortRange(conflict.ports)}) on the ` +
            'same uplink; delete that forward first or choose another port',
        );
      }

      const { upstream, ...ruleFields } = fields;
      const forward: ForwardRule = {
        id: newForwardId(),
        qube,
        ...ruleFields,
        createdAtUnixSeconds: nowUnixSeconds,
        routerMapping: upstream === true ? { mapping: null } : null,
      };
      this.logger.info(
        {
          qube,
          protocol: forward.protocol,
          ports: formatPortRange(forward.ports),
          targetPorts: formatPortRange(forward.targetPorts),
          sourceCidr: forward.sourceCidr,
          expiresAtUnixSeconds: forward.expiresAtUnixSeconds,
        },
        'forward added',
      );
      return { forwards: [...live, forward], touched: [forward], result: forward };
    });
  }

  async remove(qube: string, selector: ForwardSelector): Promise<ForwardRule> {
    return this.change((live) => {
      const own = live.filter((forward) => forward.qube === qube);
      const removed =
        'index' in selector ? own[selector.index] : findByFields(own, selector.fields);
      if (removed === undefined) {
        throw new ForwardRequestError(
          'index' in selector
            ? `${qube} has no forward number ${selector.index} (${own.length === 0 ? 'it has none' : `numbers are 0-${own.length - 1}`}); ` +
                `list them with: qvm-forward ${qube}`
            : `no forward of ${qube} matches that rule; list them with: qvm-forward ${qube}`,
        );
      }

      this.logger.info({ qube, forwardId: removed.id }, 'forward removed');
      return {
        forwards: live.filter((forward) => forward.id !== removed.id),
        touched: [removed],
        result: removed,
      };
    });
  }

  /** Records the router mapping the broker made for a forward; no hop changes. */
  async recordRouterMapping(forwardId: string, mapping: UpstreamMapping | null): Promise<void> {
    await this.change((live) => ({
      forwards: live.map((forward) =>
        forward.id === forwardId && forward.routerMapping != null
          ? { ...forward, routerMapping: { mapping } }
          : forward,
      ),
      touched: [],
      result: undefined,
    }));
  }

  /** Removes every forward of one qube. */
  async reset(qube: string): Promise<ForwardRule[]> {
    return this.change((live, inventory) => {
      inventory.get(qube);
      const removed = live.filter((forward) => forward.qube === qube);
      this.logger.info({ qube, count: removed.length }, 'forwards reset');
      return {
        forwards: live.filter((forward) => forward.qube !== qube),
        touched: removed,
        result: removed,
      };
    });
  }

  /**
   * Pushes the complete state again to every running VM on a forward's chain
   * and to every running netvm, and drops expired forwards from the store.
   * With `vm`, pushes to that VM only (used when it starts).
   */
  async reload(vm?: string): Promise<string[]> {
    return this.change((live, inventory) => ({
      forwards: live,
      touched: [],
      result: APPLIED_VMS,
      extraVms: vm === undefined ? allForwardingVms(live, inventory) : [vm],
      everyVm: vm === undefined,
    }));
  }

  /**
   * Applies a change to the forwards under the store lock: `mutate` returns
   * the new list and the forwards it touched, whose chains get the new state.
   * Exposed for the NAT traversal leases, which are forwards too.
   */
  async change<T>(
    mutate: (
      live: ForwardRule[],
      inventory: InventorySnapshot,
      nowUnixSeconds: number,
    ) => ForwardChange<T> & { extraVms?: string[]; everyVm?: boolean },
  ): Promise<T> {
    let failure: PushError | null = null;

    const result = await this.store.update(async (data) => {
      const nowUnixMs = this.nowUnixMs();
      const nowUnixSeconds = Math.floor(nowUnixMs / 1000);
      const inventory = await this.inventory.snapshot();
      const topology = await this.readTopology(inventory);
      const live = data.forwards.filter((forward) => !isExpired(forward, nowUnixSeconds));
      const change = mutate(live, inventory, nowUnixSeconds);

      const vms = new Set(change.extraVms ?? []);
      if (change.everyVm === true) {
        for (const vm of vmsOfTopology(topology)) {
          vms.add(vm);
        }
      }
      for (const forward of change.touched) {
        for (const vm of vmsOfForward(forward, inventory)) {
          vms.add(vm);
        }
      }
      const runningVms = [...vms].filter((vm) => inventory.qubes.get(vm)?.running === true);

      const issuedAtUnixMs = Math.max(nowUnixMs, data.lastIssuedAtUnixMs + 1);
      const next = this.statesFor(
        change.forwards,
        inventory,
        topology,
        runningVms,
        nowUnixSeconds,
        issuedAtUnixMs,
      );
      const outcome = await this.pusher.push(next);
      if (outcome.failures.length === 0) {
        if (runningVms.length > 0) {
          this.logger.info({ vms: outcome.applied }, 'forward rules applied');
        }
        const stored: ForwardStoreData = {
          ...data,
          lastIssuedAtUnixMs: issuedAtUnixMs,
          forwards: change.forwards,
        };
        const result = change.result === APPLIED_VMS ? (outcome.applied as T) : change.result;
        return { data: stored, result };
      }

      // Put back the previous state where the new one was applied.
      const rollbackIssuedAtUnixMs = issuedAtUnixMs + 1;
      const previous = this.statesFor(
        live,
        inventory,
        topology,
        outcome.applied,
        nowUnixSeconds,
        rollbackIssuedAtUnixMs,
      );
      const rollback = await this.pusher.push(previous);
      for (const rollbackFailure of rollback.failures) {
        this.logger.error(rollbackFailure, 'rollback failed; run qvm-forward --reload');
      }
      failure = new PushError(outcome.failures);
      return {
        data: { ...data, lastIssuedAtUnixMs: rollbackIssuedAtUnixMs },
        result: change.result,
      };
    });

    if (failure !== null) {
      throw failure;
    }
    return result;
  }

  private statesFor(
    forwards: ForwardRule[],
    inventory: InventorySnapshot,
    natTraversal: NatTraversalTopology,
    vms: string[],
    nowUnixSeconds: number,
    issuedAtUnixMs: number,
  ): AgentState[] {
    const planned = planAgentStates(forwards, inventory, {
      nowUnixSeconds,
      issuedAtUnixMs,
      vms,
      natTraversal,
    });
    return vms.flatMap((vm) => planned.get(vm) ?? []);
  }
}

/** Checks that a qube exists and sits behind a netvm with an address on every hop. */
function checkForwardTarget(qube: string, inventory: InventorySnapshot): void {
  let info: ReturnType<InventorySnapshot['get']>;
  try {
    info = inventory.get(qube);
  } catch (error) {
    throw new ForwardRequestError((error as Error).message);
  }
  if (info.klass === 'AdminVM') {
    throw new ForwardRequestError(`${qube} is dom0, which has no network; choose a qube`);
  }
  if (info.ip === null) {
    throw new ForwardRequestError(`${qube} has no IP address; give it a netvm first`);
  }
  if (info.netvm === null) {
    throw new ForwardRequestError(
      info.providesNetwork
        ? `${qube} is the uplink netvm (it has no netvm); forward to a qube behind it instead`
        : `${qube} has no netvm, so nothing can reach it; set one with: qvm-prefs ${qube} netvm sys-firewall`,
    );
  }
}

function conflicts(
  other: ForwardRule,
  qube: string,
  fields: ForwardRuleFields,
  inventory: InventorySnapshot,
): boolean {
  if (other.protocol !== fields.protocol || !portRangesOverlap(other.ports, fields.ports)) {
    return false;
  }
  return inventory.uplinkOf(other.qube) === inventory.uplinkOf(qube);
}

function findByFields(forwards: ForwardRule[], fields: ForwardRuleFields): ForwardRule | undefined {
  return forwards.find(
    (forward) =>
      forward.protocol === fields.protocol &&
      forward.ports.first === fields.ports.first &&
      forward.ports.last === fields.ports.last &&
      forward.targetPorts.first === fields.targetPorts.first &&
      forward.targetPorts.last === fields.targetPorts.last &&
      forward.sourceCidr === fields.sourceCidr,
  );
}

/** Returns every VM that may hold forward rules: the chains of live forwards and all netvms. */
function allForwardingVms(forwards: ForwardRule[], inventory: InventorySnapshot): string[] {
  const vms = new Set<string>();
  for (const forward of forwards) {
    for (const vm of vmsOfForward(forward, inventory)) {
      vms.add(vm);
    }
  }
  for (const qube of inventory.qubes.values()) {
    if (qube.providesNetwork) {
      vms.add(qube.name);
    }
  }
  return [...vms];
}
