import type { AdminApi } from '../../rpc/admin-api/admin-api.js';
import type { Logger } from '../../rpc/logger.js';
import {
  NAT_BROKER_CONTROL_SERVICE,
  type UpstreamControlReply,
  type UpstreamControlRequest,
  upstreamControlReplySchema,
} from '../../rpc/nat-traversal-messages.js';
import type { QrexecTransport } from '../../rpc/qrexec-transport.js';
import { readNatTraversalTopology } from '../nat-traversal/nat-topology.js';
import type { QubeInventory } from '../network/qube-inventory.js';
import type { ForwardManager } from './forward-manager.js';
import type { ForwardRule } from './forward-rule.js';

/**
 * dom0's calls to the broker VM through `qubes.NatBrokerControl`: router
 * mappings of manual forwards (`upstream=yes`), which the broker's home
 * router client makes, and client-list refreshes.
 * A forward works up to sys-net's LAN address without it, so a failure here
 * is reported but never undoes the forward.
 */

/** Lease asked for a forward without expiry; the broker renews it at half the lease while it runs. */
const DEFAULT_ROUTER_LEASE_SECONDS = 3600;
const CALL_TIMEOUT_MS = 30_000;

export class RouterMappings {
  constructor(
    private readonly options: {
      adminApi: AdminApi;
      inventory: QubeInventory;
      transport: QrexecTransport;
      manager: ForwardManager;
      logger: Logger;
      nowUnixMs: () => number;
    },
  ) {}

  /** Maps the forward's port on the router and records the result; returns it for display. */
  async map(forward: ForwardRule): Promise<UpstreamControlReply> {
    const nowUnixSeconds = Math.floor(this.options.nowUnixMs() / 1000);
    const lifetimeSeconds =
      forward.expiresAtUnixSeconds === null
        ? DEFAULT_ROUTER_LEASE_SECONDS
        : Math.max(1, Math.min(604_800, forward.expiresAtUnixSeconds - nowUnixSeconds));

    const reply = await this.call({
      action: 'map',
      protocol: forward.protocol,
      uplinkPort: forward.ports.first,
      lifetimeSeconds,
    });
    if (reply.result === 'mapped') {
      await this.options.manager.recordRouterMapping(forward.id, reply.mapping);
    }
    this.options.logger.info({ forwardId: forward.id, reply }, 'router mapping requested');
    return reply;
  }

  async unmap(forward: ForwardRule): Promise<UpstreamControlReply> {
    const reply = await this.call({
      action: 'unmap',
      protocol: forward.protocol,
      uplinkPort: forward.ports.first,
    });
    this.options.logger.info({ forwardId: forward.id, reply }, 'router mapping removed');
    return reply;
  }

  /** Tells the broker that the set of NAT traversal qubes changed, so it reads it again. */
  async refreshBrokerClients(): Promise<UpstreamControlReply> {
    return this.call({ action: 'refresh-clients' });
  }

  private async call(request: UpstreamControlRequest): Promise<UpstreamControlReply> {
    const inventory = await this.options.inventory.snapshot();
    const topology = await readNatTraversalTopology(this.options.adminApi, inventory);
    if (topology.broker === null) {
      return {
        result: 'unavailable',
        message: 'no broker VM (set: qvm-features sys-nat nat-broker 1)',
      };
    }

    const result = await this.options.transport.call(
      {
        target: topology.broker.name,
        service: NAT_BROKER_CONTROL_SERVICE,
        payload: JSON.stringify(request),
      },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    try {
      const parsed = upstreamControlReplySchema.safeParse(JSON.parse(result.stdout.toString()));
      if (parsed.success) {
        return parsed.data;
      }
    } catch {
      // Reported below.
    }
    return {
      result: 'failed',
      message: `${NAT_BROKER_CONTROL_SERVICE} in ${topology.broker.name} exited with ${result.exitCode}`,
    };
  }
}
