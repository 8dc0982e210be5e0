import { createInterface } from 'node:readline';
import { createLogger } from '../../rpc/logger.js';
import { discoverRouter } from './ssdp-discovery.js';
import { UpstreamMapper } from './upstream-mapper.js';
import { ALL_UPSTREAM_VIAS, type RouterInfo, type UpstreamVia } from './upstream-types.js';

/**
 * Line-driven driver of the upstream client, for the lab tests: run it
 * inside a lab namespace, write one JSON command per line to standard input,
 * and read one JSON result per line from standard output. Logs go to
 * standard error.
 *
 *   node dist/broker/upstream/upstream-lab-main.js '<RouterInfo JSON>' pcp,natpmp
 *   node dist/broker/upstream/upstream-lab-main.js --discover <gateway> <lanAddress>
 *
 * Commands: {"op":"map", ...UpstreamMapRequest}, {"op":"unmap","protocol","internalPort"},
 * {"op":"maintain"}, {"op":"list"}, {"op":"address"}, {"op":"stop"}.
 */

const logger = createLogger('upstream-lab');

function write(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function runDiscover(gatewayAddress: string, lanAddress: string): Promise<void> {
  write(await discoverRouter({ gatewayAddress, lanAddress, logger, timeoutMs: 2000 }));
}

async function runMapper(routerJson: string, orderText: string): Promise<void> {
  const router = JSON.parse(routerJson) as RouterInfo;
  const order = orderText.split(',') as UpstreamVia[];
  const unknown = order.filter((via) => !ALL_UPSTREAM_VIAS.includes(via));
  if (unknown.length > 0)
    throw new Error(`unknown protocols ${unknown.join(', ')}: use ${ALL_UPSTREAM_VIAS.join(', ')}`);

  const mapper = new UpstreamMapper({
    logger,
    router,
    protocolOrder: order,
    maxAttempts: 3,
    description: 'upstream lab',
  });
  mapper.onExternalAddressChange((change) => write({ event: 'address', ...change }));
  mapper.onMappingChange((change) => write({ event: 'mapping', ...change }));
  await mapper.start();
  write({ event: 'started', status: mapper.status(), externalAddress: mapper.externalAddress() });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as { op: string; [key: string]: unknown };
    switch (command.op) {
      case 'map':
        write({ op: 'map', result: await mapper.map(command as never) });
        break;
      case 'unmap':
        await mapper.unmap(command as never);
        write({ op: 'unmap' });
        break;
      case 'maintain':
        await mapper.maintainNow();
        write({ op: 'maintain', mappings: mapper.mappingsList() });
        break;
      case 'list':
        write({ op: 'list', mappings: mapper.mappingsList() });
        break;
      case 'address':
        write({ op: 'address', externalAddress: mapper.externalAddress() });
        break;
      case 'stop':
        await mapper.stop({ keepMappings: command.keepMappings === true });
        write({ op: 'stop' });
        lines.close();
        return;
      default:
        write({ op: command.op, error: `unknown command "${command.op}"` });
    }
  }
  await mapper.stop();
}

const [first, second, third] = process.argv.slice(2);
const run =
  first === '--discover'
    ? runDiscover(second ?? '', third ?? '')
    : runMapper(first ?? '{}', second ?? 'pcp,natpmp,igd2,igd1');
run.catch((error: unknown) => {
  logger.error({ err: error }, 'upstream lab driver failed');
  process.exitCode = 1;
});
