/**
 * Requests that wait for the broker core. A mapping request can wait for a
 * dom0 prompt for many seconds while NAT-PMP and PCP clients retransmit
 * (RFC 6886 §3.1 starts at 250 ms and doubles; RFC 6887 §8.1.1 starts at
 * 3 s). A retransmission of a request still in flight is dropped: the reply
 * to the first copy answers it. A per-client cap bounds the work one qube
 * can queue.
 */
export class InFlightRequests {
  private readonly keys = new Set<string>();
  private readonly countByClient = new Map<string, number>();

  constructor(private readonly maxPerClient = 16) {}

  /** Returns 'started', or why the request must be dropped. */
  begin(clientAddress: string, key: string): 'started' | 'duplicate' | 'client-limit' {
    const fullKey = `${clientAddress}|${key}`;
    if (this.keys.has(fullKey)) {
      return 'duplicate';
    }
    const count = this.countByClient.get(clientAddress) ?? 0;
    if (count >= this.maxPerClient) {
      return 'client-limit';
    }
    this.keys.add(fullKey);
    this.countByClient.set(clientAddress, count + 1);
    return 'started';
  }

  end(clientAddress: string, key: string): void {
    const fullKey = `${clientAddress}|${key}`;
    if (!this.keys.delete(fullKey)) {
      return;
    }
    const count = (this.countByClient.get(clientAddress) ?? 1) - 1;
    if (count <= 0) {
      this.countByClient.delete(clientAddress);
    } else {
      this.countByClient.set(clientAddress, count);
    }
  }
}
