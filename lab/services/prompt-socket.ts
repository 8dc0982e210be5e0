import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import type { PolicyRequest } from '../../policy/qrexec-policy/policy-types.js';
import type { Logger } from '../../rpc/logger.js';
import type { PromptAnswer, PromptChoices, Prompter } from '../../rpc/qrexec/prompter.js';

/**
 * The lab's stand-in for the dom0 policy prompt. The qrexec router asks
 * through this prompter; whoever is connected to the prompt socket (the
 * terminal of `npm run lab`, a test, the dashboard) sees the prompt as one
 * JSON line and answers with one. The first answer wins. With nobody
 * connected, the fixed answer applies (deny unless the lab was started with
 * `--answer allow`), so a request never waits for a person who is not there.
 *
 * Prompt line: {"id", "source", "service", "argument", "target", "choices"}
 * Answer line: {"id", "allowed": true|false}
 */

/** Time a prompt waits for an answer before it is denied, as an unanswered dialog would be. */
export const PROMPT_TIMEOUT_MS = 60_000;

export interface PromptMessage {
  id: string;
  source: string;
  service: string;
  argument: string;
  target: string;
  choices: PromptChoices;
}

const answerSchema = z.strictObject({ id: z.string().max(64), allowed: z.boolean() });

export class SocketPrompter implements Prompter {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();
  private readonly pending = new Map<string, (answer: PromptAnswer) => void>();

  constructor(
    private readonly socketPath: string,
    private readonly fixedAnswer: PromptAnswer | null,
    private readonly logger: Logger,
  ) {
    this.server = createServer((socket) => this.accept(socket));
  }

  async start(): Promise<void> {
    await rm(this.socketPath, { force: true });
    await new Promise<void>((resolve) => this.server.listen(this.socketPath, resolve));
  }

  async stop(): Promise<void> {
    for (const client of this.clients) {
      client.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async prompt(request: PolicyRequest, choices: PromptChoices): Promise<PromptAnswer> {
    if (this.fixedAnswer !== null) {
      this.logger.info(
        { request, allowed: this.fixedAnswer.allowed },
        'prompt answered by --answer',
      );
      return this.fixedAnswer;
    }
    if (this.clients.size === 0) {
      this.logger.info({ request }, 'prompt denied: nobody is connected to answer it');
      return { allowed: false };
    }

    const message: PromptMessage = {
      id: randomUUID(),
      source: request.source,
      service: request.service,
      argument: request.argument ?? '',
      target: request.target,
      choices,
    };
    return new Promise<PromptAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(message.id);
        this.logger.info({ request }, 'prompt timed out; denied');
        resolve({ allowed: false });
      }, PROMPT_TIMEOUT_MS);
      this.pending.set(message.id, (answer) => {
        clearTimeout(timer);
        this.pending.delete(message.id);
        resolve(answer);
      });
      const line = `${JSON.stringify(message)}\n`;
      for (const client of this.clients) {
        client.write(line);
      }
    });
  }

  private accept(socket: Socket): void {
    this.clients.add(socket);
    socket.on('close', () => this.clients.delete(socket));
    socket.on('error', () => socket.destroy());
    const lines = createInterface({ input: socket });
    lines.on('line', (line) => {
      let parsed: z.infer<typeof answerSchema> | null = null;
      try {
        const result = answerSchema.safeParse(JSON.parse(line));
        parsed = result.success ? result.data : null;
      } catch {
        parsed = null;
      }
      if (parsed === null) {
        this.logger.warn({ line: line.slice(0, 100) }, 'invalid prompt answer ignored');
        return;
      }
      this.pending.get(parsed.id)?.({ allowed: parsed.allowed });
    });
  }
}

/**
 * Connects to the prompt socket and answers each prompt with `decide`.
 * Returns a function that disconnects.
 */
export async function answerPrompts(
  socketPath: string,
  decide: (prompt: PromptMessage) => Promise<boolean> | boolean,
): Promise<() => void> {
  const socket = createConnection(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const lines = createInterface({ input: socket });
  lines.on('line', (line) => {
    const prompt = JSON.parse(line) as PromptMessage;
    void Promise.resolve(decide(prompt)).then((allowed) => {
      socket.write(`${JSON.stringify({ id: prompt.id, allowed })}\n`);
    });
  });
  return () => socket.destroy();
}
