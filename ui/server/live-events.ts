import { stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { Logger } from '../../rpc/logger.js';
import type { Overview } from './dashboard-data.js';
import type { PendingPrompt } from './pending-prompts.js';

/**
 * The live stream of the dashboard (Server-Sent Events). While a page is
 * connected, the inventory, the features and the store are read every
 * `pollIntervalMs`, and an `overview` event goes out when anything changed,
 * by any writer (the CLI, the broker, expiry). `prompts` goes out when a
 * prompt arrives or leaves, `audit` when the dom0 log grew, and `problem`
 * when the state cannot be read.
 */

export const DEFAULT_POLL_INTERVAL_MS = 1000;
/** Comment lines keep idle connections open through proxies and show a dead peer. */
const KEEPALIVE_INTERVAL_MS = 15_000;
/** Pages connected at once; each costs one socket and nothing per poll. */
export const MAX_EVENT_CLIENTS = 32;

export interface LiveEventsOptions {
  readOverview: () => Promise<Overview>;
  listPrompts: () => PendingPrompt[];
  logFile: string;
  logger: Logger;
  pollIntervalMs?: number;
}

export class LiveEvents {
  private readonly clients = new Set<ServerResponse>();
  private pollTimer: NodeJS.Timeout | null = null;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private lastOverview: Overview | null = null;
  private lastOverviewKey = '';
  private lastLogSize = -1;
  private lastProblem: string | null = null;

  constructor(private readonly options: LiveEventsOptions) {}

  /** Returns false when too many pages are connected. */
  attach(response: ServerResponse): boolean {
    if (this.clients.size >= MAX_EVENT_CLIENTS) {
      return false;
    }
    this.clients.add(response);
    response.on('close', () => {
      this.clients.delete(response);
      if (this.clients.size === 0) {
        this.stopTimers();
      }
    });

    send(response, 'prompts', this.options.listPrompts());
    if (this.lastOverview !== null) {
      send(response, 'overview', this.lastOverview);
    }
    this.startTimers();
    void this.refresh();
    return true;
  }

  /** Reads the state now and pushes what changed, for example right after a change from the page. */
  refresh(): Promise<void> {
    if (this.polling === null) {
      this.polling = this.poll().finally(() => {
        this.polling = null;
      });
    }
    return this.polling;
  }

  notifyPrompts(): void {
    this.broadcast('prompts', this.options.listPrompts());
  }

  stop(): void {
    this.stopTimers();
    for (const client of this.clients) {
      client.end();
    }
    this.clients.clear();
  }

  private async poll(): Promise<void> {
    try {
      const overview = await this.options.readOverview();
      const key = JSON.stringify({ qubes: overview.qubes, forwards: overview.forwards });
      this.lastOverview = overview;
      if (key !== this.lastOverviewKey) {
        this.lastOverviewKey = key;
        this.broadcast('overview', overview);
      }
      this.reportProblem(null);
    } catch (error) {
      this.reportProblem(`cannot read the dom0 state: ${(error as Error).message}`);
    }

    const logSize = await stat(this.options.logFile).then(
      (stats) => stats.size,
      () => 0,
    );
    if (logSize !== this.lastLogSize) {
      this.lastLogSize = logSize;
      this.broadcast('audit', { logSize });
    }
  }

  /** Sends a problem once when it starts and once when it ends, not on every poll. */
  private reportProblem(problem: string | null): void {
    if (problem === this.lastProblem) {
      return;
    }
    this.lastProblem = problem;
    if (problem !== null) {
      this.options.logger.warn({ problem }, 'dashboard cannot read the state');
    }
    this.broadcast('problem', { problem });
  }

  private broadcast(event: string, data: unknown): void {
    for (const client of this.clients) {
      send(client, event, data);
    }
  }

  private startTimers(): void {
    const intervalMs = this.options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.pollTimer ??= setInterval(() => void this.refresh(), intervalMs);
    this.keepaliveTimer ??= setInterval(() => {
      for (const client of this.clients) {
        client.write(': keepalive\n\n');
      }
    }, KEEPALIVE_INTERVAL_MS);
  }

  private stopTimers(): void {
    if (this.pollTimer !== null) {
      clearInterval(this.pollTimer);
      this.pollTimer = null;
    }
    if (this.keepaliveTimer !== null) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
  }
}

function send(response: ServerResponse, event: string, data: unknown): void {
  response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
