import type { ParseResult } from '../upstream-types.js';
import { parsed, parseError } from '../upstream-types.js';
import { childElement, childElements, childText, parseXml, type XmlElement } from './igd-xml.js';

/**
 * Parses an IGD root device description (UPnP Device Architecture 1.1
 * section 2.3) and picks the WAN connection services that can map ports.
 */

/** Largest root description accepted; real ones are 2 to 20 KiB. */
export const MAX_DESCRIPTION_BYTES = 256 * 1024;

/** Service types in order of preference: IGD v2's WANIPConnection:2 has AddAnyPortMapping and lease 0 limits. */
export const WAN_SERVICE_TYPES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
] as const;
export type WanServiceType = (typeof WAN_SERVICE_TYPES)[number];

export interface WanService {
  serviceType: WanServiceType;
  /** 2 for WANIPConnection:2, else 1. */
  igdVersion: 1 | 2;
  /** Absolute http: URL of the SOAP control endpoint. */
  controlUrl: string;
}

/** Devices nest at most this deep; IGD uses 3 levels (IGD, WANDevice, WANConnectionDevice). */
const MAX_DEVICE_DEPTH = 8;

/**
 * Returns the WAN connection services of a description, best first. Relative
 * control URLs resolve against URLBase, or else the description's location.
 */
export function parseRootDescription(text: string, location: string): ParseResult<WanService[]> {
  let locationUrl: URL;
  try {
    locationUrl = new URL(location);
  } catch {
    return parseError(`invalid description location "${location}": expected an absolute http: URL`);
  }
  if (locationUrl.protocol !== 'http:')
    return parseError(`description location "${location}" is not an http: URL`);

  const document = parseXml(text, MAX_DESCRIPTION_BYTES);
  if (!document.ok) return document;
  const root = childElement(document.value, 'root');
  if (root === null) return parseError('IGD description has no <root> element');
  const rootDevice = childElement(root, 'device');
  if (rootDevice === null) return parseError('IGD description has no root <device>');

  const urlBase = childText(root, 'URLBase');
  const services: WanService[] = [];
  for (const service of collectServices(rootDevice, 0)) {
    const serviceType = childText(service, 'serviceType');
    const controlPath = childText(service, 'controlURL');
    if (serviceType === null || controlPath === null || controlPath === '') continue;
    const known = WAN_SERVICE_TYPES.find((type) => type === serviceType);
    if (known === undefined) continue;

    const controlUrl = resolveControlUrl(controlPath, urlBase, locationUrl);
    if (controlUrl === null) continue;
    services.push({
      serviceType: known,
      igdVersion: known.endsWith('WANIPConnection:2') ? 2 : 1,
      controlUrl,
    });
  }

  if (services.length === 0) {
    return parseError(
      'IGD description lists no WANIPConnection or WANPPPConnection service with a control URL',
    );
  }
  services.sort(
    (a, b) => WAN_SERVICE_TYPES.indexOf(a.serviceType) - WAN_SERVICE_TYPES.indexOf(b.serviceType),
  );
  return parsed(services);
}

function collectServices(device: XmlElement, depth: number): XmlElement[] {
  if (depth >= MAX_DEVICE_DEPTH) return [];
  const serviceList = childElement(device, 'serviceList');
  const own = serviceList === null ? [] : childElements(serviceList, 'service');
  const deviceList = childElement(device, 'deviceList');
  const nested = deviceList === null ? [] : childElements(deviceList, 'device');
  return [...own, ...nested.flatMap((child) => collectServices(child, depth + 1))];
}

/**
 * Resolves a control URL. The result always uses the description's host and
 * port: some routers put an unreachable address in URLBase or in an absolute
 * controlURL (for example their WAN address, or 0.0.0.0), and the broker must
 * only talk to the router it discovered. Only the path and query are taken.
 */
function resolveControlUrl(
  controlPath: string,
  urlBase: string | null,
  location: URL,
): string | null {
  let resolved: URL;
  try {
    const base = urlBase !== null && urlBase !== '' ? new URL(urlBase, location) : location;
    resolved = new URL(controlPath, base);
  } catch {
    return null;
  }
  if (resolved.protocol !== 'http:') return null;
  return `${location.origin}${resolved.pathname}${resolved.search}`;
}
