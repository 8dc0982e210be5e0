/**
 * The static rules the agent keeps in the stock `custom-*` chains of the
 * `ip qubes` table, with the text it writes and the JSON expression
 * `nft -j` (nftables 1.0.6) prints for each, so that the planner can tell a
 * current copy from an outdated one. Every rule carries the same comment.
 */

/**
 * Conntrack mark bit that our chains set on connections they admit. The stock
 * `ip qubes` table drops new inbound connections after jumping to
 * `custom-forward` / `custom-input`, and a rule there can only use sets of its
 * own table, so the accept rule in those chains matches this bit instead of
 * our sets. Our chains set it with `or` and the accept tests it with `and`, so
 * other users of the conntrack mark keep their bits. Bit 20 sits away from
 * the low bits that scripts and VPN clients usually fill with a whole value.
 */
export const FORWARD_CT_MARK = 0x00100000;
export const FORWARD_CT_MARK_HEX = '0x00100000';

/** Comment that identifies our rules in the stock `custom-*` chains. */
export const CUSTOM_CHAIN_RULE_COMMENT = 'qubes-nat-broker';

export const CUSTOM_CHAIN_NAMES = ['custom-forward', 'custom-input'] as const;
export type CustomChainName = (typeof CUSTOM_CHAIN_NAMES)[number];

export type CustomChainRuleKind = 'mark-accept' | 'ssdp-untracked-accept';

export interface CustomChainRuleSpec {
  kind: CustomChainRuleKind;
  /** Rule text without the comment. */
  statement: string;
  /** The `expr` list that `nft -j list table ip qubes` prints for the statement. */
  expression: readonly unknown[];
}

/** Accepts every connection one of our chains marked, in both `custom-*` chains. */
export const MARK_ACCEPT_RULE: CustomChainRuleSpec = {
  kind: 'mark-accept',
  statement: `ct mark and ${FORWARD_CT_MARK_HEX} == ${FORWARD_CT_MARK_HEX} accept`,
  expression: [
    {
      match: {
        op: '==',
        left: { '&': [{ ct: { key: 'mark' } }, FORWARD_CT_MARK] },
        right: FORWARD_CT_MARK,
      },
    },
    { accept: null },
  ],
};

/**
 * Accepts, in `custom-forward` of a netvm, the SSDP multicast searches that
 * our raw chain rewrote to the broker's address. They are untracked, so they
 * carry no conntrack mark, and the stock `forward` chain would drop them at
 * `oifgroup 2 drop`. Only that raw rewrite makes untracked packets in a Qubes
 * netvm: the stock tables have no `notrack` rule.
 */
export const SSDP_UNTRACKED_ACCEPT_RULE: CustomChainRuleSpec = {
  kind: 'ssdp-untracked-accept',
  statement: 'ct state untracked iifgroup 2 oifgroup 2 udp dport 1900 accept',
  expression: [
    { match: { op: 'in', left: { ct: { key: 'state' } }, right: 'untracked' } },
    { match: { op: '==', left: { meta: { key: 'iifgroup' } }, right: 2 } },
    { match: { op: '==', left: { meta: { key: 'oifgroup' } }, right: 2 } },
    { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 1900 } },
    { accept: null },
  ],
};

export const CUSTOM_CHAIN_RULES: Record<CustomChainRuleKind, CustomChainRuleSpec> = {
  'mark-accept': MARK_ACCEPT_RULE,
  'ssdp-untracked-accept': SSDP_UNTRACKED_ACCEPT_RULE,
};

/** One change to a stock `custom-*` chain, made in the same transaction as our table. */
export type CustomChainEdit =
  | { kind: 'add-rule'; chain: CustomChainName; rule: CustomChainRuleKind }
  | { kind: 'delete-rule'; chain: CustomChainName; handle: number };

/** Renders a rule that our table cannot hold itself, because it goes into a stock chain. */
export function renderCustomChainRule(chain: CustomChainName, rule: CustomChainRuleKind): string {
  return `add rule ip qubes ${chain} ${CUSTOM_CHAIN_RULES[rule].statement} comment "${CUSTOM_CHAIN_RULE_COMMENT}"`;
}

/** Renders one planned edit as a line of the `nft -f` script. */
export function renderCustomChainEdit(edit: CustomChainEdit): string {
  return edit.kind === 'add-rule'
    ? renderCustomChainRule(edit.chain, edit.rule)
    : `delete rule ip qubes ${edit.chain} handle ${edit.handle}`;
}
