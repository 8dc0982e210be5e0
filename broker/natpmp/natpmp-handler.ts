import type { TransportProtocol } from '../../rpc/wire-types.js';
import {
  type MappingResultCode,
  MappingResultCode as ResultCodes,
} from '../mapping/mapping-service.js';
import { ipv4ToBytes } from '../port-control/ipv4-bytes.js';
import { clampLifetimeSeconds } from '../port-control/lifetime-policy.js';
import type {
  PortControlContext,
  PortControlHandler,
} from '../port-control/port-control-context.js';
import {
  buildNatPmpExternalAddressResponse,
  buildNatPmpMappingResponse,
  buildNatPmpUnsupportedOpcodeResponse,
  buildNatPmpUnsupportedVersionResponse,
  type NatPmpRequest,
  NatPmpResultCode,
  parseNatPmpRequest,
} from './natpmp-codec.js';

type MappingRequest = Extract<NatPmpRequest, { kind: 'mapping' }>;

/** Maps the broker core's result to the NAT-PMP result code (RFC 6886 §3.5). */
export function natPmpResultFor(code: MappingResultCode): NatPmpResultCode {
  switch (code) {
    case ResultCodes.granted:
      return NatPmpResultCode.success;
    case ResultCodes.notAuthorized:
    case ResultCodes.unknownClient:
    case ResultCodes.addressMismatch:
      return NatPmpResultCode.notAuthorized;
    case ResultCodes.conflict:
    case ResultCodes.noResources:
      return NatPmpResultCode.outOfResources;
    case ResultCodes.failed:
      return NatPmpResultCode.networkFailure;
  }
}

/**
 * Serves NAT-PMP requests (version byte 0) for one qube-facing socket.
 * The caller has already checked that the client has NAT traversal enabled.
 */
export class NatPmpHandler implements PortControlHandler {
  constructor(private readonly context: PortControlContext) {}

