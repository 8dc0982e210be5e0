import { randomBytes } from 'node:crypto';
import type { Logger } from '../../../rpc/logger.js';
import { EpochTracker } from '../epoch-tracker.js';
import { exchangeUdp } from '../udp-exchange.js';
import { UpstreamError } from '../upstream-errors.js';
import type { MappingProtocol, ParseResult, RouterInfo, UpstreamClock } from '../upstream-types.js';
import { parsed, parseError } from '../upstream-types.js';
import {
  buildAnnounceRequest,
  buildMapRequest,
  IPV4_UNSPECIFIED,
  PcpOpcode,
  type PcpReply,
  type PcpResponseHeader,
  PcpResultCode,
  parsePcpReply,
  pcpResultName,
} from './pcp-codec.js';

/**
 * PCP client (RFC 6887) for the home router: ANNOUNCE to probe, MAP to
 * create, renew and delete. The client IP field is sys-net's LAN address,
 * the source address the router sees after sys-net masquerades the broker's
 * packets; otherwise the router answers ADDRESS_MISMATCH. Each mapping keeps
 * its nonce, because RFC 6887 section 11.2 requires the same nonce to renew
 * or delete it.
 */

export interface PcpClientOptions {
  logger: Logger;
  clock: UpstreamClock;
  router: RouterInfo;
  onStateLost?: () => void;
  maxAttempts?: number;
  /** Overrides the server port 5351, for tests against a local fake. */
  serverPort?: number;
}

export interface PcpMapping {
  protocol: MappingProtocol;
  internalPort: number;
  externalPort: number;
  externalAddress: string;
  lifetimeSeconds: number;
}

type MapReply = Extract<PcpReply, { kind: 'map' }>;

export class PcpClient {
  private readonly epoch = new EpochTracker();
  private readonly nonces = new Map<string, Uint8Array>();

  constructor(private readonly options: PcpClientOptions) {}

  /** Sends ANNOUNCE and resolves when the router answers it with SUCCESS. */
  async announce(signal?: AbortSignal): Promise<void> {
    const reply = await exchangeUdp({
      ...this.exchangeOptions(signal),
      request: buildAnnounceRequest(this.options.router.lanAddress),
      parseReply: (bytes) => filterReply(parsePcpReply(bytes), PcpOpcode.Announce),
    });
    if (reply.kind === 'natpmp-only') throw natPmpOnlyError();
    this.observeEpoch(reply.header);
    if (reply.header.resultCode !== PcpResultCode.Success)
      throw resultError('ANNOUNCE', reply.header);
  }

  /** Creates or renews a mapping; a renewal reuses the mapping's nonce and suggests its current port and address. */
  async map(
    request: {
      protocol: MappingProtocol;
      internalPort: number;
      suggestedExternalPort: number;
      suggestedExternalAddress?: string;
      lifetimeSeconds: number;
    },
    signal?: AbortSignal,
  ): Promise<PcpMapping> {
    const key = nonceKey(request.protocol, request.internalPort);
    const nonce = this.nonces.get(key) ?? randomBytes(12);
    const reply = await this.exchangeMap({ ...request, nonce }, signal);
    if (reply.header.resultCode !== PcpResultCode.Success || reply.map === null) {
      throw resultError(
        `MAP of ${request.protocol} internal port ${request.internalPort}`,
        reply.header,
      );
    }
    if (
      request.lifetimeSeconds > 0 &&
      (reply.map.externalPort === 0 || reply.header.lifetimeSeconds === 0)
    ) {
      throw new UpstreamError(
        'malformed',
        `PCP success reply grants external port ${reply.map.externalPort} for ${reply.header.lifetimeSeconds} s`,
      );
    }
    this.nonces.set(key, nonce);
    return {
      protocol: request.protocol,
      internalPort: request.internalPort,
      externalPort: reply.map.externalPort,
      externalAddress: reply.map.externalAddress,
      lifetimeSeconds: reply.header.lifetimeSeconds,
    };
  }

