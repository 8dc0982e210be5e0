import { createLogger } from '../rpc/logger.js';
import {
  type AgentRuntimeOptions,
  createStateApplier,
  type EntryPointResult,
  failureResult,
  isMainModule,
} from './agent-setup.js';

/**
 * Boot and reload hook: re-installs the stored state, minus entries that have
 * expired meanwhile, after a reboot or after the stock tables were reloaded
 * (which may flush every table). Run by the systemd unit
 * `qubes-nat-broker-restore.service` and by the `qubes-firewall.d` hook.
 * Prints `{"result":"restored",…}` or `{"result":"no-state"}` and exits 0;
 * prints an error result and exits non-zero when it cannot restore.
 */

export async function runRestore(options: AgentRuntimeOptions): Promise<EntryPointResult> {
  const logger = options.logger ?? createLogger('agent-restore');
  try {
    const applier = await createStateApplier({ ...options, logger });
    const outcome = await applier.restore();
    return { exitCode: 0, output: JSON.stringify(outcome) };
  } catch (error) {
    return failureResult(error, logger);
  }
}

if (isMainModule(import.meta.url)) {
  const result = await runRestore({ env: process.env });
  process.stdout.write(`${result.output}\n`);
  process.exitCode = result.exitCode;
}
