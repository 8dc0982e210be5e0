import { type Advertisement, type DeviceTree, listAdvertisements } from '../igd/device-tree.js';
import { SERVER_HEADER } from '../igd/igd-constants.js';

/** CACHE-CONTROL max-age of search responses, in seconds (UDA 1.1 asks for at least 1800). */
export const SEARCH_RESPONSE_MAX_AGE_SECONDS = 1800;

/**
 * Picks the advertisements that answer a search target: all of them for
 * `ssdp:all`, otherwise those whose type or UDN equals the target exactly.
 * Each tree lists its own version of every type, so a search for
 * InternetGatewayDevice:1 gets the v1 tree with ST ...:1 and a search for
 * :2 the v2 tree with ST ...:2.
 */
export function selectAdvertisements(
  trees: readonly DeviceTree[],
  searchTarget: string,
): Advertisement[] {
  const all = trees.flatMap(listAdvertisements);
  if (searchTarget === 'ssdp:all') return all;
  return all.filter((advertisement) => advertisement.searchTarget === searchTarget);
}

export interface SearchResponseFields {
  advertisement: Advertisement;
  /** `http://HOST:PORT` without a trailing slash. */
  locationOrigin: string;
  /** BOOTID.UPNP.ORG: changes on every start of the broker. */
  bootId: number;
  date: Date;
}

/** Builds one search response datagram (UPnP Device Architecture 1.1 section 1.3.3). */
export function buildSearchResponse(fields: SearchResponseFields): string {
  const lines = [
    'HTTP/1.1 200 OK',
    `CACHE-CONTROL: max-age=${SEARCH_RESPONSE_MAX_AGE_SECONDS}`,
    `DATE: ${fields.date.toUTCString()}`,
    'EXT:',
    `LOCATION: ${fields.locationOrigin}${fields.advertisement.descriptionPath}`,
    `SERVER: ${SERVER_HEADER}`,
    `ST: ${fields.advertisement.searchTarget}`,
    `USN: ${fields.advertisement.usn}`,
    `BOOTID.UPNP.ORG: ${fields.bootId}`,
    'CONFIGID.UPNP.ORG: 1',
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}
