import type { Logger } from '../../rpc/logger.js';
import type { NatTraversalClient } from '../../rpc/nat-traversal-messages.js';
import type { Dom0Client } from './dom0-client.js';

/**
 * The qubes with NAT traversal enabled, by address, as dom0 reports them.
 * Servers look clients up synchronously per packet, so the list is cached
 * and refreshed in the background: periodically, and soon after a packet
 * from an unknown address (rate limited), so a client's retransmission finds
 * a qube that was enabled a moment ago.
 */

/** Refresh interval of the client list. */
export const CLIENT_REFRESH_INTERVAL_MS = 10_000;
/** Minimum time between two refreshes triggered by unknown addresses. */
const UNKNOWN_CLIENT_REFRESH_MS = 2_000;

export class ClientDirectory {
  private clients = new Map<string, NatTraversalClient>();
  private lastRefreshMs = 0;
  private refreshing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dom0: Dom0Client,
    private readonly logger: Logger,
    private readonly nowMs: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), CLIENT_REFRESH_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
    }
  }

  /** Returns the enabled qube with this address, or null (and schedules a refresh). */
  lookup(address: string): NatTraversalClient | null {
    const client = this.clients.get(address) ?? null;
    if (client === null && this.nowMs() - this.lastRefreshMs >= UNKNOWN_CLIENT_REFRESH_MS) {
      void this.refresh();
    }
    return client;
  }

  /** Looks up an address, refreshing once from dom0 when it is unknown. */
  async resolve(address: string): Promise<NatTraversalClient | null> {
    const known = this.clients.get(address);
    if (known !== undefined) {
      return known;
    }
    await this.refresh();
    return this.clients.get(address) ?? null;
  }

  all(): NatTraversalClient[] {
    return [...this.clients.values()];
  }

  async refresh(): Promise<void> {
    if (this.refreshing !== null) {
      return this.refreshing;
    }
    this.lastRefreshMs = this.nowMs();
    this.refreshing = (async () => {
      try {
        const reply = await this.dom0.clients();
        this.clients = new Map(reply.clients.map((client) => [client.address, client]));
        this.logger.debug({ clients: reply.clients.length }, 'client list refreshed');
      } catch (error) {
        this.logger.error(
          { err: error },
          'cannot read the client list from dom0; keeping the old one',
        );
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }
}
