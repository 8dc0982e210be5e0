import type { Logger } from '../../rpc/logger.js';

export interface RateLimitedWarnerOptions {
  /** Warnings logged per window before the rest are only counted. Default 10. */
  burst?: number;
  /** Length of one window in milliseconds. Default 60000. */
  windowMs?: number;
  /** Current time in milliseconds. Default Date.now. */
  nowMs?: () => number;
}

/**
 * Logs warnings about malformed or rejected input at a bounded rate, so a
 * client that floods the broker with garbage cannot flood the log. The first
 * warning of each new window reports how many were suppressed in the last.
 */
export class RateLimitedWarner {
  private readonly burst: number;
  private readonly windowMs: number;
  private readonly nowMs: () => number;
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private loggedInWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    options: RateLimitedWarnerOptions = {},
  ) {
    this.burst = options.burst ?? 10;
    this.windowMs = options.windowMs ?? 60_000;
    this.nowMs = options.nowMs ?? Date.now;
  }

  warn(fields: Record<string, unknown>, message: string): void {
    const now = this.nowMs();
    if (now - this.windowStartMs >= this.windowMs) {
      this.windowStartMs = now;
      this.loggedInWindow = 0;
    }

    if (this.loggedInWindow >= this.burst) {
      this.suppressed += 1;
      return;
    }

    this.loggedInWindow += 1;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }
}
