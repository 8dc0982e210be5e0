import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Lab fixture for the NAT-PMP, PCP and STUN tests: a client namespace and a broker
 * namespace joined by one veth pair, named `eth0` on both ends, plus one test
 * server process in the broker namespace. Requires root.
 */

/** Names and addresses of the two namespaces, in CIDR notation. */
export interface TwoNamespaceFixtureOptions {
  /** Namespace name prefix: 'hp1' gives hp1-client and hp1-broker. */
  prefix: string;
  /** Addresses of the client's eth0, such as ['10.200.0.2/24']. */
  clientAddresses: string[];
  /** Address of the broker's eth0, such as '10.200.0.1/24'. */
  brokerAddress: string;
  /** Whether to write the server's stderr (its pino log) to a temporary file for `serverLog()`. */
  logServerStderr?: boolean;
}

/** Exit code and combined stdout and stderr of a command. */
export interface ClientCommandResult {
  exitCode: number;
  output: string;
}

/** Two namespaces and the server in the broker namespace. Nothing exists until `start()`. */
export interface TwoNamespaceFixture {
  readonly clientNamespace: string;
  readonly brokerNamespace: string;
  /**
   * Deletes namespaces left over from an earlier run, creates both with lo
   * and eth0 up, then starts `serverCommand` in the broker namespace. Returns
   * the server's first stdout chunk once it arrives.
   */
  start(serverCommand: string[]): Promise<string>;
  /** Runs `command` in the client namespace and returns its stdout. Throws on a non-zero exit. */
  execInClient(command: string[], timeoutMs: number): string;
  /** Runs `command` in the client namespace and never throws on a non-zero exit. */
  runInClient(command: string[], timeoutMs: number): ClientCommandResult;
  /**
   * Reads the server's log so far. Requires `logServerStderr`. The log goes
   * to a file because execFileSync blocks the event loop of the test process,
   * which then cannot drain a pipe.
   */
  serverLog(): string;
  /** Stops the server, deletes both namespaces and the log. Safe to call when they do not exist. */
  destroy(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

/** Builds the fixture for the given prefix and addresses without touching the network yet. */
export function createTwoNamespaceFixture(
  options: TwoNamespaceFixtureOptions,
): TwoNamespaceFixture {
  const clientNamespace = `${options.prefix}-client`;
  const brokerNamespace = `${options.prefix}-broker`;
  let server: ChildProcess | undefined;
  let logDirectory: string | undefined;

  function destroy(): void {
    server?.kill('SIGTERM');
    for (const namespace of [clientNamespace, brokerNamespace]) {
      try {
        ip(['netns', 'del', namespace]);
      } catch {
        // Not created, or already gone.
      }
    }

    if (logDirectory !== undefined) {
      rmSync(logDirectory, { recursive: true, force: true });
      logDirectory = undefined;
    }
  }

  function createNamespaces(): void {
    ip(['netns', 'add', clientNamespace]);
    ip(['netns', 'add', brokerNamespace]);
    ip([
      '-n',
      clientNamespace,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      brokerNamespace,
    ]);

    for (const address of options.clientAddresses) {
      ip(['-n', clientNamespace, 'addr', 'add', address, 'dev', 'eth0']);
    }
    ip(['-n', brokerNamespace, 'addr', 'add', options.brokerAddress, 'dev', 'eth0']);

    for (const namespace of [clientNamespace, brokerNamespace]) {
      ip(['-n', namespace, 'link', 'set', 'lo', 'up']);
      ip(['-n', namespace, 'link', 'set', 'eth0', 'up']);
    }
  }

  function logPath(): string {
    if (logDirectory === undefined) {
      throw new Error(
        `no server log for ${options.prefix}: pass logServerStderr: true and call start() first`,
      );
    }
    return join(logDirectory, 'server.log');
  }

  async function start(serverCommand: string[]): Promise<string> {
    destroy();
    createNamespaces();

    let stderr: 'ignore' | number = 'ignore';
    if (options.logServerStderr === true) {
      logDirectory = mkdtempSync(join(tmpdir(), `${options.prefix}-`));
      stderr = openSync(logPath(), 'w');
    }

    const child = spawn('ip', ['netns', 'exec', brokerNamespace, ...serverCommand], {
      stdio: ['ignore', 'pipe', stderr],
    });
    server = child;
    const [firstChunk] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
    return firstChunk.toString();
  }

  function execInClient(command: string[], timeoutMs: number): string {
    return execFileSync('ip', ['netns', 'exec', clientNamespace, ...command], {
      encoding: 'utf8',
      timeout: timeoutMs,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  function runInClient(command: string[], timeoutMs: number): ClientCommandResult {
    try {
      return { exitCode: 0, output: execInClient(command, timeoutMs) };
    } catch (error) {
      const failed = error as { status?: number; stdout?: string; stderr?: string };
      return {
        exitCode: failed.status ?? -1,
        output: `${failed.stdout ?? ''}${failed.stderr ?? ''}`,
      };
    }
  }

  return {
    clientNamespace,
    brokerNamespace,
    start,
    execInClient,
    runInClient,
    serverLog: () => readFileSync(logPath(), 'utf8'),
    destroy,
  };
}
