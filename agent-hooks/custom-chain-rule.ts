import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { AgentError, AgentErrorCode } from './agent-errors.js';
import {
  CUSTOM_CHAIN_NAMES,
  CUSTOM_CHAIN_RULE_COMMENT,
  type CustomChainEdit,
  type CustomChainName,
  FORWARD_CT_MARK,
} from './render-ruleset.js';

/**
 * Reads the stock `ip qubes` table (`nft -j list table ip qubes`) and plans
 * the edits that leave exactly one of our accept rules in each `custom-*`
 * chain. Rules without our comment are never touched.
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

/** The `expr` list nft 1.0.6 prints for `ct mark and 0x00100000 == 0x00100000 accept`. */
const EXPECTED_ACCEPT_EXPRESSION = [
  {
    match: {
      op: '==',
      left: { '&': [{ ct: { key: 'mark' } }, FORWARD_CT_MARK] },
      right: FORWARD_CT_MARK,
    },
  },
  { accept: null },
];

export interface OurRule {
  handle: number;
  /** False when the rule has our comment but another expression (an older version of it). */
  current: boolean;
}

export interface StockTableListing {
  chains: ReadonlySet<string>;
  ourRules: ReadonlyMap<CustomChainName, readonly OurRule[]>;
}

function isCustomChainName(name: string): name is CustomChainName {
  return (CUSTOM_CHAIN_NAMES as readonly string[]).includes(name);
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
    rules.push({ handle, current: isDeepStrictEqual(expr, EXPECTED_ACCEPT_EXPRESSION) });
    ourRules.set(chainName, rules);
  }
  return { chains, ourRules };
}

export interface CustomChainNeeds {
  /** The state has DNAT entries, so `custom-forward` must exist. */
  forward: boolean;
  /** The state has input accept entries, so `custom-input` must exist. */
  input: boolean;
}

/**
 * Plans the edits for each `custom-*` chain that exists: add our rule when it
 * is missing, delete copies beyond the first and outdated versions. A chain
 * the state needs but the table lacks is an error.
 */
export function planCustomChainEdits(
  listing: StockTableListing,
  needs: CustomChainNeeds,
): CustomChainEdit[] {
  const edits: CustomChainEdit[] = [];

  for (const chain of CUSTOM_CHAIN_NAMES) {
    const needed = chain === 'custom-forward' ? needs.forward : needs.input;
    if (!listing.chains.has(chain)) {
      if (needed) {
        throw new AgentError(
          AgentErrorCode.StockTableMissing,
          `chain ip qubes ${chain} is missing; this VM does not have the stock Qubes nftables tables (start qubes-iptables.service first)`,
        );
      }
      continue;
    }

    const rules = listing.ourRules.get(chain) ?? [];
    const kept = rules.find((rule) => rule.current);
    for (const rule of rules) {
      if (rule !== kept) {
        edits.push({ kind: 'delete-rule', chain, handle: rule.handle });
      }
    }
    if (kept === undefined) {
      edits.push({ kind: 'add-accept-rule', chain });
    }
  }
  return edits;
}
