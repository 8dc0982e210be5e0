import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { AgentError, AgentErrorCode } from './agent-errors.js';
import {
  CUSTOM_CHAIN_NAMES,
  CUSTOM_CHAIN_RULE_COMMENT,
  CUSTOM_CHAIN_RULES,
  type CustomChainEdit,
  type CustomChainName,
  type CustomChainRuleKind,
} from './stock-chain-rules.js';

/**
 * Reads the stock `ip qubes` table (`nft -j list table ip qubes`) and plans
 * the edits that leave exactly one copy of each rule we need in each
 * `custom-*` chain, and none of the rules we no longer need. Rules without
 * our comment are never touched.
 */

const chainItemSchema = z.object({
  chain: z.object({ family: z.string(), table: z.string(), name: z.string() }),
});
const ruleItemSchema = z.object({
  rule: z.object({
    family: z.string(),
    table: z.string(),
    chain: z.string(),
    handle: z.number().int().min(0),
    comment: z.string().optional(),
    expr: z.array(z.unknown()).optional(),
  }),
});
const nftListingSchema = z.object({ nftables: z.array(z.unknown()) });

export interface OurRule {
  handle: number;
  /**
   * The rule of our catalogue whose expression this rule has, or null when it
   * has our comment but another expression (an older version of a rule).
   */
  kind: CustomChainRuleKind | null;
}

export interface StockTableListing {
  chains: ReadonlySet<string>;
  ourRules: ReadonlyMap<CustomChainName, readonly OurRule[]>;
}

function isCustomChainName(name: string): name is CustomChainName {
  return (CUSTOM_CHAIN_NAMES as readonly string[]).includes(name);
}

function ruleKindOf(expression: unknown[] | undefined): CustomChainRuleKind | null {
  for (const spec of Object.values(CUSTOM_CHAIN_RULES)) {
    if (isDeepStrictEqual(expression, spec.expression)) {
      return spec.kind;
    }
  }
  return null;
}

/** Parses the JSON listing of the `ip qubes` table; returns null for text that is not such a listing. */
export function parseStockTableListing(jsonText: string): StockTableListing | null {
  let json: unknown;
  try {
    json = JSON.parse(jsonText);
  } catch {
    return null;
  }

  const listing = nftListingSchema.safeParse(json);
  if (!listing.success) {
    return null;
  }

  const chains = new Set<string>();
  const ourRules = new Map<CustomChainName, OurRule[]>();
  for (const item of listing.data.nftables) {
    const chain = chainItemSchema.safeParse(item);
    if (chain.success && chain.data.chain.table === 'qubes') {
      chains.add(chain.data.chain.name);
      continue;
    }

    const rule = ruleItemSchema.safeParse(item);
    if (!rule.success) continue;
    const { table, chain: chainName, handle, comment, expr } = rule.data.rule;
    if (
      table !== 'qubes' ||
      comment !== CUSTOM_CHAIN_RULE_COMMENT ||
      !isCustomChainName(chainName)
    ) {
      continue;
    }

    const rules = ourRules.get(chainName) ?? [];
    rules.push({ handle, kind: ruleKindOf(expr) });
    ourRules.set(chainName, rules);
  }
  return { chains, ourRules };
}

export interface CustomChainNeeds {
  /** The state has DNAT entries or NAT traversal redirects, so `custom-forward` must exist. */
  forward: boolean;
  /** The state has input accept entries or SSDP reply sources, so `custom-input` must exist. */
  input: boolean;
  /** The state has NAT traversal redirects, so `custom-forward` gets the SSDP untracked accept. */
  ssdpUntracked: boolean;
}

/** The rules each chain should hold: the mark accept always, the SSDP accept only when needed. */
function requiredRules(chain: CustomChainName, needs: CustomChainNeeds): CustomChainRuleKind[] {
  if (chain === 'custom-forward' && needs.ssdpUntracked) {
    return ['mark-accept', 'ssdp-untracked-accept'];
  }
  return ['mark-accept'];
}

/**
 * Plans the edits for each `custom-*` chain that exists: add each required rule
 * when it is missing, delete copies beyond the first, outdated versions and
 * rules no longer required. A chain the state needs but the table lacks is an
 * error.
 */
export function planCustomChainEdits(
  listing: StockTableListing,
  needs: CustomChainNeeds,
): CustomChainEdit[] {
  const edits: CustomChainEdit[] = [];

  for (const chain of CUSTOM_CHAIN_NAMES) {
    const needed = chain === 'custom-forward' ? needs.forward || needs.ssdpUntracked : needs.input;
    if (!listing.chains.has(chain)) {
      if (needed) {
        throw new AgentError(
          AgentErrorCode.StockTableMissing,
          `chain ip qubes ${chain} is missing; this VM does not have the stock Qubes nftables tables (start qubes-iptables.service first)`,
        );
      }
      continue;
    }

    const required = requiredRules(chain, needs);
    const kept = new Set<CustomChainRuleKind>();
    for (const rule of listing.ourRules.get(chain) ?? []) {
      if (rule.kind !== null && required.includes(rule.kind) && !kept.has(rule.kind)) {
        kept.add(rule.kind);
      } else {
        edits.push({ kind: 'delete-rule', chain, handle: rule.handle });
      }
    }
    for (const rule of required) {
      if (!kept.has(rule)) {
        edits.push({ kind: 'add-rule', chain, rule });
      }
    }
  }
  return edits;
}
