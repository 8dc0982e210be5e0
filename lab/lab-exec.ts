import { spawn } from 'node:child_process';

/** Output of a finished command. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Text written to the command's standard input. */
  input?: string;
  /** Kill the command after this long. Default 20000 ms. */
  timeoutMs?: number;
  /** Return a non-zero exit code instead of throwing. */
  allowFailure?: boolean;
  env?: NodeJS.ProcessEnv;
}

export class LabCommandError extends Error {
  constructor(
    readonly command: string[],
    readonly result: CommandResult,
  ) {
    super(
      `command failed with exit code ${result.exitCode}: ${command.join(' ')}\n${result.stderr.trim()}`,
    );
    this.name = 'LabCommandError';
  }
}

const DEFAULT_TIMEOUT_MS = 20_000;

/** Runs a program (no shell) and collects its output. Throws LabCommandError on a non-zero exit unless allowFailure. */
export function runCommand(command: string[], options: RunOptions = {}): Promise<CommandResult> {
  const [program, ...args] = command;
  if (program === undefined) throw new Error('runCommand needs a program name');

  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const result: CommandResult = { exitCode: code ?? (signal ? 128 : 1), stdout, stderr };
      if (result.exitCode !== 0 && !options.allowFailure) {
        reject(new LabCommandError(command, result));
        return;
      }
      resolve(result);
    });
    child.stdin.on('error', () => {
      // The program may exit before reading its input; its exit code reports the failure.
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a command inside a network namespace with `ip netns exec`. */
export function runInNamespace(
  namespace: string,
  command: string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return runCommand(['ip', 'netns', 'exec', namespace, ...command], options);
}

/** Loads an nft script into a namespace in one transaction. */
export async function loadNftScript(namespace: string, script: string): Promise<void> {
  await runInNamespace(namespace, ['nft', '-f', '-'], { input: script });
}

/** Runs `ip` commands in one batch, inside a namespace when given. */
export async function runIpBatch(namespace: string | null, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const prefix = namespace === null ? ['ip'] : ['ip', '-n', namespace];
  await runCommand([...prefix, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

/** Resolves after the given time. */
export function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}
