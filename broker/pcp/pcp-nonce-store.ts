import type { TransportProtocol } from '../../rpc/wire-types.js';

/**
 * Mapping nonces of PCP mappings (RFC 6887 §11.1): a renewal or deletion
 * must carry the nonce of the request that created the mapping, so that
 * another process on the same qube cannot take it over. Entries whose
 * mapping is gone are pruned by the handler; the size cap bounds memory if
 * mappings vanish without a PCP request to notice.
 */
export class PcpNonceStore {
  private readonly nonces = new Map<string, string>();

  constructor(private readonly maxEntries = 65_536) {}

  private static key(
    clientAddress: string,
    protocol: TransportProtocol,
    internalPort: number,
  ): string {
    return `${clientAddress}|${protocol}|${internalPort}`;
  }

  get(
    clientAddress: string,
    protocol: TransportProtocol,
    internalPort: number,
  ): string | undefined {
    return this.nonces.get(PcpNonceStore.key(clientAddress, protocol, internalPort));
  }

  set(
    clientAddress: string,
    protocol: TransportProtocol,
    internalPort: number,
    nonceHex: string,
  ): void {
    const key = PcpNonceStore.key(clientAddress, protocol, internalPort);
    this.nonces.delete(key);
    if (this.nonces.size >= this.maxEntries) {
      const oldest = this.nonces.keys().next();
      if (oldest.done !== true) {
        this.nonces.delete(oldest.value);
      }
    }
    this.nonces.set(key, nonceHex);
  }

  delete(clientAddress: string, protocol: TransportProtocol, internalPort: number): void {
    this.nonces.delete(PcpNonceStore.key(clientAddress, protocol, internalPort));
  }

  /** Drops the client's entries for which `isLive` returns false. */
  prune(
    clientAddress: string,
    isLive: (protocol: TransportProtocol, internalPort: number) => boolean,
  ): void {
    for (const key of this.nonces.keys()) {
      const [address, protocol, port] = key.split('|');
      if (address !== clientAddress || (protocol !== 'tcp' && protocol !== 'udp')) {
        continue;
      }
      if (!isLive(protocol, Number(port))) {
        this.nonces.delete(key);
      }
    }
  }
}

export function nonceToHex(nonce: Uint8Array): string {
  return Buffer.from(nonce).toString('hex');
}
