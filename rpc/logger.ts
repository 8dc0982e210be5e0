import { pino } from 'pino';

/**
 * Creates the pino logger of one component. Logs go to standard error so that
 * qrexec services keep standard output for their reply. `QNB_LOG_LEVEL` sets
 * the level (default `info`).
 */
export function createLogger(component: string): pino.Logger {
  return pino(
    { name: component, level: process.env.QNB_LOG_LEVEL ?? 'info' },
    pino.destination({ fd: 2, sync: true }),
  );
}

export type Logger = pino.Logger;
