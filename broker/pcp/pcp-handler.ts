import type { TransportProtocol } from '../../rpc/wire-types.js';
import {
  type Mapping,
  type MappingResultCode,
  MappingResultCode as ResultCodes,
} from '../mapping/mapping-service.js';
import {
  ipv4ToMappedBytes,
  isUnspecifiedAddressBytes,
  mappedBytesToIpv4,
} from '../port-control/ipv4-bytes.js';
import { clampLifetimeSeconds } from '../port-control/lifetime-policy.js';
import type {
  PortControlContext,
  PortControlHandler,
} from '../port-control/port-control-context.js';
import {
  buildPcpAnnounceResponse,
  buildPcpErrorResponse,
  buildPcpMapResponse,
  type PcpRequest,
  parsePcpRequest,
} from './pcp-codec.js';
import {
  errorLifetimeSeconds,
  PcpOpcode,
  PcpProtocolNumber,
  PcpResultCode,
  pcpResultName,
} from './pcp-constants.js';
import { nonceToHex, PcpNonceStore } from './pcp-nonce-store.js';

type PcpMapRequest = Extract<PcpRequest, { opcode: typeof PcpOpcode.map }>;

/** Maps the broker core's result to the PCP result code (RFC 6887 §7.4). */
export function pcpResultFor(code: MappingResultCode): PcpResultCode {
  switch (code) {
    case ResultCodes.granted:
      return PcpResultCode.success;
    case ResultCodes.notAuthorized:
    case ResultCodes.unknownClient:
      return PcpResultCode.notAuthorized;
    case ResultCodes.addressMismatch:
      return PcpResultCode.addressMismatch;
    case ResultCodes.conflict:
      return PcpResultCode.cannotProvideExternal;
    case ResultCodes.noResources:
      return PcpResultCode.noResources;
    case ResultCodes.failed:
      return PcpResultCode.networkFailure;
  }
}

function protocolsFor(protocolNumber: number): TransportProtocol[] | null {
  if (protocolNumber === PcpProtocolNumber.tcp) {
    return ['tcp'];
  }
  if (protocolNumber === PcpProtocolNumber.udp) {
    return ['udp'];
  }
  if (protocolNumber === PcpProtocolNumber.all) {
    return ['tcp', 'udp'];
  }
  return null;
}

/**
 * Serves PCP requests (version byte 2, and any version other than 0 for
 * version negotiation) for one qube-facing socket. ANNOUNCE and MAP are
 * served; PEER gets UNSUPP_OPCODE because the broker core creates inbound
 * mappings only. The caller has already checked that the client has NAT
 * traversal enabled.
 */
export class PcpHandler implements PortControlHandler {
  private readonly nonces = new PcpNonceStore();

  constructor(private readonly context: PortControlContext) {}

