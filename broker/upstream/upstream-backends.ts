import type { Logger } from '../../rpc/logger.js';
import { IgdClient } from './igd/igd-client.js';
import { UpnpErrorCode } from './igd/igd-soap.js';
import { NatPmpClient } from './natpmp/natpmp-client.js';
import { PcpClient } from './pcp/pcp-client.js';
import { isUpstreamError, UpstreamError } from './upstream-errors.js';
import type { MappingProtocol, RouterInfo, UpstreamClock, UpstreamVia } from './upstream-types.js';

/**
 * One interface over the three upstream protocols, so the mapper handles
 * renewal, verification and fallback the same way for each. The router
 * quirks of each protocol live here.
 */

export interface BackendMapRequest {
  protocol: MappingProtocol;
  internalPort: number;
  /** External ports to try in order; the first is the caller's hint. */
  externalPortCandidates: number[];
  lifetimeSeconds: number;
}

export interface BackendGrant {
  protocol: MappingProtocol;
  internalPort: number;
  externalPort: number;
  /** null when this protocol's reply does not carry it (NAT-PMP). */
  externalAddress: string | null;
  /** 0 for a permanent IGD mapping, which is verified but never renewed. */
  lifetimeSeconds: number;
}

export type VerifyResult = 'present' | 'missing';

export interface UpstreamBackend {
  readonly via: UpstreamVia;
  /** Checks that the router speaks this protocol; returns the external address when the protocol can tell. */
  probe(signal?: AbortSignal): Promise<string | null>;
  externalAddress(signal?: AbortSignal): Promise<string | null>;
  map(request: BackendMapRequest, signal?: AbortSignal): Promise<BackendGrant>;
  /** Renews a grant, keeping its external port when the router allows. */
  renew(grant: BackendGrant, signal?: AbortSignal): Promise<BackendGrant>;
  unmap(grant: BackendGrant, signal?: AbortSignal): Promise<void>;
  verify(grant: BackendGrant, signal?: AbortSignal): Promise<VerifyResult>;
}

export interface BackendContext {
  logger: Logger;
  clock: UpstreamClock;
  router: RouterInfo;
  /** Called when a NAT-PMP or PCP reply shows that the router's epoch went backwards. */
  onStateLost: (via: UpstreamVia) => void;
  maxAttempts?: number;
  description: string;
}

export function createBackend(via: UpstreamVia, context: BackendContext): UpstreamBackend {
  const logger = context.logger.child({ via });
  switch (via) {
    case 'natpmp':
      return new NatPmpBackend(
        new NatPmpClient({ ...context, logger, onStateLost: () => context.onStateLost('natpmp') }),
      );
    case 'pcp':
      return new PcpBackend(
        new PcpClient({ ...context, logger, onStateLost: () => context.onStateLost('pcp') }),
        new NatPmpClient({ logger, clock: context.clock, router: context.router, maxAttempts: 2 }),
      );
    case 'igd2':
    case 'igd1':
      return new IgdBackend(
        via,
        new IgdClient({ logger, router: context.router, igdVersion: via === 'igd2' ? 2 : 1 }),
        context,
      );
  }
}

/** Tries each external port candidate until the router grants one; a NAT-PMP/PCP router picks its own port anyway. */
class NatPmpBackend implements UpstreamBackend {
  readonly via = 'natpmp' as const;

  constructor(private readonly client: NatPmpClient) {}

  probe(signal?: AbortSignal): Promise<string | null> {
    return this.client.externalAddress(signal);
  }

  externalAddress(signal?: AbortSignal): Promise<string | null> {
    return this.client.externalAddress(signal);
  }

  async map(request: BackendMapRequest, signal?: AbortSignal): Promise<BackendGrant> {
    const granted = await this.client.map(
      { ...request, suggestedExternalPort: request.externalPortCandidates[0] ?? 0 },
      signal,
    );
    return { ...granted, externalAddress: null };
  }

  async renew(grant: BackendGrant, signal?: AbortSignal): Promise<BackendGrant> {
    const granted = await this.client.map(
      { ...grant, suggestedExternalPort: grant.externalPort },
      signal,
    );
    return { ...granted, externalAddress: null };
  }

  unmap(grant: BackendGrant, signal?: AbortSignal): Promise<void> {
    return this.client.unmap(grant, signal);
  }

  /**
   * NAT-PMP cannot list mappings, so verification renews: a renewal
   * re-creates a mapping that vanished, and a changed port shows up in the
   * returned grant.
   */
  async verify(): Promise<VerifyResult> {
    return 'present';
  }
}

class PcpBackend implements UpstreamBackend {
  readonly via = 'pcp' as const;
  private lastExternalAddress: string | null = null;

  constructor(
    private readonly client: PcpClient,
    private readonly natPmp: NatPmpClient,
  ) {}

  async probe(signal?: AbortSignal): Promise<string | null> {
    await this.client.announce(signal);
    return this.externalAddress(signal);
  }

  /**
   * PCP has no request for the external address alone. A router that speaks
   * PCP usually also answers NAT-PMP's (RFC 6887 section 9 describes the
   * pair); without it the address is known only from MAP replies.
   */
  async externalAddress(signal?: AbortSignal): Promise<string | null> {
    try {
      this.lastExternalAddress = await this.natPmp.externalAddress(signal);
    } catch (error) {
      if (isUpstreamError(error, 'aborted')) throw error;
    }
    return this.lastExternalAddress;
  }

