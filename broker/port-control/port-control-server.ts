import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from '../../rpc/logger.js';
import type { MappingService } from '../mapping/mapping-service.js';
import { NatPmpHandler } from '../natpmp/natpmp-handler.js';
import { PcpHandler } from '../pcp/pcp-handler.js';
import { InFlightRequests } from './in-flight-requests.js';
import {
  DEFAULT_LIFETIME_BOUNDS,
  type LifetimeBounds,
  validateLifetimeBounds,
} from './lifetime-policy.js';
import type { PortControlContext } from './port-control-context.js';
import { type PortControlClock, systemClock, WarnLimiter } from './warn-limiter.js';

export const PORT_CONTROL_DEFAULT_ADDRESS = '0.0.0.0';
/** NAT-PMP and PCP share the server port 5351 (RFC 6886 §3.1, RFC 6887 §19.1). */
export const PORT_CONTROL_DEFAULT_PORT = 5351;

export interface PortControlServerOptions {
  mappingService: MappingService;
  logger: Logger;
  /** Clock for the warning rate limit; default the system clock. */
  clock?: PortControlClock;
  /**
   * Address to bind; default 0.0.0.0. Replies go out of the same socket
   * and the kernel picks their source address by route. That is the right
   * one in a Qubes netvm setup: the netvm DNATs a qube's request for its
   * gateway address to the broker, and conntrack rewrites the reply's
   * source back to the gateway address, which libnatpmp checks. On a host
   * with several addresses on the qubes' link, bind one server per address
   * instead, because Node's dgram cannot choose a reply source per packet.
   */
  address?: string;
  /** UDP port; default 5351. 0 picks a free port (tests). */
  port?: number;
  lifetimeBounds?: LifetimeBounds;
  /**
   * When false, only NAT-PMP is served and every version other than 0 gets
   * the NAT-PMP "Unsupported Version" reply (RFC 6886 §3.5). Default true.
   */
  enablePcp?: boolean;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
}

/**
 * The qube-facing UDP 5351 server. One socket serves NAT-PMP and PCP; the
 * first byte (version) selects the protocol: 0 is NAT-PMP, anything else
 * goes to PCP, which serves version 2 and answers UNSUPP_VERSION to the rest.
 * Datagrams from addresses that are no qube with NAT traversal enabled get
 * no reply at all, so such qubes see no change.
 */
export class PortControlServer {
  private socket: Socket | null = null;
  private readonly shutdown = new AbortController();
  private readonly context: PortControlContext;
  private readonly natPmp: NatPmpHandler;
  private readonly pcp: PcpHandler;

  constructor(private readonly options: PortControlServerOptions) {
    const lifetimeBounds = options.lifetimeBounds ?? DEFAULT_LIFETIME_BOUNDS;
    const problems = validateLifetimeBounds(lifetimeBounds);
    if (problems.length > 0) {
      throw new Error(`invalid port control lifetime bounds: ${problems.join('; ')}`);
    }

    const logger = options.logger;
    this.context = {
      mappingService: options.mappingService,
      logger,
      warnLimiter: new WarnLimiter(logger, options.clock ?? systemClock),
      lifetimeBounds,
      inFlight: new InFlightRequests(),
    };
    this.natPmp = new NatPmpHandler(this.context);
    this.pcp = new PcpHandler(this.context);
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /** Binds the socket; resolves with the bound address and port. */
  async start(): Promise<{ address: string; port: number }> {
    if (this.socket !== null) {
      throw new Error('port control server is already started');
    }
    if (this.options.signal?.aborted === true) {
      throw new Error('port control server was aborted before start');
    }

    const socket = createSocket({ type: 'udp4' });
    this.socket = socket;
    socket.on('message', (message, remote) => this.onMessage(message, remote));
    socket.on('error', (error) =>
      this.context.logger.error({ err: error }, 'port control socket error'),
    );

    const address = this.options.address ?? PORT_CONTROL_DEFAULT_ADDRESS;
    const port = this.options.port ?? PORT_CONTROL_DEFAULT_PORT;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address, port }, () => {
        socket.off('error', reject);
        resolve();
      });
    });

    const bound = socket.address();
    this.context.logger.info(
      { address: bound.address, port: bound.port, pcp: this.options.enablePcp !== false },
      'NAT-PMP/PCP server listening',
    );
    return { address: bound.address, port: bound.port };
  }

  /** Closes the socket; requests still waiting for the broker core get no reply. */
  async stop(): Promise<void> {
    const socket = this.socket;
    if (socket === null) {
      return;
    }
    this.socket = null;
    this.shutdown.abort();
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    this.context.logger.info('NAT-PMP/PCP server stopped');
  }

  private onMessage(message: Buffer, remote: RemoteInfo): void {
    const clientAddress = remote.address;
    if (!this.context.mappingService.isEnabledClient(clientAddress)) {
      this.context.logger.debug(
        { client: clientAddress, bytes: message.length },
        'ignored NAT-PMP/PCP datagram from a client without NAT traversal',
      );
      return;
    }

    const packet = new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
    const usePcp = this.options.enablePcp !== false && message.length > 0 && message[0] !== 0;
    const handler = usePcp ? this.pcp : this.natPmp;
    handler
      .handle(packet, clientAddress, this.shutdown.signal)
      .then((reply) => {
        if (reply !== null) {
          this.send(reply, remote);
        }
      })
      .catch((error: unknown) => {
        this.context.logger.error(
          { client: clientAddress, err: error },
          'NAT-PMP/PCP request handling failed',
        );
      });
  }

  private send(reply: Uint8Array, remote: RemoteInfo): void {
    const socket = this.socket;
    if (socket === null) {
      return;
    }
    socket.send(reply, remote.port, remote.address, (error) => {
      if (error) {
        this.context.logger.error(
          { client: remote.address, err: error },
          'sending NAT-PMP/PCP reply failed',
        );
      }
    });
  }
}
