import { createConnection, type Socket } from 'node:net';
import type { Logger } from '../logger.js';
import {
  InvalidQubesdRequestError,
  QubesdCommunicationError,
  QubesdError,
  QubesdNoResponseError,
} from './qubesd-errors.js';
import { type QubesdEvent, QubesdEventStreamParser } from './qubesd-events.js';
import {
  encodeQubesdRequest,
  parseQubesdReply,
  QUBESD_MAX_REQUEST_BYTES,
  validateQubesdRequest,
} from './qubesd-wire.js';

/** Socket of the real qubesd in dom0 (QubesAdminAPI.SOCKNAME). */
export const QUBESD_SOCKET_PATH = '/var/run/qubesd.sock';

export interface QubesdClientOptions {
  /** Path of the qubesd Unix socket; default `/var/run/qubesd.sock`. */
  socketPath?: string;
  /** Source VM name sent with every call; default `dom0`, as qubesadmin sends it. */
  source?: string;
  /** Time allowed for one call, from connect to the end of the reply; default 60000 ms. */
  timeoutMs?: number;
  /** Largest reply accepted; default 16 MiB. */
  maxReplyBytes?: number;
}

export interface QubesdCallOptions {
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
}

/** The calls AdminApi needs; a QubesdClient, or a test double of it. */
export interface QubesdCaller {
  call(
    method: string,
    destination: string,
    argument?: string,
    payload?: string | Uint8Array,
    options?: QubesdCallOptions,
  ): Promise<string>;
  events(options?: { signal?: AbortSignal; destination?: string }): AsyncIterable<QubesdEvent>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_REPLY_BYTES = 16 * 1024 * 1024;

/**
 * Client of the qubesd Admin API socket, as qubesadmin `QubesLocal` uses it
 * from dom0: one connection per call, request ended by shutting down the
 * write side, reply read to end of file.
 */
export class QubesdClient implements QubesdCaller {
  readonly socketPath: string;
  readonly source: string;
  private readonly timeoutMs: number;
  private readonly maxReplyBytes: number;

  constructor(
    private readonly deps: { logger: Logger },
    options: QubesdClientOptions = {},
  ) {
    this.socketPath = options.socketPath ?? QUBESD_SOCKET_PATH;
    this.source = options.source ?? 'dom0';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
  }

  /**
   * Calls one Admin API method and returns its reply value. Throws a
   * QubesdError with the exception type qubesd sent, QubesdNoResponseError
   * for an empty reply, or QubesdCommunicationError for connection failures
   * and malformed replies.
   */
  async call(
    method: string,
    destination: string,
    argument = '',
    payload: string | Uint8Array = '',
    options: QubesdCallOptions = {},
  ): Promise<string> {
    const request = this.encodeRequest(method, destination, argument, payload);
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const reply = await this.exchange(method, request, timeoutMs, options.signal);

    const parsed = parseQubesdReply(reply);
    if (!parsed.ok) {
      throw new QubesdCommunicationError(`invalid reply from qubesd to ${method}: ${parsed.error}`);
    }
    switch (parsed.value.kind) {
      case 'success':
        return parsed.value.value;
      case 'empty':
        throw new QubesdNoResponseError(method);
      case 'exception':
        throw new QubesdError(parsed.value.type, parsed.value.message, parsed.value.traceback);
    }
  }

