import type {
  Mapping,
  MappingRelease,
  MappingRequest,
  MappingResult,
  MappingService,
} from '../mapping/mapping-service.js';
import type { PortControlClock } from './warn-limiter.js';

/**
 * A MappingService kept in memory, granting and denying from a fixed table.
 * It is a stand-in for the broker core (which needs dom0 and a home router) in
 * the NAT-PMP/PCP tests and their namespace lab; it asks nobody and
 * installs no rules.
 */

export interface InMemoryClient {
  address: string;
  qube: string;
  /** False: the qube has NAT traversal disabled (the server stays silent). */
  enabled: boolean;
  /** Internal ports whose requests are rejected as if dom0 had denied them. */
  deniedInternalPorts?: number[];
}

export interface InMemoryMappingTable {
  externalAddress: string;
  clients: InMemoryClient[];
}

export class InMemoryMappingService implements MappingService {
  private readonly mappings: Mapping[] = [];
  private readonly startMs: number;
  private nextId = 1;

  constructor(
    private readonly table: InMemoryMappingTable,
    private readonly clock: PortControlClock,
  ) {
    this.startMs = clock.nowMs();
  }

  async externalAddress(): Promise<string> {
    return this.table.externalAddress;
  }

  epochSeconds(): number {
    return Math.floor((this.clock.nowMs() - this.startMs) / 1000);
  }

  isEnabledClient(clientAddress: string): boolean {
    return this.client(clientAddress)?.enabled === true;
  }

  list(clientAddress?: string): Mapping[] {
    this.expire();
    return this.mappings
      .filter((mapping) => clientAddress === undefined || mapping.internalAddress === clientAddress)
      .map((mapping) => ({ ...mapping }));
  }

  async request(request: MappingRequest): Promise<MappingResult> {
    this.expire();
    const client = this.client(request.clientAddress);
    if (client === undefined || !client.enabled) {
      return {
        code: 'unknown-client',
        message: `${request.clientAddress} is not a qube with NAT traversal enabled`,
      };
    }
    if (request.internalAddress !== request.clientAddress) {
      return { code: 'address-mismatch', message: 'a qube may only map to its own address' };
    }
    if (client.deniedInternalPorts?.includes(request.internalPort) === true) {
      return {
        code: 'not-authorized',
        message: `port ${request.internalPort} denied by the test table`,
      };
    }

    const expiresAtUnixMs = this.clock.nowMs() + request.lifetimeSeconds * 1000;
    const existing = this.mappings.find(
      (mapping) =>
        mapping.internalAddress === request.clientAddress &&
        mapping.protocol === request.protocol &&
        mapping.internalPort === request.internalPort,
    );
    if (existing !== undefined) {
      existing.lifetimeSeconds = request.lifetimeSeconds;
      existing.expiresAtUnixMs = expiresAtUnixMs;
      return { code: 'granted', mapping: { ...existing } };
    }

    const externalPort = this.freeExternalPort(request);
    if (externalPort === null) {
      return request.requireSuggestedPort
        ? { code: 'conflict', message: `external port ${request.suggestedExternalPort} is taken` }
        : { code: 'no-resources', message: 'no external port is free' };
    }
    const mapping: Mapping = {
      id: String(this.nextId++),
      qube: client.qube,
      protocol: request.protocol,
      internalAddress: request.clientAddress,
      internalPort: request.internalPort,
      externalAddress: this.table.externalAddress,
      externalPort,
      lifetimeSeconds: request.lifetimeSeconds,
      expiresAtUnixMs,
      via: request.via,
      description: request.description,
    };
    this.mappings.push(mapping);
    return { code: 'granted', mapping: { ...mapping } };
  }

  async release(release: MappingRelease): Promise<number> {
    let removed = 0;
    for (let index = this.mappings.length - 1; index >= 0; index -= 1) {
      const mapping = this.mappings[index];
      if (
        mapping !== undefined &&
        mapping.internalAddress === release.clientAddress &&
        mapping.protocol === release.protocol &&
        (release.internalPort === undefined || mapping.internalPort === release.internalPort) &&
        (release.externalPort === undefined || mapping.externalPort === release.externalPort)
      ) {
        this.mappings.splice(index, 1);
        removed += 1;
      }
    }
    return removed;
  }

  private client(address: string): InMemoryClient | undefined {
    return this.table.clients.find((client) => client.address === address);
  }

  private expire(): void {
    const nowMs = this.clock.nowMs();
    for (let index = this.mappings.length - 1; index >= 0; index -= 1) {
      if ((this.mappings[index]?.expiresAtUnixMs ?? 0) <= nowMs) {
        this.mappings.splice(index, 1);
      }
    }
  }

  private freeExternalPort(request: MappingRequest): number | null {
    const taken = (port: number) =>
      this.mappings.some(
        (mapping) => mapping.protocol === request.protocol && mapping.externalPort === port,
      );
    const first = request.suggestedExternalPort ?? request.internalPort;
    if (!taken(first)) {
      return first;
    }
    if (request.requireSuggestedPort) {
      return null;
    }
    for (let port = 1024; port <= 65535; port += 1) {
      if (!taken(port)) {
        return port;
      }
    }
    return null;
  }
}