  async handle(
    packet: Uint8Array,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null> {
    const parsed = parsePcpRequest(packet, clientAddress);
    if (!parsed.ok) {
      const error = parsed.error;
      this.context.warnLimiter.warn(
        { protocol: 'pcp', client: clientAddress, bytes: packet.length },
        error.kind === 'drop' ? `dropped PCP datagram: ${error.message}` : error.message,
      );
      if (error.kind === 'drop') {
        return null;
      }
      return this.errorReply(packet, error.resultCode);
    }

    const request = parsed.request;
    if (request.opcode === PcpOpcode.announce) {
      return buildPcpAnnounceResponse(this.context.mappingService.epochSeconds());
    }
    return this.answerMap(packet, request, clientAddress, signal);
  }

  private errorReply(packet: Uint8Array, resultCode: PcpResultCode): Uint8Array {
    return buildPcpErrorResponse(packet, {
      resultCode,
      lifetimeSeconds: errorLifetimeSeconds(resultCode),
      epochSeconds: this.context.mappingService.epochSeconds(),
    });
  }

  private deny(
    packet: Uint8Array,
    resultCode: PcpResultCode,
    fields: Record<string, unknown>,
    reason: string,
  ): Uint8Array {
    this.context.logger.info(
      { ...fields, result: pcpResultName(resultCode), reason },
      'PCP MAP denied',
    );
    return this.errorReply(packet, resultCode);
  }

  private async answerMap(
    packet: Uint8Array,
    request: PcpMapRequest,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null> {
    const map = request.map;
    const fields = {
      protocol: 'pcp',
      client: clientAddress,
      protocolNumber: map.protocolNumber,
      internalPort: map.internalPort,
      suggestedExternalPort: map.suggestedExternalPort,
      requestedLifetimeSeconds: request.requestedLifetimeSeconds,
    };

    // RFC 6887 §13.1: a server that does not implement THIRD_PARTY answers
    // UNSUPP_OPTION. The broker never maps on behalf of another address.
    if (request.options.thirdPartyAddressBytes !== null) {
      return this.deny(
        packet,
        PcpResultCode.unsupportedOption,
        fields,
        'THIRD_PARTY option is not supported',
      );
    }
    const protocols = protocolsFor(map.protocolNumber);
    if (protocols === null) {
      return this.deny(
        packet,
        PcpResultCode.unsupportedProtocol,
        fields,
        'only TCP (6) and UDP (17) can be mapped',
      );
    }

    const key = `pcp|${map.protocolNumber}|${map.internalPort}|${request.requestedLifetimeSeconds === 0 ? 'delete' : 'map'}`;
    const started = this.context.inFlight.begin(clientAddress, key);
    if (started !== 'started') {
      this.context.logger.debug(
        { ...fields, reason: started },
        'dropped PCP request while an earlier one is in flight',
      );
      return null;
    }

    try {
      const mappings = this.context.mappingService.list(clientAddress);
      this.nonces.prune(clientAddress, (protocol, internalPort) =>
        mappings.some(
          (mapping) => mapping.protocol === protocol && mapping.internalPort === internalPort,
        ),
      );
      if (request.requestedLifetimeSeconds === 0) {
        return await this.deleteMappings(
          packet,
          request,
          protocols,
          mappings,
          clientAddress,
          fields,
        );
      }
      return await this.createMapping(
        packet,
        request,
        protocols,
        mappings,
        clientAddress,
        fields,
        signal,
      );
    } catch (error) {
      this.context.logger.error(
        { ...fields, err: error },
        'PCP MAP failed; answering NETWORK_FAILURE',
      );
      return this.errorReply(packet, PcpResultCode.networkFailure);
    } finally {
      this.context.inFlight.end(clientAddress, key);
    }
  }

  private async createMapping(
    packet: Uint8Array,
    request: PcpMapRequest,
    protocols: TransportProtocol[],
    mappings: Mapping[],
    clientAddress: string,
    fields: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const map = request.map;
    const protocol = protocols[0];
    if (protocols.length !== 1 || protocol === undefined || map.internalPort === 0) {
      return this.deny(
        packet,
        PcpResultCode.notAuthorized,
        fields,
        'all-protocol and all-port mappings are not offered',
      );
    }
    // The broker forwards every remote peer (endpoint-independent filtering),
    // so only a FILTER with prefix length 0 ("no filter") can be honoured.
    if (request.options.filters.some((filter) => filter.prefixLength !== 0)) {
      return this.deny(
        packet,
        PcpResultCode.unsupportedOption,
        fields,
        'FILTER with a remote peer prefix is not supported',
      );
    }

    const nonceHex = nonceToHex(map.nonce);
    const existing = mappings.find(
      (mapping) => mapping.protocol === protocol && mapping.internalPort === map.internalPort,
    );
    if (existing !== undefined) {
      const storedNonce = this.nonces.get(clientAddress, protocol, map.internalPort);
      if (existing.via !== 'pcp') {
        return this.deny(
          packet,
          PcpResultCode.notAuthorized,
          fields,
          `mapping exists and was created by ${existing.via}`,
        );
      }
      if (storedNonce !== undefined && storedNonce !== nonceHex) {
        return this.deny(
          packet,
          PcpResultCode.notAuthorized,
          fields,
          'nonce does not match the mapping',
        );
      }
    }

    const preferFailure = request.options.preferFailure;
    if (preferFailure && !isUnspecifiedAddressBytes(map.suggestedExternalAddressBytes)) {
      const suggestedAddress = mappedBytesToIpv4(map.suggestedExternalAddressBytes);
      const externalAddress = await this.context.mappingService.externalAddress();
      if (suggestedAddress !== externalAddress) {
        return this.deny(
          packet,
          PcpResultCode.cannotProvideExternal,
          fields,
          'suggested external address is not available',
        );
      }
    }

    const lifetimeSeconds = clampLifetimeSeconds(
      request.requestedLifetimeSeconds,
      this.context.lifetimeBounds,
    );
    const suggestedExternalPort =
      map.suggestedExternalPort === 0 ? null : map.suggestedExternalPort;
    const result = await this.context.mappingService.request(
      {
        clientAddress,
        protocol,
        internalAddress: clientAddress,
        internalPort: map.internalPort,
        suggestedExternalPort,
        requireSuggestedPort: preferFailure && suggestedExternalPort !== null,
        lifetimeSeconds,
        via: 'pcp',
        description: `PCP ${protocol} ${map.internalPort}`,
      },
      { signal },
    );

    if (result.code !== ResultCodes.granted) {
      return this.deny(
        packet,
        pcpResultFor(result.code),
        { ...fields, lifetimeSeconds },
        result.message,
      );
    }

    const mapping = result.mapping;
    this.nonces.set(clientAddress, protocol, map.internalPort, nonceHex);
    this.context.logger.info(
      {
        ...fields,
        qube: mapping.qube,
        transport: protocol,
        externalPort: mapping.externalPort,
        lifetimeSeconds: mapping.lifetimeSeconds,
        renewed: existing !== undefined,
      },
      'PCP mapping granted',
    );
    return buildPcpMapResponse({
      resultCode: PcpResultCode.success,
      lifetimeSeconds: mapping.lifetimeSeconds,
      epochSeconds: this.context.mappingService.epochSeconds(),
      nonce: map.nonce,
      protocolNumber: map.protocolNumber,
      internalPort: map.internalPort,
      assignedExternalPort: mapping.externalPort,
      assignedExternalAddressBytes:
        ipv4ToMappedBytes(mapping.externalAddress) ?? new Uint8Array(16),
      options: request.options.known,
    });
  }

  /**
   * Lifetime 0 deletes the mapping (RFC 6887 §15), or with internal port 0
   * every PCP mapping of the client for the protocol(s). Only mappings this
   * server created and whose nonce matches are deleted; a single deletion
   * of any other mapping gets NOT_AUTHORIZED. Deleting a mapping that does
   * not exist succeeds.
   */
  private async deleteMappings(
    packet: Uint8Array,
    request: PcpMapRequest,
    protocols: TransportProtocol[],
    mappings: Mapping[],
    clientAddress: string,
    fields: Record<string, unknown>,
  ): Promise<Uint8Array> {
    const map = request.map;
    if (request.options.preferFailure || request.options.filters.length > 0) {
      return this.deny(
        packet,
        PcpResultCode.malformedOption,
        fields,
        'PREFER_FAILURE and FILTER are invalid in a deletion',
      );
    }

    const nonceHex = nonceToHex(map.nonce);
    const targets = mappings.filter(
      (mapping) =>
        protocols.includes(mapping.protocol) &&
        (map.internalPort === 0 || mapping.internalPort === map.internalPort),
    );
    const deletable = targets.filter((mapping) => {
      const storedNonce = this.nonces.get(clientAddress, mapping.protocol, mapping.internalPort);
      return mapping.via === 'pcp' && (storedNonce === undefined || storedNonce === nonceHex);
    });
    if (map.internalPort !== 0 && deletable.length < targets.length) {
      return this.deny(
        packet,
        PcpResultCode.notAuthorized,
        fields,
        'nonce does not match, or the mapping was not created with PCP',
      );
    }

    let removed = 0;
    for (const mapping of deletable) {
      removed += await this.context.mappingService.release({
        clientAddress,
        protocol: mapping.protocol,
        internalPort: mapping.internalPort,
      });
      this.nonces.delete(clientAddress, mapping.protocol, mapping.internalPort);
    }
    this.context.logger.info(
      {
        ...fields,
        removed,
        internalPorts: deletable.map((mapping) => `${mapping.protocol}/${mapping.internalPort}`),
      },
      'PCP mappings removed',
    );

    const deleted = map.internalPort === 0 ? undefined : deletable[0];
    return buildPcpMapResponse({
      resultCode: PcpResultCode.success,
      lifetimeSeconds: 0,
      epochSeconds: this.context.mappingService.epochSeconds(),
      nonce: map.nonce,
      protocolNumber: map.protocolNumber,
      internalPort: map.internalPort,
      assignedExternalPort: deleted?.externalPort ?? map.suggestedExternalPort,
      assignedExternalAddressBytes:
        (deleted === undefined ? null : ipv4ToMappedBytes(deleted.externalAddress)) ??
        map.suggestedExternalAddressBytes,
      options: [],
    });
  }
}
