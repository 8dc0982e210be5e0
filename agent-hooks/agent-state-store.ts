import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { lock } from 'proper-lockfile';
import { type AgentState, agentStateSchema } from '../rpc/agent-state.js';
import type { Logger } from '../rpc/logger.js';
import { AgentError, AgentErrorCode } from './agent-errors.js';

/**
 * The last state the agent applied, kept in one JSON file so that the
 * restore hook can re-apply it after a reboot or a reload of the stock
 * tables. Writes are atomic: temp file, fsync, rename, fsync of the folder.
 */

export const DEFAULT_STATE_DIR = '/var/lib/qubes-nat-broker';
export const STATE_FILE_NAME = 'agent-state.json';
export const LOCK_DIR_NAME = 'agent-state.lock';

/**
 * How long a second apply waits for the first: 40 tries 50-250 ms apart,
 * about 10 s in all. A lock older than 30 s belongs to a dead process.
 */
const LOCK_RETRIES = { retries: 40, minTimeout: 50, maxTimeout: 250 };
const LOCK_STALE_MS = 30_000;

export type StoredStateResult =
  | { kind: 'missing' }
  | { kind: 'loaded'; state: AgentState }
  | { kind: 'corrupt'; reason: string };

export class AgentStateStore {
  readonly filePath: string;

  constructor(
    private readonly stateDir: string,
    private readonly logger: Logger,
  ) {
    this.filePath = join(stateDir, STATE_FILE_NAME);
  }

  /**
   * Runs `task` while holding the state lock, so that two qrexec calls that
   * arrive together apply and store one after the other.
   */
  async withLock<T>(task: () => Promise<T>): Promise<T> {
    let release: () => Promise<void>;
    try {
      await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
      release = await lock(this.stateDir, {
        lockfilePath: join(this.stateDir, LOCK_DIR_NAME),
        realpath: false,
        retries: LOCK_RETRIES,
        stale: LOCK_STALE_MS,
      });
    } catch (error) {
      throw new AgentError(
        AgentErrorCode.StateStoreFailed,
        `failed to lock ${this.stateDir}: ${(error as Error).message}; retry when the running apply has finished`,
      );
    }

    try {
      return await task();
    } finally {
      await release().catch((error: unknown) => {
        this.logger.error({ err: error, stateDir: this.stateDir }, 'failed to release state lock');
      });
    }
  }

  /** Reads the stored state; a missing file is `missing`, unreadable content is `corrupt`. */
  async read(): Promise<StoredStateResult> {
    let text: string;
    try {
      text = await readFile(this.filePath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        return { kind: 'missing' };
      }
      throw new AgentError(
        AgentErrorCode.StateStoreFailed,
        `failed to read ${this.filePath}: ${(error as Error).message}`,
      );
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      return { kind: 'corrupt', reason: `not JSON: ${(error as Error).message}` };
    }

    const parsed = agentStateSchema.safeParse(json);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      return {
        kind: 'corrupt',
        reason: `not an AgentState: ${first?.path.join('.') ?? ''} ${first?.message ?? ''}`.trim(),
      };
    }
    return { kind: 'loaded', state: parsed.data };
  }

  /** Replaces the stored state atomically. */
  async write(state: AgentState): Promise<void> {
    const tempPath = `${this.filePath}.${process.pid}.tmp`;
    try {
      await mkdir(this.stateDir, { recursive: true, mode: 0o700 });

      const file = await open(tempPath, 'w', 0o600);
      try {
        await file.writeFile(`${JSON.stringify(state)}\n`, 'utf8');
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tempPath, this.filePath);

      // The rename is durable only once the folder entry is on disk.
      const folder = await open(this.stateDir, 'r');
      try {
        await folder.sync();
      } finally {
        await folder.close();
      }
    } catch (error) {
      await unlink(tempPath).catch(() => undefined);
      throw new AgentError(
        AgentErrorCode.StateStoreFailed,
        `failed to write ${this.filePath}: ${(error as Error).message}; check that ${this.stateDir} is writable`,
      );
    }
    this.logger.debug(
      { file: this.filePath, issuedAtUnixMs: state.issuedAtUnixMs },
      'state stored',
    );
  }
}
