import type { AdminApi } from '../rpc/admin-api/admin-api.js';
import type { Logger } from '../rpc/logger.js';
import type { ForwardManager } from './forwards/forward-manager.js';
import { isExpired } from './forwards/forward-rule.js';
import type { LeaseManager } from './nat-traversal/lease-manager.js';
import { readNatTraversalSettings } from './nat-traversal/nat-settings.js';

/**
 * The long-running dom0 service: puts forward rules back when a VM starts
 * (its tables are new), recomputes every hop when a qube's network changes,
 * and drops expired forwards from the store. The kernel already removes an
 * expired forward by itself through nft element timeouts; this keeps the
 * store, `qvm-forward` listings and conntrack in step.
 */

/** Maximum wait between two expiry checks. */
const MAX_EXPIRY_CHECK_INTERVAL_MS = 60_000;
/** Maximum wait for the event subscription at start. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;
/** Wait before subscribing again after qubesd closed the event stream. */
const RESUBSCRIBE_DELAY_MS = 1_000;

/** Events after which every hop must be recomputed, because a chain or an address changed. */
const NETWORK_CHANGE_EVENTS = new Set([
  'property-set:netvm',
  'property-reset:netvm',
  'property-set:ip',
  'property-reset:ip',
]);

export interface Dom0DaemonOptions {
  adminApi: AdminApi;
  manager: ForwardManager;
  leases?: LeaseManager;
  /** Renews STUN leases whose socket carries traffic; started and stopped with the daemon. */
  activity?: { start(): void; stop(): Promise<void> };
  /** Called after the set of NAT traversal qubes may have changed (tells the broker). */
  onNatTraversalChanged?: () => Promise<unknown>;
  logger: Logger;
  nowUnixMs?: () => number;
}

export class Dom0Daemon {
  private readonly shutdown = new AbortController();
  private expiryTimer: NodeJS.Timeout | null = null;
  private eventLoop: Promise<void> | null = null;
  private readonly nowUnixMs: () => number;
  private onSubscribed: (() => void) | null = null;

  constructor(private readonly options: Dom0DaemonOptions) {
    this.nowUnixMs = options.nowUnixMs ?? Date.now;
  }

  /**
   * Subscribes to qubesd events first, so no change made after start()
   * returns is missed, then pushes every hop and tells the broker.
   */
  async start(): Promise<void> {
    const subscribed = new Promise<void>((resolve) => {
      this.onSubscribed = resolve;
    });
    this.eventLoop = this.followEvents();
    await Promise.race([subscribed, sleep(SUBSCRIBE_TIMEOUT_MS, this.shutdown.signal)]);
    await this.reloadAll('start');
    const notify = this.options.onNatTraversalChanged;
    if (notify !== undefined) {
      await this.guard('tell the broker', notify);
    }
    this.scheduleExpiryCheck();
    this.options.activity?.start();
  }

  async stop(): Promise<void> {
    this.shutdown.abort();
    if (this.expiryTimer !== null) {
      clearTimeout(this.expiryTimer);
    }
    await this.options.activity?.stop();
    await this.eventLoop;
  }

  private async followEvents(): Promise<void> {
    const { signal } = this.shutdown;
    while (!signal.aborted) {
      try {
        for await (const event of this.options.adminApi.events(signal)) {
          if (event.event === 'connection-established') {
            this.onSubscribed?.();
          }
          await this.handleEvent(event.subject, event.event);
        }
      } catch (error) {
        if (!signal.aborted) {
          this.options.logger.error({ err: error }, 'event stream failed; subscribing again');
        }
      }
      await sleep(RESUBSCRIBE_DELAY_MS, signal);
    }
  }

  private async handleEvent(subject: string | null, event: string): Promise<void> {
    if (subject === null) {
      return;
    }

    if (event === 'domain-start') {
      this.options.logger.info({ vm: subject }, 'VM started; pushing its forward rules');
      await this.guard(`push to ${subject}`, () => this.options.manager.reload(subject));
      return;
    }
    if (NETWORK_CHANGE_EVENTS.has(event)) {
      await this.reloadAll(`${event} on ${subject}`);
      return;
    }
    if (isNatTraversalFeatureEvent(event)) {
      await this.onNatTraversalChange(subject, event);
    }
  }

  /**
   * Recomputes the redirects of every hop after a NAT traversal feature
   * changed, and releases the qube's leases when NAT traversal is now off.
   */
  private async onNatTraversalChange(subject: string, event: string): Promise<void> {
    const settings = await readNatTraversalSettings(this.options.adminApi, subject).catch(
      () => null,
    );
    const leaseManager = this.options.leases;
    if (settings !== null && !settings.enabled && leaseManager !== undefined) {
      const leases = (await leaseManager.listLeases()).filter((lease) => lease.qube === subject);
      for (const lease of leases) {
        await this.guard(`release lease ${lease.id}`, () =>
          leaseManager.release(
            subject,
            lease.protocol,
            lease.natTraversal?.internalPort ?? lease.targetPorts.first,
          ),
        );
      }
      if (leases.length > 0) {
        this.options.logger.info(
          { qube: subject, leases: leases.length },
          'NAT traversal disabled; leases released',
        );
      }
    }
    await this.reloadAll(`${event} on ${subject}`);
    const notify = this.options.onNatTraversalChanged;
    if (notify !== undefined) {
      await this.guard('tell the broker', notify);
    }
  }

  private async reloadAll(reason: string): Promise<void> {
    this.options.logger.info({ reason }, 'pushing forward rules to every hop');
    await this.guard('reload', () => this.options.manager.reload());
  }

  private scheduleExpiryCheck(): void {
    if (this.shutdown.signal.aborted) {
      return;
    }

    void this.nextExpiryDelayMs().then((delayMs) => {
      if (this.shutdown.signal.aborted) {
        return;
      }
      this.expiryTimer = setTimeout(async () => {
        await this.dropExpired();
        this.scheduleExpiryCheck();
      }, delayMs);
    });
  }

  private async nextExpiryDelayMs(): Promise<number> {
    const forwards = await this.options.manager.list().catch(() => []);
    const nowUnixMs = this.nowUnixMs();
    const next = Math.min(
      ...forwards.flatMap((forward) =>
        forward.expiresAtUnixSeconds === null
          ? []
          : [forward.expiresAtUnixSeconds * 1000 - nowUnixMs],
      ),
    );
    return Math.max(0, Math.min(next + 1000, MAX_EXPIRY_CHECK_INTERVAL_MS));
  }

  private async dropExpired(): Promise<void> {
    const nowUnixSeconds = Math.floor(this.nowUnixMs() / 1000);
    const all = await this.options.manager.listStored().catch(() => []);
    const expired = all.filter((forward) => isExpired(forward, nowUnixSeconds));
    if (expired.length === 0) {
      return;
    }

    for (const forward of expired) {
      this.options.logger.info({ qube: forward.qube, forwardId: forward.id }, 'forward expired');
    }
    await this.reloadAll('forwards expired');
  }

  private async guard(what: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.options.logger.error({ err: error }, `${what} failed`);
    }
  }
}

function isNatTraversalFeatureEvent(event: string): boolean {
  return /^domain-feature-(set|delete):(nat-traversal|nat-broker)/.test(event);
}

function sleep(delayMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, delayMs);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
