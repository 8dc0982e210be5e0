import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from '../../rpc/logger.js';
import type { MappingResult, MappingService } from '../mapping/mapping-service.js';
import { InFlightRequests } from '../port-control/in-flight-requests.js';
import { type PortControlClock, systemClock, WarnLimiter } from '../port-control/warn-limiter.js';
import { buildBindingSuccessResponse, buildStunErrorResponse } from './stun-builder.js';
import type { StunMessage } from './stun-codec.js';
import { StunErrorCode } from './stun-constants.js';
import { classifyStunDatagram } from './stun-request-classifier.js';
import { StunTransactionCache, transactionKey } from './stun-transaction-cache.js';

export const STUN_DEFAULT_ADDRESS = '0.0.0.0';
/** 3478 is the IANA-registered STUN port (RFC 8489). 19302 is the port of Google's public STUN servers, which WebRTC applications often hard-code. */
export const STUN_DEFAULT_PORTS: readonly number[] = [3478, 19302];
/**
 * Lease asked for a STUN mapping, in seconds. Each Binding request from the
 * same source port renews it, so clients that repeat requests to keep a NAT
 * binding open keep their mapping.
 */
export const STUN_DEFAULT_MAPPING_LIFETIME_SECONDS = 300;
export const STUN_DEFAULT_SOFTWARE = 'qubes-nat-broker';

export interface StunServerOptions {
  mappingService: MappingService;
  logger: Logger;
  /** Clock for the warning rate limit and the response cache; default the system clock. */
  clock?: PortControlClock;
  /**
   * Address to bind on every port; default 0.0.0.0. Replies leave from the
   * socket that received the request, and the netvm's conntrack rewrites
   * their source back to the address the qube sent to.
   */
  address?: string;
  /** UDP ports; default 3478 and 19302. 0 picks a free port (tests). */
  ports?: readonly number[];
  /**
   * Lease of the mapping asked for per Binding request, in seconds; default 300.
   * NOTE: a client that stops sending Binding requests (a WebRTC call after
   * candidate gathering, for one) loses its mapping after this lease unless
   * the broker core extends leases that carry traffic.
   */
  mappingLifetimeSeconds?: number;
  /** SOFTWARE attribute of responses; default 'qubes-nat-broker'. */
  software?: string;
  /** How long a final response is resent for retransmissions; default 40 000 ms. */
  responseCacheMs?: number;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
}

/**
 * The qube-facing STUN server (RFC 8489 Binding, UDP). For a Binding
 * request from a qube with NAT traversal enabled, the server requests a UDP
 * mapping of the qube's source port from the broker core and returns that
 * mapping's external address and port, so the qube learns the address that
 * peers on the internet reach it at. The reply waits until the core answers, which can take a
 * dom0 prompt; retransmissions meanwhile are dropped, and afterwards they
 * get the cached response. Datagrams from other sources get no reply.
 */
export class StunServer {
  private sockets: Socket[] = [];
  private readonly shutdown = new AbortController();
  private readonly logger: Logger;
  private readonly warnLimiter: WarnLimiter;
  private readonly inFlight = new InFlightRequests();
  private readonly cache: StunTransactionCache;
  private readonly software: string;
  private readonly mappingLifetimeSeconds: number;

  constructor(private readonly options: StunServerOptions) {
    const lifetimeSeconds = options.mappingLifetimeSeconds ?? STUN_DEFAULT_MAPPING_LIFETIME_SECONDS;
    if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds < 1) {
      throw new Error(
        `invalid STUN mappingLifetimeSeconds ${lifetimeSeconds}: use a whole number of seconds, 1 or more`,
      );
    }
    const clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.warnLimiter = new WarnLimiter(options.logger, clock);
    this.cache = new StunTransactionCache(clock, options.responseCacheMs ?? 40_000);
    this.software = options.software ?? STUN_DEFAULT_SOFTWARE;
    this.mappingLifetimeSeconds = lifetimeSeconds;
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /** Binds one socket per port; resolves with the bound addresses. */
  async start(): Promise<Array<{ address: string; port: number }>> {
    if (this.sockets.length > 0) {
      throw new Error('STUN server is already started');
    }
    if (this.options.signal?.aborted === true) {
      throw new Error('STUN server was aborted before start');
    }

    const address = this.options.address ?? STUN_DEFAULT_ADDRESS;
    const ports = this.options.ports ?? STUN_DEFAULT_PORTS;
    const bound: Array<{ address: string; port: number }> = [];
    try {
      for (const port of ports) {
        bound.push(await this.bindOne(address, port));
      }
    } catch (error) {
      await this.closeSockets();
      throw error;
    }

    this.logger.info({ listening: bound }, 'STUN server listening');
    return bound;
  }

  /** Closes the sockets; requests still waiting for the broker core get no reply. */
  async stop(): Promise<void> {
    if (this.sockets.length === 0) {
      return;
    }
    this.shutdown.abort();
    await this.closeSockets();
    this.logger.info('STUN server stopped');
  }

