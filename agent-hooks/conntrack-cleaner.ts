import type { AgentState, DnatEntry, InputAcceptEntry } from '../rpc/agent-state.js';
import type { Logger } from '../rpc/logger.js';
import type { CommandRunner } from './nft-runner.js';
import {
  conntrackFiltersOf,
  describeRedirectFlow,
  findRemovedRedirectFlows,
  type RedirectFlow,
} from './redirect-flows.js';
import { FORWARD_CT_MARK_HEX } from './stock-chain-rules.js';

/**
 * Deletes the conntrack entries of forwards and NAT traversal redirects that a
 * new state removed. Without
 * this, an established flow (above all a UDP one, which never ends by itself
 * while packets keep coming) keeps passing through the old DNAT and accept,
 * because both the stock `established` rule and our mark rule admit it.
 */

export interface RemovedEntries {
  dnat: DnatEntry[];
  inputAccept: InputAcceptEntry[];
  /** Flows of NAT traversal redirects and SSDP reply sources that the new state dropped. */
  redirectFlows: RedirectFlow[];
}

/** Compares two entries by forwardId and match/target, ignoring the expiry (a renewal removes nothing). */
function sameEntry<T extends DnatEntry | InputAcceptEntry>(a: T, b: T): boolean {
  const { expiresAtUnixSeconds: _a, ...restA } = a;
  const { expiresAtUnixSeconds: _b, ...restB } = b;
  return JSON.stringify(restA) === JSON.stringify(restB);
}

/** Lists entries of `previous` that `next` no longer has, by forwardId and content. */
export function findRemovedEntries(previous: AgentState | null, next: AgentState): RemovedEntries {
  if (previous === null) {
    return { dnat: [], inputAccept: [], redirectFlows: [] };
  }
  return {
    dnat: previous.dnat.filter((old) => !next.dnat.some((entry) => sameEntry(old, entry))),
    inputAccept: previous.inputAccept.filter(
      (old) => !next.inputAccept.some((entry) => sameEntry(old, entry)),
    ),
    redirectFlows: findRemovedRedirectFlows(previous, next),
  };
}

const DELETED_PATTERN = /(\d+) flow entries have been deleted/;
const ORIGINAL_DPORT_PATTERN = /\bdport=(\d+)\b/;

/** `conntrack -D` exits 1 when it deleted nothing; that is not an error here. */
function parseDeletedCount(stderr: string): number | null {
  const match = DELETED_PATTERN.exec(stderr);
  return match === null ? null : Number(match[1]);
}

export class ConntrackCleaner {
  constructor(
    private readonly runner: CommandRunner,
    private readonly logger: Logger,
  ) {}

  /** Deletes the flows of every removed entry; returns how many conntrack entries were deleted. */
  async deleteFlows(removed: RemovedEntries): Promise<number> {
    let deleted = 0;
    for (const entry of removed.dnat) {
      deleted += await this.deleteEntryFlows(entry, entry.forwardId, [
        '--reply-src',
        entry.targetAddress,
      ]);
    }
    for (const entry of removed.inputAccept) {
      deleted += await this.deleteEntryFlows(entry, entry.forwardId, []);
    }
    for (const flow of removed.redirectFlows) {
      deleted += await this.deleteMatching(
        { flow: describeRedirectFlow(flow) },
        conntrackFiltersOf(flow),
      );
    }
    return deleted;
  }

  private async deleteEntryFlows(
    entry: DnatEntry | InputAcceptEntry,
    forwardId: string,
    extraFilters: string[],
  ): Promise<number> {
    // Only flows our chains admitted carry the mark bit.
    const filters = [
      '-p',
      entry.protocol,
      '--mark',
      `${FORWARD_CT_MARK_HEX}/${FORWARD_CT_MARK_HEX}`,
    ];
    if (entry.sourceCidr !== '0.0.0.0/0') {
      filters.push('-s', entry.sourceCidr);
    }
    filters.push(...extraFilters);

    const isDnat = 'targetPorts' in entry;
    if (entry.ports.first === entry.ports.last) {
      const portFilters = ['--orig-port-dst', String(entry.ports.first)];
      if (isDnat) {
        portFilters.push('--reply-port-src', String(entry.targetPorts.first));
      }
      return this.deleteMatching({ forwardId }, [...filters, ...portFilters]);
    }

    // conntrack has no port range filter: list the candidates once, then
    // delete per destination port in the range (a range keeps its numbers,
    // so the reply source port is the same port).
    const ports = await this.listOriginalPorts(forwardId, filters, entry.ports);
    let deleted = 0;
    for (const port of ports) {
      const portFilters = ['--orig-port-dst', String(port)];
      if (isDnat) {
        portFilters.push('--reply-port-src', String(port));
      }
      deleted += await this.deleteMatching({ forwardId }, [...filters, ...portFilters]);
    }
    return deleted;
  }

  private async listOriginalPorts(
    forwardId: string,
    filters: string[],
    range: { first: number; last: number },
  ): Promise<number[]> {
    const result = await this.runner.run(['-L', ...filters]);
    if (result.exitCode !== 0) {
      this.logger.error(
        { forwardId, exitCode: result.exitCode, stderr: result.stderr.trim() },
        'conntrack -L failed; flows of the removed forward stay until they time out',
      );
      return [];
    }

    const ports = new Set<number>();
    for (const line of result.stdout.split('\n')) {
      const match = ORIGINAL_DPORT_PATTERN.exec(line);
      const port = match === null ? Number.NaN : Number(match[1]);
      if (port >= range.first && port <= range.last) {
        ports.add(port);
      }
    }
    return [...ports].sort((a, b) => a - b);
  }

  /** Runs `conntrack -D`; `removed` names the forward or flow in the logs. */
  private async deleteMatching(
    removed: { forwardId: string } | { flow: string },
    filters: string[],
  ): Promise<number> {
    const result = await this.runner.run(['-D', ...filters]);
    const count = parseDeletedCount(result.stderr);
    if (count === null || (result.exitCode !== 0 && count !== 0)) {
      this.logger.error(
        { ...removed, exitCode: result.exitCode, stderr: result.stderr.trim() },
        'conntrack -D failed; flows of the removed entry stay until they time out',
      );
      return 0;
    }

    if (count > 0) {
      this.logger.info(
        { ...removed, deleted: count },
        'deleted conntrack entries of removed entry',
      );
    }
    return count;
  }
}
