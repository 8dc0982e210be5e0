import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../rpc/logger.js';
import type { MappingService } from '../mapping/mapping-service.js';
import type { DeviceTree } from './device-tree.js';
import { DEFAULT_IGD_HTTP_PORT, IgdPath, IgdVersion, SERVER_HEADER } from './igd-constants.js';
import { IgdControl } from './igd-control.js';
import { RateLimitedWarner } from './rate-limited-warner.js';
import { buildRootDescription } from './root-description.js';
import {
  buildWanCommonInterfaceConfigScpd,
  buildWanIpConnectionScpd,
} from './service-descriptions.js';
import { MAX_SOAP_BODY_BYTES } from './soap-request-parser.js';

export interface IgdServerOptions {
  /** Address to listen on. Default `0.0.0.0`. */
  listenAddress?: string;
  /** TCP port. Default 2189 (DEFAULT_IGD_HTTP_PORT); 0 picks a free port. */
  port?: number;
  /** Aborting it stops the server. */
  signal?: AbortSignal;
}

export interface IgdServerDependencies {
  mappingService: MappingService;
  logger: Logger;
  /** The IGD v1 and v2 trees, the same ones the SSDP server advertises. */
  deviceTrees: readonly DeviceTree[];
  /** Current time in Unix milliseconds. Default Date.now. */
  nowMs?: () => number;
}

/** Largest request header block accepted, in bytes. */
const MAX_HEADER_BYTES = 8 * 1024;
/** Time a client has to send a whole request, in milliseconds. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Concurrent connections; each qube needs one at a time. */
const MAX_CONNECTIONS = 128;

const XML_CONTENT_TYPE = 'text/xml; charset="utf-8"';

/**
 * The IGD HTTP server: serves the root descriptions and SCPDs of both device
 * trees, and handles SOAP control requests through IgdControl. Descriptions
 * are served only to qubes with NAT traversal enabled.
 */
export class IgdServer {
  private readonly server: Server;
  private readonly control: IgdControl;
  private readonly warner: RateLimitedWarner;
  private readonly documents: ReadonlyMap<string, string>;
  private readonly shutdown = new AbortController();

  constructor(
    private readonly deps: IgdServerDependencies,
    private readonly options: IgdServerOptions = {},
  ) {
    const nowMs = deps.nowMs ?? Date.now;
    this.warner = new RateLimitedWarner(deps.logger, { nowMs });
    this.control = new IgdControl({
      mappingService: deps.mappingService,
      logger: deps.logger,
      warner: this.warner,
      nowMs,
    });
    this.documents = this.buildDocuments();

    this.server = createServer(
      { maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: REQUEST_TIMEOUT_MS },
      (request, response) => {
        this.route(request, response).catch((error: unknown) => {
          deps.logger.error({ err: error, url: request.url }, 'IGD request handler failed');
          if (!response.headersSent) response.writeHead(500);
          response.end();
        });
      },
    );
    this.server.headersTimeout = REQUEST_TIMEOUT_MS;
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.maxHeadersCount = 64;
  }

  /** Address and port the server listens on; valid after start(). */
  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async start(): Promise<void> {
    const host = this.options.listenAddress ?? '0.0.0.0';
    const port = this.options.port ?? DEFAULT_IGD_HTTP_PORT;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.on('error', (error) => this.deps.logger.error({ err: error }, 'IGD server error'));
    this.options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.deps.logger.info({ address: host, port: this.address().port }, 'IGD HTTP server started');
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    this.shutdown.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    this.deps.logger.info('IGD HTTP server stopped');
  }

  private buildDocuments(): Map<string, string> {
    const documents = new Map<string, string>();
    for (const tree of this.deps.deviceTrees) {
      documents.set(tree.descriptionPath, buildRootDescription(tree));
    }
    documents.set(IgdPath.wanIpConnectionScpdV1, buildWanIpConnectionScpd(IgdVersion.v1));
    documents.set(IgdPath.wanIpConnectionScpdV2, buildWanIpConnectionScpd(IgdVersion.v2));
    documents.set(IgdPath.wanCommonInterfaceConfigScpd, buildWanCommonInterfaceConfigScpd());
    return documents;
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const clientAddress = normalizeAddress(request.socket.remoteAddress ?? '');
    const path = (request.url ?? '').split('?')[0] ?? '';
    response.setHeader('Server', SERVER_HEADER);

    if (request.method === 'GET' || request.method === 'HEAD') {
      this.serveDocument(request, response, path, clientAddress);
      return;
    }
    if (request.method === 'POST') {
      await this.serveControl(request, response, path, clientAddress);
      return;
    }
    if (request.method === 'SUBSCRIBE' || request.method === 'UNSUBSCRIBE') {
      // NOTE: GENA eventing is not implemented; the IGD clients in use poll.
      sendText(response, 501, 'event subscription is not implemented\n');
      return;
    }
    this.warner.warn({ client: clientAddress, method: request.method }, 'unsupported HTTP method');
    response.setHeader('Allow', 'GET, HEAD, POST');
    sendText(response, 405, 'method not allowed\n');
  }

  private serveDocument(
    request: IncomingMessage,
    response: ServerResponse,
    path: string,
    clientAddress: string,
  ): void {
    if (!this.deps.mappingService.isEnabledClient(clientAddress)) {
      this.deps.logger.info({ client: clientAddress, path }, 'description request denied');
      sendText(response, 403, 'forbidden\n');
      return;
    }
    const document = this.documents.get(path);
    if (document === undefined) {
      sendText(response, 404, 'not found\n');
      return;
    }
    response.writeHead(200, {
      'Content-Type': XML_CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(document),
    });
    response.end(request.method === 'HEAD' ? undefined : document);
  }

  private async serveControl(
    request: IncomingMessage,
    response: ServerResponse,
    path: string,
    clientAddress: string,
  ): Promise<void> {
    if (
      path !== IgdPath.wanIpConnectionControl &&
      path !== IgdPath.wanCommonInterfaceConfigControl
    ) {
      sendText(response, 404, 'not found\n');
      return;
    }

    const body = await readBody(request, MAX_SOAP_BODY_BYTES);
    if (body === null) {
      this.warner.warn({ client: clientAddress, path }, 'control request body too large');
      response.setHeader('Connection', 'close');
      sendText(response, 413, `request body exceeds ${MAX_SOAP_BODY_BYTES} bytes\n`);
      return;
    }

    const soapAction = request.headers.soapaction;
    const result = await this.control.handle({
      path,
      soapActionHeader: Array.isArray(soapAction) ? soapAction[0] : soapAction,
      body,
      clientAddress,
      signal: this.shutdown.signal,
    });
    response.writeHead(result.status, {
      'Content-Type': XML_CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(result.body),
      EXT: '',
    });
    response.end(result.body);
  }
}

/** Strips the IPv4-mapped IPv6 prefix that dual-stack sockets report. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

function sendText(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(text);
}

/**
 * Reads the request body as UTF-8, or returns null as soon as it passes
 * limitBytes (declared or received). The caller then responds with 413 with
 * `Connection: close`, so the rest of an oversized body is never read.
 */
function readBody(request: IncomingMessage, limitBytes: number): Promise<string | null> {
  const declared = Number(request.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > limitBytes) return Promise.resolve(null);

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > limitBytes) {
        cleanup();
        request.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
  });
}
