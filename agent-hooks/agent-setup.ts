import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '../rpc/logger.js';
import {
  AGENT_EXIT_CODES,
  AgentError,
  type AgentErrorResult,
  toErrorResult,
} from './agent-errors.js';
import { AgentStateStore, DEFAULT_STATE_DIR } from './agent-state-store.js';
import { ConntrackCleaner } from './conntrack-cleaner.js';
import { createNftRunner, SpawnCommandRunner } from './nft-runner.js';
import { type Clock, StateApplier, systemClock } from './state-applier.js';
import { createVmNameResolver } from './vm-name.js';

/**
 * Wiring shared by the entry points: builds a StateApplier from the process
 * environment, and turns any failure into the one-line error result.
 *
 * Environment:
 * - `QNB_STATE_DIR`: folder of the stored state (default `/var/lib/qubes-nat-broker`).
 * - `QNB_VM_NAME`: this VM's name; without it `qubesdb-read /name` is asked.
 * - `QNB_LOG_LEVEL`: pino level of the logs on standard error.
 */

export interface AgentRuntimeOptions {
  env: NodeJS.ProcessEnv;
  /** Words run before every tool, such as `['ip', 'netns', 'exec', 'ha1-netvm']`; none on a real VM. */
  commandPrefix?: readonly string[];
  logger?: Logger;
  clock?: Clock;
}

export async function createStateApplier(options: AgentRuntimeOptions): Promise<StateApplier> {
  const logger = options.logger ?? createLogger('agent');
  const prefix = options.commandPrefix ?? [];
  const stateDir = options.env.QNB_STATE_DIR || DEFAULT_STATE_DIR;

  const resolveVmName = createVmNameResolver(
    options.env,
    new SpawnCommandRunner('qubesdb-read', { prefix }),
  );
  const vmName = await resolveVmName();

  return new StateApplier({
    vmName,
    nft: createNftRunner({ prefix }),
    conntrack: new ConntrackCleaner(new SpawnCommandRunner('conntrack', { prefix }), logger),
    store: new AgentStateStore(stateDir, logger),
    clock: options.clock ?? systemClock,
    logger,
  });
}

export interface EntryPointResult {
  exitCode: number;
  /** The one-line JSON to print on standard output, without the newline. */
  output: string;
}

/** Exit code for a failure that is not an AgentError (a bug); the message still goes out as JSON. */
export const EXIT_INTERNAL_ERROR = 1;

/** Converts a thrown value into the error result line and exit code, logging it. */
export function failureResult(error: unknown, logger: Logger): EntryPointResult {
  if (error instanceof AgentError) {
    logger.error({ code: error.code, violations: error.violations }, error.message);
    return { exitCode: AGENT_EXIT_CODES[error.code], output: JSON.stringify(toErrorResult(error)) };
  }

  logger.error({ err: error }, 'agent failed');
  const result: Omit<AgentErrorResult, 'code'> & { code: 'internal-error' } = {
    result: 'error',
    code: 'internal-error',
    message: error instanceof Error ? error.message : String(error),
  };
  return { exitCode: EXIT_INTERNAL_ERROR, output: JSON.stringify(result) };
}

/** Returns true when the module at `moduleUrl` is the script node was started with. */
export function isMainModule(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) {
    return false;
  }
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
