import type { AgentState } from '../rpc/agent-state.js';
import type { Logger } from '../rpc/logger.js';
import { AgentError, AgentErrorCode } from './agent-errors.js';
import type { AgentStateStore } from './agent-state-store.js';
import { type ConntrackCleaner, findRemovedEntries } from './conntrack-cleaner.js';
import { parseStockTableListing, planCustomChainEdits } from './custom-chain-rule.js';
import type { CommandRunner } from './nft-runner.js';
import { type RenderedRuleset, renderRuleset } from './render-ruleset.js';

/**
 * The agent component: installs a complete AgentState in one nft
 * transaction, stores it, and deletes the conntrack entries of forwards it
 * removed. `restore()` re-installs the stored state after a reboot or a
 * reload of the stock tables.
 */

export interface Clock {
  nowUnixMs(): number;
}

export const systemClock: Clock = { nowUnixMs: () => Date.now() };

export interface StateApplierDependencies {
  /** Name of the VM the agent runs in; a state for another VM is rejected. */
  vmName: string;
  nft: CommandRunner;
  conntrack: ConntrackCleaner;
  store: AgentStateStore;
  clock: Clock;
  logger: Logger;
}

export interface ApplyOutcome {
  result: 'applied';
  /** DNAT entries installed (expired ones are not counted). */
  dnat: number;
  /** Input accept entries installed (expired ones are not counted). */
  inputAccept: number;
  /** Qubes whose NAT traversal requests this netvm redirects to the broker. */
  natTraversalRedirects: number;
  /** Distinct addresses whose SSDP replies this qube accepts. */
  ssdpReplySources: number;
  removedConntrackEntries: number;
}

export type RestoreOutcome =
  | {
      result: 'restored';
      dnat: number;
      inputAccept: number;
      natTraversalRedirects: number;
      ssdpReplySources: number;
    }
  | { result: 'no-state' };

export class StateApplier {
  constructor(private readonly deps: StateApplierDependencies) {}

  /** Replaces this VM's forwarding state with `state`, unless a newer one is already applied. */
  async apply(state: AgentState): Promise<ApplyOutcome> {
    this.checkVm(state);

    return this.deps.store.withLock(async () => {
      const previous = await this.readPrevious();
      if (previous !== null && state.issuedAtUnixMs < previous.issuedAtUnixMs) {
        throw new AgentError(
          AgentErrorCode.StaleState,
          `state issued at ${state.issuedAtUnixMs} ms is older than the applied state issued at ${previous.issuedAtUnixMs} ms; send the current state`,
        );
      }

      const rendered = await this.install(state);
      await this.deps.store.write(state);

      const removed = findRemovedEntries(previous, state);
      const removedConntrackEntries = await this.deps.conntrack.deleteFlows(removed);

      this.deps.logger.info(
        {
          vm: state.vm,
          issuedAtUnixMs: state.issuedAtUnixMs,
          dnat: rendered.dnatCount,
          inputAccept: rendered.inputAcceptCount,
          natTraversalRedirects: rendered.natTraversalRedirectCount,
          ssdpReplySources: rendered.ssdpReplySourceCount,
          expired: rendered.expiredCount,
          removedForwardIds: [...removed.dnat, ...removed.inputAccept].map(
            (entry) => entry.forwardId,
          ),
          removedRedirectFlows: removed.redirectFlows.length,
          removedConntrackEntries,
        },
        'state applied',
      );
      return {
        result: 'applied',
        dnat: rendered.dnatCount,
        inputAccept: rendered.inputAcceptCount,
        natTraversalRedirects: rendered.natTraversalRedirectCount,
        ssdpReplySources: rendered.ssdpReplySourceCount,
        removedConntrackEntries,
      };
    });
  }

