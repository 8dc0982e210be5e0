/**
 * A qrexec call as every role makes it: the same shape whether it goes
 * through the real `qrexec-client-vm`/`qvm-run`, or through the lab's dom0
 * router over a Unix socket.
 */

/** Exit code of `qrexec-client-vm` when the policy refuses the call. */
export const QREXEC_EXIT_REFUSED = 126;

/** Qubes service names: letters, digits and `._-`, no `+` (that starts the argument). */
export const QREXEC_SERVICE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Argument charset of qrexec policy v5; `+` separates fields inside it. */
export const QREXEC_ARGUMENT_PATTERN = /^[A-Za-z0-9+._-]{0,64}$/;

export interface QrexecCall {
  /** Target VM name, or `dom0` / `@adminvm`. */
  target: string;
  service: string;
  /** The part after `+`; empty for none. */
  argument?: string;
  /** Bytes written to the service's standard input. */
  payload?: Uint8Array | string;
}

export interface QrexecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

export interface QrexecCallOptions {
  signal?: AbortSignal;
  /** Time allowed for the whole call, including a policy prompt; default set by the transport. */
  timeoutMs?: number;
}

export interface QrexecTransport {
  call(call: QrexecCall, options?: QrexecCallOptions): Promise<QrexecResult>;
}

export class QrexecRefusedError extends Error {
  constructor(readonly call: QrexecCall) {
    super(
      `qrexec call ${call.service}+${call.argument ?? ''} to ${call.target} was refused by policy`,
    );
    this.name = 'QrexecRefusedError';
  }
}

export function formatServiceWithArgument(service: string, argument: string | undefined): string {
  return argument === undefined || argument === '' ? service : `${service}+${argument}`;
}
