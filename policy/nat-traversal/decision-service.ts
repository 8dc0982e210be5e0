import type { AdminApi } from '../../rpc/admin-api/admin-api.js';
import type { Logger } from '../../rpc/logger.js';
import {
  type ClientsReply,
  formatMappingArgument,
  type LeasesReply,
  type MappingArgument,
  type MappingGrantReply,
  mappingGrantRequestSchema,
  mappingRenewRequestSchema,
  NAT_TRAVERSAL_CLIENTS_SERVICE,
  NAT_TRAVERSAL_LEASES_SERVICE,
  NAT_TRAVERSAL_RELEASE_SERVICE,
  NAT_TRAVERSAL_RENEW_SERVICE,
  NAT_TRAVERSAL_SERVICE,
  type ParsedMappingArgument,
  parseMappingArgument,
} from '../../rpc/nat-traversal-messages.js';
import type { InventorySnapshot, QubeInventory } from '../network/qube-inventory.js';
import { PushError } from '../network/rule-pusher.js';
import { type LeaseManager, NoFreePortError } from './lease-manager.js';
import {
  NAT_BROKER_FEATURE,
  type NatTraversalSettings,
  portAllowed,
  readNatTraversalSettings,
} from './nat-settings.js';
import { readNatTraversalTopology } from './nat-topology.js';

/**
 * dom0's side of NAT traversal: the qrexec services the broker calls. The
 * broker is untrusted, so every request is checked again here: the caller is
 * the broker VM, the qube has NAT traversal enabled, the protocol and port
 * are in its allowed lists, the lease is clamped to its maximum, and the
 * internal address is the qube's own. The policy prompt has already shown
 * the dom0 user `QUBE+PROTO+PORT` (or `QUBE+udp+stun` for a STUN request,
 * whose port is in the payload) when the request reaches this code.
 */

export class ServiceInputError extends Error {
  override name = 'ServiceInputError';
}

export interface ServiceCall {
  serviceName: string;
  argument: string;
  remoteDomain: string;
  payload: string;
}

export interface DecisionServiceOptions {
  adminApi: AdminApi;
  inventory: QubeInventory;
  leases: LeaseManager;
  logger: Logger;
}

export class DecisionService {
  constructor(private readonly options: DecisionServiceOptions) {}

  /** Handles one call and returns the JSON reply; throws ServiceInputError for invalid input. */
  async handle(call: ServiceCall): Promise<unknown> {
    const { adminApi, logger } = this.options;
    if ((await adminApi.getFeature(call.remoteDomain, NAT_BROKER_FEATURE)) !== '1') {
      logger.warn(
        { caller: call.remoteDomain, service: call.serviceName },
        'caller is not the NAT broker',
      );
      throw new ServiceInputError(
        `${call.remoteDomain} is not the NAT broker VM (feature ${NAT_BROKER_FEATURE} is not 1)`,
      );
    }

    switch (call.serviceName) {
      case NAT_TRAVERSAL_SERVICE:
        return this.grant(parseArgument(call.argument), call.payload);
      case NAT_TRAVERSAL_RENEW_SERVICE:
        return this.renew(portArgument(call.argument), call.payload);
      case NAT_TRAVERSAL_RELEASE_SERVICE: {
        const argument = portArgument(call.argument);
        const removed = await this.options.leases.release(
          argument.qube,
          argument.protocol,
          argument.internalPort,
        );
        return { removed };
      }
      case NAT_TRAVERSAL_CLIENTS_SERVICE:
        return this.clients();
      case NAT_TRAVERSAL_LEASES_SERVICE:
        return this.listLeases();
      default:
        throw new ServiceInputError(`unknown service ${call.serviceName}`);
    }
  }

  private async grant(parsed: ParsedMappingArgument, payload: string): Promise<MappingGrantReply> {
    const request = parsePayload(mappingGrantRequestSchema, payload);
    const argument = grantArgument(parsed, request.internalPort);
    if (argument.requestClass === 'stun' && request.via !== 'stun') {
      throw new ServiceInputError(
        `invalid payload: via ${request.via} with ${parsed.qube}+udp+stun; that argument is for STUN requests`,
      );
    }
    const checked = await this.check(argument, request.internalAddress);
    if ('result' in checked) {
      return checked;
    }

    const lifetimeSeconds = Math.min(request.lifetimeSeconds, checked.settings.maxLeaseSeconds);
    try {
      const lease = await this.options.leases.grant({
        qube: argument.qube,
        protocol: argument.protocol,
        internalPort: argument.internalPort,
        lifetimeSeconds,
        via: request.via,
        description: request.description,
        allowedPorts: checked.settings.allowedPorts,
      });
      return {
        result: 'granted',
        leaseId: lease.id,
        uplinkPort: lease.ports.first,
        lifetimeSeconds,
        expiresAtUnixSeconds: lease.expiresAtUnixSeconds ?? 0,
      };
    } catch (error) {
      return this.failure(argument, error);
    }
  }

