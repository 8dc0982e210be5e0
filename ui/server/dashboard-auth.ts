import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Access control of the dashboard. It listens on loopback only, and every
 * request needs the access token: in `Authorization: Bearer TOKEN`, in the
 * session cookie, or as `?token=` on the page load, which sets the cookie
 * (HttpOnly, SameSite=Strict) and redirects to the URL without the token.
 * The Host header must name the loopback listener, which defeats DNS
 * rebinding: a page of another site that resolves its name to 127.0.0.1
 * sends its own name as Host.
 */

/** Creates a random access token: 32 bytes, base64url. */
export function newDashboardToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Returns the cookie name, which carries the port because cookies are per host, not per port, and two labs may run side by side. */
export function sessionCookieName(port: number): string {
  return `qnb_dashboard_${port}`;
}

export function sessionCookie(port: number, token: string): string {
  return `${sessionCookieName(port)}=${token}; Path=/; HttpOnly; SameSite=Strict`;
}

/** Compares in constant time: both sides are hashed first, so their lengths leak nothing either. */
export function tokenMatches(candidate: string, token: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(candidate), digest(token));
}

/** Accepts only `127.0.0.1:PORT` and `localhost:PORT`. */
export function isLoopbackHost(host: string | undefined, port: number): boolean {
  return host === `127.0.0.1:${port}` || host === `localhost:${port}`;
}

export type AuthResult =
  | { ok: true; via: 'bearer' | 'cookie' }
  | { ok: true; via: 'query' }
  | { ok: false; reason: string };

/** Checks the token of a request; `?token=` counts only for a GET of the page. */
export function authenticate(
  request: IncomingMessage,
  url: URL,
  port: number,
  token: string,
): AuthResult {
  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer ([A-Za-z0-9_-]{1,128})$/.exec(authorization);
    return match?.[1] !== undefined && tokenMatches(match[1], token)
      ? { ok: true, via: 'bearer' }
      : { ok: false, reason: 'invalid bearer token' };
  }

  const cookie = readCookie(request.headers.cookie, sessionCookieName(port));
  if (cookie !== null && tokenMatches(cookie, token)) {
    return { ok: true, via: 'cookie' };
  }

  const queryToken = url.searchParams.get('token');
  if (queryToken !== null && request.method === 'GET' && url.pathname === '/') {
    return tokenMatches(queryToken, token)
      ? { ok: true, via: 'query' }
      : { ok: false, reason: 'invalid token in the URL' };
  }
  return { ok: false, reason: cookie === null ? 'missing token' : 'invalid session cookie' };
}

function readCookie(header: string | undefined, name: string): string | null {
  if (header === undefined) {
    return null;
  }
  for (const part of header.split(';')) {
    const separator = part.indexOf('=');
    if (separator > 0 && part.slice(0, separator).trim() === name) {
      return part.slice(separator + 1).trim();
    }
  }
  return null;
}

/**
 * Headers of every response: scripts and styles from the dashboard only (no
 * inline script), no framing, no referrer that could carry the token.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " +
    "frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};
