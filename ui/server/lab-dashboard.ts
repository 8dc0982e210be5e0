import { join } from 'node:path';
import { labVmEnvironment } from '../../lab/lab-env.js';
import type { LabState } from '../../lab/lab-state.js';
import { labPromptSocket } from '../../lab/services/lab-paths.js';
import { createDom0Context, DOM0_LOG_FILE } from '../../policy/dom0-context.js';
import { createLogger, type Logger } from '../../rpc/logger.js';
import { newDashboardToken } from './dashboard-auth.js';
import { type Dashboard, startDashboard } from './dashboard-server.js';

/**
 * Starts the dashboard for a running lab. It runs in the root namespace on
 * 127.0.0.1, where a browser on this machine reaches it, and talks to the
 * lab's dom0 through the same Unix sockets and environment as `qvm-forward`
 * run as dom0. Its changes are logged to the lab's dom0 log, like the CLI's.
 */
export async function startLabDashboard(
  state: LabState,
  logger: Logger,
  options: { port?: number; token?: string; pollIntervalMs?: number } = {},
): Promise<Dashboard> {
  const environment = labVmEnvironment(state, 'dom0');
  const stateDir = environment.QNB_STATE_DIR ?? state.dom0.stateDir;
  const logFile = join(stateDir, DOM0_LOG_FILE);
  const context = createDom0Context(environment, {
    logger: createLogger('dom0-dashboard', { file: logFile }),
  });

  return startDashboard({
    context,
    host: '127.0.0.1',
    port: options.port ?? 0,
    token: options.token ?? newDashboardToken(),
    promptSocketPath: labPromptSocket(state),
    logFile,
    logger,
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
  });
}