  private async renew(argument: MappingArgument, payload: string): Promise<MappingGrantReply> {
    const request = parsePayload(mappingRenewRequestSchema, payload);
    if (request.internalPort !== undefined && request.internalPort !== argument.internalPort) {
      throw new ServiceInputError(
        `invalid payload: internalPort ${request.internalPort} differs from the argument's port ${argument.internalPort}`,
      );
    }
    const existing = await this.options.leases.find(
      argument.qube,
      argument.protocol,
      argument.internalPort,
    );
    if (existing === null) {
      return {
        result: 'no-lease',
        message: `no live lease for ${formatMappingArgument(argument)}; request it again`,
      };
    }
    const inventory = await this.options.inventory.snapshot();
    const checked = await this.check(argument, inventory.get(argument.qube).ip ?? '', inventory);
    if ('result' in checked) {
      return checked;
    }

    const lifetimeSeconds = Math.min(request.lifetimeSeconds, checked.settings.maxLeaseSeconds);
    try {
      const lease = await this.options.leases.renew(
        argument.qube,
        argument.protocol,
        argument.internalPort,
        lifetimeSeconds,
        request.upstream,
      );
      if (lease === null) {
        return {
          result: 'no-lease',
          message: `the lease for ${formatMappingArgument(argument)} ended meanwhile`,
        };
      }
      return {
        result: 'granted',
        leaseId: lease.id,
        uplinkPort: lease.ports.first,
        lifetimeSeconds,
        expiresAtUnixSeconds: lease.expiresAtUnixSeconds ?? 0,
      };
    } catch (error) {
      return this.failure(argument, error);
    }
  }

  /** Checks the qube, its settings, the protocol, the port and the internal address. */
  private async check(
    argument: MappingArgument,
    internalAddress: string,
    snapshot?: InventorySnapshot,
  ): Promise<
    { settings: NatTraversalSettings } | Exclude<MappingGrantReply, { result: 'granted' }>
  > {
    const inventory = snapshot ?? (await this.options.inventory.snapshot());
    const qube = inventory.qubes.get(argument.qube);
    if (qube === undefined || qube.ip === null) {
      return { result: 'not-enabled', message: `no qube ${argument.qube} with an IP address` };
    }

    const settings = await readNatTraversalSettings(this.options.adminApi, argument.qube);
    if (!settings.enabled) {
      if (settings.problem !== null) {
        this.options.logger.warn(
          { qube: argument.qube, problem: settings.problem },
          'NAT traversal settings invalid',
        );
      }
      return {
        result: 'not-enabled',
        message: settings.problem ?? `NAT traversal is not enabled for ${argument.qube}`,
      };
    }
    if (internalAddress !== qube.ip) {
      return {
        result: 'address-mismatch',
        message: `${internalAddress} is not the address of ${argument.qube} (${qube.ip})`,
      };
    }
    if (
      !settings.allowedProtocols.includes(argument.protocol) ||
      !portAllowed(settings, argument.internalPort)
    ) {
      return {
        result: 'not-allowed',
        message: `${argument.protocol} port ${argument.internalPort} is not allowed for ${argument.qube}`,
      };
    }
    return { settings };
  }

  private failure(argument: MappingArgument, error: unknown): MappingGrantReply {
    if (error instanceof NoFreePortError) {
      return { result: 'no-free-port', message: error.message };
    }
    this.options.logger.error(
      { err: error, request: formatMappingArgument(argument) },
      'lease failed',
    );
    const message = error instanceof PushError ? error.message : (error as Error).message;
    return { result: 'failed', message };
  }

  private async clients(): Promise<ClientsReply> {
    const inventory = await this.options.inventory.snapshot();
    const topology = await readNatTraversalTopology(this.options.adminApi, inventory);
    return {
      clients: topology.clients.map(({ qube, address, gatewayAddress }) => ({
        qube,
        address,
        gatewayAddress,
      })),
      uplinkVm:
        topology.clients[0] === undefined ? null : inventory.uplinkOf(topology.clients[0].qube),
    };
  }

  private async listLeases(): Promise<LeasesReply> {
    const leases = await this.options.leases.listLeases();
    return {
      leases: leases.map((lease) => ({
        leaseId: lease.id,
        qube: lease.qube,
        protocol: lease.protocol,
        internalPort: lease.natTraversal?.internalPort ?? lease.targetPorts.first,
        uplinkPort: lease.ports.first,
        expiresAtUnixSeconds: lease.expiresAtUnixSeconds ?? 0,
      })),
    };
  }
}

function parseArgument(text: string): ParsedMappingArgument {
  const argument = parseMappingArgument(text);
  if (argument === null) {
    throw new ServiceInputError(
      `invalid argument ${JSON.stringify(text)}: expected QUBE+tcp|udp+PORT or QUBE+udp+stun`,
    );
  }
  return argument;
}

/** Renewals and releases name the port: `QUBE+udp+stun` is for grants only. */
function portArgument(text: string): MappingArgument {
  const argument = parseArgument(text);
  if (argument.internalPort === null) {
    throw new ServiceInputError(
      `invalid argument ${JSON.stringify(text)}: renewals and releases name the port, QUBE+PROTO+PORT`,
    );
  }
  return argument;
}

/** Joins the grant argument and the payload's port; a STUN grant takes its port from the payload. */
function grantArgument(
  parsed: ParsedMappingArgument,
  payloadPort: number | undefined,
): MappingArgument {
  if (parsed.internalPort === null) {
    if (payloadPort === undefined) {
      throw new ServiceInputError(
        `invalid payload: ${parsed.qube}+udp+stun needs internalPort, the qube's UDP source port`,
      );
    }
    return { qube: parsed.qube, protocol: 'udp', internalPort: payloadPort, requestClass: 'stun' };
  }
  if (payloadPort !== undefined && payloadPort !== parsed.internalPort) {
    throw new ServiceInputError(
      `invalid payload: internalPort ${payloadPort} differs from the argument's port ${parsed.internalPort}`,
    );
  }
  return parsed;
}

function parsePayload<T>(
  schema: {
    safeParse(
      value: unknown,
    ):
      | { success: true; data: T }
      | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } };
  },
  payload: string,
): T {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    throw new ServiceInputError('invalid payload: not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ServiceInputError(`invalid payload: ${issues.join('; ')}`);
  }
  return parsed.data;
}