  private async bindOne(address: string, port: number): Promise<{ address: string; port: number }> {
    const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4' });
    this.sockets.push(socket);
    socket.on('message', (message, remote) => this.onMessage(socket, message, remote));
    socket.on('error', (error) => this.logger.error({ err: error }, 'STUN socket error'));

    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address, port }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const local = socket.address();
    return { address: local.address, port: local.port };
  }

  private async closeSockets(): Promise<void> {
    const sockets = this.sockets;
    this.sockets = [];
    await Promise.all(
      sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
    );
  }

  private onMessage(socket: Socket, message: Buffer, remote: RemoteInfo): void {
    const client = remote.address;
    if (!this.options.mappingService.isEnabledClient(client)) {
      this.logger.debug(
        { client, bytes: message.length },
        'ignored STUN datagram from a client without NAT traversal',
      );
      return;
    }

    const bytes = new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
    const decision = classifyStunDatagram(bytes, this.software);
    switch (decision.kind) {
      case 'drop':
        if (decision.warn) {
          this.warnLimiter.warn({ client, reason: decision.reason }, decision.message);
        } else {
          this.logger.debug({ client, reason: decision.reason }, decision.message);
        }
        return;
      case 'reply':
        this.warnLimiter.warn({ client, code: decision.code }, decision.message);
        this.send(socket, decision.response, remote);
        return;
      case 'indication':
        this.logger.debug({ client }, 'STUN Binding indication received');
        return;
      case 'binding':
        this.answerBinding(socket, decision.request, remote);
        return;
    }
  }

  private answerBinding(socket: Socket, request: StunMessage, remote: RemoteInfo): void {
    const client = remote.address;
    const key = transactionKey(client, remote.port, request.magicCookie, request.transactionId);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.logger.debug({ client, clientPort: remote.port }, 'resent cached STUN response');
      this.send(socket, cached, remote);
      return;
    }

    const started = this.inFlight.begin(client, key);
    if (started === 'duplicate') {
      this.logger.debug(
        { client, clientPort: remote.port },
        'dropped STUN retransmission of a request still waiting for its mapping',
      );
      return;
    }
    if (started === 'client-limit') {
      this.warnLimiter.warn(
        { client, clientPort: remote.port },
        'dropped STUN Binding request: too many requests of this client wait for a mapping',
      );
      return;
    }

    this.requestMapping(request, remote)
      .then((response) => {
        if (response !== null && !this.shutdown.signal.aborted) {
          this.cache.set(key, response);
          this.send(socket, response, remote);
        }
      })
      .catch((error: unknown) => {
        this.logger.error({ client, err: error }, 'STUN Binding request handling failed');
      })
      .finally(() => this.inFlight.end(client, key));
  }

  /** Returns the response to send, or null for silence. */
  private async requestMapping(
    request: StunMessage,
    remote: RemoteInfo,
  ): Promise<Uint8Array | null> {
    const client = remote.address;
    let result: MappingResult;
    try {
      result = await this.options.mappingService.request(
        {
          clientAddress: client,
          protocol: 'udp',
          internalAddress: client,
          internalPort: remote.port,
          suggestedExternalPort: null,
          requireSuggestedPort: false,
          lifetimeSeconds: this.mappingLifetimeSeconds,
          via: 'stun',
          description: 'STUN binding',
        },
        { signal: this.shutdown.signal },
      );
    } catch (error) {
      if (this.shutdown.signal.aborted) {
        return null;
      }
      this.logger.error(
        { client, clientPort: remote.port, err: error },
        'STUN mapping request failed in the broker core',
      );
      return buildStunErrorResponse(request, StunErrorCode.serverError, {
        software: this.software,
      });
    }

    return this.responseFor(request, remote, result);
  }

  private responseFor(
    request: StunMessage,
    remote: RemoteInfo,
    result: MappingResult,
  ): Uint8Array | null {
    const client = remote.address;
    const fields = { client, clientPort: remote.port, rfc3489: request.isRfc3489 };
    if (result.code === 'granted') {
      const mapping = result.mapping;
      const response = buildBindingSuccessResponse(
        request,
        mapping.externalAddress,
        mapping.externalPort,
        this.software,
      );
      if (response === null) {
        this.logger.error(
          { ...fields, externalAddress: mapping.externalAddress },
          'STUN mapping has an external address that is no IP address',
        );
        return buildStunErrorResponse(request, StunErrorCode.serverError, {
          software: this.software,
        });
      }
      this.logger.info(
        {
          ...fields,
          qube: mapping.qube,
          externalAddress: mapping.externalAddress,
          externalPort: mapping.externalPort,
          lifetimeSeconds: mapping.lifetimeSeconds,
        },
        'STUN mapping granted',
      );
      return response;
    }

    if (result.code === 'unknown-client') {
      this.logger.debug(
        { ...fields, reason: result.message },
        'STUN client is not enabled; no reply',
      );
      return null;
    }

    const code =
      result.code === 'not-authorized'
        ? StunErrorCode.forbidden
        : result.code === 'no-resources'
          ? StunErrorCode.insufficientCapacity
          : StunErrorCode.serverError;
    const log =
      result.code === 'failed'
        ? this.logger.error.bind(this.logger)
        : this.logger.info.bind(this.logger);
    log({ ...fields, result: result.code, code, reason: result.message }, 'STUN mapping denied');
    return buildStunErrorResponse(request, code, { software: this.software });
  }

  private send(socket: Socket, response: Uint8Array, remote: RemoteInfo): void {
    if (!this.sockets.includes(socket)) {
      return;
    }
    socket.send(response, remote.port, remote.address, (error) => {
      if (error) {
        this.logger.error({ client: remote.address, err: error }, 'sending STUN response failed');
      }
    });
  }
}
