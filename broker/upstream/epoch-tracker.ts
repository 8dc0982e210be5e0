/**
 * Detects that a NAT-PMP or PCP server lost its mapping state, from the
 * epoch (seconds since the server started) in every reply.
 *
 * RFC 6886 section 3.6 and RFC 6887 section 8.5: the server's epoch must
 * advance at least about as fast as the client's clock. With client time
 * delta C and server epoch delta S since the last reply, the server lost
 * state when S < 0, or when S + 2 < C - C/16 (the 2 s and 1/16 allow for
 * rounding and clock drift).
 */

export type EpochVerdict = 'first' | 'continuous' | 'state-lost';

export class EpochTracker {
  private last: { epochSeconds: number; clientMs: number } | null = null;

  /** Records an epoch from a reply received at clientMs and returns whether the server kept its state. */
  observe(epochSeconds: number, clientMs: number): EpochVerdict {
    const previous = this.last;
    this.last = { epochSeconds, clientMs };
    if (previous === null) return 'first';

    const serverDeltaSeconds = epochSeconds - previous.epochSeconds;
    const clientDeltaSeconds = Math.max(0, (clientMs - previous.clientMs) / 1000);
    if (serverDeltaSeconds < 0) return 'state-lost';
    if (serverDeltaSeconds + 2 < clientDeltaSeconds - clientDeltaSeconds / 16) return 'state-lost';
    return 'continuous';
  }

  reset(): void {
    this.last = null;
  }
}
