import { spawn } from 'node:child_process';

/**
 * Runs the command-line tools the agent drives (`nft`, `conntrack`,
 * `qubesdb-read`). Components take a CommandRunner in their constructor, so
 * tests can run the same code inside a lab network namespace by giving a
 * prefix such as `ip netns exec ha1-netvm`.
 */

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /** Runs the tool with `args`, writes `input` to its standard input, and collects its output. */
  run(args: readonly string[], input?: string): Promise<CommandResult>;
}

export interface SpawnCommandRunnerOptions {
  /** Words placed before the executable, such as `['ip', 'netns', 'exec', 'ha1-netvm']`. */
  prefix?: readonly string[];
  /** Time after which the process is killed; default 30000 ms. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Exit code reported when the process could not be started or was killed. */
export const EXIT_NOT_STARTED = -1;

export class SpawnCommandRunner implements CommandRunner {
  private readonly prefix: readonly string[];
  private readonly timeoutMs: number;

  constructor(
    private readonly executable: string,
    options: SpawnCommandRunnerOptions = {},
  ) {
    this.prefix = options.prefix ?? [];
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  run(args: readonly string[], input?: string): Promise<CommandResult> {
    const [command = this.executable, ...prefixArgs] = [...this.prefix, this.executable];
    const child = spawn(command, [...prefixArgs, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: this.timeoutMs,
    });

    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));

    return new Promise((resolve) => {
      let settled = false;
      const settle = (result: CommandResult): void => {
        if (!settled) {
          settled = true;
          resolve(result);
        }
      };

      // A spawn failure (such as ENOENT) may come without a 'close' event.
      child.on('error', (error) => {
        settle({
          exitCode: EXIT_NOT_STARTED,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: `failed to run ${this.executable}: ${error.message}`,
        });
      });

      // A tool that exits before reading its input closes the pipe. The exit
      // code reports the outcome, so the EPIPE is not an error here.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');

      child.on('close', (code, signal) => {
        const signalText = signal === null ? '' : `${this.executable} killed by ${signal}\n`;
        settle({
          exitCode: code ?? EXIT_NOT_STARTED,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: `${Buffer.concat(stderr).toString('utf8')}${signalText}`,
        });
      });
    });
  }
}

/** Creates the runner for `nft`. */
export function createNftRunner(options: SpawnCommandRunnerOptions = {}): CommandRunner {
  return new SpawnCommandRunner('nft', options);
}
