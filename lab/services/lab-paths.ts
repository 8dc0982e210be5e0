import { join } from 'node:path';
import type { LabState } from '../lab-state.js';

/** Socket where the lab's dom0 prompts wait for an answer (see prompt-socket.ts). */
export function labPromptSocket(state: LabState): string {
  return join(state.dom0.qrexecSocketDir, '..', 'prompts.sock');
}
