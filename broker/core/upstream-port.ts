import type { UpstreamMapRequest, UpstreamMapResult } from '../upstream/upstream-mapper.js';
import type { MappingProtocol } from '../upstream/upstream-types.js';

/** The part of the upstream mapper that the broker core uses. */
export interface UpstreamPort {
  map(request: UpstreamMapRequest): Promise<UpstreamMapResult>;
  unmap(target: { protocol: MappingProtocol; internalPort: number }): Promise<void>;
  externalAddress(): string | null;
}
