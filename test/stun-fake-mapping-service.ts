import type {
  Mapping,
  MappingRequest,
  MappingResult,
  MappingService,
} from '../broker/mapping/mapping-service.js';

export interface StunFakeMappingTable {
  /** Client addresses with NAT traversal enabled. */
  enabledClients: string[];
  /** Every granted mapping gets this external address and port. */
  externalAddress: string;
  externalPort: number;
  /** Client source ports whose requests are refused as if dom0 had denied them. */
  deniedClientPorts?: number[];
  /** Client source ports whose requests fail as if the home router were unreachable. */
  failedClientPorts?: number[];
}

/**
 * A MappingService that grants one fixed mapping to every request of an
 * enabled client. It replaces the broker core, which needs dom0 and a
 * home router that these tests do not run. `holdRequests` keeps requests
 * waiting, like a dom0 prompt, until `releaseHeldRequests` is called.
 */
export class StunFakeMappingService implements MappingService {
  readonly requests: MappingRequest[] = [];
  /** Addresses passed to isEnabledClient, in call order. */
  readonly enabledChecks: string[] = [];
  holdRequests = false;
  private readonly held: Array<() => void> = [];

  constructor(private readonly table: StunFakeMappingTable) {}

  async externalAddress(): Promise<string> {
    return this.table.externalAddress;
  }

  epochSeconds(): number {
    return 0;
  }

  isEnabledClient(clientAddress: string): boolean {
    this.enabledChecks.push(clientAddress);
    return this.table.enabledClients.includes(clientAddress);
  }

  list(): Mapping[] {
    return [];
  }

  async release(): Promise<number> {
    return 0;
  }

  releaseHeldRequests(): void {
    for (const resume of this.held.splice(0)) {
      resume();
    }
  }

  async request(request: MappingRequest): Promise<MappingResult> {
    this.requests.push(request);
    if (this.holdRequests) {
      await new Promise<void>((resolve) => this.held.push(resolve));
    }

    if (!this.isEnabledClient(request.clientAddress)) {
      return { code: 'unknown-client', message: `${request.clientAddress} is not enabled` };
    }
    if (this.table.deniedClientPorts?.includes(request.internalPort) === true) {
      return {
        code: 'not-authorized',
        message: `port ${request.internalPort} denied by the test table`,
      };
    }
    if (this.table.failedClientPorts?.includes(request.internalPort) === true) {
      return { code: 'failed', message: 'home router unreachable (test table)' };
    }
    return {
      code: 'granted',
      mapping: {
        id: `stun-${this.requests.length}`,
        qube: 'work',
        protocol: request.protocol,
        internalAddress: request.internalAddress,
        internalPort: request.internalPort,
        externalAddress: this.table.externalAddress,
        externalPort: this.table.externalPort,
        lifetimeSeconds: request.lifetimeSeconds,
        expiresAtUnixMs: Date.now() + request.lifetimeSeconds * 1000,
        via: request.via,
        description: request.description,
      },
    };
  }
}