  /**
   * Subscribes to admin.Events and yields every event, starting with
   * `connection-established`. Iteration ends when `signal` aborts or qubesd
   * closes the connection (for example on restart); callers that need events
   * across restarts subscribe again.
   */
  async *events(
    options: { signal?: AbortSignal; destination?: string } = {},
  ): AsyncGenerator<QubesdEvent> {
    const { signal } = options;
    const request = this.encodeRequest('admin.Events', options.destination ?? 'dom0', '', '');
    if (signal?.aborted) {
      return;
    }

    const socket = await this.connect('admin.Events');
    const onAbort = (): void => {
      socket.destroy();
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    try {
      socket.end(request);
      const parser = new QubesdEventStreamParser();
      let bytesReceived = 0;
      try {
        for await (const chunk of socket) {
          bytesReceived += (chunk as Buffer).length;
          const items = parser.push(chunk as Buffer);
          if (!items.ok) {
            throw new QubesdCommunicationError(`invalid admin.Events stream: ${items.error}`);
          }
          for (const item of items.value) {
            if (item.kind === 'event') {
              yield item.event;
            }
          }
        }
      } catch (error) {
        if (signal?.aborted) {
          return;
        }
        if (error instanceof QubesdError) {
          throw error;
        }
        if (bytesReceived > 0) {
          throw new QubesdCommunicationError(
            `admin.Events connection failed: ${(error as Error).message}`,
          );
        }
      }

      if (signal?.aborted) {
        return;
      }
      if (bytesReceived === 0) {
        throw new QubesdNoResponseError('admin.Events');
      }
      const rest = parser.finish();
      if (!rest.ok) {
        throw new QubesdCommunicationError(`invalid admin.Events stream: ${rest.error}`);
      }
      for (const item of rest.value) {
        if (item.kind === 'exception') {
          throw new QubesdError(item.type, item.message, item.traceback);
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    }
  }

  private encodeRequest(
    method: string,
    destination: string,
    argument: string,
    payload: string | Uint8Array,
  ): Buffer {
    const problem = validateQubesdRequest({ method, argument, source: this.source, destination });
    if (problem !== null) {
      throw new InvalidQubesdRequestError(problem);
    }

    const payloadBytes =
      typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
    const request = encodeQubesdRequest({
      method,
      argument,
      source: this.source,
      destination,
      payload: payloadBytes,
    });
    if (request.length > QUBESD_MAX_REQUEST_BYTES) {
      throw new InvalidQubesdRequestError(
        `${method} request of ${request.length} bytes exceeds the qubesd limit of ${QUBESD_MAX_REQUEST_BYTES} bytes; send a smaller payload`,
      );
    }
    return request;
  }

  private connect(method: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.socketPath);
      const onError = (error: NodeJS.ErrnoException): void => {
        socket.destroy();
        this.deps.logger.warn(
          { socketPath: this.socketPath, method, err: error },
          'qubesd connect failed',
        );
        reject(
          new QubesdCommunicationError(
            `failed to connect to qubesd at ${this.socketPath} for ${method}: ${error.code ?? error.message}; check that qubesd (or the lab's stand-in) is running`,
          ),
        );
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(socket);
      });
    });
  }

  /** Sends `request`, half-closes, and collects the reply until the server closes. */
  private async exchange(
    method: string,
    request: Buffer,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    signal?.throwIfAborted();
    const socket = await this.connect(method);

    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let length = 0;
      let settled = false;

      const settle = (error: Error | null): void => {
        if (settled) {
          return;
        }
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.destroy();
        if (error === null) {
          resolve(Buffer.concat(chunks, length));
        } else {
          reject(error);
        }
      };
      const onAbort = (): void => {
        settle(signal?.reason instanceof Error ? signal.reason : new Error(`${method} aborted`));
      };
      const timer = setTimeout(() => {
        settle(
          new QubesdCommunicationError(
            `qubesd did not finish replying to ${method} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });

      socket.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > this.maxReplyBytes) {
          settle(
            new QubesdCommunicationError(`reply to ${method} exceeds ${this.maxReplyBytes} bytes`),
          );
          return;
        }
        chunks.push(chunk);
      });
      socket.on('end', () => settle(null));
      socket.on('error', (error: NodeJS.ErrnoException) => {
        // qubesd aborts denied and malformed calls; a reset before any byte is the empty reply.
        if (length === 0 && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
          settle(null);
          return;
        }
        settle(
          new QubesdCommunicationError(
            `qubesd connection failed during ${method}: ${error.message}`,
          ),
        );
      });
      socket.on('close', () => settle(null));

      socket.end(request);
    });
  }
}
