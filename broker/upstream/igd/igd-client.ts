import type { Logger } from '../../../rpc/logger.js';
import { UpstreamError } from '../upstream-errors.js';
import type { MappingProtocol, RouterInfo } from '../upstream-types.js';
import { parseIpv4 } from '../upstream-types.js';
import { MAX_DESCRIPTION_BYTES, parseRootDescription, type WanService } from './igd-description.js';
import { httpExchange } from './igd-http.js';
import {
  buildSoapRequest,
  MAX_SOAP_RESPONSE_BYTES,
  parseSoapResponse,
  soapActionHeader,
  UpnpErrorCode,
  upnpErrorName,
} from './igd-soap.js';

/**
 * UPnP IGD client (WANIPConnection v1 and v2, WANPPPConnection v1) for the
 * home router. connect() fetches the root description and picks the first
 * WAN service that returns a valid external address.
 */

export const DEFAULT_IGD_TIMEOUT_MS = 5_000;

export interface IgdClientOptions {
  logger: Logger;
  router: RouterInfo;
  /** 2 uses only WANIPConnection:2 services and v2 actions; 1 uses any WAN service with v1 actions. */
  igdVersion: 1 | 2;
  /** Timeout of each HTTP exchange. Default 5000 ms. */
  timeoutMs?: number;
}

export interface IgdPortMapping {
  protocol: MappingProtocol;
  externalPort: number;
  internalPort: number;
  internalClient: string;
  /** 0 requests a permanent mapping (IGD v1) or the maximum lease (IGD v2). */
  leaseSeconds: number;
  description: string;
}

export interface IgdMappingEntry {
  internalPort: number;
  internalClient: string;
  enabled: boolean;
  leaseSeconds: number;
  description: string;
}

/**
 * Protocol names on the wire. The WANIPConnection service description allows
 * only the values "TCP" and "UDP"; miniupnpd 2.3.1 also accepts lower case,
 * but a router that compares the allowed values exactly answers 402
 * InvalidArgs, so upper case is always sent.
 */
function igdProtocolName(protocol: MappingProtocol): 'TCP' | 'UDP' {
  return protocol === 'tcp' ? 'TCP' : 'UDP';
}

export class IgdClient {
  private service: WanService | null = null;

  constructor(private readonly options: IgdClientOptions) {}

  /** The chosen WAN service, after connect(). */
  get wanService(): WanService | null {
    return this.service;
  }

  /** Fetches the description, picks a WAN service and returns the external address. */
  async connect(signal?: AbortSignal): Promise<string> {
    const location = this.options.router.igdLocation;
    if (location === null)
      throw new UpstreamError('unsupported', 'sys-net found no UPnP IGD on its uplink');
    let host: string;
    try {
      host = new URL(location).hostname;
    } catch {
      throw new UpstreamError(
        'malformed',
        `invalid IGD location "${location}": expected an absolute http: URL`,
      );
    }
    // Only the router itself is trusted to describe mappings; a LOCATION on
    // another LAN host would send SOAP requests to that host.
    if (host !== this.options.router.gatewayAddress) {
      throw new UpstreamError(
        'unsupported',
        `IGD location ${location} is not on the gateway ${this.options.router.gatewayAddress}; it is ignored`,
      );
    }

    const reply = await httpExchange({
      url: location,
      method: 'GET',
      maxBodyBytes: MAX_DESCRIPTION_BYTES,
      timeoutMs: this.timeoutMs(),
      signal,
    });
    if (reply.statusCode !== 200)
      throw new UpstreamError('network', `GET ${location} returned HTTP ${reply.statusCode}`);
    const services = parseRootDescription(reply.body, location);
    if (!services.ok)
      throw new UpstreamError('malformed', `IGD description at ${location}: ${services.error}`);

    const candidates = services.value.filter(
      (service) => this.options.igdVersion === 1 || service.igdVersion === 2,
    );
    if (candidates.length === 0)
      throw new UpstreamError('unsupported', `IGD at ${location} has no WANIPConnection:2 service`);

    let lastError: unknown = null;
    for (const candidate of candidates) {
      this.service = candidate;
      try {
        return await this.externalAddress(signal);
      } catch (error) {
        lastError = error;
        this.options.logger.info(
          { err: error, controlUrl: candidate.controlUrl },
          'IGD WAN service has no external address',
        );
      }
    }
    this.service = null;
    throw lastError instanceof Error
      ? lastError
      : new UpstreamError('unsupported', 'no IGD WAN service works');
  }

  async externalAddress(signal?: AbortSignal): Promise<string> {
    const values = await this.call('GetExternalIPAddress', [], signal);
    const address = values.NewExternalIPAddress ?? '';
    if (parseIpv4(address) === null || address === '0.0.0.0') {
      throw new UpstreamError(
        'malformed',
        `IGD returned external address "${address}", expected a dotted IPv4 address`,
      );
    }
    return address;
  }