  async handle(
    packet: Uint8Array,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null> {
    const parsed = parseNatPmpRequest(packet);
    const epochSeconds = this.context.mappingService.epochSeconds();

    if (!parsed.ok) {
      const error = parsed.error;
      this.context.warnLimiter.warn(
        { protocol: 'natpmp', client: clientAddress, bytes: packet.length },
        error.kind === 'drop' ? `dropped NAT-PMP datagram: ${error.message}` : error.message,
      );
      if (error.kind === 'unsupported-version') {
        return buildNatPmpUnsupportedVersionResponse(error.opcode, epochSeconds);
      }
      if (error.kind === 'unsupported-opcode') {
        return buildNatPmpUnsupportedOpcodeResponse(packet);
      }
      return null;
    }

    const request = parsed.request;
    if (request.kind === 'external-address') {
      return this.answerExternalAddress(clientAddress);
    }
    return this.answerMapping(request, clientAddress, signal);
  }

  private async answerExternalAddress(clientAddress: string): Promise<Uint8Array> {
    let externalAddress: string;
    try {
      externalAddress = await this.context.mappingService.externalAddress();
    } catch (error) {
      this.context.logger.error(
        { protocol: 'natpmp', client: clientAddress, err: error },
        'external address lookup failed; answering Network Failure',
      );
      externalAddress = '';
    }

    const addressBytes = ipv4ToBytes(externalAddress);
    const usable = addressBytes !== null && externalAddress !== '0.0.0.0';
    this.context.logger.debug(
      { protocol: 'natpmp', client: clientAddress, externalAddress },
      'NAT-PMP external address request',
    );
    return buildNatPmpExternalAddressResponse({
      resultCode: usable ? NatPmpResultCode.success : NatPmpResultCode.networkFailure,
      epochSeconds: this.context.mappingService.epochSeconds(),
      externalAddressBytes: addressBytes ?? new Uint8Array(4),
    });
  }

  private async answerMapping(
    request: MappingRequest,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null> {
    const key = `natpmp|${request.protocol}|${request.internalPort}|${request.requestedLifetimeSeconds === 0 ? 'delete' : 'map'}`;
    const started = this.context.inFlight.begin(clientAddress, key);
    if (started !== 'started') {
      this.context.logger.debug(
        { protocol: 'natpmp', client: clientAddress, reason: started },
        'dropped NAT-PMP request while an earlier one is in flight',
      );
      return null;
    }

    try {
      if (request.requestedLifetimeSeconds === 0) {
        return await this.deleteMappings(request, clientAddress);
      }
      return await this.createMapping(request, clientAddress, signal);
    } catch (error) {
      this.context.logger.error(
        { protocol: 'natpmp', client: clientAddress, transport: request.protocol, err: error },
        'NAT-PMP mapping request failed; answering Network Failure',
      );
      return this.mappingReply(request, NatPmpResultCode.networkFailure, 0, 0);
    } finally {
      this.context.inFlight.end(clientAddress, key);
    }
  }

  private async createMapping(
    request: MappingRequest,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const logFields = {
      protocol: 'natpmp',
      client: clientAddress,
      transport: request.protocol,
      internalPort: request.internalPort,
      suggestedExternalPort: request.suggestedExternalPort,
    };

    // Internal port 0 is only meaningful with lifetime 0 (delete all, RFC 6886 §3.4).
    if (request.internalPort === 0) {
      this.context.logger.info(
        { ...logFields, result: 'not-authorized' },
        'NAT-PMP mapping denied: internal port 0',
      );
      return this.mappingReply(request, NatPmpResultCode.notAuthorized, 0, 0);
    }

    const lifetimeSeconds = clampLifetimeSeconds(
      request.requestedLifetimeSeconds,
      this.context.lifetimeBounds,
    );
    const result = await this.context.mappingService.request(
      {
        clientAddress,
        protocol: request.protocol,
        internalAddress: clientAddress,
        internalPort: request.internalPort,
        suggestedExternalPort:
          request.suggestedExternalPort === 0 ? null : request.suggestedExternalPort,
        requireSuggestedPort: false,
        lifetimeSeconds,
        via: 'natpmp',
        description: `NAT-PMP ${request.protocol} ${request.internalPort}`,
      },
      { signal },
    );

    if (result.code !== ResultCodes.granted) {
      const resultCode = natPmpResultFor(result.code);
      this.context.logger.info(
        { ...logFields, lifetimeSeconds, result: result.code, resultCode, reason: result.message },
        'NAT-PMP mapping denied',
      );
      return this.mappingReply(request, resultCode, 0, 0);
    }

    const mapping = result.mapping;
    this.context.logger.info(
      {
        ...logFields,
        qube: mapping.qube,
        externalPort: mapping.externalPort,
        lifetimeSeconds: mapping.lifetimeSeconds,
      },
      'NAT-PMP mapping granted',
    );
    return this.mappingReply(
      request,
      NatPmpResultCode.success,
      mapping.externalPort,
      mapping.lifetimeSeconds,
    );
  }

  /**
   * Lifetime 0 deletes one mapping (by internal port) or, with internal port
   * 0, every NAT-PMP mapping of the client for that protocol (RFC 6886 §3.4).
   * A mapping made by another protocol or by the dom0 user is not NAT-PMP's
   * to delete: the RFC requires "Not Authorized" for manually assigned ones.
   */
  private async deleteMappings(
    request: MappingRequest,
    clientAddress: string,
  ): Promise<Uint8Array> {
    const service = this.context.mappingService;
    const protocol: TransportProtocol = request.protocol;
    const own = service.list(clientAddress).filter((mapping) => mapping.protocol === protocol);

    if (request.internalPort !== 0) {
      const matching = own.filter((mapping) => mapping.internalPort === request.internalPort);
      if (matching.some((mapping) => mapping.via !== 'natpmp')) {
        this.context.logger.info(
          {
            protocol: 'natpmp',
            client: clientAddress,
            transport: protocol,
            internalPort: request.internalPort,
          },
          'NAT-PMP deletion denied: the mapping was not created with NAT-PMP',
        );
        return this.mappingReply(request, NatPmpResultCode.notAuthorized, 0, 0);
      }
      const removed = await service.release({
        clientAddress,
        protocol,
        internalPort: request.internalPort,
      });
      this.logRemoved(clientAddress, protocol, [request.internalPort], removed);
      return this.mappingReply(request, NatPmpResultCode.success, 0, 0);
    }

    const otherPorts = new Set(
      own.filter((mapping) => mapping.via !== 'natpmp').map((mapping) => mapping.internalPort),
    );
    const ports = [
      ...new Set(
        own
          .filter((mapping) => mapping.via === 'natpmp' && !otherPorts.has(mapping.internalPort))
          .map((mapping) => mapping.internalPort),
      ),
    ];
    let removed = 0;
    for (const internalPort of ports) {
      removed += await service.release({ clientAddress, protocol, internalPort });
    }
    this.logRemoved(clientAddress, protocol, ports, removed);
    return this.mappingReply(request, NatPmpResultCode.success, 0, 0);
  }

  private logRemoved(
    clientAddress: string,
    protocol: TransportProtocol,
    internalPorts: number[],
    removed: number,
  ): void {
    this.context.logger.info(
      { protocol: 'natpmp', client: clientAddress, transport: protocol, internalPorts, removed },
      'NAT-PMP mappings removed',
    );
  }

  private mappingReply(
    request: MappingRequest,
    resultCode: NatPmpResultCode,
    externalPort: number,
    lifetimeSeconds: number,
  ): Uint8Array {
    return buildNatPmpMappingResponse({
      protocol: request.protocol,
      resultCode,
      epochSeconds: this.context.mappingService.epochSeconds(),
      internalPort: request.internalPort,
      externalPort,
      lifetimeSeconds,
    });
  }
}
