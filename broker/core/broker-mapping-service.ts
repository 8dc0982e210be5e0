import type { Logger } from '../../rpc/logger.js';
import type { MappingArgument, MappingGrantReply } from '../../rpc/nat-traversal-messages.js';
import type { TransportProtocol } from '../../rpc/wire-types.js';
import {
  type Mapping,
  type MappingRelease,
  type MappingRequest,
  type MappingResult,
  MappingResultCode,
  type MappingService,
} from '../mapping/mapping-service.js';
import type { ClientDirectory } from './client-directory.js';
import type { Dom0Client } from './dom0-client.js';
import type { UpstreamPort } from './upstream-port.js';

/**
 * The broker core behind every qube-facing server. For a request it finds
 * the qube by source address, asks dom0 (which prompts the user and installs
 * the forward on every hop), asks the home router for the matching external
 * mapping, and keeps the lease. Renewals of a live lease go to dom0's renew
 * service, which never prompts. A denial is remembered for a short time so a
 * retrying client does not raise a prompt per retransmission.
 */

/** Time during which a repeated denied request is rejected without asking dom0 again. */
export const DENIAL_MEMORY_MS = 30_000;
/** How often the broker compares its leases with dom0's, to notice revocations. */
export const LEASE_SYNC_INTERVAL_MS = 5_000;
/**
 * A STUN client repeats Binding requests every few seconds. While more than
 * this part of a STUN lease is left, a repeated request is answered from the
 * lease without a call to dom0.
 */
export const STUN_RENEW_AFTER_FRACTION = 0.5;

interface BrokerLease {
  mapping: Mapping;
  argument: MappingArgument;
  uplinkPort: number;
  /** True when the router holds a mapping for this lease. */
  upstreamMapped: boolean;
}

export interface BrokerMappingServiceOptions {
  dom0: Dom0Client;
  clients: ClientDirectory;
  /** The home router's mapping client; null until sys-net reported a router. */
  upstream: () => UpstreamPort | null;
  /** sys-net's LAN address: the external address when the router maps nothing. */
  uplinkAddress: () => string | null;
  logger: Logger;
  nowMs?: () => number;
}

export class BrokerMappingService implements MappingService {
  private readonly leases = new Map<string, BrokerLease>();
  private readonly deniedUntilMs = new Map<string, number>();
  /** Requests per lease key, run one after another (see `request`). */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly startedAtMs: number;
  private readonly nowMs: () => number;
  private timer: NodeJS.Timeout | null = null;
  private nextId = 1;

  constructor(private readonly options: BrokerMappingServiceOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    this.startedAtMs = this.nowMs();
  }

