import type { Logger } from '../../../rpc/logger.js';
import { EpochTracker } from '../epoch-tracker.js';
import { exchangeUdp } from '../udp-exchange.js';
import { UpstreamError } from '../upstream-errors.js';
import type { MappingProtocol, RouterInfo, UpstreamClock } from '../upstream-types.js';
import { parsed, parseError } from '../upstream-types.js';
import {
  buildExternalAddressRequest,
  buildMapRequest,
  type NatPmpMapReply,
  NatPmpResultCode,
  natPmpResultName,
  parseExternalAddressReply,
  parseMapReply,
} from './natpmp-codec.js';

/**
 * NAT-PMP client (RFC 6886) for the home router. Every reply's epoch goes
 * through an EpochTracker; when the router lost its state, onStateLost runs
 * so the owner can re-create its mappings.
 */

export interface NatPmpClientOptions {
  logger: Logger;
  clock: UpstreamClock;
  router: RouterInfo;
  onStateLost?: () => void;
  /** Attempts per request; see udp-exchange.ts for the default. */
  maxAttempts?: number;
  /** Overrides the server port 5351, for tests against a local fake. */
  serverPort?: number;
}

export interface NatPmpMapping {
  protocol: MappingProtocol;
  internalPort: number;
  externalPort: number;
  lifetimeSeconds: number;
}

export class NatPmpClient {
  private readonly epoch = new EpochTracker();

  constructor(private readonly options: NatPmpClientOptions) {}

  async externalAddress(signal?: AbortSignal): Promise<string> {
    const reply = await exchangeUdp({
      ...this.exchangeOptions(signal),
      request: buildExternalAddressRequest(),
      parseReply: parseExternalAddressReply,
    });
    this.observeEpoch(reply.epochSeconds);
    if (reply.resultCode !== NatPmpResultCode.Success || reply.externalAddress === null) {
      throw resultError('external address request', reply.resultCode);
    }
    return reply.externalAddress;
  }

  /** Creates or renews a mapping. A renewal passes the current external port as the suggestion. */
  async map(
    request: {
      protocol: MappingProtocol;
      internalPort: number;
      suggestedExternalPort: number;
      lifetimeSeconds: number;
    },
    signal?: AbortSignal,
  ): Promise<NatPmpMapping> {
    const reply = await exchangeUdp<NatPmpMapReply>({
      ...this.exchangeOptions(signal),
      request: buildMapRequest(request),
      parseReply: (bytes) => {
        const result = parseMapReply(bytes, request.protocol);
        if (!result.ok) return result;
        const port = result.value.internalPort;
        if (port !== null && port !== request.internalPort) {
          return parseError(
            `NAT-PMP reply is for internal port ${port}, expected ${request.internalPort}`,
          );
        }
        return parsed(result.value);
      },
    });
    this.observeEpoch(reply.epochSeconds);
    if (
      reply.resultCode !== NatPmpResultCode.Success ||
      reply.externalPort === null ||
      reply.lifetimeSeconds === null
    ) {
      throw resultError(
        `${request.protocol} mapping of internal port ${request.internalPort}`,
        reply.resultCode,
      );
    }
    if (request.lifetimeSeconds > 0 && (reply.externalPort === 0 || reply.lifetimeSeconds === 0)) {
      throw new UpstreamError(
        'malformed',
        `NAT-PMP success reply grants external port ${reply.externalPort} for ${reply.lifetimeSeconds} s`,
      );
    }
    return {
      protocol: request.protocol,
      internalPort: request.internalPort,
      externalPort: reply.externalPort,
      lifetimeSeconds: reply.lifetimeSeconds,
    };
  }

  /** Deletes the mapping of an internal port: lifetime 0 and external port 0 (RFC 6886 section 3.4). */
  async unmap(
    request: { protocol: MappingProtocol; internalPort: number },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.map({ ...request, suggestedExternalPort: 0, lifetimeSeconds: 0 }, signal);
  }

  private exchangeOptions(signal: AbortSignal | undefined) {
    return {
      serverAddress: this.options.router.gatewayAddress,
      serverPort: this.options.serverPort,
      maxAttempts: this.options.maxAttempts,
      signal,
      logger: this.options.logger,
    };
  }

  private observeEpoch(epochSeconds: number): void {
    const verdict = this.epoch.observe(epochSeconds, this.options.clock.nowMs());
    if (verdict !== 'state-lost') return;
    this.options.logger.warn(
      { epochSeconds },
      'NAT-PMP epoch went backwards: the router lost its mappings',
    );
    this.options.onStateLost?.();
  }
}

function resultError(what: string, resultCode: number): UpstreamError {
  const code =
    resultCode === NatPmpResultCode.UnsupportedVersion ||
    resultCode === NatPmpResultCode.UnsupportedOpcode
      ? 'unsupported'
      : 'rejected';
  return new UpstreamError(
    code,
    `NAT-PMP ${what} failed: ${natPmpResultName(resultCode)}`,
    resultCode,
  );
}
