import {
  type ActivityQuery,
  activityReplySchema,
  MAX_ACTIVITY_QUERIES,
  NAT_BROKER_ACTIVITY_SERVICE,
} from '../../agent-hooks/activity-messages.js';
import type { Logger } from '../../rpc/logger.js';
import type { QrexecTransport } from '../../rpc/qrexec-transport.js';
import type { ForwardRule } from '../forwards/forward-rule.js';
import type { AdminApiReader, QubeInventory } from '../network/qube-inventory.js';
import type { LeaseManager } from './lease-manager.js';
import { readNatTraversalSettings } from './nat-settings.js';

/**
 * Renews STUN leases while their socket carries traffic. A WebRTC app sends
 * STUN Binding requests only while it gathers candidates, so without this a
 * call's lease, hop rules and router mapping would end mid-call. Shortly
 * before a STUN lease expires, dom0 calls `qubes.NatBrokerActivity` in the
 * qube's netvm, which checks its conntrack table for a flow of the socket.
 * An active lease is renewed for its lifetime, and an idle one expires.
 *
 * Only STUN leases are renewed: UPnP IGD, NAT-PMP and PCP clients choose a
 * lifetime and renew by protocol, so dom0 keeps the lifetime they requested.
 */

/** Lifetime of a STUN lease: the broker's default STUN mapping lifetime, clamped to the qube's nat-traversal-max-lease. */
export const STUN_LEASE_LIFETIME_SECONDS = 300;
/** A lease is checked once it expires within this time, or within half its lifetime when that is shorter. */
export const RENEW_WINDOW_SECONDS = 90;
/** Default maximum wait between two checks; QNB_ACTIVITY_CHECK_INTERVAL_MS changes it. */
export const DEFAULT_ACTIVITY_CHECK_INTERVAL_MS = 30_000;
/** Shortest wait between two checks. */
export const MIN_ACTIVITY_CHECK_INTERVAL_MS = 1_000;
/** Longest QNB_ACTIVITY_CHECK_INTERVAL_MS accepted. */
export const MAX_ACTIVITY_CHECK_INTERVAL_MS = 300_000;
/**
 * Leases shorter than this are not renewed: a renewal must move the expiry
 * by at least 10 s for LeaseManager to push it to the hops, and the check
 * needs time to run before the lease ends.
 */
export const MIN_RENEWABLE_LIFETIME_SECONDS = 20;
/** Time allowed for one call to a netvm. */
const ACTIVITY_CALL_TIMEOUT_MS = 15_000;

export interface ActivityRenewalOptions {
  adminApi: AdminApiReader;
  inventory: QubeInventory;
  transport: QrexecTransport;
  leases: LeaseManager;
  logger: Logger;
  nowUnixMs: () => number;
  /** Maximum wait between two checks; default DEFAULT_ACTIVITY_CHECK_INTERVAL_MS. */
  checkIntervalMs?: number;
}

export interface ActivityCheckSummary {
  /** Leases inside their renew window. */
  checked: number;
  renewed: number;
  /** Leases the netvm reported without traffic, left to expire. */
  idle: number;
  /** Leases whose netvm could not be asked or whose settings forbid a renewal. */
  skipped: number;
}

interface Candidate {
  lease: ForwardRule;
  internalPort: number;
  lifetimeSeconds: number;
}

/**
 * Parses QNB_ACTIVITY_CHECK_INTERVAL_MS; returns the default when unset and
 * throws an error naming the value and the accepted range when invalid.
 */
export function parseActivityCheckIntervalMs(text: string | undefined): number {
  if (text === undefined || text === '') {
    return DEFAULT_ACTIVITY_CHECK_INTERVAL_MS;
  }
  const value = Number(text);
  if (
    !/^\d{1,9}$/.test(text) ||
    value < MIN_ACTIVITY_CHECK_INTERVAL_MS ||
    value > MAX_ACTIVITY_CHECK_INTERVAL_MS
  ) {
    throw new Error(
      `invalid QNB_ACTIVITY_CHECK_INTERVAL_MS=${JSON.stringify(text)}: use milliseconds from ${MIN_ACTIVITY_CHECK_INTERVAL_MS} to ${MAX_ACTIVITY_CHECK_INTERVAL_MS}`,
    );
  }
  return value;
}

