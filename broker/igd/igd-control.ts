import type { Logger } from '../../rpc/logger.js';
import type { MappingService } from '../mapping/mapping-service.js';
import { IgdPath, type IgdVersion, ServiceType } from './igd-constants.js';
import type { RateLimitedWarner } from './rate-limited-warner.js';
import {
  findWanIpConnectionAction,
  WAN_COMMON_INTERFACE_CONFIG_ACTIONS,
} from './service-descriptions.js';
import {
  buildActionResponse,
  buildFaultResponse,
  UPNP_ERROR_DESCRIPTION,
  UpnpErrorCode,
} from './soap-envelope.js';
import { parseSoapActionHeader, parseSoapBody } from './soap-request-parser.js';
import { type ActionOutcome, WanIpConnection } from './wan-ip-connection.js';

/** A control request as the HTTP layer received it. */
export interface ControlRequest {
  path: string;
  soapActionHeader: string | undefined;
  body: string;
  clientAddress: string;
  signal?: AbortSignal;
}

/** HTTP status and SOAP document to send back. */
export interface ControlResponse {
  status: 200 | 500;
  body: string;
}

export interface IgdControlDependencies {
  mappingService: MappingService;
  logger: Logger;
  warner: RateLimitedWarner;
  nowMs: () => number;
}

/**
 * Turns one control request into a SOAP response: checks the SOAPACTION
 * header against the control URL and the body, checks that the client is a
 * qube with NAT traversal enabled, and runs the action. The response names
 * the service type the client sent, so v1 clients get v1 responses.
 */
export class IgdControl {
  private readonly wanIpConnection: WanIpConnection;

  constructor(private readonly deps: IgdControlDependencies) {
    this.wanIpConnection = new WanIpConnection(deps);
  }

  async handle(request: ControlRequest): Promise<ControlResponse> {
    const header = parseSoapActionHeader(request.soapActionHeader);
    if (!header.ok)
      return this.rejectRequest(request, UpnpErrorCode.invalidAction, header.error.message);
    const { serviceType, serviceName, serviceVersion, actionName } = header.value;

    const body = parseSoapBody(request.body);
    if (!body.ok) {
      const code =
        body.error.code === 'missing-action' || body.error.code === 'invalid-action-name'
          ? UpnpErrorCode.invalidAction
          : UpnpErrorCode.invalidArgs;
      return this.rejectRequest(request, code, body.error.message);
    }
    if (body.value.actionName !== actionName) {
      return this.rejectRequest(
        request,
        UpnpErrorCode.invalidAction,
        `SOAPACTION names ${actionName} but the body contains ${body.value.actionName}`,
      );
    }

    this.deps.logger.debug(
      {
        client: request.clientAddress,
        serviceType,
        action: actionName,
        arguments: Object.fromEntries(body.value.arguments),
      },
      'control request',
    );

    if (!this.deps.mappingService.isEnabledClient(request.clientAddress)) {
      this.deps.logger.info(
        { client: request.clientAddress, action: actionName },
        'request denied',
      );
      return this.rejectRequest(
        request,
        UpnpErrorCode.actionNotAuthorized,
        'client is no qube with NAT traversal enabled',
      );
    }

    const isWanIpConnection =
      request.path === IgdPath.wanIpConnectionControl &&
      serviceName === 'WANIPConnection' &&
      (serviceVersion === 1 || serviceVersion === 2);
    const isCommonInterfaceConfig =
      request.path === IgdPath.wanCommonInterfaceConfigControl &&
      serviceType === ServiceType.wanCommonInterfaceConfig;

    let outcome: ActionOutcome;
    if (isWanIpConnection) {
      const version = serviceVersion as IgdVersion;
      if (findWanIpConnectionAction(actionName, version) === undefined) {
        return this.rejectRequest(
          request,
          UpnpErrorCode.invalidAction,
          `${serviceType} has no action ${actionName}`,
        );
      }
      outcome = await this.wanIpConnection.run({
        actionName,
        clientAddress: request.clientAddress,
        version,
        arguments: body.value.arguments,
        signal: request.signal,
      });
    } else if (isCommonInterfaceConfig) {
      outcome = this.runCommonInterfaceConfig(actionName);
    } else {
      return this.rejectRequest(
        request,
        UpnpErrorCode.invalidAction,
        `service ${serviceType} is not served at ${request.path}`,
      );
    }

    if (!outcome.ok) return this.rejectRequest(request, outcome.code, outcome.message);
    this.deps.logger.debug(
      { client: request.clientAddress, action: actionName, serviceType },
      'action done',
    );
    return {
      status: 200,
      body: buildActionResponse(actionName, serviceType, outcome.outArguments),
    };
  }

  /**
   * WANCommonInterfaceConfig is served only as far as clients such as upnpc
   * read it: the link is Ethernet and up, and the bit rates are 0 (unknown),
   * because the broker does not know the home router's line speed.
   */
  private runCommonInterfaceConfig(actionName: string): ActionOutcome {
    if (!WAN_COMMON_INTERFACE_CONFIG_ACTIONS.some((action) => action.name === actionName)) {
      return {
        ok: false,
        code: UpnpErrorCode.invalidAction,
        message: `${ServiceType.wanCommonInterfaceConfig} has no action ${actionName}`,
      };
    }
    return {
      ok: true,
      outArguments: [
        ['NewWANAccessType', 'Ethernet'],
        ['NewLayer1UpstreamMaxBitRate', '0'],
        ['NewLayer1DownstreamMaxBitRate', '0'],
        ['NewPhysicalLinkStatus', 'Up'],
      ],
    };
  }

  private rejectRequest(
    request: ControlRequest,
    code: UpnpErrorCode,
    reason: string,
  ): ControlResponse {
    const fields = { client: request.clientAddress, path: request.path, upnpError: code, reason };
    const isInputError = code === UpnpErrorCode.invalidAction || code === UpnpErrorCode.invalidArgs;
    if (isInputError) {
      this.deps.warner.warn(fields, 'invalid control request');
    } else {
      // Rejected mappings were logged at info level where they were decided.
      this.deps.logger.debug(fields, `control request rejected: ${UPNP_ERROR_DESCRIPTION[code]}`);
    }
    return { status: 500, body: buildFaultResponse(code) };
  }
}
