import { rm } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Logger } from '../../rpc/logger.js';
import {
  type UpstreamControlReply,
  type UpstreamControlRequest,
  upstreamControlReplySchema,
  upstreamControlRequestSchema,
} from '../../rpc/nat-traversal-messages.js';
import type { UpstreamPort } from './upstream-port.js';

/**
 * A Unix socket in the broker's state folder through which the
 * `qubes.NatBrokerControl` service (a separate process per call, started
 * by qrexec) reaches the running broker: its router client and its client
 * list. One JSON request
 * line, one JSON reply line. The socket is mode 0600 in a root-owned folder.
 */

export const CONTROL_SOCKET_FILE = 'control.sock';
const MAX_LINE_BYTES = 4096;
const CLIENT_TIMEOUT_MS = 30_000;

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET_FILE);
}

export class ControlSocketServer {
  private readonly server: Server;

  constructor(
    private readonly path: string,
    private readonly upstream: () => UpstreamPort | null,
    private readonly refreshClients: () => Promise<number>,
    private readonly logger: Logger,
  ) {
    this.server = createServer((socket) => {
      let buffer = '';
      socket.setEncoding('utf8');
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        if (buffer.length > MAX_LINE_BYTES) {
          socket.destroy();
          return;
        }
        const end = buffer.indexOf('\n');
        if (end === -1) {
          return;
        }
        void this.handle(buffer.slice(0, end)).then((reply) =>
          socket.end(`${JSON.stringify(reply)}\n`),
        );
      });
    });
  }

  async start(): Promise<void> {
    await rm(this.path, { force: true });
    await new Promise<void>((resolve) => this.server.listen(this.path, resolve));
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(line: string): Promise<UpstreamControlReply> {
    let request: UpstreamControlRequest;
    try {
      const parsed = upstreamControlRequestSchema.safeParse(JSON.parse(line));
      if (!parsed.success) {
        return { result: 'failed', message: `invalid request: ${parsed.error.message}` };
      }
      request = parsed.data;
    } catch {
      return { result: 'failed', message: 'invalid request: not JSON' };
    }

    if (request.action === 'refresh-clients') {
      return { result: 'refreshed', clients: await this.refreshClients() };
    }
    const upstream = this.upstream();
    if (upstream === null) {
      return { result: 'unavailable', message: 'sys-net has not reported a home router' };
    }
    if (request.action === 'unmap') {
      await upstream.unmap({ protocol: request.protocol, internalPort: request.uplinkPort });
      this.logger.info(
        { protocol: request.protocol, uplinkPort: request.uplinkPort },
        'manual router mapping removed',
      );
      return { result: 'unmapped' };
    }

    const mapped = await upstream.map({
      protocol: request.protocol,
      internalPort: request.uplinkPort,
      externalPortHint: request.uplinkPort,
      lifetimeSeconds: request.lifetimeSeconds,
      // The dom0 user chose this port by hand, so a well-known port is fine.
      allowWellKnownPort: true,
    });
    if (!mapped.ok) {
      return {
        result: mapped.code === 'unavailable' ? 'unavailable' : 'failed',
        message: mapped.message,
      };
    }
    const mapping = {
      externalAddress: mapped.mapping.externalAddress ?? upstream.externalAddress() ?? '0.0.0.0',
      externalPort: mapped.mapping.externalPort,
      via: mapped.mapping.via,
    };
    this.logger.info(
      { protocol: request.protocol, uplinkPort: request.uplinkPort, ...mapping },
      'manual router mapping created',
    );
    return { result: 'mapped', mapping };
  }
}

/** Sends one request to the running broker and returns its reply. */
export async function callControlSocket(
  path: string,
  request: UpstreamControlRequest,
): Promise<UpstreamControlReply> {
  const socket = createConnection(path);
  socket.setEncoding('utf8');
  socket.setTimeout(CLIENT_TIMEOUT_MS, () =>
    socket.destroy(new Error('timed out waiting for the broker reply')),
  );
  return new Promise<UpstreamControlReply>((resolve, reject) => {
    let buffer = '';
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
    });
    socket.on('end', () => {
      const parsed = upstreamControlReplySchema.safeParse(JSON.parse(buffer || 'null'));
      if (parsed.success) {
        resolve(parsed.data);
      } else {
        reject(new Error('invalid reply from the broker'));
      }
    });
    socket.on('error', (error) =>
      reject(new Error(`the broker is not running (${error.message})`)),
    );
  });
}
