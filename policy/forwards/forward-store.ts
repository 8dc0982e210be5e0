import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import lockfile from 'proper-lockfile';
import { z } from 'zod';
import type { Logger } from '../../rpc/logger.js';
import { type ForwardRule, forwardRuleSchema } from './forward-rule.js';

/**
 * The persistent forward store in dom0: one JSON file (by default
 * `/var/lib/qubes-nat-broker/forwards.json`) of this form:
 *
 *   { "format": "qubes-nat-broker-forwards", "version": 1,
 *     "lastIssuedAtUnixMs": 1764870000000,
 *     "forwards": [ { "id": "f-0123456789ab", "qube": "work", "protocol": "tcp",
 *                     "ports": { "first": 8443, "last": 8443 }, ... } ] }
 *
 * Writers hold a lock file beside it, write a temporary file, fsync it and
 * rename it over the old one, so a reader sees the old or the new store and a
 * crash never leaves half a file. A store that does not parse is never
 * overwritten: every command fails with the reason until a person fixes it.
 */

export const FORWARD_STORE_FORMAT = 'qubes-nat-broker-forwards';
export const FORWARD_STORE_VERSION = 1;

/** How long a writer waits for another writer's lock before giving up. */
const LOCK_WAIT_RETRIES = 100;
/** A lock older than this belongs to a dead writer and is taken over. */
const LOCK_STALE_MS = 30_000;

export const forwardStoreSchema = z.strictObject({
  format: z.literal(FORWARD_STORE_FORMAT),
  version: z.literal(FORWARD_STORE_VERSION),
  /** Last `issuedAtUnixMs` sent to any agent, so states sent later always compare newer. */
  lastIssuedAtUnixMs: z.number().int().min(0),
  forwards: z.array(forwardRuleSchema),
});
export type ForwardStoreData = z.infer<typeof forwardStoreSchema>;

export class ForwardStoreError extends Error {
  override name = 'ForwardStoreError';
}

export function emptyForwardStore(): ForwardStoreData {
  return {
    format: FORWARD_STORE_FORMAT,
    version: FORWARD_STORE_VERSION,
    lastIssuedAtUnixMs: 0,
    forwards: [],
  };
}

export function newForwardId(): string {
  return `f-${randomBytes(6).toString('hex')}`;
}

export interface ForwardStoreOptions {
  filePath: string;
  logger: Logger;
}

export interface StoreUpdate<T> {
  /** The new store to write, or null to leave the file as it is. */
  data: ForwardStoreData | null;
  result: T;
}

export class ForwardStore {
  readonly filePath: string;
  private readonly logger: Logger;
  /** Serializes updates within this process; the lock file serializes processes. */
  private updateQueue: Promise<unknown> = Promise.resolve();

  constructor(options: ForwardStoreOptions) {
    this.filePath = options.filePath;
    this.logger = options.logger;
  }

  /** Reads the store without locking; the atomic rename makes that safe. */
  async read(): Promise<ForwardStoreData> {
    let text: string;
    try {
      text = await readFile(this.filePath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        return emptyForwardStore();
      }
      throw new ForwardStoreError(
        `cannot read the forward store ${this.filePath}: ${(error as Error).message}`,
      );
    }
    return parseForwardStore(text, this.filePath);
  }

  /**
   * Runs `update` while holding the store lock, then writes what it returns.
   * When `update` throws, the file stays as it was.
   */
  async update<T>(update: (data: ForwardStoreData) => Promise<StoreUpdate<T>>): Promise<T> {
    const run = this.updateQueue.then(() => this.updateLocked(update));
    this.updateQueue = run.catch(() => undefined);
    return run;
  }

  private async updateLocked<T>(
    update: (data: ForwardStoreData) => Promise<StoreUpdate<T>>,
  ): Promise<T> {
    await mkdir(dirname(this.filePath), { recursive: true, mode: 0o700 });
    const release = await lockfile.lock(this.filePath, {
      realpath: false,
      stale: LOCK_STALE_MS,
      retries: { retries: LOCK_WAIT_RETRIES, factor: 1.3, minTimeout: 10, maxTimeout: 200 },
    });

    try {
      const current = await this.read();
      const { data, result } = await update(current);
      if (data !== null) {
        await this.write(data);
      }
      return result;
    } finally {
      await release();
    }
  }

  private async write(data: ForwardStoreData): Promise<void> {
    const checked = forwardStoreSchema.parse(data);
    const temporaryPath = `${this.filePath}.${process.pid}.tmp`;
    const file = await open(temporaryPath, 'w', 0o600);
    try {
      await file.writeFile(`${JSON.stringify(checked, null, 2)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }

    try {
      await rename(temporaryPath, this.filePath);
    } catch (error) {
      await unlink(temporaryPath).catch(() => undefined);
      throw error;
    }
    await syncDirectory(dirname(this.filePath));
    this.logger.debug({ file: this.filePath, forwards: checked.forwards.length }, 'store written');
  }
}

export function parseForwardStore(text: string, filePath: string): ForwardStoreData {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ForwardStoreError(
      `the forward store ${filePath} is not valid JSON (${(error as Error).message}); ` +
        'fix the file or move it away to start with no forwards',
    );
  }

  const parsed = forwardStoreSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.message}`)
      .join('; ');
    throw new ForwardStoreError(
      `the forward store ${filePath} is not a valid ${FORWARD_STORE_FORMAT} file (${issues}); ` +
        'fix the file or move it away to start with no forwards',
    );
  }
  return parsed.data;
}

/** Makes a rename durable: the directory entry itself must reach the disk. */
async function syncDirectory(path: string): Promise<void> {
  const directory = await open(path, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

export type { ForwardRule };
