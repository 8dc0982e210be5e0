import {
  formatServiceWithArgument,
  type QrexecCall,
  type QrexecCallOptions,
  type QrexecResult,
  type QrexecTransport,
} from '../qrexec-transport.js';
import { runChildProcess } from './child-process-call.js';

/**
 * Transport of a VM calling out: runs `qrexec-client-vm TARGET SERVICE+ARG`
 * with the payload on standard input. Exit code 126 (`QREXEC_EXIT_REFUSED`)
 * means the policy refused the call; the result is returned, not thrown. A
 * timeout or an abort kills the child and rejects with `ChildProcessCallError`.
 */

export interface QrexecClientVmTransportOptions {
  /** Path of `qrexec-client-vm`; default: looked up in PATH. */
  executable?: string;
  /** Default time for a whole call, prompt included; default 120000 ms. */
  defaultTimeoutMs?: number;
  /** Limit for standard output and standard error each; default 16 MiB. */
  maxOutputBytes?: number;
  env?: NodeJS.ProcessEnv;
}

export const DEFAULT_QREXEC_CALL_TIMEOUT_MS = 120_000;
export const DEFAULT_QREXEC_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export class QrexecClientVmTransport implements QrexecTransport {
  private readonly executable: string;
  private readonly defaultTimeoutMs: number;
  private readonly maxOutputBytes: number;

  constructor(private readonly options: QrexecClientVmTransportOptions = {}) {
    this.executable = options.executable ?? 'qrexec-client-vm';
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_QREXEC_CALL_TIMEOUT_MS;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_QREXEC_MAX_OUTPUT_BYTES;
  }

  call(call: QrexecCall, options: QrexecCallOptions = {}): Promise<QrexecResult> {
    return runChildProcess({
      executable: this.executable,
      args: [call.target, formatServiceWithArgument(call.service, call.argument)],
      env: this.options.env,
      stdin: call.payload,
      timeoutMs: options.timeoutMs ?? this.defaultTimeoutMs,
      signal: options.signal,
      maxOutputBytes: this.maxOutputBytes,
    });
  }
}
