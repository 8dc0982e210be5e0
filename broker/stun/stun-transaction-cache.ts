import type { PortControlClock } from '../port-control/warn-limiter.js';

/**
 * Final responses by client transport address and transaction ID, so a
 * retransmitted request gets the same bytes as the first answer. RFC 8489
 * §6.3.1 suggests remembering "all transaction IDs received over UDP and
 * their corresponding responses in the last 40 seconds", which covers a
 * client's whole retransmission schedule (Rc = 7 with RTO 500 ms ends after
 * 39.5 s, RFC 8489 §6.2.1).
 *
 * The cache holds at most `maxEntries`; beyond that the oldest entry goes.
 * An evicted transaction that is retransmitted asks the mapping service
 * again, which renews the same mapping and so gives the same answer.
 */
export class StunTransactionCache {
  private readonly entries = new Map<string, { response: Uint8Array; expiresAtMs: number }>();

  constructor(
    private readonly clock: PortControlClock,
    private readonly ttlMs = 40_000,
    private readonly maxEntries = 4096,
  ) {}

  get(key: string): Uint8Array | undefined {
    this.expire();
    return this.entries.get(key)?.response;
  }

  set(key: string, response: Uint8Array): void {
    this.expire();
    this.entries.delete(key);
    this.entries.set(key, { response, expiresAtMs: this.clock.nowMs() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) {
        break;
      }
      this.entries.delete(oldest.value);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** Entries are in insertion order with one TTL, so expired ones are at the front. */
  private expire(): void {
    const nowMs = this.clock.nowMs();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAtMs > nowMs) {
        return;
      }
      this.entries.delete(key);
    }
  }
}

/** Cache and in-flight key of a transaction: client address, port and the 16 bytes after the length field. */
export function transactionKey(
  clientAddress: string,
  clientPort: number,
  magicCookie: number,
  transactionId: Uint8Array,
): string {
  const idHex = Array.from(transactionId, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${clientAddress}|${clientPort}|${magicCookie.toString(16).padStart(8, '0')}${idHex}`;
}
