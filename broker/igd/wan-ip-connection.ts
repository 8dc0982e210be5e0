import type { Logger } from '../../rpc/logger.js';
import type { TransportProtocol } from '../../rpc/wire-types.js';
import type { MappingResult, MappingService } from '../mapping/mapping-service.js';
import {
  type ArgumentResult,
  checkRemoteHostArgument,
  parseBooleanArgument,
  parseDescriptionArgument,
  parseIndexArgument,
  parseInternalClientArgument,
  parseLeaseArgument,
  parsePortArgument,
  parseProtocolArgument,
} from './action-arguments.js';
import type { IgdVersion } from './igd-constants.js';
import { buildPortListing, type PortMappingEntry, toPortMappingEntry } from './port-listing.js';
import { UpnpErrorCode } from './soap-envelope.js';

/**
 * The WANIPConnection actions (v1 and v2 templates) on top of the broker's
 * MappingService. Each action returns its out arguments or a UPnP error code;
 * the HTTP layer wraps either in a SOAP envelope.
 */

export interface ActionCall {
  actionName: string;
  clientAddress: string;
  version: IgdVersion;
  arguments: ReadonlyMap<string, string>;
  signal?: AbortSignal;
}

export type ActionFault = { ok: false; code: UpnpErrorCode; message: string };
export type ActionOutcome = { ok: true; outArguments: Array<[string, string]> } | ActionFault;

export interface WanIpConnectionDependencies {
  mappingService: MappingService;
  logger: Logger;
  /** Current time in Unix milliseconds; reports the remaining lease of each mapping. */
  nowMs: () => number;
}

type Handler = (call: ActionCall) => Promise<ActionOutcome>;

const fault = (code: UpnpErrorCode, message: string): ActionFault => ({ ok: false, code, message });
const success = (outArguments: Array<[string, string]> = []): ActionOutcome => ({
  ok: true,
  outArguments,
});

/** Maps a rejected MappingService result to the fault WANIPConnection defines for it. */
export function faultForMappingResult(
  result: Exclude<MappingResult, { code: 'granted' }>,
): ActionFault {
  switch (result.code) {
    case 'not-authorized':
    case 'unknown-client':
    case 'address-mismatch':
      return fault(UpnpErrorCode.actionNotAuthorized, result.message);
    case 'conflict':
      return fault(UpnpErrorCode.conflictInMappingEntry, result.message);
    case 'no-resources':
      return fault(UpnpErrorCode.noPortMapsAvailable, result.message);
    case 'failed':
      return fault(UpnpErrorCode.actionFailed, result.message);
  }
}

function entryArguments(entry: PortMappingEntry, withKey: boolean): Array<[string, string]> {
  const key: Array<[string, string]> = withKey
    ? [
        ['NewRemoteHost', ''],
        ['NewExternalPort', String(entry.externalPort)],
        ['NewProtocol', entry.protocol],
      ]
    : [];
  return [
    ...key,
    ['NewInternalPort', String(entry.internalPort)],
    ['NewInternalClient', entry.internalClient],
    ['NewEnabled', '1'],
    ['NewPortMappingDescription', entry.description],
    ['NewLeaseDuration', String(entry.leaseSeconds)],
  ];
}

/** Collects several argument results; the first failure wins. */
function firstFailure(...results: ArgumentResult<unknown>[]): ActionFault | null {
  for (const result of results) {
    if (!result.ok) return fault(result.code, result.message);
  }
  return null;
}

export class WanIpConnection {
  private readonly handlers: ReadonlyMap<string, Handler>;

  constructor(private readonly deps: WanIpConnectionDependencies) {
    this.handlers = new Map<string, Handler>([
      ['GetExternalIPAddress', () => this.getExternalIpAddress()],
      ['GetStatusInfo', () => this.getStatusInfo()],
      [
        'GetConnectionTypeInfo',
        async () =>
          success([
            ['NewConnectionType', 'IP_Routed'],
            ['NewPossibleConnectionTypes', 'IP_Routed'],
          ]),
      ],
      [
        'GetNATRSIPStatus',
        async () =>
          success([
            ['NewRSIPAvailable', '0'],
            ['NewNATEnabled', '1'],
          ]),
      ],
      ['AddPortMapping', (call) => this.addPortMapping(call, false)],
      ['AddAnyPortMapping', (call) => this.addPortMapping(call, true)],
      ['DeletePortMapping', (call) => this.deletePortMapping(call)],
      ['DeletePortMappingRange', (call) => this.deletePortMappingRange(call)],
      ['GetGenericPortMappingEntry', (call) => this.getGenericPortMappingEntry(call)],
      ['GetSpecificPortMappingEntry', (call) => this.getSpecificPortMappingEntry(call)],
      ['GetListOfPortMappings', (call) => this.getListOfPortMappings(call)],
    ]);
  }

