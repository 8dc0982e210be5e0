import { createInterface } from 'node:readline/promises';
import type { LabState } from '../lab-state.js';
import { labPromptSocket } from '../services/lab-paths.js';
import { answerPrompts, type PromptMessage } from '../services/prompt-socket.js';

/**
 * Shows the lab's dom0 policy prompts in the terminal of `npm run lab`, as
 * Qubes shows its dialog: source, service with argument, and target, never
 * the payload. Prompts are asked one at a time.
 */
export async function promptInTerminal(state: LabState): Promise<void> {
  const terminal = createInterface({ input: process.stdin, output: process.stdout });
  // readline takes Ctrl-C from a terminal; pass it on so `lab up` tears down.
  terminal.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
  let queue: Promise<unknown> = Promise.resolve();

  await answerPrompts(labPromptSocket(state), (prompt: PromptMessage) => {
    const answer = queue.then(() => ask(terminal, prompt));
    queue = answer.catch(() => false);
    return answer;
  });
}

async function ask(
  terminal: ReturnType<typeof createInterface>,
  prompt: PromptMessage,
): Promise<boolean> {
  const call = prompt.argument === '' ? prompt.service : `${prompt.service}+${prompt.argument}`;
  const reply = await terminal.question(
    `\n[dom0 prompt] ${prompt.source} requests ${call} on ${prompt.target}. Allow? [y/N] `,
  );
  const allowed = /^y(es)?$/i.test(reply.trim());
  process.stdout.write(allowed ? 'Allowed.\n' : 'Denied.\n');
  return allowed;
}
