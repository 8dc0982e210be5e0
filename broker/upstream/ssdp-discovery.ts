import { createSocket } from 'node:dgram';
import type { Logger } from '../../rpc/logger.js';
import type { ParseResult, RouterInfo } from './upstream-types.js';
import { parsed, parseError } from './upstream-types.js';

/**
 * SSDP discovery of the home router's IGD (UPnP Device Architecture 1.1
 * section 1.3). It runs in sys-net, on the uplink: multicast from sys-nat
 * never reaches the LAN. sys-net's input chain must accept the unicast
 * replies (UDP from source port 1900), because conntrack does not tie them
 * to the multicast request.
 */

export const SSDP_MULTICAST_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;
export const MAX_SSDP_REPLY_BYTES = 4096;

/** Search targets, best first: an IGD v2 replies with a v2 description, so the v2 search goes first. */
export const IGD_SEARCH_TARGETS = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
] as const;

export interface SsdpReply {
  location: string;
  searchTarget: string;
  usn: string;
}

/** Builds an M-SEARCH request (UPnP DA 1.1 section 1.3.2). MX is in seconds, 1 to 5. */
export function buildMSearch(searchTarget: string, mxSeconds: number): string {
  return (
    'M-SEARCH * HTTP/1.1\r\n' +
    `HOST: ${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}\r\n` +
    'MAN: "ssdp:discover"\r\n' +
    `MX: ${mxSeconds}\r\n` +
    `ST: ${searchTarget}\r\n\r\n`
  );
}

/** Parses a search reply: status line `HTTP/1.1 200 OK`, then headers with LOCATION, ST and USN. */
export function parseSsdpReply(text: string): ParseResult<SsdpReply> {
  if (text.length > MAX_SSDP_REPLY_BYTES)
    return parseError(`SSDP reply of ${text.length} characters is too long`);
  const lines = text.split('\r\n');
  const status = lines[0] ?? '';
  if (!/^HTTP\/1\.[01] 200\b/i.test(status))
    return parseError(`SSDP reply has status line "${status.slice(0, 40)}"`);

  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0)
      return parseError(`SSDP reply has an invalid header line "${line.slice(0, 40)}"`);
    headers.set(line.slice(0, colon).trim().toUpperCase(), line.slice(colon + 1).trim());
  }

  const location = headers.get('LOCATION');
  const searchTarget = headers.get('ST');
  if (location === undefined || searchTarget === undefined)
    return parseError('SSDP reply lacks LOCATION or ST');
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return parseError(`SSDP reply has LOCATION "${location.slice(0, 80)}", which is not a URL`);
  }
  if (url.protocol !== 'http:')
    return parseError(`SSDP reply has LOCATION "${location.slice(0, 80)}", not an http: URL`);
  return parsed({ location: url.href, searchTarget, usn: headers.get('USN') ?? '' });
}

export interface DiscoverRouterOptions {
  /** sys-net's default gateway on the uplink. Only its replies count. */
  gatewayAddress: string;
  /** sys-net's address on the uplink; the search is sent from it. */
  lanAddress: string;
  /** How long to collect replies. Default 2000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Searches for the gateway's IGD and returns the report for the broker.
 * igdLocation is null when the gateway sent no valid reply in time.
 */
export async function discoverRouter(options: DiscoverRouterOptions): Promise<RouterInfo> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const mxSeconds = Math.max(1, Math.min(5, Math.floor(timeoutMs / 1000)));
  const replies = new Map<string, SsdpReply>();
  const socket = createSocket('udp4');

  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, options.lanAddress, () => resolve());
    });
    socket.setMulticastInterface(options.lanAddress);

    const finished = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      options.signal?.addEventListener('abort', done, { once: true });
      socket.on('message', (datagram, sender) => {
        if (sender.address !== options.gatewayAddress) {
          options.logger.debug(
            { sender: sender.address },
            'ignored an SSDP reply from a host that is not the gateway',
          );
          return;
        }
        const reply = parseSsdpReply(
          datagram.subarray(0, MAX_SSDP_REPLY_BYTES + 1).toString('latin1'),
        );
        if (!reply.ok) {
          options.logger.warn(
            { sender: sender.address, error: reply.error },
            'ignored an invalid SSDP reply',
          );
          return;
        }
        replies.set(reply.value.searchTarget, reply.value);
        if (reply.value.searchTarget === IGD_SEARCH_TARGETS[0]) done();
      });
    });

    for (const target of IGD_SEARCH_TARGETS) {
      socket.send(buildMSearch(target, mxSeconds), SSDP_PORT, SSDP_MULTICAST_ADDRESS);
    }
    await finished;
  } finally {
    socket.close();
  }

  const best = IGD_SEARCH_TARGETS.map((target) => replies.get(target)).find(
    (reply) => reply !== undefined,
  );
  options.logger.info(
    { gateway: options.gatewayAddress, location: best?.location ?? null },
    'router discovery finished',
  );
  return {
    gatewayAddress: options.gatewayAddress,
    lanAddress: options.lanAddress,
    igdLocation: best?.location ?? null,
  };
}
