import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { QrexecResult } from '../qrexec-transport.js';

/**
 * Runs one child process with a payload on standard input and collects its
 * exit code, standard output and standard error, within a time limit, an
 * abort signal and an output size limit. Shared by the qrexec transports and
 * the lab router.
 */

export interface ChildProcessCallOptions {
  executable: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  stdin?: Uint8Array | string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Limit for standard output and standard error each. */
  maxOutputBytes: number;
}

export type ChildProcessFailureReason =
  | 'timed-out'
  | 'aborted'
  | 'output-too-large'
  | 'spawn-failed'
  | 'not-found';

export class ChildProcessCallError extends Error {
  constructor(
    readonly reason: ChildProcessFailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'ChildProcessCallError';
  }
}

/** Resolves with the process result, or rejects with a `ChildProcessCallError`. */
export function runChildProcess(options: ChildProcessCallOptions): Promise<QrexecResult> {
  const command = `${options.executable} ${options.args.join(' ')}`;

  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new ChildProcessCallError('aborted', `${command}: aborted before start`));
      return;
    }

    const child = spawn(options.executable, options.args, {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const outputBytes = { stdout: 0, stderr: 0 };
    let failure: ChildProcessCallError | null = null;
    let settled = false;

    const fail = (reason: ChildProcessFailureReason, message: string): void => {
      if (failure === null) {
        failure = new ChildProcessCallError(reason, `${command}: ${message}`);
        child.kill('SIGKILL');
      }
    };

    const timer = setTimeout(
      () => fail('timed-out', `timed out after ${options.timeoutMs} ms`),
      options.timeoutMs,
    );
    const onAbort = (): void => fail('aborted', 'aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const collect = (stream: 'stdout' | 'stderr', chunks: Buffer[]) => (chunk: Buffer) => {
      outputBytes[stream] += chunk.length;
      if (outputBytes[stream] > options.maxOutputBytes) {
        fail('output-too-large', `${stream} exceeded ${options.maxOutputBytes} bytes`);
        return;
      }
      chunks.push(chunk);
    };
    child.stdout.on('data', collect('stdout', stdout));
    child.stderr.on('data', collect('stderr', stderr));

    const finish = (outcome: QrexecResult | ChildProcessCallError): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (outcome instanceof ChildProcessCallError) {
        reject(outcome);
      } else {
        resolve(outcome);
      }
    };

    child.on('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'ENOENT' ? 'not-found' : 'spawn-failed';
      finish(new ChildProcessCallError(reason, `${command}: ${error.message}`));
    });

    child.on('close', (code, signalName) => {
      if (failure !== null) {
        finish(failure);
        return;
      }
      finish({
        exitCode: code ?? exitCodeForSignal(signalName),
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr),
      });
    });

    // A service may exit without reading its input; the resulting EPIPE is not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(options.stdin ?? '');
  });
}

/** Maps a termination signal to the shell convention 128 + signal number. */
function exitCodeForSignal(signalName: NodeJS.Signals | null): number {
  const signalNumber = signalName === null ? undefined : constants.signals[signalName];
  return 128 + (signalNumber ?? 0);
}
