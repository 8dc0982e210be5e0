import {
  answerPrompts,
  PROMPT_TIMEOUT_MS,
  type PromptMessage,
} from '../../lab/services/prompt-socket.js';
import type { Logger } from '../../rpc/logger.js';

/**
 * The lab's pending dom0 prompts, held for the dashboard. It connects to the
 * prompt socket like the terminal of `npm run lab` does, so a prompt goes to
 * both and the first answer wins. A prompt stays listed until it is answered
 * from the page or its timeout passes, when the prompter has denied it.
 */

export interface PendingPrompt extends PromptMessage {
  receivedAtUnixMs: number;
  expiresAtUnixMs: number;
}

export interface PendingPromptsOptions {
  socketPath: string;
  logger: Logger;
  nowUnixMs?: () => number;
  timeoutMs?: number;
  /** Called whenever a prompt arrives or leaves. */
  onChange: () => void;
}

interface Entry {
  prompt: PendingPrompt;
  resolve: (allowed: boolean) => void;
  timer: NodeJS.Timeout;
}

export class PendingPrompts {
  private readonly entries = new Map<string, Entry>();
  private disconnect: (() => void) | null = null;
  private readonly nowUnixMs: () => number;
  private readonly timeoutMs: number;

  constructor(private readonly options: PendingPromptsOptions) {
    this.nowUnixMs = options.nowUnixMs ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? PROMPT_TIMEOUT_MS;
  }

  async start(): Promise<void> {
    this.disconnect = await answerPrompts(this.options.socketPath, (prompt) => this.hold(prompt));
    this.options.logger.info({ socket: this.options.socketPath }, 'dashboard follows prompts');
  }

  stop(): void {
    this.disconnect?.();
    this.disconnect = null;
    for (const entry of this.entries.values()) {
      clearTimeout(entry.timer);
    }
    this.entries.clear();
  }

  list(): PendingPrompt[] {
    return [...this.entries.values()].map((entry) => entry.prompt);
  }

  /** Answers a pending prompt; returns false when it is not pending (answered or timed out). */
  answer(id: string, allowed: boolean): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      return false;
    }
    this.options.logger.info(
      {
        source: entry.prompt.source,
        service: entry.prompt.service,
        argument: entry.prompt.argument,
        allowed,
      },
      'prompt answered from the dashboard',
    );
    this.finish(id, allowed);
    return true;
  }

  private hold(message: PromptMessage): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const receivedAtUnixMs = this.nowUnixMs();
      const prompt: PendingPrompt = {
        ...message,
        receivedAtUnixMs,
        expiresAtUnixMs: receivedAtUnixMs + this.timeoutMs,
      };
      // The prompter denies on its own timeout; answering then is ignored but harmless.
      const timer = setTimeout(() => this.finish(message.id, false), this.timeoutMs);
      this.entries.set(message.id, { prompt, resolve, timer });
      this.options.onChange();
    });
  }

  private finish(id: string, allowed: boolean): void {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      return;
    }
    clearTimeout(entry.timer);
    this.entries.delete(id);
    entry.resolve(allowed);
    this.options.onChange();
  }
}
