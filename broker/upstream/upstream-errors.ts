/**
 * Errors of the upstream clients. Each carries a code that the mapper uses
 * to decide between retrying, trying another port and trying another
 * protocol.
 */

export type UpstreamErrorCode =
  /** No valid reply before the last retransmission timed out. */
  | 'timeout'
  /** The request was aborted through its AbortSignal. */
  | 'aborted'
  /** The router replied with a result code or SOAP fault. */
  | 'rejected'
  /** The router does not speak this protocol or version. */
  | 'unsupported'
  /** The router's reply could not be parsed. */
  | 'malformed'
  /** The router lost its mapping state (epoch went backwards). */
  | 'state-lost'
  /** A local socket or HTTP error. */
  | 'network';

export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
    /** Protocol result code or SOAP fault code, when the router sent one. */
    readonly resultCode: number | null = null,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export function isUpstreamError(error: unknown, code?: UpstreamErrorCode): error is UpstreamError {
  return error instanceof UpstreamError && (code === undefined || error.code === code);
}
