import type { Dom0Context } from '../../policy/dom0-context.js';
import type { ForwardRule } from '../../policy/forwards/forward-rule.js';
import { formatRuleWords } from '../../policy/forwards/rule-words.js';
import {
  NAT_TRAVERSAL_FEATURE,
  NAT_TRAVERSAL_MAX_LEASE_FEATURE,
  NAT_TRAVERSAL_PORTS_FEATURE,
  NAT_TRAVERSAL_PROTOCOLS_FEATURE,
  type NatTraversalSettings,
  parseNatTraversalSettings,
} from '../../policy/nat-traversal/nat-settings.js';
import type { InventorySnapshot, QubeInfo } from '../../policy/network/qube-inventory.js';

/**
 * The data of the dashboard views, read from the same sources as the CLI:
 * the inventory and features through the Admin API, the forwards from the
 * store.
 */

export interface QubeOverview extends QubeInfo {
  /** The netvms from the qube's own up to the uplink; empty without netvm. */
  chain: string[];
  /** Reason the chain could not be followed, or null. */
  chainProblem: string | null;
  /** Null for dom0, which has no features of this project. */
  natTraversal: (NatTraversalSettings & { features: Record<string, string | null> }) | null;
}

export interface ForwardView extends ForwardRule {
  /** The number `qvm-forward VM` lists and `qvm-forward VM del N` takes. */
  number: number;
  /** The rule as `qvm-forward --raw` prints it. */
  words: string;
}

export interface Overview {
  nowUnixMs: number;
  qubes: QubeOverview[];
  forwards: ForwardView[];
}

export async function readOverview(context: Dom0Context): Promise<Overview> {
  const nowUnixMs = context.nowUnixMs();
  const inventory = await context.inventory.snapshot();
  const forwards = await context.manager.list();
  const qubes = await Promise.all(
    [...inventory.qubes.values()].map((qube) => describeQube(context, inventory, qube)),
  );
  return { nowUnixMs, qubes, forwards: numberForwards(forwards) };
}

/** Numbers forwards per qube in store order, as `qvm-forward VM` lists them. */
export function numberForwards(forwards: readonly ForwardRule[]): ForwardView[] {
  const counts = new Map<string, number>();
  return forwards.map((forward) => {
    const number = counts.get(forward.qube) ?? 0;
    counts.set(forward.qube, number + 1);
    return { ...forward, number, words: formatRuleWords(forward) };
  });
}

/** Reads a qube's firewall rules (admin.vm.firewall.Get); dom0 has none. */
export async function readFirewallRules(
  context: Dom0Context,
  qube: QubeInfo,
): Promise<{ rules: string[]; problem: string | null }> {
  if (qube.klass === 'AdminVM') {
    return { rules: [], problem: 'dom0 has no firewall rules' };
  }
  try {
    return { rules: await context.adminApi.getFirewallRules(qube.name), problem: null };
  } catch (error) {
    return { rules: [], problem: `cannot read the firewall rules: ${(error as Error).message}` };
  }
}

async function describeQube(
  context: Dom0Context,
  inventory: InventorySnapshot,
  qube: QubeInfo,
): Promise<QubeOverview> {
  let chain: string[] = [];
  let chainProblem: string | null = null;
  try {
    chain = inventory.networkChain(qube.name);
  } catch (error) {
    chainProblem = (error as Error).message;
  }

  if (qube.klass === 'AdminVM') {
    return { ...qube, chain, chainProblem, natTraversal: null };
  }
  const names = [
    NAT_TRAVERSAL_FEATURE,
    NAT_TRAVERSAL_PORTS_FEATURE,
    NAT_TRAVERSAL_PROTOCOLS_FEATURE,
    NAT_TRAVERSAL_MAX_LEASE_FEATURE,
  ];
  const values = await Promise.all(
    names.map((name) => context.adminApi.getFeature(qube.name, name)),
  );
  const [enabled = null, ports = null, protocols = null, maxLease = null] = values;
  const settings = parseNatTraversalSettings({ enabled, ports, protocols, maxLease });
  const features = Object.fromEntries(names.map((name, index) => [name, values[index] ?? null]));
  return { ...qube, chain, chainProblem, natTraversal: { ...settings, features } };
}
