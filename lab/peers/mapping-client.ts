import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { upnpNat } from '@achingbrain/nat-port-mapper';
import { PcpClient } from '../../broker/upstream/pcp/pcp-client.js';
import { systemUpstreamClock } from '../../broker/upstream/upstream-types.js';
import { createLogger } from '../../rpc/logger.js';

/**
 * A port-mapping application in a lab qube: asks "the router" (the qube's
 * gateway, which the netvm redirects to the broker) for a mapping with the
 * npm package @achingbrain/nat-port-mapper (UPnP IGD) or with a PCP client,
 * prints the mapping as one JSON line, then waits: the line `unmap` on
 * standard input deletes the mapping, end of input exits.
 *
 *   node dist/lab/peers/mapping-client.js --client nat-port-mapper|pcp
 *        --local-address A --gateway G --protocol tcp|udp --port N
 */

const { values } = parseArgs({
  options: {
    client: { type: 'string' },
    'local-address': { type: 'string' },
    gateway: { type: 'string' },
    protocol: { type: 'string', default: 'tcp' },
    port: { type: 'string' },
  },
});
const localAddress = values['local-address'] ?? '';
const gateway = values.gateway ?? '';
const protocol = values.protocol === 'udp' ? 'udp' : 'tcp';
const port = Number(values.port);
const print = (step: string, data: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ step, ...data })}\n`);

async function runNatPortMapper(): Promise<() => Promise<void>> {
  const client = upnpNat({ autoRefresh: false });
  for await (const found of client.findGateways({ signal: AbortSignal.timeout(15_000) })) {
    const externalAddress = await found.externalIp();
    const mapping = await found.map(port, localAddress, {
      protocol,
      description: 'lab nat-port-mapper client',
    });
    print('mapped', { externalAddress, ...mapping });
    return async () => {
      await found.unmap(port);
      await found.stop();
    };
  }
  throw new Error('nat-port-mapper found no gateway');
}

async function runPcp(): Promise<() => Promise<void>> {
  const client = new PcpClient({
    logger: createLogger('pcp-client', { level: 'warn' }),
    clock: systemUpstreamClock,
    router: { gatewayAddress: gateway, lanAddress: localAddress, igdLocation: null },
    // About 60 s of retransmissions (250 ms doubling), so the dom0 user has time to answer.
    maxAttempts: 8,
  });
  const mapping = await client.map(
    { protocol, internalPort: port, suggestedExternalPort: port, lifetimeSeconds: 3600 },
    AbortSignal.timeout(60_000),
  );
  print('mapped', { ...mapping });
  return () => client.unmap({ protocol, internalPort: port }, AbortSignal.timeout(10_000));
}

try {
  const unmap = values.client === 'pcp' ? await runPcp() : await runNatPortMapper();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === 'unmap') {
      await unmap();
      print('unmapped', { port });
      break;
    }
  }
  process.exit(0);
} catch (error) {
  print('failed', { message: (error as Error).message });
  process.exit(1);
}
