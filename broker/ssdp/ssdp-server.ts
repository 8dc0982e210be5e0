import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import type { Logger } from '../../rpc/logger.js';
import type { DeviceTree } from '../igd/device-tree.js';
import { RateLimitedWarner } from '../igd/rate-limited-warner.js';
import type { MappingService } from '../mapping/mapping-service.js';
import { parseMSearch, SSDP_MULTICAST_ADDRESS, SSDP_PORT } from './msearch-parser.js';
import { buildSearchResponse, selectAdvertisements } from './search-response.js';

export interface SsdpServerOptions {
  /** Address to bind. Default `0.0.0.0`. */
  listenAddress?: string;
  /** UDP port. Default 1900; 0 picks a free port (tests). */
  port?: number;
  /**
   * Local IPv4 addresses of interfaces on which to join 239.255.255.250.
   * Default none: in sys-nat the netvm rewrites multicast searches to unicast
   * to the broker, so no membership is needed there.
   */
  multicastInterfaces?: readonly string[];
  /** Aborting it stops the server. */
  signal?: AbortSignal;
}

export interface SsdpServerDependencies {
  mappingService: MappingService;
  logger: Logger;
  /** The IGD v1 and v2 trees, the same ones the IGD HTTP server serves. */
  deviceTrees: readonly DeviceTree[];
  /**
   * Host (IPv4 address) to put in LOCATION for a client: the address the
   * client can reach, its gateway address that the netvm redirects to the
   * broker. Null means the client gets no response.
   */
  locationHostFor: (clientAddress: string) => string | null;
  /** TCP port of the IGD HTTP server as clients reach it. */
  httpPort: number;
  /** Uniform random number in [0, 1) for the MX delay. Default Math.random. */
  random?: () => number;
  /** Current time in Unix milliseconds. Default Date.now. */
  nowMs?: () => number;
}

/**
 * Devices treat an MX above 5 as 5 (UPnP Device Architecture 1.1). The cap
 * also bounds how long a response timer lives.
 */
export const MAX_RESPONSE_DELAY_SECONDS = 5;
/** Responses waiting for their MX delay; beyond this new searches are dropped. */
const MAX_PENDING_RESPONSES = 256;

/**
 * The SSDP responder: responds to M-SEARCH requests of qubes with NAT traversal
 * enabled with the advertisements of the broker's IGD trees, unicast to the
 * sender, after a random delay of up to min(MX, 5) seconds.
 */
export class SsdpServer {
  private readonly socket: Socket;
  private readonly warner: RateLimitedWarner;
  private readonly random: () => number;
  private readonly nowMs: () => number;
  private readonly pending = new Set<NodeJS.Timeout>();
  private bootId = 0;
  private running = false;

  constructor(
    private readonly deps: SsdpServerDependencies,
    private readonly options: SsdpServerOptions = {},
  ) {
    this.random = deps.random ?? Math.random;
    this.nowMs = deps.nowMs ?? Date.now;
    this.warner = new RateLimitedWarner(deps.logger, { nowMs: this.nowMs });
    this.socket = createSocket({ type: 'udp4', reuseAddr: true });
    this.socket.on('message', (message, remote) => this.onMessage(message, remote));
    this.socket.on('error', (error) => deps.logger.error({ err: error }, 'SSDP socket error'));
  }

  /** Bound UDP port; valid after start(). */
  port(): number {
    return this.socket.address().port;
  }

  async start(): Promise<void> {
    const address = this.options.listenAddress ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind({ address, port: this.options.port ?? SSDP_PORT }, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    for (const interfaceAddress of this.options.multicastInterfaces ?? []) {
      this.socket.addMembership(SSDP_MULTICAST_ADDRESS, interfaceAddress);
    }

    this.running = true;
    this.bootId = Math.floor(this.nowMs() / 1000);
    this.options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.deps.logger.info({ address, port: this.port() }, 'SSDP responder started');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
    this.deps.logger.info('SSDP responder stopped');
  }

  private onMessage(message: Buffer, remote: RemoteInfo): void {
    const client = remote.address;
    if (!this.deps.mappingService.isEnabledClient(client)) {
      this.deps.logger.debug(
        { client },
        'SSDP datagram from a client without NAT traversal ignored',
      );
      return;
    }

    const parsed = parseMSearch(message);
    if (!parsed.ok) {
      // NOTIFY and responses from other UPnP devices are normal multicast traffic.
      if (parsed.error.code === 'not-m-search') return;
      this.warner.warn(
        { client, error: parsed.error.code, reason: parsed.error.message },
        'invalid M-SEARCH',
      );
      return;
    }

    const host = this.deps.locationHostFor(client);
    if (host === null || !isIPv4(host)) {
      this.deps.logger.debug(
        { client },
        'no LOCATION address for client, so the search gets no response',
      );
      return;
    }

    const { searchTarget, maxWaitSeconds } = parsed.request;
    const advertisements = selectAdvertisements(this.deps.deviceTrees, searchTarget);
    if (advertisements.length === 0) return;

    const datagrams = advertisements.map((advertisement) =>
      buildSearchResponse({
        advertisement,
        locationOrigin: `http://${host}:${this.deps.httpPort}`,
        bootId: this.bootId,
        date: new Date(this.nowMs()),
      }),
    );
    const waitSeconds = Math.min(maxWaitSeconds ?? 0, MAX_RESPONSE_DELAY_SECONDS);
    const delayMs = Math.floor(this.random() * waitSeconds * 1000);
    this.deps.logger.debug(
      { client, searchTarget, answers: datagrams.length, delayMs },
      'M-SEARCH',
    );
    this.schedule(delayMs, () => this.send(datagrams, remote));
  }

  private schedule(delayMs: number, action: () => void): void {
    if (this.pending.size >= MAX_PENDING_RESPONSES) {
      this.warner.warn(
        { pending: this.pending.size },
        'too many pending SSDP responses; search dropped',
      );
      return;
    }
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      action();
    }, delayMs);
    this.pending.add(timer);
  }

  private send(datagrams: readonly string[], remote: RemoteInfo): void {
    if (!this.running) return;
    for (const datagram of datagrams) {
      this.socket.send(datagram, remote.port, remote.address, (error) => {
        if (error)
          this.deps.logger.error({ err: error, client: remote.address }, 'SSDP send failed');
      });
    }
  }
}