  /** Re-installs the stored state without its expired entries; does nothing when none is stored. */
  async restore(): Promise<RestoreOutcome> {
    return this.deps.store.withLock(async () => {
      const stored = await this.deps.store.read();
      if (stored.kind === 'missing') {
        this.deps.logger.info({ file: this.deps.store.filePath }, 'no stored state to restore');
        return { result: 'no-state' };
      }
      if (stored.kind === 'corrupt') {
        throw new AgentError(
          AgentErrorCode.StateStoreFailed,
          `stored state ${this.deps.store.filePath} is unreadable (${stored.reason}); delete it and let dom0 push the state again`,
        );
      }

      // A cloned VM carries the private volume, and with it the state of the original.
      this.checkVm(stored.state);
      const rendered = await this.install(stored.state);
      this.deps.logger.info(
        {
          vm: stored.state.vm,
          issuedAtUnixMs: stored.state.issuedAtUnixMs,
          dnat: rendered.dnatCount,
          inputAccept: rendered.inputAcceptCount,
          natTraversalRedirects: rendered.natTraversalRedirectCount,
          ssdpReplySources: rendered.ssdpReplySourceCount,
          expired: rendered.expiredCount,
        },
        'state restored',
      );
      return {
        result: 'restored',
        dnat: rendered.dnatCount,
        inputAccept: rendered.inputAcceptCount,
        natTraversalRedirects: rendered.natTraversalRedirectCount,
        ssdpReplySources: rendered.ssdpReplySourceCount,
      };
    });
  }

  private checkVm(state: AgentState): void {
    if (state.vm !== this.deps.vmName) {
      throw new AgentError(
        AgentErrorCode.WrongVm,
        `state is for VM "${state.vm}" but this is "${this.deps.vmName}"; send it to "${state.vm}"`,
      );
    }
  }

  private async readPrevious(): Promise<AgentState | null> {
    const stored = await this.deps.store.read();
    if (stored.kind === 'corrupt') {
      // dom0 always sends the complete state, so replacing an unreadable file loses nothing.
      this.deps.logger.warn(
        { file: this.deps.store.filePath, reason: stored.reason },
        'stored state is unreadable; replacing it',
      );
      return null;
    }
    return stored.kind === 'loaded' ? stored.state : null;
  }

  /** Renders and runs one `nft -f -` transaction; on failure nothing is changed. */
  private async install(state: AgentState): Promise<RenderedRuleset> {
    const listing = await this.deps.nft.run(['-j', 'list', 'table', 'ip', 'qubes']);
    if (listing.exitCode !== 0) {
      const missing = /No such file or directory/.test(listing.stderr);
      throw new AgentError(
        missing ? AgentErrorCode.StockTableMissing : AgentErrorCode.NftFailed,
        missing
          ? 'table ip qubes is missing; this VM does not have the stock Qubes nftables tables (start qubes-iptables.service first)'
          : `nft -j list table ip qubes failed (exit ${listing.exitCode}): ${listing.stderr.trim()}`,
      );
    }

    const stockTable = parseStockTableListing(listing.stdout);
    if (stockTable === null) {
      throw new AgentError(
        AgentErrorCode.NftFailed,
        'nft -j list table ip qubes printed no JSON listing; check that nft supports -j (nftables 0.9 or later)',
      );
    }

    const now = this.deps.clock.nowUnixMs();
    const edits = planCustomChainEdits(stockTable, {
      forward: state.dnat.length > 0 || state.natTraversalRedirects.length > 0,
      input: state.inputAccept.length > 0 || state.ssdpReplySources.length > 0,
      ssdpUntracked: state.natTraversalRedirects.length > 0,
    });
    const rendered = renderRuleset(state, now, edits);

    const result = await this.deps.nft.run(['-f', '-'], rendered.script);
    if (result.exitCode !== 0) {
      this.deps.logger.error(
        { exitCode: result.exitCode, stderr: result.stderr.trim() },
        'nft rejected the transaction; the previous ruleset is unchanged',
      );
      throw new AgentError(
        AgentErrorCode.NftFailed,
        `nft -f rejected the transaction (exit ${result.exitCode}), nothing was changed: ${result.stderr.trim()}`,
      );
    }
    for (const edit of edits) {
      this.deps.logger.info(edit, 'edited stock custom chain');
    }
    return rendered;
  }
}