  async map(request: BackendMapRequest, signal?: AbortSignal): Promise<BackendGrant> {
    const granted = await this.client.map(
      { ...request, suggestedExternalPort: request.externalPortCandidates[0] ?? 0 },
      signal,
    );
    this.lastExternalAddress = granted.externalAddress;
    return granted;
  }

  async renew(grant: BackendGrant, signal?: AbortSignal): Promise<BackendGrant> {
    const granted = await this.client.map(
      {
        ...grant,
        suggestedExternalPort: grant.externalPort,
        suggestedExternalAddress: grant.externalAddress ?? undefined,
      },
      signal,
    );
    this.lastExternalAddress = granted.externalAddress;
    return granted;
  }

  unmap(grant: BackendGrant, signal?: AbortSignal): Promise<void> {
    return this.client.unmap(grant, signal);
  }

  /** PCP cannot list mappings either; verification renews, as for NAT-PMP. */
  async verify(): Promise<VerifyResult> {
    return 'present';
  }
}

/** The largest lease IGD v2 allows; 0 requests it (WANIPConnection:2 section 2.3.16). */
const IGD2_MAX_LEASE_SECONDS = 604_800;

class IgdBackend implements UpstreamBackend {
  private connected = false;

  constructor(
    readonly via: 'igd2' | 'igd1',
    private readonly client: IgdClient,
    private readonly context: BackendContext,
  ) {}

  async probe(signal?: AbortSignal): Promise<string | null> {
    const address = await this.client.connect(signal);
    this.connected = true;
    return address;
  }

  async externalAddress(signal?: AbortSignal): Promise<string | null> {
    if (!this.connected) return this.probe(signal);
    return this.client.externalAddress(signal);
  }

  async map(request: BackendMapRequest, signal?: AbortSignal): Promise<BackendGrant> {
    let leaseSeconds = Math.min(request.lifetimeSeconds, IGD2_MAX_LEASE_SECONDS);
    let useAnyPort = this.via === 'igd2';
    let lastError: unknown = null;

    for (const candidate of request.externalPortCandidates) {
      for (let retry = 0; retry < 3; retry += 1) {
        const mapping = {
          protocol: request.protocol,
          externalPort: candidate,
          internalPort: request.internalPort,
          internalClient: this.context.router.lanAddress,
          leaseSeconds,
          description: this.context.description,
        };
        try {
          let externalPort = candidate;
          if (useAnyPort) externalPort = await this.client.addAnyPortMapping(mapping, signal);
          else await this.client.addPortMapping(mapping, signal);
          const grant = {
            ...request,
            externalPort,
            externalAddress: null,
            lifetimeSeconds: leaseSeconds,
          };
          if ((await this.verify(grant, signal)) === 'missing') {
            throw new UpstreamError(
              'rejected',
              `IGD accepted ${request.protocol} port ${externalPort} but does not list it`,
            );
          }
          return grant;
        } catch (error) {
          lastError = error;
          if (!isUpstreamError(error)) throw error;
          // WANIPConnection:1 lets a router support only permanent mappings;
          // it then returns 725 OnlyPermanentLeasesSupported to any lease
          // above 0. Retry with lease 0; the mapper verifies such a mapping
          // periodically instead of renewing it.
          if (
            error.resultCode === UpnpErrorCode.OnlyPermanentLeasesSupported &&
            leaseSeconds !== 0
          ) {
            leaseSeconds = 0;
            continue;
          }
          // A router without AddAnyPortMapping returns 401 InvalidAction.
          if (useAnyPort && error.code === 'unsupported') {
            useAnyPort = false;
            continue;
          }
          break;
        }
      }
      // 718 ConflictInMappingEntry: another host has this port, so try the next candidate.
      if (
        !isUpstreamError(lastError) ||
        lastError.resultCode !== UpnpErrorCode.ConflictInMappingEntry
      )
        throw lastError;
    }
    throw lastError ?? new UpstreamError('rejected', 'no external port candidate to try');
  }

  /** AddPortMapping on the granted port again; miniupnpd and most IGDs update the lease of the same client's mapping. */
  async renew(grant: BackendGrant, signal?: AbortSignal): Promise<BackendGrant> {
    await this.client.addPortMapping(
      {
        protocol: grant.protocol,
        externalPort: grant.externalPort,
        internalPort: grant.internalPort,
        internalClient: this.context.router.lanAddress,
        leaseSeconds: grant.lifetimeSeconds,
        description: this.context.description,
      },
      signal,
    );
    return grant;
  }

  /** Deletes the mapping and checks that it is gone. */
  async unmap(grant: BackendGrant, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.deletePortMapping(grant, signal);
    } catch (error) {
      if (!isUpstreamError(error) || error.resultCode !== UpnpErrorCode.NoSuchEntryInArray)
        throw error;
    }
    if ((await this.verify(grant, signal)) === 'present') {
      throw new UpstreamError(
        'rejected',
        `IGD still lists ${grant.protocol} port ${grant.externalPort} after DeletePortMapping`,
      );
    }
  }

  /** Present when the router lists the port for sys-net's LAN address and the same internal port. */
  async verify(grant: BackendGrant, signal?: AbortSignal): Promise<VerifyResult> {
    const entry = await this.client.getSpecificPortMappingEntry(grant, signal);
    if (entry === null) return 'missing';
    const ours =
      entry.internalClient === this.context.router.lanAddress &&
      entry.internalPort === grant.internalPort;
    return ours ? 'present' : 'missing';
  }
}