  /** Runs an action the caller has already checked against the service version. */
  async run(call: ActionCall): Promise<ActionOutcome> {
    const handler = this.handlers.get(call.actionName);
    if (handler === undefined) {
      return fault(UpnpErrorCode.invalidAction, `action ${call.actionName} is not implemented`);
    }
    return handler(call);
  }

  private async getExternalIpAddress(): Promise<ActionOutcome> {
    try {
      return success([['NewExternalIPAddress', await this.deps.mappingService.externalAddress()]]);
    } catch (error) {
      this.deps.logger.error({ err: error }, 'external address lookup failed');
      return fault(UpnpErrorCode.actionFailed, 'external address lookup failed');
    }
  }

  private async getStatusInfo(): Promise<ActionOutcome> {
    return success([
      ['NewConnectionStatus', 'Connected'],
      ['NewLastConnectionError', 'ERROR_NONE'],
      ['NewUptime', String(Math.max(0, Math.floor(this.deps.mappingService.epochSeconds())))],
    ]);
  }

  private async addPortMapping(call: ActionCall, anyPort: boolean): Promise<ActionOutcome> {
    const args = call.arguments;
    const remoteHost = checkRemoteHostArgument(args);
    const externalPort = parsePortArgument(args, 'NewExternalPort');
    const protocol = parseProtocolArgument(args);
    const internalPort = parsePortArgument(args, 'NewInternalPort');
    const internalClient = parseInternalClientArgument(args, call.clientAddress);
    const enabled = parseBooleanArgument(args, 'NewEnabled', true);
    const lease = parseLeaseArgument(args);
    const failure = firstFailure(
      externalPort,
      protocol,
      internalPort,
      internalClient,
      enabled,
      lease,
      remoteHost,
    );
    if (failure !== null) return failure;
    if (!externalPort.ok || !protocol.ok || !internalPort.ok || !internalClient.ok || !lease.ok) {
      return fault(UpnpErrorCode.invalidArgs, 'invalid arguments');
    }

    if (internalPort.value === 0)
      return fault(UpnpErrorCode.invalidArgs, 'NewInternalPort 0 is not a port');
    if (!anyPort && externalPort.value === 0) {
      return fault(
        UpnpErrorCode.wildCardNotPermittedInExtPort,
        'NewExternalPort 0 (wildcard) is not allowed in AddPortMapping: use AddAnyPortMapping',
      );
    }
    // NOTE: NewEnabled=0 is accepted and ignored, as miniupnpd does: the
    // broker keeps no disabled mappings, so the mapping is created enabled.

    const result = await this.deps.mappingService.request(
      {
        clientAddress: call.clientAddress,
        protocol: protocol.value,
        internalAddress: internalClient.value,
        internalPort: internalPort.value,
        suggestedExternalPort: externalPort.value === 0 ? null : externalPort.value,
        requireSuggestedPort: !anyPort,
        lifetimeSeconds: lease.value,
        via: 'upnp',
        description: parseDescriptionArgument(args),
      },
      { signal: call.signal },
    );

    const logFields = {
      client: call.clientAddress,
      action: call.actionName,
      protocol: protocol.value,
      internalPort: internalPort.value,
      externalPort: externalPort.value,
      lifetimeSeconds: lease.value,
    };
    if (result.code !== 'granted') {
      this.deps.logger.info(
        { ...logFields, result: result.code, reason: result.message },
        'port mapping rejected',
      );
      return faultForMappingResult(result);
    }

    this.deps.logger.info(
      { ...logFields, qube: result.mapping.qube, grantedPort: result.mapping.externalPort },
      'port mapping granted',
    );
    return success(anyPort ? [['NewReservedPort', String(result.mapping.externalPort)]] : []);
  }

  private async deletePortMapping(call: ActionCall): Promise<ActionOutcome> {
    const remoteHost = checkRemoteHostArgument(call.arguments);
    const externalPort = parsePortArgument(call.arguments, 'NewExternalPort');
    // Quirk: @achingbrain/nat-port-mapper 4.x unmap() sends an empty
    // NewProtocol, which WANIPConnection does not allow (TCP or UDP only).
    // An empty value removes the client's TCP and UDP mappings of that port,
    // so its mappings do not stay open until the lease ends.
    const bothProtocols = call.arguments.get('NewProtocol') === '';
    const protocol: ArgumentResult<TransportProtocol | null> = bothProtocols
      ? { ok: true, value: null }
      : parseProtocolArgument(call.arguments);
    const failure = firstFailure(externalPort, protocol, remoteHost);
    if (failure !== null || !externalPort.ok || !protocol.ok) {
      return failure ?? fault(UpnpErrorCode.invalidArgs, 'invalid arguments');
    }

    const protocols: TransportProtocol[] =
      protocol.value === null ? ['tcp', 'udp'] : [protocol.value];
    let removed = 0;
    for (const transportProtocol of protocols) {
      removed += await this.deps.mappingService.release({
        clientAddress: call.clientAddress,
        protocol: transportProtocol,
        externalPort: externalPort.value,
      });
    }
    if (removed === 0) {
      return fault(
        UpnpErrorCode.noSuchEntryInArray,
        `no ${protocols.join('/')} mapping of external port ${externalPort.value} for this client`,
      );
    }
    this.deps.logger.info(
      { client: call.clientAddress, protocols, externalPort: externalPort.value, removed },
      'port mapping removed',
    );
    return success();
  }

