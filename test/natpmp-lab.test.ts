import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Drives the unmodified Debian `natpmpc` (libnatpmp) against our server in
 * two namespaces: hp1-client (10.200.0.2) and hp1-broker (10.200.0.1) on one
 * veth pair. The server runs with the in-memory MappingService, a stand-in
 * for the broker core, which needs dom0 and a home router. Requires root and
 * `npx tsc -p tsconfig.json` first (it runs the compiled entry point).
 */

const CLIENT_NS = 'hp1-client';
const BROKER_NS = 'hp1-broker';
const TABLE = {
  externalAddress: '203.0.113.7',
  clients: [{ address: '10.200.0.2', qube: 'work', enabled: true, deniedInternalPorts: [2222] }],
};

let server: ChildProcess | undefined;
const logDirectory = mkdtempSync(join(tmpdir(), 'hp1-'));
const logPath = join(logDirectory, 'server.log');

/** Reads the server's pino log from a file, because execFileSync blocks this process's event loop. */
function serverLog(): string {
  return readFileSync(logPath, 'utf8');
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function teardown(): void {
  server?.kill('SIGTERM');
  for (const namespace of [CLIENT_NS, BROKER_NS]) {
    try {
      ip(['netns', 'del', namespace]);
    } catch {
      // Not created, or already gone.
    }
  }
}

/** Runs natpmpc in the client namespace; returns its exit code and combined output. */
function natpmpc(args: string[]): { exitCode: number; output: string } {
  try {
    const stdout = execFileSync(
      'ip',
      ['netns', 'exec', CLIENT_NS, 'natpmpc', '-g', '10.200.0.1', ...args],
      {
        encoding: 'utf8',
        timeout: 30_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    return { exitCode: 0, output: stdout };
  } catch (error) {
    const failed = error as { status?: number; stdout?: string; stderr?: string };
    return {
      exitCode: failed.status ?? -1,
      output: `${failed.stdout ?? ''}${failed.stderr ?? ''}`,
    };
  }
}

beforeAll(async () => {
  teardown();
  ip(['netns', 'add', CLIENT_NS]);
  ip(['netns', 'add', BROKER_NS]);
  ip([
    '-n',
    CLIENT_NS,
    'link',
    'add',
    'eth0',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    BROKER_NS,
  ]);
  ip(['-n', CLIENT_NS, 'addr', 'add', '10.200.0.2/24', 'dev', 'eth0']);
  ip(['-n', BROKER_NS, 'addr', 'add', '10.200.0.1/24', 'dev', 'eth0']);
  for (const namespace of [CLIENT_NS, BROKER_NS]) {
    ip(['-n', namespace, 'link', 'set', 'lo', 'up']);
    ip(['-n', namespace, 'link', 'set', 'eth0', 'up']);
  }

  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      BROKER_NS,
      'node',
      'dist/broker/port-control/port-control-fake-main.js',
      JSON.stringify(TABLE),
    ],
    { stdio: ['ignore', 'pipe', openSync(logPath, 'w')] },
  );
  server = child;
  const [firstLine] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  expect(firstLine.toString()).toContain('"listening"');
}, 30_000);

afterAll(() => {
  teardown();
  rmSync(logDirectory, { recursive: true, force: true });
});

describe('natpmpc against the broker server', () => {
  it('reads public address', () => {
    const result = natpmpc([]);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(/Public IP address : 203\.0\.113\.7/);
    expect(result.output).toMatch(/epoch = \d+/);
  });

  it('maps TCP port', () => {
    const result = natpmpc(['-a', '1234', '1234', 'tcp', '3600']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(
      /Mapped public port 1234 protocol TCP to local port 1234 liftime 3600/,
    );
    expect(serverLog()).toContain('NAT-PMP mapping granted');
  });

  it('clamps long lifetime', () => {
    const result = natpmpc(['-a', '1235', '1235', 'udp', '999999']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(
      /Mapped public port 1235 protocol UDP to local port 1235 liftime 86400/,
    );
  });

  it('prints error when denied', () => {
    const result = natpmpc(['-a', '2222', '2222', 'tcp', '3600']);
    expect(result.exitCode).not.toBe(0);
    expect(result.output).toMatch(/not authorized/i);
    expect(serverLog()).toContain('NAT-PMP mapping denied');
  });

  it('deletes mapping with lifetime 0', () => {
    const result = natpmpc(['-a', '1234', '1234', 'tcp', '0']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(/Mapped public port 0 protocol TCP to local port 1234 liftime 0/);
    expect(serverLog()).toContain('NAT-PMP mappings removed');
  });

  it('deletes all UDP mappings', () => {
    const result = natpmpc(['-a', '0', '0', 'udp', '0']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(/Mapped public port 0 protocol UDP to local port 0 liftime 0/);
    expect(serverLog()).toMatch(/"internalPorts":\[1235\],"removed":1/);
  });
});
