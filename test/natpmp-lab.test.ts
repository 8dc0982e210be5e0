import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientCommandResult, createTwoNamespaceFixture } from './two-namespace-fixture.js';

/**
 * Drives the unmodified Debian `natpmpc` (libnatpmp) against our server in
 * two namespaces: hp1-client (10.200.0.2) and hp1-broker (10.200.0.1) on one
 * veth pair. The server runs with the in-memory MappingService, a stand-in
 * for the broker core, which needs dom0 and a home router. Requires root and
 * `npx tsc -p tsconfig.json` first (it runs the compiled entry point).
 */

const TABLE = {
  externalAddress: '203.0.113.7',
  clients: [{ address: '10.200.0.2', qube: 'work', enabled: true, deniedInternalPorts: [2222] }],
};

const SERVER_COMMAND = [
  'node',
  'dist/broker/port-control/port-control-fake-main.js',
  JSON.stringify(TABLE),
];

const fixture = createTwoNamespaceFixture({
  prefix: 'hp1',
  clientAddresses: ['10.200.0.2/24'],
  brokerAddress: '10.200.0.1/24',
  logServerStderr: true,
});

/** Runs natpmpc in the client namespace; returns its exit code and combined output. */
function natpmpc(args: string[]): ClientCommandResult {
  return fixture.runInClient(['natpmpc', '-g', '10.200.0.1', ...args], 30_000);
}

beforeAll(async () => {
  const firstLine = await fixture.start(SERVER_COMMAND);
  expect(firstLine).toContain('"listening"');
}, 30_000);

afterAll(() => fixture.destroy());

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
    expect(fixture.serverLog()).toContain('NAT-PMP mapping granted');
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
    expect(fixture.serverLog()).toContain('NAT-PMP mapping denied');
  });

  it('deletes mapping with lifetime 0', () => {
    const result = natpmpc(['-a', '1234', '1234', 'tcp', '0']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(/Mapped public port 0 protocol TCP to local port 1234 liftime 0/);
    expect(fixture.serverLog()).toContain('NAT-PMP mappings removed');
  });

  it('deletes all UDP mappings', () => {
    const result = natpmpc(['-a', '0', '0', 'udp', '0']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toMatch(/Mapped public port 0 protocol UDP to local port 0 liftime 0/);
    expect(fixture.serverLog()).toMatch(/"internalPorts":\[1235\],"removed":1/);
  });
});
