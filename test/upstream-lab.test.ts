import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouterInfo, UpstreamVia } from '../broker/upstream/upstream-types.js';
import { buildLab, teardownLab } from '../lab/lab-builder.js';

/**
 * The upstream client against the lab's real miniupnpd 2.3.1: the compiled
 * driver runs inside sys-nat, so its packets take the masqueraded path
 * through sys-firewall and sys-net, and an internet peer reaches a server in
 * sys-net through the router's public address. Run `npx tsc -p
 * tsconfig.json` first.
 */

const PREFIX = 'hu1';
const DRIVER = 'dist/broker/upstream/upstream-lab-main.js';
const ROUTER: RouterInfo = {
  gatewayAddress: '192.168.77.1',
  lanAddress: '192.168.77.10',
  igdLocation: 'http://192.168.77.1:5000/rootDesc.xml',
};
const PUBLIC_ADDRESS = '203.0.113.1';
const TEST_PORTS = '21000-21999';
/** The internet namespace's address toward the router, the source the server in sys-net sees. */
const INTERNET_GATEWAY = '203.0.113.254';

function inNamespace(vm: string, command: string[], input = ''): string {
  return execFileSync('ip', ['netns', 'exec', `${PREFIX}-${vm}`, ...command], {
    encoding: 'utf8',
    input,
    timeout: 10_000,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** The router's mapping list as `upnpc -l` prints it from sys-net. SSDP replies do not pass sys-net's input chain, so the URL is given. */
function routerMappings(): string {
  return inNamespace('sys-net', ['upnpc', '-i', '-u', ROUTER.igdLocation ?? '', '-l']);
}

const started: ChildProcess[] = [];

function startInNamespace(vm: string, command: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', `${PREFIX}-${vm}`, ...command], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  started.push(child);
  return child;
}

interface Driver {
  send(command: Record<string, unknown>): Promise<Record<string, unknown>>;
  first: Promise<Record<string, unknown>>;
  close(): void;
}

/** Starts the upstream driver in a namespace; send() returns the next line that is not an event. */
function startDriver(vm: string, router: RouterInfo, order: UpstreamVia[]): Driver {
  const child = startInNamespace(vm, ['node', DRIVER, JSON.stringify(router), order.join(',')]);
  const waiting: Array<(value: Record<string, unknown>) => void> = [];
  let resolveFirst: (value: Record<string, unknown>) => void = () => undefined;
  const first = new Promise<Record<string, unknown>>((resolve) => {
    resolveFirst = resolve;
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const message = JSON.parse(line) as Record<string, unknown>;
    if (message.event === 'started') resolveFirst(message);
    else if (message.event === undefined) waiting.shift()?.(message);
  });
  return {
    first,
    send(command) {
      return new Promise((resolve) => {
        waiting.push(resolve);
        child.stdin?.write(`${JSON.stringify(command)}\n`);
      });
    },
    close() {
      child.stdin?.end();
    },
  };
}

function mappingLine(
  listing: string,
  protocol: 'TCP' | 'UDP',
  externalPort: number,
): string | undefined {
  return listing
    .split('\n')
    .find((line) => new RegExp(`\\b${protocol}\\s+${externalPort}->`).test(line));
}

describe('upstream client in the lab', () => {
  beforeAll(async () => {
    if (!existsSync(DRIVER))
      throw new Error(`${DRIVER} is missing: run npx tsc -p tsconfig.json first`);
    await teardownLab(PREFIX);
    await buildLab({ prefix: PREFIX, withVpn: false, routerNat: 'cone' });
    // sys-net accepts the test servers' ports from the uplink, as the agent
    // does for a forward, and SSDP replies from the router for discovery.
    inNamespace('sys-net', [
      'nft',
      `add rule ip qubes custom-input iifname "eth0" meta l4proto { tcp, udp } th dport ${TEST_PORTS} accept`,
    ]);
    inNamespace('sys-net', [
      'nft',
      `add rule ip qubes custom-input ip saddr ${ROUTER.gatewayAddress} udp sport 1900 accept`,
    ]);
  });

  afterAll(async () => {
    for (const child of started) child.kill('SIGKILL');
    await teardownLab(PREFIX);
  });

  it('discovers the IGD from sys-net', () => {
    const output = inNamespace('sys-net', [
      'node',
      DRIVER,
      '--discover',
      ROUTER.gatewayAddress,
      ROUTER.lanAddress,
    ]);
    expect(JSON.parse(output)).toEqual(ROUTER);
  });

  const cases: Array<[UpstreamVia, number]> = [
    ['pcp', 21100],
    ['natpmp', 21200],
    ['igd2', 21300],
    ['igd1', 21400],
  ];

  for (const [via, port] of cases) {
    it(`maps, renews, re-creates and deletes via ${via}`, async () => {
      const driver = startDriver('sys-nat', ROUTER, [via]);
      const startedMessage = await driver.first;
      expect(startedMessage.status).toEqual({ state: 'active', via });
      expect(startedMessage.externalAddress).toBe(PUBLIC_ADDRESS);

      const tcp = (await driver.send({
        op: 'map',
        protocol: 'tcp',
        internalPort: port,
        externalPortHint: port,
        lifetimeSeconds: 600,
      })) as {
        result: {
          ok: boolean;
          mapping: { externalPort: number; externalAddress: string; via: string };
        };
      };
      const udp = (await driver.send({
        op: 'map',
        protocol: 'udp',
        internalPort: port + 1,
        externalPortHint: port + 1,
        lifetimeSeconds: 600,
      })) as typeof tcp;
      expect(tcp.result.ok).toBe(true);
      expect(udp.result.ok).toBe(true);
      expect(tcp.result.mapping.externalAddress).toBe(PUBLIC_ADDRESS);
      expect(tcp.result.mapping.via).toBe(via);
      const tcpPort = tcp.result.mapping.externalPort;
      const udpPort = udp.result.mapping.externalPort;

      let listing = routerMappings();
      expect(mappingLine(listing, 'TCP', tcpPort)).toContain(`${ROUTER.lanAddress}:${port}`);
      expect(mappingLine(listing, 'UDP', udpPort)).toContain(`${ROUTER.lanAddress}:${port + 1}`);

      startEchoServer('tcp', port);
      startEchoServer('udp', port + 1);
      await waitForListeners(port);
      // The server sees the internet peer's own address: the router only rewrote the destination.
      expect(probe('tcp', tcpPort)).toContain(`sys-net saw ${INTERNET_GATEWAY}`);
      expect(probe('udp', udpPort)).toContain(`sys-net saw ${INTERNET_GATEWAY}`);

      inNamespace('sys-net', [
        'upnpc',
        '-i',
        '-u',
        ROUTER.igdLocation ?? '',
        '-d',
        String(tcpPort),
        'TCP',
      ]);
      expect(mappingLine(routerMappings(), 'TCP', tcpPort)).toBeUndefined();
      const maintained = (await driver.send({ op: 'maintain' })) as {
        mappings: Array<{ protocol: string; externalPort: number }>;
      };
      expect(maintained.mappings).toHaveLength(2);
      listing = routerMappings();
      const recreatedPort =
        maintained.mappings.find((mapping) => mapping.protocol === 'tcp')?.externalPort ?? 0;
      expect(mappingLine(listing, 'TCP', recreatedPort)).toContain(`${ROUTER.lanAddress}:${port}`);
      expect(mappingLine(listing, 'UDP', udpPort)).toContain(`${ROUTER.lanAddress}:${port + 1}`);
      expect(probe('tcp', recreatedPort)).toContain('sys-net saw');

      await driver.send({ op: 'unmap', protocol: 'tcp', internalPort: port });
      await driver.send({ op: 'unmap', protocol: 'udp', internalPort: port + 1 });
      listing = routerMappings();
      expect(mappingLine(listing, 'TCP', recreatedPort)).toBeUndefined();
      expect(mappingLine(listing, 'UDP', udpPort)).toBeUndefined();

      await driver.send({ op: 'stop' });
      driver.close();
    });
  }

  it('removes its mappings on stop', async () => {
    const driver = startDriver('sys-nat', ROUTER, ['pcp', 'natpmp', 'igd2', 'igd1']);
    await driver.first;
    const mapped = (await driver.send({
      op: 'map',
      protocol: 'udp',
      internalPort: 21500,
      externalPortHint: null,
      lifetimeSeconds: 120,
    })) as {
      result: { ok: boolean; mapping: { externalPort: number; via: string } };
    };
    expect(mapped.result.ok).toBe(true);
    expect(mapped.result.mapping.via).toBe('pcp');
    expect(mappingPresent(mapped.result.mapping.externalPort)).toBe(true);
    await driver.send({ op: 'stop' });
    driver.close();
    expect(mappingPresent(mapped.result.mapping.externalPort)).toBe(false);
  });

  it('reports unavailable without a router protocol', async () => {
    const noRouter: RouterInfo = {
      gatewayAddress: '192.168.77.50',
      lanAddress: ROUTER.lanAddress,
      igdLocation: null,
    };
    const driver = startDriver('sys-nat', noRouter, ['natpmp', 'igd1']);
    expect((await driver.first).status).toEqual({ state: 'unavailable', via: null });
    const mapped = (await driver.send({
      op: 'map',
      protocol: 'tcp',
      internalPort: 21600,
      externalPortHint: 21600,
      lifetimeSeconds: 60,
    })) as {
      result: { ok: boolean; code: string };
    };
    expect(mapped.result).toMatchObject({ ok: false, code: 'unavailable' });
    await driver.send({ op: 'stop' });
    driver.close();
  });
});

function startEchoServer(protocol: 'tcp' | 'udp', port: number): void {
  const command = [
    'node',
    'dist/lab/peers/echo-server.js',
    '--protocol',
    protocol,
    '--port',
    String(port),
  ];
  startInNamespace('sys-net', [...command, '--address', ROUTER.lanAddress, '--name', 'sys-net']);
}

/** Sends one message from the internet peer to the router's public address and returns the reply ('' when none came). */
function probe(protocol: 'tcp' | 'udp', externalPort: number): string {
  const command = [
    'node',
    'dist/lab/peers/probe.js',
    '--protocol',
    protocol,
    '--host',
    PUBLIC_ADDRESS,
  ];
  try {
    return inNamespace('inet', [
      ...command,
      '--port',
      String(externalPort),
      '--timeout-ms',
      '3000',
    ]);
  } catch {
    return '';
  }
}

/** Waits, at most 40 times 50 ms, until sys-net listens on the TCP port and the UDP port after it. */
async function waitForListeners(port: number): Promise<void> {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const tcp = inNamespace('sys-net', ['ss', '-Htln', `sport = :${port}`]);
    const udp = inNamespace('sys-net', ['ss', '-Huln', `sport = :${port + 1}`]);
    if (tcp.trim() !== '' && udp.trim() !== '') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the test servers in sys-net did not open ports ${port}/tcp and ${port + 1}/udp`);
}

function mappingPresent(externalPort: number): boolean {
  return mappingLine(routerMappings(), 'UDP', externalPort) !== undefined;
}
