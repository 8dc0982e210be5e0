import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dom0Context } from '../../policy/dom0-context.js';
import type { Logger } from '../../rpc/logger.js';
import { handleApi } from './dashboard-api.js';
import { authenticate, isLoopbackHost, SECURITY_HEADERS, sessionCookie } from './dashboard-auth.js';
import { readOverview } from './dashboard-data.js';
import { LiveEvents } from './live-events.js';
import { PendingPrompts } from './pending-prompts.js';
import { defaultStaticDir, loadStaticFiles, type StaticFile } from './static-files.js';

/**
 * The dom0 dashboard: a web page and a JSON API on loopback, with a live
 * stream of changes. It edits the state `qvm-forward` and `qvm-features`
 * edit, through the same components and the same validation.
 */

/** Maximum request body size; the largest form is well under 4 KiB. */
export const MAX_BODY_BYTES = 16 * 1024;

export interface DashboardOptions {
  context: Dom0Context;
  /** Loopback only: the token is the only protection against other local users' browsers. */
  host: '127.0.0.1';
  /** 0 picks a free port. */
  port: number;
  token: string;
  /** The lab's prompt socket; without it the prompts view stays empty. */
  promptSocketPath?: string;
  /** The dom0 log (pino JSON lines) for the audit view. */
  logFile: string;
  /** Logger of the server itself; default: the context's logger. */
  logger?: Logger;
  pollIntervalMs?: number;
  staticDir?: string;
}

export interface Dashboard {
  /** `http://127.0.0.1:PORT/`, which needs the token. */
  url: string;
  /** The URL with `?token=`, to open in a browser once. */
  loginUrl: string;
  port: number;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  if (options.host !== '127.0.0.1') {
    throw new Error(`the dashboard listens on 127.0.0.1 only, not ${String(options.host)}`);
  }
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(options.token)) {
    throw new Error('the dashboard token must be 16-128 characters of A-Z a-z 0-9 _ -');
  }
  const logger = options.logger ?? options.context.logger;
  const files = await loadStaticFiles(options.staticDir ?? defaultStaticDir());

  let live: LiveEvents | null = null;
  const prompts =
    options.promptSocketPath === undefined
      ? null
      : new PendingPrompts({
          socketPath: options.promptSocketPath,
          // Answers go to the dom0 log with the other changes.
          logger: options.context.logger,
          onChange: () => live?.notifyPrompts(),
        });
  live = new LiveEvents({
    readOverview: () => readOverview(options.context),
    listPrompts: () => prompts?.list() ?? [],
    logFile: options.logFile,
    logger,
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
  });
  const liveEvents = live;
  await prompts?.start();

  let port = 0;
  const server = createServer((request, response) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
      response.setHeader(name, value);
    }
    serve(request, response).catch((error: unknown) => {
      if (error instanceof HttpError) {
        sendJson(response, error.status, { error: error.message });
        return;
      }
      logger.error({ err: error }, 'dashboard request failed');
      sendJson(response, 500, { error: (error as Error).message });
    });
  });

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (!isLoopbackHost(request.headers.host, port)) {
      logger.warn(
        { host: request.headers.host?.slice(0, 100) },
        'dashboard request with a foreign Host rejected',
      );
      throw new HttpError(403, `invalid Host header; open http://127.0.0.1:${port}/`);
    }
    const url = new URL(request.url ?? '/', `http://127.0.0.1:${port}`);

    const auth = authenticate(request, url, port, options.token);
    if (!auth.ok) {
      logger.warn(
        { method: request.method, path: url.pathname, reason: auth.reason },
        'dashboard request without a valid token rejected',
      );
      response.setHeader('WWW-Authenticate', 'Bearer realm="qubes-nat-broker"');
      throw new HttpError(401, `${auth.reason}: open the dashboard URL with its token`);
    }
    if (auth.via === 'query') {
      response.setHeader('Set-Cookie', sessionCookie(port, options.token));
      response.writeHead(303, { Location: '/' }).end();
      return;
    }

    if (request.method !== 'GET' && request.method !== 'HEAD') {
      checkMutation(request, port);
    }
    if (url.pathname.startsWith('/api/')) {
      await serveApi(request, response, url);
      return;
    }
    serveStatic(request, response, url.pathname, files);
  }

  async function serveApi(request: IncomingMessage, response: ServerResponse, url: URL) {
    if (url.pathname === '/api/events' && request.method === 'GET') {
      response.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        Connection: 'keep-alive',
      });
      if (!liveEvents.attach(response)) {
        response.end('event: problem\ndata: {"problem":"too many open dashboard pages"}\n\n');
      }
      return;
    }

    const segments = url.pathname.slice('/api/'.length).split('/').map(decodeSegment);
    const body =
      request.method === 'POST' || request.method === 'PUT' ? await readJsonBody(request) : null;
    const result = await handleApi(
      { context: options.context, prompts, live: liveEvents, logFile: options.logFile },
      { method: request.method ?? 'GET', segments, query: url.searchParams, body },
    );
    sendJson(response, result.status, result.body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}/`;
  logger.info({ url: base }, 'dashboard started');

  return {
    url: base,
    loginUrl: `${base}?token=${options.token}`,
    port,
    async close() {
      liveEvents.stop();
      prompts?.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      logger.info({ url: base }, 'dashboard stopped');
    },
  };
}

/**
 * Checks a state-changing request: a JSON body (which a cross-site HTML form
 * cannot send) and, when the browser names an origin, the dashboard's own.
 */
function checkMutation(request: IncomingMessage, port: number): void {
  const origin = request.headers.origin;
  if (
    origin !== undefined &&
    origin !== `http://127.0.0.1:${port}` &&
    origin !== `http://localhost:${port}`
  ) {
    throw new HttpError(403, `cross-origin request from ${origin.slice(0, 100)} rejected`);
  }
  const hasBody = request.method === 'POST' || request.method === 'PUT';
  const type = request.headers['content-type'] ?? '';
  if (hasBody && !/^application\/json(;|$)/.test(type)) {
    throw new HttpError(415, 'send the request body as application/json');
  }
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new HttpError(400, `request body is not valid JSON: ${(error as Error).message}`);
  }
}

function serveStatic(
  request: IncomingMessage,
  response: ServerResponse,
  pathname: string,
  files: ReadonlyMap<string, StaticFile>,
): void {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    throw new HttpError(405, `${request.method} is not allowed on ${pathname}`);
  }
  const name = pathname === '/' ? 'index.html' : pathname.replace(/^\/static\//, '');
  const file = pathname === '/' || pathname.startsWith('/static/') ? files.get(name) : undefined;
  if (file === undefined) {
    throw new HttpError(404, `no page ${pathname}`);
  }
  response.writeHead(200, { 'Content-Type': file.contentType, 'Content-Length': file.body.length });
  response.end(request.method === 'HEAD' ? undefined : file.body);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  response.end(text);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `invalid URL segment ${segment.slice(0, 80)}`);
  }
}
