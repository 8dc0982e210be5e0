import type { AgentState, DnatEntry, InputAcceptEntry } from '../rpc/agent-state.js';
import { formatPortRange } from '../rpc/wire-types.js';
import { renderRedirects } from './render-redirects.js';
import { renderSnat } from './render-snat.js';
import {
  type CustomChainEdit,
  FORWARD_CT_MARK_HEX,
  renderCustomChainEdit,
} from './stock-chain-rules.js';

/**
 * Pure rendering of an agent's complete desired state into one `nft -f`
 * script. The script replaces the whole `ip qubes-nat-broker` table and makes
 * the edits a caller planned for our static rules in the stock `custom-*`
 * chains, so applying it is one atomic transaction.
 */

export const NAT_BROKER_TABLE = 'qubes-nat-broker';

export {
  CUSTOM_CHAIN_NAMES,
  CUSTOM_CHAIN_RULE_COMMENT,
  type CustomChainEdit,
  type CustomChainName,
  FORWARD_CT_MARK,
  FORWARD_CT_MARK_HEX,
} from './stock-chain-rules.js';

/**
 * Largest element timeout we write. Linux 6.x rejects timeouts around 10^6
 * days with ERANGE, and nft 1.0.6 rejects a single component above about
 * 2^32 ms, so a later expiry is capped here (about 27 years) and written as
 * days plus smaller units. A reboot or re-apply recomputes it.
 */
export const MAX_ELEMENT_TIMEOUT_MS = 10_000 * 86_400_000;

/** Set and map names; `fwd` is an nft keyword and must not appear in them. */
export const SET_FORWARD_KEYS = 'forward-keys';
export const MAP_FORWARD_DNAT_PORT = 'forward-dnat-port';
export const MAP_FORWARD_DNAT_RANGE = 'forward-dnat-range';
export const SET_INPUT_ACCEPT = 'input-accept';

export interface RenderedRuleset {
  script: string;
  /** DNAT entries written to the maps (expired ones are left out). */
  dnatCount: number;
  /** Input accept entries written to the set (expired ones are left out). */
  inputAcceptCount: number;
  /** Qubes whose NAT traversal requests are redirected to the broker. */
  natTraversalRedirectCount: number;
  /** Distinct addresses whose SSDP replies are accepted. */
  ssdpReplySourceCount: number;
  /** Port-keeping source NAT entries of UDP leases (expired ones are left out). */
  snatCount: number;
  /** Entries left out because their expiry had passed at render time. */
  expiredCount: number;
}

const KEY_EXPRESSION = 'ip saddr . meta l4proto . th dport';
const UPSTREAM_TO_LOCAL = 'iifgroup != 2 fib daddr type local meta l4proto { tcp, udp }';
const MARK_STATEMENT = `ct mark set ct mark or ${FORWARD_CT_MARK_HEX}`;

/**
 * Formats a remaining lifetime as an nft time string such as `1d2h3m4s5ms`.
 * Each unit stays small, because nft 1.0.6 rejects `4294967295ms` but
 * accepts the same time written in days.
 */
export function formatElementTimeout(remainingMs: number): string {
  const cappedMs = Math.min(Math.max(1, Math.ceil(remainingMs)), MAX_ELEMENT_TIMEOUT_MS);
  const units: Array<[string, number]> = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ];

  let rest = cappedMs;
  let text = '';
  for (const [suffix, sizeMs] of units) {
    const count = Math.floor(rest / sizeMs);
    rest -= count * sizeMs;
    if (count > 0) {
      text += `${count}${suffix}`;
    }
  }
  return text;
}

/** Returns the ` timeout …` suffix of an element, '' for no expiry, or null when already expired. */
function elementTimeout(expiresAtUnixSeconds: number | null, nowUnixMs: number): string | null {
  if (expiresAtUnixSeconds === null) {
    return '';
  }

  const remainingMs = expiresAtUnixSeconds * 1000 - nowUnixMs;
  if (remainingMs <= 0) {
    return null;
  }
  return ` timeout ${formatElementTimeout(remainingMs)}`;
}

function elementKey(entry: DnatEntry | InputAcceptEntry): string {
  return `${entry.sourceCidr} . ${entry.protocol} . ${formatPortRange(entry.ports)}`;
}

function renderElements(elements: readonly string[]): string {
  if (elements.length === 0) {
    return '';
  }
  return `\t\telements = {\n${elements.map((element) => `\t\t\t${element}`).join(',\n')}\n\t\t}\n`;
}

function renderSet(kind: 'set' | 'map', name: string, type: string, elements: string[]): string {
  return `\t${kind} ${name} {\n\t\ttype ${type}\n\t\tflags interval, timeout\n${renderElements(elements)}\t}\n`;
}

