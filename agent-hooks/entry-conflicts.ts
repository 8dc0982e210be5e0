import type { AgentState, DnatEntry, InputAcceptEntry } from '../rpc/agent-state.js';
import { formatPortRange, ipv4ToNumber } from '../rpc/wire-types.js';
import { AgentError, AgentErrorCode, type Violation } from './agent-errors.js';

/**
 * Checks that no two entries of one list match the same packet. nftables
 * interval sets reject overlapping elements (the kernel returns EEXIST for
 * the whole transaction), and two DNAT entries for the same packet would be
 * ambiguous anyway, so the agent reports the pair by forwardId instead of
 * passing nft's message through.
 */

type MatchEntry = DnatEntry | InputAcceptEntry;

interface AddressInterval {
  first: number;
  last: number;
}

function cidrInterval(cidr: string): AddressInterval {
  const [address = '0.0.0.0', lengthText = '32'] = cidr.split('/');
  const prefixLength = Number(lengthText);
  const first = ipv4ToNumber(address);
  const size = 2 ** (32 - prefixLength);
  return { first, last: first + size - 1 };
}

function intervalsOverlap(a: AddressInterval, b: AddressInterval): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/** Returns true when some packet matches both entries. */
export function entriesOverlap(a: MatchEntry, b: MatchEntry): boolean {
  return (
    a.protocol === b.protocol &&
    intervalsOverlap(a.ports, b.ports) &&
    intervalsOverlap(cidrInterval(a.sourceCidr), cidrInterval(b.sourceCidr))
  );
}

function describe(entry: MatchEntry): string {
  return `${entry.forwardId} (${entry.protocol} ${formatPortRange(entry.ports)} from ${entry.sourceCidr})`;
}

function findOverlaps(listName: string, entries: readonly MatchEntry[]): Violation[] {
  const violations: Violation[] = [];

  // Quadratic in the worst case, but only entries of the same protocol whose
  // port ranges touch are compared after sorting, so typical states stay fast.
  const order = entries
    .map((entry, index) => ({ entry, index }))
    .sort((a, b) => a.entry.ports.first - b.entry.ports.first);

  for (let i = 0; i < order.length; i += 1) {
    const current = order[i];
    if (current === undefined) continue;

    for (let j = i + 1; j < order.length; j += 1) {
      const other = order[j];
      if (other === undefined || other.entry.ports.first > current.entry.ports.last) break;
      if (!entriesOverlap(current.entry, other.entry)) continue;

      const [first, second] = current.index < other.index ? [current, other] : [other, current];
      violations.push({
        path: `${listName}[${second.index}]`,
        value: second.entry.forwardId,
        message: `${describe(second.entry)} overlaps ${listName}[${first.index}] ${describe(first.entry)}; send one entry per packet match (merge or narrow them)`,
      });
    }
  }
  return violations;
}

/**
 * Finds redirects for a client address that an earlier redirect already has.
 * Each client maps to one broker, and nft rejects a map with two values for
 * one key.
 */
function findDuplicateClients(state: AgentState): Violation[] {
  const firstIndex = new Map<string, number>();
  const violations: Violation[] = [];
  state.natTraversalRedirects.forEach((redirect, index) => {
    const earlier = firstIndex.get(redirect.clientAddress);
    if (earlier === undefined) {
      firstIndex.set(redirect.clientAddress, index);
      return;
    }
    violations.push({
      path: `natTraversalRedirects[${index}].clientAddress`,
      value: redirect.clientAddress,
      message: `client ${redirect.clientAddress} already has natTraversalRedirects[${earlier}]; send one redirect per client address`,
    });
  });
  return violations;
}

/** Throws an `overlapping-entries` AgentError listing every overlapping pair. */
export function assertNoOverlappingEntries(state: AgentState): void {
  const violations = [
    ...findOverlaps('dnat', state.dnat),
    ...findOverlaps('inputAccept', state.inputAccept),
    ...findDuplicateClients(state),
  ];
  if (violations.length > 0) {
    throw new AgentError(
      AgentErrorCode.OverlappingEntries,
      `${violations.length} pair(s) of entries match the same packets`,
      violations,
    );
  }
}
