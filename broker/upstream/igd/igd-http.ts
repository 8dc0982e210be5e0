import { request } from 'node:http';
import { UpstreamError } from '../upstream-errors.js';

/**
 * Minimal HTTP/1.1 client for IGD descriptions and SOAP actions, with a body
 * size limit and an overall timeout, so a hostile or broken router cannot
 * make the broker buffer without bound or wait forever.
 */

export interface HttpExchange {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  maxBodyBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface HttpReply {
  statusCode: number;
  body: string;
}

export function httpExchange(exchange: HttpExchange): Promise<HttpReply> {
  const signals = [
    AbortSignal.timeout(exchange.timeoutMs),
    ...(exchange.signal ? [exchange.signal] : []),
  ];
  const signal = AbortSignal.any(signals);

  return new Promise((resolve, reject) => {
    const bodyBytes = exchange.body === undefined ? undefined : Buffer.from(exchange.body, 'utf8');
    const outgoing = request(
      exchange.url,
      {
        method: exchange.method,
        signal,
        // Some IGDs mishandle keep-alive; one connection per action is cheap on a LAN.
        headers: {
          Connection: 'close',
          ...(bodyBytes === undefined ? {} : { 'Content-Length': String(bodyBytes.length) }),
          ...exchange.headers,
        },
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        let received = 0;
        incoming.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > exchange.maxBodyBytes) {
            incoming.destroy();
            reject(
              new UpstreamError(
                'malformed',
                `${exchange.url} sent more than ${exchange.maxBodyBytes} bytes; the reply was dropped`,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        incoming.on('end', () => {
          resolve({
            statusCode: incoming.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
        incoming.on('error', (error) => reject(toUpstreamError(exchange, error, signal)));
      },
    );
    outgoing.on('error', (error) => reject(toUpstreamError(exchange, error, signal)));
    outgoing.end(bodyBytes);
  });
}

function toUpstreamError(exchange: HttpExchange, error: Error, signal: AbortSignal): UpstreamError {
  if (exchange.signal?.aborted)
    return new UpstreamError('aborted', `${exchange.method} ${exchange.url} was aborted`);
  if (signal.aborted)
    return new UpstreamError(
      'timeout',
      `${exchange.method} ${exchange.url} timed out after ${exchange.timeoutMs} ms`,
    );
  return new UpstreamError(
    'network',
    `${exchange.method} ${exchange.url} failed: ${error.message}`,
  );
}