/**
 * Renders the script for `nft -f -`. `nowUnixMs` turns each absolute expiry
 * into the element's remaining timeout, and entries already expired are left
 * out.
 */
export function renderRuleset(
  state: AgentState,
  nowUnixMs: number,
  customChainEdits: readonly CustomChainEdit[] = [],
): RenderedRuleset {
  const forwardKeys: string[] = [];
  const dnatPort: string[] = [];
  const dnatRange: string[] = [];
  const inputAccept: string[] = [];
  let expiredCount = 0;

  for (const entry of state.dnat) {
    const timeout = elementTimeout(entry.expiresAtUnixSeconds, nowUnixMs);
    if (timeout === null) {
      expiredCount += 1;
      continue;
    }

    const key = `${elementKey(entry)}${timeout}`;
    forwardKeys.push(key);
    if (entry.ports.first === entry.ports.last) {
      dnatPort.push(`${key} : ${entry.targetAddress} . ${entry.targetPorts.first}`);
    } else {
      dnatRange.push(`${key} : ${entry.targetAddress}`);
    }
  }

  for (const entry of state.inputAccept) {
    const timeout = elementTimeout(entry.expiresAtUnixSeconds, nowUnixMs);
    if (timeout === null) {
      expiredCount += 1;
      continue;
    }
    inputAccept.push(`${elementKey(entry)}${timeout}`);
  }

  const redirects = renderRedirects(state);
  const snat = renderSnat(state, (expiresAtUnixSeconds) =>
    elementTimeout(expiresAtUnixSeconds, nowUnixMs),
  );
  expiredCount += snat.expiredCount;
  const keyType = 'ipv4_addr . inet_proto . inet_service';
  const table = [
    `table ip ${NAT_BROKER_TABLE} {\n`,
    renderSet('set', SET_FORWARD_KEYS, keyType, forwardKeys),
    renderSet('map', MAP_FORWARD_DNAT_PORT, `${keyType} : ipv4_addr . inet_service`, dnatPort),
    renderSet('map', MAP_FORWARD_DNAT_RANGE, `${keyType} : ipv4_addr`, dnatRange),
    renderSet('set', SET_INPUT_ACCEPT, keyType, inputAccept),
    redirects.declarations,
    snat.declarations,
    // DNAT only what arrives from upstream (not from a downstream vif, group 2)
    // and is addressed to this VM. A key without an entry in the port map
    // falls through to the range rule, because a failed map lookup ends the rule.
    '\tchain prerouting {\n',
    '\t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n',
    `\t\t${UPSTREAM_TO_LOCAL} ${KEY_EXPRESSION} @${SET_FORWARD_KEYS} ${MARK_STATEMENT} dnat ip to ${KEY_EXPRESSION} map @${MAP_FORWARD_DNAT_PORT}\n`,
    `\t\t${UPSTREAM_TO_LOCAL} ${KEY_EXPRESSION} @${SET_FORWARD_KEYS} ${MARK_STATEMENT} dnat ip to ${KEY_EXPRESSION} map @${MAP_FORWARD_DNAT_RANGE}\n`,
    ...redirects.preroutingRules.map((rule) => `\t\t${rule}\n`),
    '\t}\n',
    // Marks only: the accept rule in the stock custom-input chain admits the
    // marked connection, because the stock input chain (policy drop) votes too.
    '\tchain input {\n',
    '\t\ttype filter hook input priority filter - 1; policy accept;\n',
    `\t\tmeta l4proto { tcp, udp } ${KEY_EXPRESSION} @${SET_INPUT_ACCEPT} ${MARK_STATEMENT}\n`,
    ...redirects.inputRules.map((rule) => `\t\t${rule}\n`),
    '\t}\n',
    redirects.chains,
    snat.chains,
    '}\n',
  ].join('');

  const edits = customChainEdits.map((edit) => `${renderCustomChainEdit(edit)}\n`);

  // `table …` creates the table when it is missing, so the `delete` after it
  // finds a table to delete. The full table follows in the same transaction.
  const script = [
    `table ip ${NAT_BROKER_TABLE}\n`,
    `delete table ip ${NAT_BROKER_TABLE}\n`,
    table,
    ...edits,
  ].join('');

  return {
    script,
    dnatCount: dnatPort.length + dnatRange.length,
    inputAcceptCount: inputAccept.length,
    natTraversalRedirectCount: redirects.redirectCount,
    ssdpReplySourceCount: redirects.ssdpReplySourceCount,
    snatCount: snat.snatCount,
    expiredCount,
  };
}
