import type { Logger } from '../../rpc/logger.js';
import type { UpstreamMapping } from '../../rpc/nat-traversal-messages.js';
import type { PortRange, TransportProtocol } from '../../rpc/wire-types.js';
import { type ForwardManager, ForwardRequestError } from '../forwards/forward-manager.js';
import { ANY_SOURCE_CIDR, type ForwardRule, portRangesOverlap } from '../forwards/forward-rule.js';
import { newForwardId } from '../forwards/forward-store.js';
import type { InventorySnapshot } from '../network/qube-inventory.js';

/**
 * NAT traversal leases: forwards that the broker requested for a qube, with
 * an expiry that renewals push forward. They go through the same store,
 * planner and pushes as manual forwards, so `qvm-forward` lists and deletes
 * them too.
 */

export interface LeaseRequest {
  qube: string;
  protocol: TransportProtocol;
  internalPort: number;
  lifetimeSeconds: number;
  via: 'upnp' | 'natpmp' | 'pcp' | 'stun';
  description: string;
  /** Ports the qube may use on the uplink; the internal port is preferred. */
  allowedPorts: PortRange[];
}

export class NoFreePortError extends Error {
  override name = 'NoFreePortError';
}

/** Renewals that move a lease's expiry by less than this are stored but not pushed to the hops. */
const MIN_PUSHED_RENEWAL_SECONDS = 10;

/** Tries before giving up on finding a free uplink port at random. */
const RANDOM_PORT_TRIES = 64;

export class LeaseManager {
  constructor(
    private readonly manager: ForwardManager,
    private readonly logger: Logger,
  ) {}

  /** Returns the lease of a qube's internal port, if one is live. */
  async find(qube: string, protocol: TransportProtocol, internalPort: number) {
    const forwards = await this.manager.list(qube);
    return forwards.find((forward) => isLeaseOf(forward, protocol, internalPort)) ?? null;
  }

  async listLeases(): Promise<ForwardRule[]> {
    return (await this.manager.list()).filter((forward) => forward.natTraversal != null);
  }

  /** Creates a lease, or replaces the qube's lease of the same internal port. */
  async grant(request: LeaseRequest): Promise<ForwardRule> {
    return this.manager.change((live, inventory, nowUnixSeconds) => {
      const previous = live.find(
        (forward) =>
          forward.qube === request.qube &&
          isLeaseOf(forward, request.protocol, request.internalPort),
      );
      const others = live.filter((forward) => forward !== previous);
      const uplinkPort = previous?.ports.first ?? chooseUplinkPort(request, others, inventory);

      const lease: ForwardRule = {
        id: previous?.id ?? newForwardId(),
        qube: request.qube,
        protocol: request.protocol,
        ports: { first: uplinkPort, last: uplinkPort },
        targetPorts: { first: request.internalPort, last: request.internalPort },
        sourceCidr: ANY_SOURCE_CIDR,
        expiresAtUnixSeconds: nowUnixSeconds + request.lifetimeSeconds,
        comment: `${request.via}: ${request.description}`.slice(0, 512),
        createdAtUnixSeconds: previous?.createdAtUnixSeconds ?? nowUnixSeconds,
        natTraversal: {
          via: request.via,
          internalPort: request.internalPort,
          upstream: previous?.natTraversal?.upstream ?? null,
        },
      };
      this.logger.info(
        {
          qube: request.qube,
          protocol: request.protocol,
          internalPort: request.internalPort,
          uplinkPort,
          lifetimeSeconds: request.lifetimeSeconds,
          via: request.via,
        },
        previous === undefined ? 'lease granted' : 'lease replaced',
      );
      return { forwards: [...others, lease], touched: [lease], result: lease };
    });
  }

  /** Extends a live lease; returns null when there is none (revoked or expired). */
  async renew(
    qube: string,
    protocol: TransportProtocol,
    internalPort: number,
    lifetimeSeconds: number,
    upstream: UpstreamMapping | null,
  ): Promise<ForwardRule | null> {
    return this.manager.change((live, _inventory, nowUnixSeconds) => {
      const lease = live.find(
        (forward) => forward.qube === qube && isLeaseOf(forward, protocol, internalPort),
      );
      if (lease === undefined || lease.natTraversal == null) {
        return { forwards: live, touched: [], result: null };
      }

      const expiresAtUnixSeconds = nowUnixSeconds + lifetimeSeconds;
      const renewed: ForwardRule = {
        ...lease,
        expiresAtUnixSeconds,
        natTraversal: { ...lease.natTraversal, upstream },
      };
      // A renewal that moves the expiry by only a few seconds (the broker
      // reporting the router mapping right after the grant) changes no hop.
      const movedSeconds = Math.abs(expiresAtUnixSeconds - (lease.expiresAtUnixSeconds ?? 0));
      const touched = movedSeconds < MIN_PUSHED_RENEWAL_SECONDS ? [] : [renewed];
      this.logger.info(
        { qube, protocol, internalPort, lifetimeSeconds, upstream },
        'lease renewed',
      );
      return {
        forwards: live.map((forward) => (forward === lease ? renewed : forward)),
        touched,
        result: renewed,
      };
    });
  }

  /** Removes a qube's lease of an internal port; returns how many were removed. */
  async release(qube: string, protocol: TransportProtocol, internalPort: number): Promise<number> {
    return this.manager.change((live) => {
      const removed = live.filter(
        (forward) => forward.qube === qube && isLeaseOf(forward, protocol, internalPort),
      );
      if (removed.length > 0) {
        this.logger.info({ qube, protocol, internalPort }, 'lease released');
      }
      return {
        forwards: live.filter((forward) => !removed.includes(forward)),
        touched: removed,
        result: removed.length,
      };
    });
  }
}

function isLeaseOf(
  forward: ForwardRule,
  protocol: TransportProtocol,
  internalPort: number,
): boolean {
  return (
    forward.natTraversal != null &&
    forward.protocol === protocol &&
    forward.natTraversal.internalPort === internalPort
  );
}

/**
 * Picks the uplink port: the internal port when it is allowed and free on
 * the qube's uplink, so every hop uses the same number, otherwise a free
 * allowed port at random.
 */
function chooseUplinkPort(
  request: LeaseRequest,
  others: ForwardRule[],
  inventory: InventorySnapshot,
): number {
  const uplink = inventory.uplinkOf(request.qube);
  if (uplink === null) {
    throw new ForwardRequestError(`${request.qube} has no netvm, so nothing can reach it`);
  }
  const taken = others.filter(
    (forward) =>
      forward.protocol === request.protocol && inventory.uplinkOf(forward.qube) === uplink,
  );
  const isFree = (port: number) =>
    request.allowedPorts.some((range) => port >= range.first && port <= range.last) &&
    !taken.some((forward) => portRangesOverlap(forward.ports, { first: port, last: port }));

  if (isFree(request.internalPort)) {
    return request.internalPort;
  }
  const candidates = request.allowedPorts.reduce(
    (sum, range) => sum + range.last - range.first + 1,
    0,
  );
  for (let attempt = 0; attempt < RANDOM_PORT_TRIES && candidates > 0; attempt++) {
    let offset = Math.floor(Math.random() * candidates);
    for (const range of request.allowedPorts) {
      const size = range.last - range.first + 1;
      if (offset < size) {
        const port = range.first + offset;
        if (isFree(port)) {
          return port;
        }
        break;
      }
      offset -= size;
    }
  }
  throw new NoFreePortError(`no free ${request.protocol} port on the uplink of ${request.qube}`);
}
