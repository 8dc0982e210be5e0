import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../lab/lab-exec.js';

/**
 * Real UPnP clients against the broker's SSDP and IGD servers, in two network
 * namespaces joined by one veth pair: hi1-client (10.201.0.2) runs Debian's
 * unmodified `upnpc` and @achingbrain/nat-port-mapper, hi1-broker (10.201.0.1)
 * runs dist/test/igd-lab-broker.js. That entry point uses FakeMappingService,
 * which replaces the broker core (it needs dom0 and a home router):
 * internal port 9090 is denied, everything else is granted.
 */

const CLIENT_NS = 'hi1-client';
const BROKER_NS = 'hi1-broker';
const BROKER_ENTRY = 'dist/test/igd-lab-broker.js';
const NAT_PORT_MAPPER_ENTRY = 'dist/test/igd-nat-port-mapper-client.js';
const BROKER_CONFIG = {
  listenAddress: '10.201.0.1',
  httpPort: 2189,
  ssdpPort: 1900,
  enabledClients: ['10.201.0.2'],
  deniedInternalPorts: [9090],
};

const ip = (...args: string[]) => runCommand(['ip', ...args]);
const inClient = (...command: string[]) =>
  runCommand(['ip', 'netns', 'exec', CLIENT_NS, ...command], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
/** Runs upnpc in the client namespace; -i also accepts the lab's reserved external address. */
const upnpc = async (...args: string[]) => {
  const result = await inClient('upnpc', '-i', ...args);
  return result.stdout + result.stderr;
};

async function removeNamespaces(): Promise<void> {
  for (const ns of [CLIENT_NS, BROKER_NS]) {
    await runCommand(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}

function waitForReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(
      () => reject(new Error(`broker not ready after ${timeoutMs} ms: ${output}`)),
      timeoutMs,
    );
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with code ${code}: ${output}`));
    });
  });
}

describe('IGD lab with upnpc and nat-port-mapper', () => {
  let broker: ChildProcess | undefined;
  let brokerLog = '';

  beforeAll(async () => {
    for (const entry of [BROKER_ENTRY, NAT_PORT_MAPPER_ENTRY]) {
      if (!existsSync(entry))
        throw new Error(`${entry} is missing: run "npx tsc -p tsconfig.json" first`);
    }
    await removeNamespaces();
    await ip('netns', 'add', CLIENT_NS);
    await ip('netns', 'add', BROKER_NS);
    await ip(
      '-n',
      CLIENT_NS,
      'link',
      'add',
      'veth0',
      'type',
      'veth',
      'peer',
      'name',
      'veth0',
      'netns',
      BROKER_NS,
    );
    await ip('-n', CLIENT_NS, 'addr', 'add', '10.201.0.2/24', 'dev', 'veth0');
    await ip('-n', BROKER_NS, 'addr', 'add', '10.201.0.1/24', 'dev', 'veth0');
    for (const ns of [CLIENT_NS, BROKER_NS]) {
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', 'veth0', 'up');
    }
    // SSDP searches to 239.255.255.250 leave the client through the veth.
    await ip('-n', CLIENT_NS, 'route', 'add', '239.255.255.250/32', 'dev', 'veth0');

    broker = spawn(
      'ip',
      ['netns', 'exec', BROKER_NS, 'node', BROKER_ENTRY, JSON.stringify(BROKER_CONFIG)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    broker.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      brokerLog += chunk;
    });
    await waitForReady(broker, 15_000);
  });

  afterAll(async () => {
    if (broker !== undefined && broker.exitCode === null) {
      const exited = new Promise((resolve) => broker?.once('exit', resolve));
      broker.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
      if (broker.exitCode === null) broker.kill('SIGKILL');
    }
    await removeNamespaces();
  });

  it('upnpc discovers the IGD and reads its status', async () => {
    const output = await upnpc('-s');
    expect(output).toContain('desc: http://10.201.0.1:2189/rootDesc.xml');
    expect(output).toContain('st: urn:schemas-upnp-org:device:InternetGatewayDevice:1');
    expect(output).toContain('Status : Connected');
    expect(output).toContain('ExternalIPAddress = 203.0.113.7');
  });

  it('upnpc adds a mapping', async () => {
    const output = await upnpc('-a', '10.201.0.2', '8080', '8080', 'TCP');
    expect(output).toContain(
      'external 203.0.113.7:8080 TCP is redirected to internal 10.201.0.2:8080',
    );
  });

  it('upnpc lists the mapping', async () => {
    const output = await upnpc('-l');
    expect(output).toMatch(/0 TCP\s+8080->10\.201\.0\.2:8080\s+'libminiupnpc'/);
    expect(output).toContain('GetGenericPortMappingEntry() returned 713');
  });

  it('upnpc prints 606 for a denied port', async () => {
    const output = await upnpc('-a', '10.201.0.2', '9090', '9090', 'TCP');
    expect(output).toContain('failed with code 606 (Action not authorized)');
  });

  it('upnpc deletes the mapping', async () => {
    expect(await upnpc('-d', '8080', 'TCP')).toContain('UPNP_DeletePortMapping() returned : 0');
    expect(await upnpc('-l')).not.toContain('8080->');
  });

  it('upnpc uses the v2 description by URL', async () => {
    const url = 'http://10.201.0.1:2189/rootDesc2.xml';
    const added = await upnpc('-u', url, '-n', '10.201.0.2', '7000', '7000', 'UDP');
    expect(added).toContain(
      'external 203.0.113.7:7000 UDP is redirected to internal 10.201.0.2:7000',
    );
    expect(await upnpc('-u', url, '-N', '1', '65535', 'UDP')).toContain(
      'UPNP_DeletePortMappingRange() returned : 0',
    );
    expect(await upnpc('-u', url, '-l')).not.toContain('7000->');
  });

  it('nat-port-mapper maps and unmaps a port', async () => {
    const result = await inClient('node', NAT_PORT_MAPPER_ENTRY, '10.201.0.2', '5555');
    const steps = result.stdout
      .trim()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(
      steps.map((step) => step.step),
      result.stderr,
    ).toEqual(['gateway', 'external-ip', 'mapped', 'unmapped']);
    expect(steps[0]?.host).toBe('10.201.0.1');
    expect(steps[1]?.address).toBe('203.0.113.7');
    expect(steps[2]?.externalPort).toBe(5555);
    expect(brokerLog).toMatch(/"action":"AddAnyPortMapping".*"port mapping granted"/);
    expect(await upnpc('-l')).not.toContain('5555->');
  });
});