  async addPortMapping(mapping: IgdPortMapping, signal?: AbortSignal): Promise<void> {
    await this.call('AddPortMapping', mappingArguments(mapping), signal);
  }

  /** IGD v2 only: maps the requested port or another free one, and returns the port the router reserved. */
  async addAnyPortMapping(mapping: IgdPortMapping, signal?: AbortSignal): Promise<number> {
    const values = await this.call('AddAnyPortMapping', mappingArguments(mapping), signal);
    const port = parsePort(values.NewReservedPort);
    if (port === null) {
      throw new UpstreamError(
        'malformed',
        `AddAnyPortMapping returned NewReservedPort "${values.NewReservedPort}"`,
      );
    }
    return port;
  }

  async deletePortMapping(
    target: { protocol: MappingProtocol; externalPort: number },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.call('DeletePortMapping', entryArguments(target), signal);
  }

  /** Returns the mapping on an external port, or null when the router has none (714 NoSuchEntryInArray). */
  async getSpecificPortMappingEntry(
    target: { protocol: MappingProtocol; externalPort: number },
    signal?: AbortSignal,
  ): Promise<IgdMappingEntry | null> {
    let values: Record<string, string>;
    try {
      values = await this.call('GetSpecificPortMappingEntry', entryArguments(target), signal);
    } catch (error) {
      if (error instanceof UpstreamError && error.resultCode === UpnpErrorCode.NoSuchEntryInArray)
        return null;
      throw error;
    }
    const internalPort = parsePort(values.NewInternalPort);
    const leaseSeconds = Number(values.NewLeaseDuration ?? '');
    if (internalPort === null || !/^\d{1,10}$/.test(values.NewLeaseDuration ?? '')) {
      throw new UpstreamError(
        'malformed',
        `GetSpecificPortMappingEntry returned internal port "${values.NewInternalPort}" and lease "${values.NewLeaseDuration}"`,
      );
    }
    return {
      internalPort,
      internalClient: values.NewInternalClient ?? '',
      enabled: values.NewEnabled === '1' || values.NewEnabled?.toLowerCase() === 'true',
      leaseSeconds,
      description: values.NewPortMappingDescription ?? '',
    };
  }

  private async call(
    action: string,
    args: ReadonlyArray<readonly [string, string]>,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, string>> {
    const service = this.service;
    if (service === null)
      throw new UpstreamError('unsupported', `IGD ${action} called before connect()`);

    const reply = await httpExchange({
      url: service.controlUrl,
      method: 'POST',
      headers: {
        'Content-Type': 'text/xml; charset="utf-8"',
        SOAPAction: soapActionHeader(service.serviceType, action),
      },
      body: buildSoapRequest(service.serviceType, action, args),
      maxBodyBytes: MAX_SOAP_RESPONSE_BYTES,
      timeoutMs: this.timeoutMs(),
      signal,
    });
    const response = parseSoapResponse(reply.body, action);
    if (!response.ok) {
      throw new UpstreamError(
        'malformed',
        `IGD ${action} returned HTTP ${reply.statusCode} with an invalid body: ${response.error}`,
      );
    }
    if (response.value.kind === 'fault') {
      const { errorCode, errorDescription } = response.value.fault;
      const code = errorCode === UpnpErrorCode.InvalidAction ? 'unsupported' : 'rejected';
      throw new UpstreamError(
        code,
        `IGD ${action} failed: ${upnpErrorName(errorCode)} ${errorDescription}`.trim(),
        errorCode,
      );
    }
    if (reply.statusCode !== 200) {
      throw new UpstreamError(
        'malformed',
        `IGD ${action} returned HTTP ${reply.statusCode} without a SOAP fault`,
      );
    }
    return response.value.values;
  }

  private timeoutMs(): number {
    return this.options.timeoutMs ?? DEFAULT_IGD_TIMEOUT_MS;
  }
}

function entryArguments(target: {
  protocol: MappingProtocol;
  externalPort: number;
}): Array<[string, string]> {
  return [
    ['NewRemoteHost', ''],
    ['NewExternalPort', String(target.externalPort)],
    ['NewProtocol', igdProtocolName(target.protocol)],
  ];
}

function mappingArguments(mapping: IgdPortMapping): Array<[string, string]> {
  return [
    ...entryArguments(mapping),
    ['NewInternalPort', String(mapping.internalPort)],
    ['NewInternalClient', mapping.internalClient],
    ['NewEnabled', '1'],
    ['NewPortMappingDescription', mapping.description],
    ['NewLeaseDuration', String(mapping.leaseSeconds)],
  ];
}

function parsePort(text: string | undefined): number | null {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}
