import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from '../../rpc/logger.js';
import { UpstreamError } from './upstream-errors.js';
import type { ParseResult } from './upstream-types.js';

/**
 * One UDP request/response exchange with the router's NAT-PMP/PCP port, with
 * retransmission. RFC 6886 section 3.1: send, wait 250 ms, then double the
 * wait after each retransmission. RFC 6886 allows up to 9 attempts (about
 * 64 s) and RFC 6887 section 8.1.1 starts at 3 s, but a home router answers
 * within milliseconds on the LAN, so the default here is 4 attempts (3.75 s
 * in total) and the mapper falls back to the next protocol sooner.
 */

export const NATPMP_PCP_SERVER_PORT = 5351;
export const INITIAL_RETRANSMIT_MS = 250;
export const DEFAULT_MAX_ATTEMPTS = 4;

/** Largest datagram accepted: RFC 6887 section 7 caps PCP messages at 1100 bytes. */
export const MAX_REPLY_BYTES = 1100;

export interface UdpExchangeOptions<T> {
  serverAddress: string;
  serverPort?: number;
  request: Uint8Array;
  /**
   * Parses one datagram from the server. An error result means the datagram
   * is not the reply to this request (malformed, other opcode, other nonce):
   * it is logged and the exchange keeps waiting.
   */
  parseReply(datagram: Uint8Array): ParseResult<T>;
  maxAttempts?: number;
  initialTimeoutMs?: number;
  signal?: AbortSignal;
  logger: Logger;
}

/** Sends the request until a datagram from the server parses, the attempts run out, or the signal aborts. */
export async function exchangeUdp<T>(options: UdpExchangeOptions<T>): Promise<T> {
  const serverPort = options.serverPort ?? NATPMP_PCP_SERVER_PORT;
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const initialTimeoutMs = options.initialTimeoutMs ?? INITIAL_RETRANSMIT_MS;
  options.signal?.throwIfAborted();

  const socket = createSocket('udp4');
  let lastParseError: string | null = null;

  try {
    await bindEphemeral(socket);
    return await new Promise<T>((resolve, reject) => {
      let attempt = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;

      const finish = (error: Error | null, value?: T): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        socket.removeAllListeners('message');
        if (error !== null) reject(error);
        else resolve(value as T);
      };

      const onAbort = (): void => {
        finish(
          new UpstreamError(
            'aborted',
            `request to ${options.serverAddress}:${serverPort} was aborted`,
          ),
        );
      };

      const send = (): void => {
        if (attempt >= maxAttempts) {
          const detail =
            lastParseError === null ? 'no reply' : `last reply was invalid: ${lastParseError}`;
          finish(
            new UpstreamError(
              'timeout',
              `${options.serverAddress}:${serverPort} did not answer after ${maxAttempts} attempts (${detail})`,
            ),
          );
          return;
        }
        const waitMs = initialTimeoutMs * 2 ** attempt;
        attempt += 1;
        socket.send(options.request, serverPort, options.serverAddress, (error) => {
          if (error)
            finish(
              new UpstreamError(
                'network',
                `sending to ${options.serverAddress}:${serverPort} failed: ${error.message}`,
              ),
            );
        });
        timer = setTimeout(send, waitMs);
      };

      socket.on('message', (datagram, sender) => {
        // RFC 6886 section 3.1 and RFC 6887 section 8.3: only the server the
        // request went to may answer it.
        if (sender.address !== options.serverAddress || sender.port !== serverPort) {
          options.logger.warn(
            {
              sender: `${sender.address}:${sender.port}`,
              expected: `${options.serverAddress}:${serverPort}`,
            },
            'ignored a datagram from an unexpected sender',
          );
          return;
        }
        if (datagram.length > MAX_REPLY_BYTES) {
          lastParseError = `reply of ${datagram.length} bytes exceeds ${MAX_REPLY_BYTES}`;
          return;
        }
        const result = options.parseReply(new Uint8Array(datagram));
        if (!result.ok) {
          lastParseError = result.error;
          options.logger.warn(
            { sender: sender.address, error: result.error },
            'ignored an invalid reply',
          );
          return;
        }
        finish(null, result.value);
      });

      options.signal?.addEventListener('abort', onAbort, { once: true });
      send();
    });
  } finally {
    socket.close();
  }
}

function bindEphemeral(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      socket.on('error', () => {
        // Errors after binding (ICMP port unreachable on Linux) surface as a timeout.
      });
      resolve();
    });
  });
}
