import { pino } from 'pino';

/**
 * Creates the pino logger of one component. Logs go to standard error, so
 * that qrexec services keep standard output for their reply, or to `file`
 * when given (appended). `QNB_LOG_LEVEL` sets the level (default `info`).
 */
export function createLogger(component: string, options: { file?: string } = {}): pino.Logger {
  const destination =
    options.file === undefined
      ? pino.destination({ fd: 2, sync: true })
      : pino.destination({ dest: options.file, mkdir: true, append: true, sync: true });
  return pino({ name: component, level: process.env.QNB_LOG_LEVEL ?? 'info' }, destination);
}

export type Logger = pino.Logger;
