import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientCommandResult, createTwoNamespaceFixture } from './two-namespace-fixture.js';

/**
 * Runs three unmodified third-party STUN clients against our server in two
 * namespaces, hs1-client (10.202.0.2) and hs1-broker (10.202.0.1), on one
 * veth pair: coturn's turnutils_stunclient, the npm `stun` package and the
 * Debian `stun` client (Vovida 0.97, RFC 3489). The server runs on
 * StunFakeMappingService, a stand-in for the broker core (which needs dom0
 * and a home router) that grants every request the mapping
 * 203.0.113.9:45678. Requires root and `npx tsc -p tsconfig.json` first.
 */

const DENIED_CLIENT_PORT = 40403;
const CONFIG = {
  listenAddress: '0.0.0.0',
  ports: [3478, 19302],
  enabledClients: ['10.202.0.2'],
  externalAddress: '203.0.113.9',
  externalPort: 45678,
  deniedClientPorts: [DENIED_CLIENT_PORT],
};

const SERVER_COMMAND = ['node', 'dist/test/stun-lab-broker.js', JSON.stringify(CONFIG)];

const fixture = createTwoNamespaceFixture({
  prefix: 'hs1',
  clientAddresses: ['10.202.0.2/24'],
  brokerAddress: '10.202.0.1/24',
  logServerStderr: true,
});

/** Runs a command in the client namespace; returns its exit code and combined output. */
function inClient(command: string[], timeoutMs = 60_000): ClientCommandResult {
  return fixture.runInClient(command, timeoutMs);
}

beforeAll(async () => {
  const firstLine = await fixture.start(SERVER_COMMAND);
  expect(firstLine).toContain('"listening"');
}, 30_000);

afterAll(() => fixture.destroy());

describe('third-party STUN clients against the broker server', () => {
  it('turnutils_stunclient reads mapping', () => {
    const result = inClient(['/usr/bin/turnutils_stunclient', '10.202.0.1']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toContain('UDP reflexive addr: 203.0.113.9:45678');
    expect(fixture.serverLog()).toContain('STUN mapping granted');
  });

  it('turnutils_stunclient uses port 19302', () => {
    const result = inClient(['/usr/bin/turnutils_stunclient', '-p', '19302', '10.202.0.1']);
    expect(result.exitCode).toBe(0);
    expect(result.output).toContain('UDP reflexive addr: 203.0.113.9:45678');
  });

  it('npm stun reads mapping', () => {
    const result = inClient(['node', 'dist/test/stun-npm-client.js', '10.202.0.1:19302']);
    expect(result.exitCode).toBe(0);
    const reply = JSON.parse(result.output) as Record<string, unknown>;
    expect(reply.ok).toBe(true);
    expect(reply.xorAddress).toEqual({ address: '203.0.113.9', port: 45678, family: 'IPv4' });
    expect(reply.software).toBe('qubes-nat-broker');
    expect(reply.fingerprintValid).toBe(true);
  });

  it('npm stun sees denial', () => {
    const result = inClient([
      'node',
      'dist/test/stun-npm-client.js',
      '10.202.0.1:3478',
      String(DENIED_CLIENT_PORT),
    ]);
    const reply = JSON.parse(result.output) as {
      ok: boolean;
      error: { code: number; reason: string };
    };
    expect(reply.ok).toBe(false);
    expect(reply.error.reason).toBe('Forbidden');
    // stun 2.1.0 decodes ERROR-CODE as class * (number + 100), so the 403 on
    // the wire (class 4, number 3) reads as 412 there. The exact bytes are
    // checked in stun-server.test.ts.
    expect(reply.error.code).toBe(4 * (3 + 100));
    expect(fixture.serverLog()).toContain('STUN mapping denied');
  });

  it('Debian stun classifies NAT', () => {
    // The RFC 3489 client gets MAPPED-ADDRESS for test I and 420 for the
    // CHANGE-REQUEST tests II and III. It counts any response as a passed
    // test, so it reports endpoint-independent filtering, which matches the
    // static forwards of the product only by coincidence. Its hairpin test
    // sends to 203.0.113.9, which has no route in the lab ("Network is
    // unreachable"); the exit code 0x12 encodes the classification.
    // Full path: npm puts the `stun` package's server CLI on PATH under the same name.
    const result = inClient(['/usr/bin/stun', '10.202.0.1', '-v']);
    expect(result.output).toContain('MappedAddress = 203.0.113.9:45678');
    expect(result.output).toContain('ErrorCode = 4 20 Unknown Attribute');
    expect(result.output).toContain('Primary: Independent Mapping, Independent Filter');
    expect(result.exitCode).toBe(0x12);
    expect(fixture.serverLog()).toContain('"rfc3489":true');
  });
});
