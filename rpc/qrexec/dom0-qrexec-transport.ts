import {
  formatServiceWithArgument,
  type QrexecCall,
  type QrexecCallOptions,
  type QrexecResult,
  type QrexecTransport,
} from '../qrexec-transport.js';
import { runChildProcess } from './child-process-call.js';
import {
  DEFAULT_QREXEC_CALL_TIMEOUT_MS,
  DEFAULT_QREXEC_MAX_OUTPUT_BYTES,
} from './qrexec-client-vm-transport.js';

/**
 * Transport of dom0 calling a service in a VM, through
 * `qvm-run --pass-io --no-gui --service -- VM SERVICE+ARG`. With `--pass-io`
 * qvm-run connects the service's standard streams and exits with the
 * service's exit code. Calls from dom0 are not checked against the policy.
 * `--no-autostart` is added when `autostart` is false, so a halted VM fails
 * the call instead of being started.
 *
 * NOTE: tested only against a stand-in script, because this machine has no
 * Qubes dom0. A call to `dom0` itself goes through qvm-run unchanged.
 */

export interface Dom0QrexecTransportOptions {
  /** Path of `qvm-run`; default: looked up in PATH. */
  executable?: string;
  /** Start the target VM when it is halted; default true (qvm-run's own default). */
  autostart?: boolean;
  defaultTimeoutMs?: number;
  maxOutputBytes?: number;
  env?: NodeJS.ProcessEnv;
}

export class Dom0QrexecTransport implements QrexecTransport {
  constructor(private readonly options: Dom0QrexecTransportOptions = {}) {}

  call(call: QrexecCall, options: QrexecCallOptions = {}): Promise<QrexecResult> {
    return runChildProcess({
      executable: this.options.executable ?? 'qvm-run',
      args: buildQvmRunArgs(call, this.options.autostart ?? true),
      env: this.options.env,
      stdin: call.payload,
      timeoutMs:
        options.timeoutMs ?? this.options.defaultTimeoutMs ?? DEFAULT_QREXEC_CALL_TIMEOUT_MS,
      signal: options.signal,
      maxOutputBytes: this.options.maxOutputBytes ?? DEFAULT_QREXEC_MAX_OUTPUT_BYTES,
    });
  }
}

/** Builds the qvm-run command line for one service call. */
export function buildQvmRunArgs(call: QrexecCall, autostart: boolean): string[] {
  const args = ['--pass-io', '--no-gui'];
  if (!autostart) {
    args.push('--no-autostart');
  }
  args.push('--service', '--', call.target, formatServiceWithArgument(call.service, call.argument));
  return args;
}