  start(): void {
    this.timer = setInterval(() => void this.syncWithDom0(), LEASE_SYNC_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops maintenance and releases every lease on the router and in dom0. */
  async stop(): Promise<void> {
    if (this.timer !== null) {
      clearInterval(this.timer);
    }
    for (const lease of [...this.leases.values()]) {
      await this.drop(lease, { releaseInDom0: true });
    }
  }

  async externalAddress(): Promise<string> {
    return this.options.upstream()?.externalAddress() ?? this.options.uplinkAddress() ?? '0.0.0.0';
  }

  epochSeconds(): number {
    return Math.floor((this.nowMs() - this.startedAtMs) / 1000);
  }

  isEnabledClient(clientAddress: string): boolean {
    return this.options.clients.lookup(clientAddress) !== null;
  }

  list(clientAddress?: string): Mapping[] {
    this.expireLeases();
    return [...this.leases.values()]
      .map((lease) => lease.mapping)
      .filter(
        (mapping) => clientAddress === undefined || mapping.internalAddress === clientAddress,
      );
  }

  async request(request: MappingRequest): Promise<MappingResult> {
    const client = await this.options.clients.resolve(request.clientAddress);
    if (client === null) {
      return {
        code: MappingResultCode.unknownClient,
        message: `${request.clientAddress} is not the address of a qube with NAT traversal enabled`,
      };
    }
    if (request.internalAddress !== request.clientAddress) {
      return {
        code: MappingResultCode.addressMismatch,
        message: `a qube may only map to itself (${request.clientAddress}), not ${request.internalAddress}`,
      };
    }

    // A STUN request asks dom0 for QUBE+udp+stun, so one policy line can
    // allow every STUN mapping of a qube; other requests name their port.
    const argument: MappingArgument = {
      qube: client.qube,
      protocol: request.protocol,
      internalPort: request.internalPort,
      requestClass: request.via === 'stun' && request.protocol === 'udp' ? 'stun' : 'port',
    };
    const key = leaseKey(argument);

    // Requests for one lease run one after another: a client that sends
    // several at once (STUN tests, retransmissions with new transaction
    // ids) must find the lease the first one made, not make it again.
    const previous = this.queues.get(key) ?? Promise.resolve();
    const run = previous.then(() => this.requestQueued(key, argument, request));
    const tail = run.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) {
        this.queues.delete(key);
      }
    });
    return run;
  }

  private async requestQueued(
    key: string,
    argument: MappingArgument,
    request: MappingRequest,
  ): Promise<MappingResult> {
    const deniedUntilMs = this.deniedUntilMs.get(key) ?? 0;
    if (deniedUntilMs > this.nowMs()) {
      return { code: MappingResultCode.notAuthorized, message: 'denied a moment ago' };
    }

    const existing = this.leases.get(key);
    if (existing !== undefined && this.freshStunLease(existing, request)) {
      return { code: MappingResultCode.granted, mapping: existing.mapping };
    }
    let reply: MappingGrantReply | null = null;
    if (existing !== undefined) {
      reply = await this.options.dom0.renew(argument, {
        lifetimeSeconds: request.lifetimeSeconds,
        upstream: null,
      });
      if (reply.result === 'no-lease') {
        await this.drop(existing, { releaseInDom0: false });
        reply = null;
      }
    }
    reply ??= await this.options.dom0.grant(argument, {
      internalAddress: request.internalAddress,
      lifetimeSeconds: request.lifetimeSeconds,
      via: request.via,
      description: request.description,
      ...(argument.requestClass === 'stun' ? { internalPort: argument.internalPort } : {}),
    });

    if (reply.result !== 'granted') {
      return this.refusal(key, argument, reply);
    }
    return this.complete(argument, request, reply, existing);
  }

  async release(release: MappingRelease): Promise<number> {
    const matching = [...this.leases.values()].filter(
      (lease) =>
        lease.mapping.internalAddress === release.clientAddress &&
        lease.mapping.protocol === release.protocol &&
        (release.internalPort === undefined ||
          lease.mapping.internalPort === release.internalPort) &&
        (release.externalPort === undefined || lease.mapping.externalPort === release.externalPort),
    );
    for (const lease of matching) {
      await this.drop(lease, { releaseInDom0: true });
    }
    return matching.length;
  }

  /** True for a repeated STUN request whose lease has most of its lifetime left. */
  private freshStunLease(lease: BrokerLease, request: MappingRequest): boolean {
    if (request.via !== 'stun' || lease.mapping.via !== 'stun') {
      return false;
    }
    const leftMs = lease.mapping.expiresAtUnixMs - this.nowMs();
    return leftMs > lease.mapping.lifetimeSeconds * 1000 * STUN_RENEW_AFTER_FRACTION;
  }

  /** Maps on the router (or falls back to sys-net's address) and records the lease. */
  private async complete(
    argument: MappingArgument,
    request: MappingRequest,
    reply: Extract<MappingGrantReply, { result: 'granted' }>,
    existing: BrokerLease | undefined,
  ): Promise<MappingResult> {
    const upstream = this.options.upstream();
    let externalAddress = this.options.uplinkAddress() ?? '0.0.0.0';
    let externalPort = reply.uplinkPort;
    let upstreamMapped = false;

    if (upstream !== null) {
      const mapped = await upstream.map({
        protocol: argument.protocol,
        internalPort: reply.uplinkPort,
        externalPortHint:
          request.suggestedExternalPort ?? existing?.mapping.externalPort ?? request.internalPort,
        lifetimeSeconds: reply.lifetimeSeconds,
      });
      if (mapped.ok) {
        externalAddress = mapped.mapping.externalAddress ?? externalAddress;
        externalPort = mapped.mapping.externalPort;
        upstreamMapped = true;
      } else {
        this.options.logger.warn(
          { qube: argument.qube, code: mapped.code, message: mapped.message },
          'router mapping failed; answering with the uplink address',
        );
      }
    }

    if (
      request.requireSuggestedPort &&
      request.suggestedExternalPort !== null &&
      externalPort !== request.suggestedExternalPort
    ) {
      const conflict = {
        argument,
        uplinkPort: reply.uplinkPort,
        upstreamMapped,
        mapping: { ...partialMapping(argument, request), externalAddress, externalPort },
      };
      await this.drop(conflict as BrokerLease, { releaseInDom0: existing === undefined });
      return {
        code: MappingResultCode.conflict,
        message: `external port ${request.suggestedExternalPort} is taken; ${externalPort} was offered`,
      };
    }

    const mapping: Mapping = {
      ...partialMapping(argument, request),
      id: existing?.mapping.id ?? `m${this.nextId++}`,
      externalAddress,
      externalPort,
      lifetimeSeconds: reply.lifetimeSeconds,
      expiresAtUnixMs: this.nowMs() + reply.lifetimeSeconds * 1000,
    };
    this.leases.set(leaseKey(argument), {
      mapping,
      argument,
      uplinkPort: reply.uplinkPort,
      upstreamMapped,
    });

    // Tell dom0 where the router mapping points, for listings; no prompt.
    // The client's answer does not wait for it.
    void this.options.dom0
      .renew(argument, {
        lifetimeSeconds: reply.lifetimeSeconds,
        upstream: upstreamMapped
          ? { externalAddress, externalPort, via: upstream === null ? 'none' : 'router' }
          : null,
      })
      .catch((error: unknown) =>
        this.options.logger.error({ err: error }, 'cannot report the router mapping to dom0'),
      );

    this.options.logger.info(
      {
        qube: argument.qube,
        protocol: argument.protocol,
        internalPort: argument.internalPort,
        uplinkPort: reply.uplinkPort,
        externalAddress,
        externalPort,
        lifetimeSeconds: reply.lifetimeSeconds,
        via: request.via,
      },
      existing === undefined ? 'mapping created' : 'mapping renewed',
    );
    return { code: MappingResultCode.granted, mapping };
  }

  private refusal(
    key: string,
    argument: MappingArgument,
    reply: Exclude<MappingGrantReply, { result: 'granted' }>,
  ): MappingResult {
    this.options.logger.info(
      {
        qube: argument.qube,
        protocol: argument.protocol,
        internalPort: argument.internalPort,
        result: reply.result,
      },
      'request denied',
    );
    switch (reply.result) {
      case 'not-allowed':
      case 'not-enabled':
        this.deniedUntilMs.set(key, this.nowMs() + DENIAL_MEMORY_MS);
        return { code: MappingResultCode.notAuthorized, message: reply.message };
      case 'address-mismatch':
        return { code: MappingResultCode.addressMismatch, message: reply.message };
      case 'no-free-port':
        return { code: MappingResultCode.noResources, message: reply.message };
      default:
        return { code: MappingResultCode.failed, message: reply.message };
    }
  }

  /** Removes a lease from the router, from dom0 when asked, and from the table. */
  private async drop(lease: BrokerLease, options: { releaseInDom0: boolean }): Promise<void> {
    this.leases.delete(leaseKey(lease.argument));
    const upstream = this.options.upstream();
    if (lease.upstreamMapped && upstream !== null) {
      await upstream
        .unmap({ protocol: lease.argument.protocol, internalPort: lease.uplinkPort })
        .catch((error: unknown) =>
          this.options.logger.error({ err: error }, 'cannot delete the router mapping'),
        );
    }
    if (options.releaseInDom0) {
      await this.options.dom0
        .release(lease.argument)
        .catch((error: unknown) =>
          this.options.logger.error({ err: error }, 'cannot release the lease in dom0'),
        );
    }
    this.options.logger.info(
      {
        qube: lease.argument.qube,
        protocol: lease.argument.protocol,
        internalPort: lease.argument.internalPort,
      },
      'mapping removed',
    );
  }

  private expireLeases(): void {
    const nowMs = this.nowMs();
    for (const lease of [...this.leases.values()]) {
      if (lease.mapping.expiresAtUnixMs <= nowMs) {
        void this.drop(lease, { releaseInDom0: false });
      }
    }
  }

  /**
   * Drops leases that dom0 no longer has (revoked by the user, or expired
   * there), and takes over a later expiry that dom0 set by itself, such as
   * the renewal of a STUN lease whose socket carries traffic. The router
   * mapping then stays, because the upstream mapper renews it for as long
   * as the broker holds the lease.
   */
  private async syncWithDom0(): Promise<void> {
    this.expireLeases();
    if (this.leases.size === 0) {
      return;
    }
    try {
      const reply = await this.options.dom0.leases();
      const live = new Map(reply.leases.map((lease) => [leaseKey(lease), lease]));
      for (const lease of [...this.leases.values()]) {
        const dom0Lease = live.get(leaseKey(lease.argument));
        if (dom0Lease === undefined) {
          this.options.logger.info(
            { qube: lease.argument.qube, internalPort: lease.argument.internalPort },
            'lease revoked in dom0',
          );
          await this.drop(lease, { releaseInDom0: false });
          continue;
        }
        this.extendFromDom0(lease, dom0Lease.expiresAtUnixSeconds);
      }
    } catch (error) {
      this.options.logger.error({ err: error }, 'cannot compare leases with dom0');
    }
  }

  /** Moves the broker's expiry of a lease to dom0's when dom0's is later. */
  private extendFromDom0(lease: BrokerLease, dom0ExpiresAtUnixSeconds: number): void {
    const dom0ExpiresAtUnixMs = dom0ExpiresAtUnixSeconds * 1000;
    if (dom0ExpiresAtUnixMs <= lease.mapping.expiresAtUnixMs) {
      return;
    }
    lease.mapping = { ...lease.mapping, expiresAtUnixMs: dom0ExpiresAtUnixMs };
    this.options.logger.info(
      {
        qube: lease.argument.qube,
        protocol: lease.argument.protocol,
        internalPort: lease.argument.internalPort,
        expiresAtUnixMs: dom0ExpiresAtUnixMs,
      },
      'lease extended by dom0',
    );
  }
}

function leaseKey(argument: {
  qube: string;
  protocol: TransportProtocol;
  internalPort: number;
}): string {
  return `${argument.qube}/${argument.protocol}/${argument.internalPort}`;
}

function partialMapping(argument: MappingArgument, request: MappingRequest) {
  return {
    id: '',
    qube: argument.qube,
    protocol: argument.protocol,
    internalAddress: request.internalAddress,
    internalPort: argument.internalPort,
    externalAddress: '',
    externalPort: 0,
    lifetimeSeconds: 0,
    expiresAtUnixMs: 0,
    via: request.via,
    description: request.description,
  };
}
