import type {
  Mapping,
  MappingRelease,
  MappingRequest,
  MappingResult,
  MappingService,
} from '../broker/mapping/mapping-service.js';

export interface FakeMappingTable {
  /** Client addresses with NAT traversal enabled. */
  enabledClients: string[];
  /** Internal ports dom0 refuses (not-authorized). */
  deniedInternalPorts?: number[];
  /** External ports that another qube already holds (conflict). */
  takenExternalPorts?: number[];
  externalAddress?: string;
  nowMs?: () => number;
}

/**
 * An in-memory MappingService that grants and denies from a fixed table. It
 * replaces the broker core, which needs dom0 (for the policy prompt) and
 * a home router, neither of which these tests run.
 */
export class FakeMappingService implements MappingService {
  readonly mappings: Mapping[] = [];
  readonly requests: MappingRequest[] = [];
  private nextId = 1;
  private readonly nowMs: () => number;

  constructor(private readonly table: FakeMappingTable) {
    this.nowMs = table.nowMs ?? Date.now;
  }

  async externalAddress(): Promise<string> {
    return this.table.externalAddress ?? '203.0.113.7';
  }

  epochSeconds(): number {
    return 42;
  }

  async request(request: MappingRequest): Promise<MappingResult> {
    this.requests.push(request);
    if (!this.isEnabledClient(request.clientAddress)) {
      return { code: 'unknown-client', message: `${request.clientAddress} is not enabled` };
    }
    if (request.internalAddress !== request.clientAddress) {
      return { code: 'address-mismatch', message: `${request.internalAddress} is not the client` };
    }
    if (this.table.deniedInternalPorts?.includes(request.internalPort)) {
      return { code: 'not-authorized', message: `port ${request.internalPort} denied by policy` };
    }

    const taken = (port: number) =>
      this.table.takenExternalPorts?.includes(port) === true ||
      this.mappings.some(
        (mapping) =>
          mapping.externalPort === port &&
          mapping.protocol === request.protocol &&
          mapping.internalAddress !== request.clientAddress,
      );

    let externalPort = request.suggestedExternalPort ?? request.internalPort;
    if (taken(externalPort)) {
      if (request.requireSuggestedPort) {
        return { code: 'conflict', message: `external port ${externalPort} is taken` };
      }
      let candidate = 40000;
      while (taken(candidate) && candidate < 40100) candidate += 1;
      if (taken(candidate)) return { code: 'no-resources', message: 'no free port' };
      externalPort = candidate;
    }

    const existing = this.mappings.find(
      (mapping) =>
        mapping.externalPort === externalPort &&
        mapping.protocol === request.protocol &&
        mapping.internalAddress === request.clientAddress,
    );
    const mapping: Mapping = {
      id: existing?.id ?? String(this.nextId++),
      qube: 'work',
      protocol: request.protocol,
      internalAddress: request.internalAddress,
      internalPort: request.internalPort,
      externalAddress: await this.externalAddress(),
      externalPort,
      lifetimeSeconds: request.lifetimeSeconds,
      expiresAtUnixMs: this.nowMs() + request.lifetimeSeconds * 1000,
      via: request.via,
      description: request.description,
    };
    if (existing === undefined) {
      this.mappings.push(mapping);
    } else {
      this.mappings.splice(this.mappings.indexOf(existing), 1, mapping);
    }
    return { code: 'granted', mapping };
  }

  async release(release: MappingRelease): Promise<number> {
    const before = this.mappings.length;
    const keep = this.mappings.filter(
      (mapping) =>
        !(
          mapping.internalAddress === release.clientAddress &&
          mapping.protocol === release.protocol &&
          (release.externalPort === undefined || mapping.externalPort === release.externalPort) &&
          (release.internalPort === undefined || mapping.internalPort === release.internalPort)
        ),
    );
    this.mappings.splice(0, this.mappings.length, ...keep);
    return before - keep.length;
  }

  list(clientAddress?: string): Mapping[] {
    return this.mappings.filter(
      (mapping) => clientAddress === undefined || mapping.internalAddress === clientAddress,
    );
  }

  isEnabledClient(clientAddress: string): boolean {
    return this.table.enabledClients.includes(clientAddress);
  }
}
