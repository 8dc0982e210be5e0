import { createConnection } from 'node:net';
import type {
  QrexecCall,
  QrexecCallOptions,
  QrexecResult,
  QrexecTransport,
} from '../qrexec-transport.js';
import { ChildProcessCallError } from './child-process-call.js';
import { decodeReplyFrame, encodeRequestFrame, MAX_HEADER_BYTES } from './lab-router-framing.js';
import {
  DEFAULT_QREXEC_CALL_TIMEOUT_MS,
  DEFAULT_QREXEC_MAX_OUTPUT_BYTES,
} from './qrexec-client-vm-transport.js';

/**
 * Client of the lab router: sends one call over the calling VM's router
 * socket (see `lab-router-framing.ts`) and returns the service's result.
 * Refusal is exit code 126, returned like any other result.
 */

export interface LabQrexecTransportOptions {
  /** The calling VM's socket, `<socketDir>/<vm>.sock`. */
  socketPath: string;
  defaultTimeoutMs?: number;
  /** Limit of standard output and standard error together; default 32 MiB. */
  maxReplyBytes?: number;
}

export class LabQrexecTransportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabQrexecTransportError';
  }
}

export class LabQrexecTransport implements QrexecTransport {
  constructor(private readonly options: LabQrexecTransportOptions) {}

  call(call: QrexecCall, options: QrexecCallOptions = {}): Promise<QrexecResult> {
    const timeoutMs =
      options.timeoutMs ?? this.options.defaultTimeoutMs ?? DEFAULT_QREXEC_CALL_TIMEOUT_MS;
    const maxReplyBytes = this.options.maxReplyBytes ?? 2 * DEFAULT_QREXEC_MAX_OUTPUT_BYTES;
    const payload = call.payload === undefined ? Buffer.alloc(0) : Buffer.from(call.payload);
    const frame = encodeRequestFrame({
      target: call.target,
      service: call.service,
      argument: call.argument ?? '',
      payload,
    });
    const socketPath = this.options.socketPath;

    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: socketPath, allowHalfOpen: true });
      const chunks: Buffer[] = [];
      let receivedBytes = 0;
      let settled = false;

      const finish = (outcome: QrexecResult | Error): void => {
        if (settled) {
          return;
        }
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        socket.destroy();
        if (outcome instanceof Error) {
          reject(outcome);
        } else {
          resolve(outcome);
        }
      };

      const timer = setTimeout(
        () =>
          finish(
            new ChildProcessCallError(
              'timed-out',
              `qrexec call via ${socketPath} timed out after ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      const onAbort = (): void =>
        finish(new ChildProcessCallError('aborted', `qrexec call via ${socketPath} aborted`));
      if (options.signal?.aborted) {
        onAbort();
        return;
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });

      socket.on('connect', () => socket.end(frame));
      socket.on('data', (chunk: Buffer) => {
        receivedBytes += chunk.length;
        if (receivedBytes > maxReplyBytes + MAX_HEADER_BYTES) {
          finish(
            new LabQrexecTransportError(`reply from ${socketPath} exceeds ${maxReplyBytes} bytes`),
          );
          return;
        }
        chunks.push(chunk);
      });
      socket.on('end', () => {
        const reply = decodeReplyFrame(Buffer.concat(chunks));
        finish(
          reply.ok
            ? reply.value
            : new LabQrexecTransportError(`invalid reply from ${socketPath}: ${reply.error}`),
        );
      });
      socket.on('error', (error) => {
        finish(
          new LabQrexecTransportError(
            `qrexec router socket ${socketPath} failed: ${error.message}`,
          ),
        );
      });
    });
  }
}
