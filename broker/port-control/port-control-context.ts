import type { Logger } from '../../rpc/logger.js';
import type { MappingService } from '../mapping/mapping-service.js';
import type { InFlightRequests } from './in-flight-requests.js';
import type { LifetimeBounds } from './lifetime-policy.js';
import type { WarnLimiter } from './warn-limiter.js';

/** Dependencies that the NAT-PMP and PCP request handlers share with the socket layer. */
export interface PortControlContext {
  mappingService: MappingService;
  logger: Logger;
  warnLimiter: WarnLimiter;
  lifetimeBounds: LifetimeBounds;
  inFlight: InFlightRequests;
}

/** One protocol's request handler: returns the reply datagram, or null for no reply. */
export interface PortControlHandler {
  handle(
    packet: Uint8Array,
    clientAddress: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null>;
}
