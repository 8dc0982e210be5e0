import type { Logger } from '../../rpc/logger.js';

/** Source of the current time, injected so tests can step it. */
export interface PortControlClock {
  nowMs(): number;
}

export const systemClock: PortControlClock = { nowMs: () => Date.now() };

/**
 * Rate limit for warnings about malformed or refused input. Hostile qubes
 * can send packets at line rate, so at most `maxPerWindow` warnings are
 * written per window. The next warning after a window with suppressed
 * messages carries their count.
 */
export class WarnLimiter {
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private writtenInWindow = 0;
  private suppressedCount = 0;

  constructor(
    private readonly logger: Logger,
    private readonly clock: PortControlClock,
    private readonly maxPerWindow = 20,
    private readonly windowMs = 60_000,
  ) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const nowMs = this.clock.nowMs();
    if (nowMs - this.windowStartMs >= this.windowMs) {
      this.windowStartMs = nowMs;
      this.writtenInWindow = 0;
    }

    if (this.writtenInWindow >= this.maxPerWindow) {
      this.suppressedCount += 1;
      return;
    }

    this.writtenInWindow += 1;
    if (this.suppressedCount > 0) {
      this.logger.warn({ ...fields, suppressedWarnings: this.suppressedCount }, message);
      this.suppressedCount = 0;
      return;
    }
    this.logger.warn(fields, message);
  }
}
