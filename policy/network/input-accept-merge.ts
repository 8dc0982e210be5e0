import type { InputAcceptEntry } from '../../rpc/agent-state.js';
import { ipv4ToNumber } from '../../rpc/wire-types.js';
import { portRangesOverlap } from '../forwards/forward-rule.js';

/**
 * Merges the input accepts of one qube that match the same packets. Two
 * forwards may lead to one port in the qube (8443 → 443 and 9443 → 443),
 * and nft interval sets reject overlapping elements. A merged entry takes
 * the broader source prefix, the union of the port ranges and the later
 * expiry (no expiry wins). That can accept a little more in the qube than
 * each forward alone, but only traffic that a netvm DNATed to the qube
 * reaches it (the stock chains drop other new connections towards qubes),
 * and each netvm still checks every forward's own source and ports.
 *
 * NOTE: the merged entry keeps the smallest forwardId of its members, so
 * deleting one member can change the id, and the agent then deletes the
 * conntrack entries of the merged port in the qube, cutting flows of the
 * other forward too.
 */
export function mergeInputAccepts(entries: readonly InputAcceptEntry[]): InputAcceptEntry[] {
  const merged = [...entries];
  let changed = true;
  while (changed) {
    changed = false;
    for (let first = 0; first < merged.length && !changed; first++) {
      for (let second = first + 1; second < merged.length && !changed; second++) {
        const a = merged[first] as InputAcceptEntry;
        const b = merged[second] as InputAcceptEntry;
        if (
          a.protocol === b.protocol &&
          portRangesOverlap(a.ports, b.ports) &&
          prefixesOverlap(a.sourceCidr, b.sourceCidr)
        ) {
          merged.splice(second, 1);
          merged[first] = mergeTwo(a, b);
          changed = true;
        }
      }
    }
  }
  return merged;
}

function mergeTwo(a: InputAcceptEntry, b: InputAcceptEntry): InputAcceptEntry {
  return {
    forwardId: [a.forwardId, b.forwardId].sort()[0] ?? a.forwardId,
    protocol: a.protocol,
    sourceCidr:
      prefixLength(a.sourceCidr) <= prefixLength(b.sourceCidr) ? a.sourceCidr : b.sourceCidr,
    ports: {
      first: Math.min(a.ports.first, b.ports.first),
      last: Math.max(a.ports.last, b.ports.last),
    },
    expiresAtUnixSeconds:
      a.expiresAtUnixSeconds === null || b.expiresAtUnixSeconds === null
        ? null
        : Math.max(a.expiresAtUnixSeconds, b.expiresAtUnixSeconds),
  };
}

function prefixLength(cidr: string): number {
  return Number(cidr.split('/')[1]);
}

/** Two prefixes overlap exactly when the shorter one contains the other's network address. */
function prefixesOverlap(a: string, b: string): boolean {
  const shorter = Math.min(prefixLength(a), prefixLength(b));
  const mask = shorter === 0 ? 0 : (0xffffffff << (32 - shorter)) >>> 0;
  const network = (cidr: string) => (ipv4ToNumber(cidr.split('/')[0] ?? '') & mask) >>> 0;
  return network(a) === network(b);
}