  /** Deletes a mapping with lifetime 0 and the mapping's nonce (RFC 6887 section 15). */
  async unmap(
    request: { protocol: MappingProtocol; internalPort: number },
    signal?: AbortSignal,
  ): Promise<void> {
    const key = nonceKey(request.protocol, request.internalPort);
    const nonce = this.nonces.get(key);
    if (nonce === undefined) {
      throw new UpstreamError(
        'rejected',
        `no PCP nonce for ${request.protocol} internal port ${request.internalPort}: it was never mapped by this client`,
      );
    }
    const reply = await this.exchangeMap(
      { ...request, nonce, suggestedExternalPort: 0, lifetimeSeconds: 0 },
      signal,
    );
    this.nonces.delete(key);
    if (reply.header.resultCode !== PcpResultCode.Success) {
      throw resultError(
        `delete of ${request.protocol} internal port ${request.internalPort}`,
        reply.header,
      );
    }
  }

  /** Forgets every nonce, after the router lost its state. */
  forgetMappings(): void {
    this.nonces.clear();
  }

  private async exchangeMap(
    request: {
      protocol: MappingProtocol;
      internalPort: number;
      suggestedExternalPort: number;
      suggestedExternalAddress?: string;
      lifetimeSeconds: number;
      nonce: Uint8Array;
    },
    signal: AbortSignal | undefined,
  ): Promise<MapReply> {
    const reply = await exchangeUdp<PcpReply>({
      ...this.exchangeOptions(signal),
      request: buildMapRequest({
        clientAddress: this.options.router.lanAddress,
        suggestedExternalAddress: request.suggestedExternalAddress ?? IPV4_UNSPECIFIED,
        ...request,
      }),
      parseReply: (bytes) => {
        const result = filterReply(parsePcpReply(bytes), PcpOpcode.Map);
        if (!result.ok || result.value.kind !== 'map' || result.value.map === null) return result;
        // RFC 6887 section 11.4: a MAP response belongs to the request whose
        // nonce, protocol and internal port it repeats.
        const map = result.value.map;
        if (!sameBytes(map.nonce, request.nonce))
          return parseError('PCP MAP reply carries another nonce');
        if (map.protocol !== request.protocol || map.internalPort !== request.internalPort) {
          return parseError(
            `PCP MAP reply is for ${map.protocol} internal port ${map.internalPort}, expected ${request.protocol} ${request.internalPort}`,
          );
        }
        return result;
      },
    });
    if (reply.kind === 'natpmp-only') throw natPmpOnlyError();
    if (reply.kind !== 'map')
      throw new UpstreamError('malformed', 'PCP MAP request got a non-MAP reply');
    this.observeEpoch(reply.header);
    return reply;
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

  private observeEpoch(header: PcpResponseHeader): void {
    const verdict = this.epoch.observe(header.epochSeconds, this.options.clock.nowMs());
    if (verdict !== 'state-lost') return;
    this.options.logger.warn(
      { epochSeconds: header.epochSeconds },
      'PCP epoch went backwards: the router lost its mappings',
    );
    this.options.onStateLost?.();
  }
}

/** Accepts the NAT-PMP fallback reply and replies of the expected opcode; anything else is not our reply. */
function filterReply(result: ParseResult<PcpReply>, opcode: PcpOpcode): ParseResult<PcpReply> {
  if (!result.ok || result.value.kind === 'natpmp-only') return result;
  if (result.value.header.opcode !== opcode) {
    return parseError(`PCP reply has opcode ${result.value.header.opcode}, expected ${opcode}`);
  }
  return parsed(result.value);
}

function nonceKey(protocol: MappingProtocol, internalPort: number): string {
  return `${protocol}/${internalPort}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}

function natPmpOnlyError(): UpstreamError {
  return new UpstreamError(
    'unsupported',
    'the router speaks NAT-PMP only (it answered PCP with a version 0 error)',
    1,
  );
}

function resultError(what: string, header: PcpResponseHeader): UpstreamError {
  const unsupported =
    header.resultCode === PcpResultCode.UnsupportedVersion ||
    header.resultCode === PcpResultCode.UnsupportedOpcode;
  return new UpstreamError(
    unsupported ? 'unsupported' : 'rejected',
    `PCP ${what} failed: ${pcpResultName(header.resultCode)} (retry after ${header.lifetimeSeconds} s)`,
    header.resultCode,
  );
}
