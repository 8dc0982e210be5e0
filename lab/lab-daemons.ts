import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from './lab-exec.js';
import { type LabProcess, labNamespace } from './lab-state.js';

/**
 * Starts long-running programs inside lab namespaces. Each gets its own log
 * file under `<runDir>/log/` and is recorded by pid, so teardown (and a human)
 * can find it.
 */

export interface DaemonSpec {
  /** Short name for logs and the state file, such as `miniupnpd`. */
  name: string;
  vm: string;
  command: string[];
  env?: NodeJS.ProcessEnv;
}

export interface DaemonContext {
  prefix: string;
  runDir: string;
}

/** Returns the log file of a daemon. */
export function daemonLogFile(runDir: string, vm: string, name: string): string {
  return join(runDir, 'log', `${vm}-${name}.log`);
}

/** Returns the folder for a daemon's pid, lease and config files. */
export function daemonDir(runDir: string, vm: string): string {
  return join(runDir, 'daemons', vm);
}

/**
 * Starts a program in a VM's namespace, detached from our process group so
 * that Ctrl-C reaches only `lab up`, which then tears the lab down in order.
 * `ip netns exec` execs the program, so the recorded pid is the program's.
 */
export async function startDaemon(context: DaemonContext, spec: DaemonSpec): Promise<LabProcess> {
  const logFile = daemonLogFile(context.runDir, spec.vm, spec.name);
  await mkdir(join(context.runDir, 'log'), { recursive: true });
  const logFd = openSync(logFile, 'a');
  try {
    const child = spawn(
      'ip',
      ['netns', 'exec', labNamespace(context.prefix, spec.vm), ...spec.command],
      {
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: spec.env ?? process.env,
      },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid as number));
    });
    child.unref();
    return { name: spec.name, vm: spec.vm, pid, logFile };
  } finally {
    closeSync(logFd);
  }
}

/** Returns true while a process exists (a zombie counts as gone). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z';
  } catch {
    return false;
  }
}

/**
 * Waits until `ready` returns true, checking every `intervalMs`, or throws
 * after `timeoutMs` with `what` in the message. Also fails early when the
 * process died.
 */
export async function waitUntil(
  what: string,
  ready: () => Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number; process?: LabProcess },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const intervalMs = options.intervalMs ?? 50;
  while (Date.now() < deadline) {
    if (await ready()) return;
    if (options.process && !processAlive(options.process.pid)) {
      throw new Error(
        `${what}: process ${options.process.pid} exited; last lines of ${options.process.logFile}:\n${logTail(options.process.logFile)}`,
      );
    }
    await sleep(intervalMs);
  }
  const hint = options.process
    ? `; last lines of ${options.process.logFile}:\n${logTail(options.process.logFile)}`
    : '';
  throw new Error(`${what}: timed out after ${options.timeoutMs} ms${hint}`);
}

/** Returns the last lines of a log file, for error messages; the file may be gone. */
export function logTail(logFile: string, maxLines = 15): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-maxLines).join('\n');
  } catch {
    return '(log file not readable)';
  }
}
