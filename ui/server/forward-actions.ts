import { type ForwardManager, ForwardRequestError } from '../../policy/forwards/forward-manager.js';
import {
  type ForwardRule,
  type ForwardRuleFields,
  portRangesOverlap,
} from '../../policy/forwards/forward-rule.js';
import { newForwardId } from '../../policy/forwards/forward-store.js';
import type { Logger } from '../../rpc/logger.js';
import { formatPortRange } from '../../rpc/wire-types.js';

/**
 * Changes of one forward selected by its id, which stays the same while the
 * list changes under an open page (a rule number would not). Each change runs
 * in one `ForwardManager.change` transaction, so the store lock, the pushes
 * to every hop and the rollback are those of `qvm-forward`.
 */

export class ForwardNotFoundError extends Error {
  override name = 'ForwardNotFoundError';
}

export interface ForwardActionContext {
  manager: ForwardManager;
  logger: Logger;
}

/**
 * Removes a forward of `qube` by id; with `leaseOnly`, only a NAT traversal
 * lease. The caller removes the forward's router mapping, if it had one.
 */
export function removeForwardById(
  context: ForwardActionContext,
  qube: string,
  id: string,
  options: { leaseOnly?: boolean } = {},
): Promise<ForwardRule> {
  return context.manager.change((live) => {
    const removed = live.find((forward) => forward.id === id && forward.qube === qube);
    if (removed === undefined || (options.leaseOnly === true && removed.natTraversal == null)) {
      throw new ForwardNotFoundError(
        `${qube} has no live ${options.leaseOnly === true ? 'mapping' : 'forward'} ${id}; ` +
          'it may have expired or been deleted',
      );
    }

    context.logger.info(
      { qube, forwardId: removed.id },
      removed.natTraversal == null ? 'forward removed' : 'lease revoked',
    );
    return {
      forwards: live.filter((forward) => forward.id !== removed.id),
      touched: [removed],
      result: removed,
    };
  });
}

/**
 * Replaces a manual forward with new fields in one transaction: the old
 * rule's entries leave every hop and the new ones arrive in the same push.
 * The replacement gets a new id, as a delete followed by an add would.
 */
export function replaceForward(
  context: ForwardActionContext,
  qube: string,
  id: string,
  fields: ForwardRuleFields,
): Promise<ForwardRule> {
  return context.manager.change((live, inventory, nowUnixSeconds) => {
    const previous = live.find((forward) => forward.id === id && forward.qube === qube);
    if (previous === undefined) {
      throw new ForwardNotFoundError(
        `${qube} has no live forward ${id}; it may have expired or been deleted`,
      );
    }
    if (previous.natTraversal != null) {
      throw new ForwardRequestError(
        `forward ${id} is a NAT traversal lease, which the broker renews; revoke it instead of editing it`,
      );
    }

    // NOTE: the same conflict rule and message as ForwardManager.add, which
    // does not export its checks: one protocol and port per uplink.
    const uplink = inventory.uplinkOf(qube);
    const conflict = live.find(
      (other) =>
        other.id !== previous.id &&
        other.protocol === fields.protocol &&
        portRangesOverlap(other.ports, fields.ports) &&
        inventory.uplinkOf(other.qube) === uplink,
    );
    if (conflict !== undefined) {
      throw new ForwardRequestError(
        `${fields.protocol} port ${formatPortRange(fields.ports)} is already forwarded to ` +
          `${conflict.qube} (${conflict.protocol} ${formatPortRange(conflict.ports)}) on the ` +
          'same uplink; delete that forward first or choose another port',
      );
    }

    const replacement: ForwardRule = {
      id: newForwardId(),
      qube,
      ...fields,
      createdAtUnixSeconds: nowUnixSeconds,
    };
    context.logger.info(
      {
        qube,
        replacedForwardId: previous.id,
        forwardId: replacement.id,
        protocol: replacement.protocol,
        ports: formatPortRange(replacement.ports),
        targetPorts: formatPortRange(replacement.targetPorts),
        sourceCidr: replacement.sourceCidr,
        expiresAtUnixSeconds: replacement.expiresAtUnixSeconds,
      },
      'forward replaced',
    );
    return {
      forwards: live.map((forward) => (forward === previous ? replacement : forward)),
      touched: [previous, replacement],
      result: replacement,
    };
  });
}