/** Returns the time before expiry at which a lease of this lifetime is checked. */
export function renewWindowSeconds(lifetimeSeconds: number): number {
  return Math.min(RENEW_WINDOW_SECONDS, Math.floor(lifetimeSeconds / 2));
}

export class ActivityRenewal {
  private readonly checkIntervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private running: Promise<unknown> | null = null;

  constructor(private readonly options: ActivityRenewalOptions) {
    this.checkIntervalMs = options.checkIntervalMs ?? DEFAULT_ACTIVITY_CHECK_INTERVAL_MS;
  }

  start(): void {
    this.options.logger.info(
      { checkIntervalMs: this.checkIntervalMs },
      'activity renewal of STUN leases started',
    );
    this.schedule(MIN_ACTIVITY_CHECK_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
    }
    await this.running;
  }

  /** Checks every STUN lease inside its renew window once, and renews the active ones. */
  async checkOnce(): Promise<ActivityCheckSummary> {
    const summary: ActivityCheckSummary = { checked: 0, renewed: 0, idle: 0, skipped: 0 };
    const candidates = await this.candidates();
    const due = candidates.filter((candidate) => this.secondsUntilWindow(candidate) <= 0);
    summary.checked = due.length;
    if (due.length === 0) {
      return summary;
    }

    const inventory = await this.options.inventory.snapshot();
    const byNetvm = new Map<string, Array<Candidate & { query: ActivityQuery }>>();
    for (const candidate of due) {
      const qube = inventory.qubes.get(candidate.lease.qube);
      if (qube?.ip == null || qube.netvm === null) {
        summary.skipped++;
        continue;
      }
      const query: ActivityQuery = {
        clientAddress: qube.ip,
        protocol: 'udp',
        port: candidate.internalPort,
      };
      const group = byNetvm.get(qube.netvm) ?? [];
      group.push({ ...candidate, query });
      byNetvm.set(qube.netvm, group);
    }

    for (const [netvm, group] of byNetvm) {
      for (let start = 0; start < group.length; start += MAX_ACTIVITY_QUERIES) {
        const chunk = group.slice(start, start + MAX_ACTIVITY_QUERIES);
        const active = await this.askNetvm(
          netvm,
          chunk.map((item) => item.query),
        );
        if (active === null) {
          summary.skipped += chunk.length;
          continue;
        }
        for (const [index, item] of chunk.entries()) {
          if (active[index] === true) {
            summary.renewed += (await this.renew(item)) ? 1 : 0;
          } else {
            summary.idle++;
            this.options.logger.info(
              { qube: item.lease.qube, internalPort: item.internalPort },
              'STUN lease idle; leaving it to expire',
            );
          }
        }
      }
    }
    return summary;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) {
      return;
    }
    this.timer = setTimeout(() => {
      const run = this.runCheck();
      this.running = run;
      void run.then((nextDelayMs) => this.schedule(nextDelayMs));
    }, delayMs);
  }

  /** Runs one check, logs a failure, and returns the wait before the next one. */
  private async runCheck(): Promise<number> {
    try {
      await this.checkOnce();
      return await this.nextDelayMs();
    } catch (error) {
      this.options.logger.error({ err: error }, 'activity check failed');
      return this.checkIntervalMs;
    }
  }

  /**
   * Waits until the next lease enters its renew window, at most the check
   * interval. A lease inside its window is checked four times before it ends.
   */
  private async nextDelayMs(): Promise<number> {
    let delayMs = this.checkIntervalMs;
    for (const candidate of await this.candidates()) {
      const untilWindowSeconds = this.secondsUntilWindow(candidate);
      const candidateDelayMs =
        untilWindowSeconds > 0
          ? untilWindowSeconds * 1000
          : (renewWindowSeconds(candidate.lifetimeSeconds) * 1000) / 4;
      delayMs = Math.min(delayMs, candidateDelayMs);
    }
    return Math.max(MIN_ACTIVITY_CHECK_INTERVAL_MS, delayMs);
  }

  private secondsUntilWindow(candidate: Candidate): number {
    const nowUnixSeconds = this.options.nowUnixMs() / 1000;
    const leftSeconds = (candidate.lease.expiresAtUnixSeconds ?? 0) - nowUnixSeconds;
    return leftSeconds - renewWindowSeconds(candidate.lifetimeSeconds);
  }

  /** Lists the live UDP STUN leases whose qube still has NAT traversal, with their lifetime. */
  private async candidates(): Promise<Candidate[]> {
    const nowUnixSeconds = this.options.nowUnixMs() / 1000;
    const leases = (await this.options.leases.listLeases()).filter(
      (lease) =>
        lease.protocol === 'udp' &&
        lease.natTraversal?.via === 'stun' &&
        lease.expiresAtUnixSeconds !== null &&
        lease.expiresAtUnixSeconds > nowUnixSeconds,
    );

    const maxLeaseByQube = new Map<string, number>();
    const candidates: Candidate[] = [];
    for (const lease of leases) {
      let maxLeaseSeconds = maxLeaseByQube.get(lease.qube);
      if (maxLeaseSeconds === undefined) {
        const settings = await readNatTraversalSettings(this.options.adminApi, lease.qube);
        maxLeaseSeconds = settings.enabled ? settings.maxLeaseSeconds : 0;
        maxLeaseByQube.set(lease.qube, maxLeaseSeconds);
      }
      const lifetimeSeconds = Math.min(STUN_LEASE_LIFETIME_SECONDS, maxLeaseSeconds);
      if (lifetimeSeconds < MIN_RENEWABLE_LIFETIME_SECONDS) {
        continue;
      }
      candidates.push({
        lease,
        internalPort: lease.natTraversal?.internalPort ?? lease.targetPorts.first,
        lifetimeSeconds,
      });
    }
    return candidates;
  }

  /** Returns one flag per query, or null when the netvm could not be asked. */
  private async askNetvm(netvm: string, queries: ActivityQuery[]): Promise<boolean[] | null> {
    const { logger } = this.options;
    try {
      const result = await this.options.transport.call(
        { target: netvm, service: NAT_BROKER_ACTIVITY_SERVICE, payload: JSON.stringify(queries) },
        { timeoutMs: ACTIVITY_CALL_TIMEOUT_MS },
      );
      const stdout = result.stdout.toString('utf8').trim();
      if (result.exitCode !== 0) {
        logger.error(
          { netvm, exitCode: result.exitCode, reply: stdout.slice(0, 500) },
          `${NAT_BROKER_ACTIVITY_SERVICE} failed; the leases it covers are not renewed`,
        );
        return null;
      }

      const reply = activityReplySchema.safeParse(JSON.parse(stdout));
      if (!reply.success || reply.data.flows.length !== queries.length) {
        logger.error(
          { netvm, reply: stdout.slice(0, 500) },
          `invalid ${NAT_BROKER_ACTIVITY_SERVICE} reply; the leases it covers are not renewed`,
        );
        return null;
      }
      return queries.map((query, index) => {
        const flow = reply.data.flows[index];
        return flow?.clientAddress === query.clientAddress && flow.port === query.port
          ? flow.active
          : false;
      });
    } catch (error) {
      logger.error(
        { err: error, netvm },
        `${NAT_BROKER_ACTIVITY_SERVICE} call failed; the leases it covers are not renewed`,
      );
      return null;
    }
  }

  private async renew(candidate: Candidate): Promise<boolean> {
    const { lease, internalPort, lifetimeSeconds } = candidate;
    const renewed = await this.options.leases.renew(
      lease.qube,
      'udp',
      internalPort,
      lifetimeSeconds,
      lease.natTraversal?.upstream ?? null,
    );
    if (renewed === null) {
      return false;
    }
    this.options.logger.info(
      {
        qube: lease.qube,
        internalPort,
        lifetimeSeconds,
        expiresAtUnixSeconds: renewed.expiresAtUnixSeconds,
      },
      'STUN lease renewed: its socket has traffic',
    );
    return true;
  }
}
