/**
 * Lifetime bounds that the NAT-PMP and PCP servers apply to requested
 * mapping lifetimes before they ask the broker core.
 *
 * RFC 6887 §15 recommends that the server SHOULD have a configurable minimum of 120
 * seconds and, without knowledge of the client's address lease, a maximum
 * of 24 hours. NAT-PMP (RFC 6886 §3.3) lets the gateway grant a shorter
 * lifetime than requested, so the same bounds serve both protocols.
 */

export const DEFAULT_MIN_LIFETIME_SECONDS = 120;
export const DEFAULT_MAX_LIFETIME_SECONDS = 86_400;

export interface LifetimeBounds {
  minLifetimeSeconds: number;
  maxLifetimeSeconds: number;
}

export const DEFAULT_LIFETIME_BOUNDS: LifetimeBounds = Object.freeze({
  minLifetimeSeconds: DEFAULT_MIN_LIFETIME_SECONDS,
  maxLifetimeSeconds: DEFAULT_MAX_LIFETIME_SECONDS,
});

/**
 * Clamps a non-zero requested lifetime into the bounds. A request of 0 means
 * "delete" in both protocols and must be handled before this is called.
 */
export function clampLifetimeSeconds(requestedSeconds: number, bounds: LifetimeBounds): number {
  if (requestedSeconds < bounds.minLifetimeSeconds) {
    return bounds.minLifetimeSeconds;
  }
  if (requestedSeconds > bounds.maxLifetimeSeconds) {
    return bounds.maxLifetimeSeconds;
  }
  return requestedSeconds;
}

/** Returns a list of problems with the bounds, empty when they are usable. */
export function validateLifetimeBounds(bounds: LifetimeBounds): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(bounds.minLifetimeSeconds) || bounds.minLifetimeSeconds < 1) {
    problems.push(
      `minLifetimeSeconds ${bounds.minLifetimeSeconds} is invalid: use an integer of at least 1`,
    );
  }
  if (
    !Number.isInteger(bounds.maxLifetimeSeconds) ||
    bounds.maxLifetimeSeconds < bounds.minLifetimeSeconds ||
    bounds.maxLifetimeSeconds > 0xffff_ffff
  ) {
    problems.push(
      `maxLifetimeSeconds ${bounds.maxLifetimeSeconds} is invalid: use an integer between minLifetimeSeconds and 4294967295`,
    );
  }
  return problems;
}
