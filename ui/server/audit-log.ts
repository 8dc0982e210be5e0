import { open } from 'node:fs/promises';
import { z } from 'zod';

/**
 * The audit view of the dom0 log (`dom0.log`: pino JSON lines, one per
 * change dom0 made). Only the end of the file is read, so a large log costs
 * the same as a small one.
 */

/** Bytes read from the end of the log for one query. */
export const AUDIT_TAIL_BYTES = 1024 * 1024;
export const MAX_AUDIT_ENTRIES = 500;

/** pino's numeric levels. */
export const LOG_LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
} as const;
export type LogLevelName = keyof typeof LOG_LEVELS;

export const auditQuerySchema = z.strictObject({
  /** Lowest level shown. */
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /** Entries that name this qube anywhere in their fields. */
  qube: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_.-]{0,30}$/, 'must be a qube name')
    .optional(),
  /** Case-insensitive text searched in the message and the fields. */
  text: z.string().max(100).optional(),
  /** Entries at or after this UNIX time in milliseconds. */
  sinceUnixMs: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_AUDIT_ENTRIES).default(200),
});
export type AuditQuery = z.infer<typeof auditQuerySchema>;

const pinoLineSchema = z
  .object({
    level: z.number(),
    time: z.number(),
    msg: z.string().optional(),
    name: z.string().optional(),
  })
  .passthrough();

export interface AuditEntry {
  timeUnixMs: number;
  level: LogLevelName | 'unknown';
  component: string;
  message: string;
  /** Every field except pino's own (level, time, msg, name, pid, hostname). */
  details: Record<string, unknown>;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** True when more entries matched than `limit`, or the file is longer than the part read. */
  truncated: boolean;
}

const PINO_FIELDS = new Set(['level', 'time', 'msg', 'name', 'pid', 'hostname']);

/** Reads the newest matching entries, newest first; a missing log is an empty one. */
export async function readAuditLog(logFile: string, query: AuditQuery): Promise<AuditPage> {
  const { text, partial } = await readTail(logFile, AUDIT_TAIL_BYTES);
  const lines = text.split('\n');
  if (partial) {
    lines.shift();
  }

  const matches: AuditEntry[] = [];
  for (let index = lines.length - 1; index >= 0; index--) {
    const entry = parseAuditLine(lines[index] ?? '');
    if (entry === null || !matchesQuery(entry, query)) {
      continue;
    }
    if (matches.length === query.limit) {
      return { entries: matches, truncated: true };
    }
    matches.push(entry);
  }
  return { entries: matches, truncated: partial };
}

/** Parses one pino line; returns null for blank or foreign lines. */
export function parseAuditLine(line: string): AuditEntry | null {
  if (line.trim() === '') {
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return null;
  }
  const parsed = pinoLineSchema.safeParse(json);
  if (!parsed.success) {
    return null;
  }

  const details: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed.data)) {
    if (!PINO_FIELDS.has(key)) {
      details[key] = value;
    }
  }
  return {
    timeUnixMs: parsed.data.time,
    level: levelName(parsed.data.level),
    component: parsed.data.name ?? '',
    message: parsed.data.msg ?? '',
    details,
  };
}

function matchesQuery(entry: AuditEntry, query: AuditQuery): boolean {
  const level = entry.level === 'unknown' ? 0 : LOG_LEVELS[entry.level];
  if (level < LOG_LEVELS[query.level]) {
    return false;
  }
  if (query.sinceUnixMs !== undefined && entry.timeUnixMs < query.sinceUnixMs) {
    return false;
  }

  const detailsText = JSON.stringify(entry.details);
  if (query.qube !== undefined && !detailsText.includes(JSON.stringify(query.qube))) {
    return false;
  }
  if (query.text !== undefined && query.text !== '') {
    const haystack = `${entry.message} ${detailsText}`.toLowerCase();
    if (!haystack.includes(query.text.toLowerCase())) {
      return false;
    }
  }
  return true;
}

function levelName(level: number): LogLevelName | 'unknown' {
  const found = Object.entries(LOG_LEVELS).find(([, value]) => value === level);
  return found === undefined ? 'unknown' : (found[0] as LogLevelName);
}

async function readTail(
  file: string,
  maxBytes: number,
): Promise<{ text: string; partial: boolean }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return { text: '', partial: false };
    }
    throw error;
  }

  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    return { text: buffer.toString('utf8'), partial: start > 0 };
  } finally {
    await handle.close();
  }
}
