import { upnpNat } from '@achingbrain/nat-port-mapper';

/**
 * Drives @achingbrain/nat-port-mapper (an IGD v2 client) against the broker:
 * discovers the gateway by SSDP, reads the external address, maps one UDP
 * port, unmaps it, and prints one JSON line per step. Argument: local address
 * and port, for example `10.201.0.2 5555`.
 */
const [localAddress = '10.201.0.2', portText = '5555'] = process.argv.slice(2);
const localPort = Number(portText);
const print = (step: string, data: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ step, ...data })}\n`);

const client = upnpNat({ autoRefresh: false });
let found = false;
for await (const gateway of client.findGateways({ signal: AbortSignal.timeout(10_000) })) {
  found = true;
  print('gateway', { id: gateway.id, host: gateway.host, port: gateway.port });
  print('external-ip', { address: await gateway.externalIp() });
  const mapping = await gateway.map(localPort, localAddress, {
    protocol: 'udp',
    // The client puts the description into its SOAP body unescaped, so any
    // markup here would reach the server as nested elements (402).
    description: 'nat-port-mapper lab test',
  });
  print('mapped', { ...mapping });
  await gateway.unmap(localPort);
  print('unmapped', { localPort });
  await gateway.stop();
  break;
}
if (!found) print('no-gateway', {});
