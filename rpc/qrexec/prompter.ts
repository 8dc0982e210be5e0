import type { PolicyRequest } from '../../policy/qrexec-policy/policy-types.js';

/**
 * The dom0 user's decision on an `ask` rule. Real Qubes shows a dialog with the
 * source, service+argument and target choices, never the payload.
 */

export interface PromptChoices {
  defaultTarget?: string;
  /** Targets the user may pick from; `dom0` stands for the admin VM. */
  targets: string[];
}

export interface PromptAnswer {
  allowed: boolean;
  /** Chosen target; when absent the default target is used. */
  target?: string;
}

export interface Prompter {
  prompt(request: PolicyRequest, choices: PromptChoices): Promise<PromptAnswer>;
}

export interface RecordedPrompt {
  request: PolicyRequest;
  choices: PromptChoices;
}

/**
 * A prompter for tests: answers from a queue in order, then with the fixed
 * answer (deny when none is given), and records every prompt it received.
 */
export class ScriptedPrompter implements Prompter {
  readonly prompts: RecordedPrompt[] = [];
  private readonly queue: PromptAnswer[];

  constructor(
    answers: PromptAnswer[] = [],
    private readonly fixedAnswer: PromptAnswer = { allowed: false },
  ) {
    this.queue = [...answers];
  }

  /** Appends answers to the queue. */
  enqueue(...answers: PromptAnswer[]): void {
    this.queue.push(...answers);
  }

  async prompt(request: PolicyRequest, choices: PromptChoices): Promise<PromptAnswer> {
    this.prompts.push({
      request: { ...request },
      choices: { ...choices, targets: [...choices.targets] },
    });
    return this.queue.shift() ?? this.fixedAnswer;
  }
}