  private async deletePortMappingRange(call: ActionCall): Promise<ActionOutcome> {
    const range = this.parseRange(call);
    if (!range.ok) return range;

    let removed = 0;
    for (const entry of range.entries) {
      removed += await this.deps.mappingService.release({
        clientAddress: call.clientAddress,
        protocol: entry.protocol === 'TCP' ? 'tcp' : 'udp',
        externalPort: entry.externalPort,
      });
    }
    if (removed === 0) {
      return fault(
        UpnpErrorCode.portMappingNotFound,
        'no mapping of this client in the port range',
      );
    }
    this.deps.logger.info({ client: call.clientAddress, removed }, 'port mapping range removed');
    return success();
  }

  private async getListOfPortMappings(call: ActionCall): Promise<ActionOutcome> {
    const range = this.parseRange(call);
    if (!range.ok) return range;
    const count = parseIndexArgument(call.arguments, 'NewNumberOfPorts');
    if (!count.ok) return fault(count.code, count.message);

    const entries = count.value === 0 ? range.entries : range.entries.slice(0, count.value);
    if (entries.length === 0) {
      return fault(
        UpnpErrorCode.portMappingNotFound,
        'no mapping of this client in the port range',
      );
    }
    return success([['NewPortListing', buildPortListing(entries)]]);
  }

  /** Parses NewStartPort, NewEndPort, NewProtocol and NewManage; returns the client's entries in range. */
  private parseRange(call: ActionCall): { ok: true; entries: PortMappingEntry[] } | ActionFault {
    const startPort = parsePortArgument(call.arguments, 'NewStartPort');
    const endPort = parsePortArgument(call.arguments, 'NewEndPort');
    const protocol = parseProtocolArgument(call.arguments);
    // NewManage only widens the view to other clients' mappings; the broker
    // shows each client its own mappings only, so the value does not matter.
    const manage = parseBooleanArgument(call.arguments, 'NewManage', false);
    if (!startPort.ok) return fault(startPort.code, startPort.message);
    if (!endPort.ok) return fault(endPort.code, endPort.message);
    if (!protocol.ok) return fault(protocol.code, protocol.message);
    if (!manage.ok) return fault(manage.code, manage.message);
    if (startPort.value > endPort.value) {
      return fault(
        UpnpErrorCode.inconsistentParameters,
        `NewStartPort ${startPort.value} is above NewEndPort ${endPort.value}`,
      );
    }

    const entries = this.entriesOf(call.clientAddress).filter(
      (entry) =>
        entry.protocol === (protocol.value === 'tcp' ? 'TCP' : 'UDP') &&
        entry.externalPort >= startPort.value &&
        entry.externalPort <= endPort.value,
    );
    return { ok: true, entries };
  }

  private async getGenericPortMappingEntry(call: ActionCall): Promise<ActionOutcome> {
    const index = parseIndexArgument(call.arguments, 'NewPortMappingIndex');
    if (!index.ok) return fault(index.code, index.message);

    const entry = this.entriesOf(call.clientAddress)[index.value];
    if (entry === undefined) {
      return fault(UpnpErrorCode.specifiedArrayIndexInvalid, `no mapping at index ${index.value}`);
    }
    return success(entryArguments(entry, true));
  }

  private async getSpecificPortMappingEntry(call: ActionCall): Promise<ActionOutcome> {
    const remoteHost = checkRemoteHostArgument(call.arguments);
    const externalPort = parsePortArgument(call.arguments, 'NewExternalPort');
    const protocol = parseProtocolArgument(call.arguments);
    const failure = firstFailure(externalPort, protocol, remoteHost);
    if (failure !== null || !externalPort.ok || !protocol.ok) {
      return failure ?? fault(UpnpErrorCode.invalidArgs, 'invalid arguments');
    }

    const requestedProtocol = protocol.value === 'tcp' ? 'TCP' : 'UDP';
    const entry = this.entriesOf(call.clientAddress).find(
      (candidate) =>
        candidate.externalPort === externalPort.value && candidate.protocol === requestedProtocol,
    );
    if (entry === undefined) {
      return fault(
        UpnpErrorCode.noSuchEntryInArray,
        `no ${requestedProtocol} mapping of external port ${externalPort.value} for this client`,
      );
    }
    return success(entryArguments(entry, false));
  }

  private entriesOf(clientAddress: string): PortMappingEntry[] {
    const nowMs = this.deps.nowMs();
    return this.deps.mappingService
      .list(clientAddress)
      .map((mapping) => toPortMappingEntry(mapping, nowMs));
  }
}
