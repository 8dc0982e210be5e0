import { pino } from 'pino';

/**
 * Creates the pino logger of one component. Logs go to standard error, so
 * that qrexec services keep standard output for their reply, or to `file`
 * when given (appended). The level is `options.level`, else `QNB_LOG_LEVEL`,
 * else `info`.
 */
export function createLogger(
  component: string,
  options: { file?: string; level?: string } = {},
): pino.Logger {
  const destination =
    options.file === undefined
      ? pino.destination({ fd: 2, sync: true })
      : pino.destination({ dest: options.file, mkdir: true, append: true, sync: true });
  const level = options.level ?? process.env.QNB_LOG_LEVEL ?? 'info';
  return pino({ name: component, level }, destination);
}

export type Logger = pino.Logger;
