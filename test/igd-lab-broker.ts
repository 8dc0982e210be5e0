import { buildIgdDeviceTrees } from '../broker/igd/device-tree.js';
import { IgdServer } from '../broker/igd/igd-server.js';
import { SsdpServer } from '../broker/ssdp/ssdp-server.js';
import { createLogger } from '../rpc/logger.js';
import { FakeMappingService } from './igd-fake-mapping-service.js';

/**
 * Test entry point: runs the SSDP responder and the IGD HTTP server on top of
 * FakeMappingService, which replaces the broker core (that one needs
 * dom0 and a home router). Configured by one JSON argument:
 *   {"listenAddress":"10.201.0.1","httpPort":2189,"ssdpPort":1900,
 *    "enabledClients":["10.201.0.2"],"deniedInternalPorts":[9090]}
 * Prints "ready" on standard output once both servers listen, and stops on
 * SIGTERM or SIGINT.
 */
interface LabBrokerConfig {
  listenAddress: string;
  httpPort: number;
  ssdpPort: number;
  enabledClients: string[];
  deniedInternalPorts: number[];
}

const config = JSON.parse(process.argv[2] ?? '{}') as LabBrokerConfig;
const logger = createLogger('igd-lab-broker');
const mappingService = new FakeMappingService({
  enabledClients: config.enabledClients,
  deniedInternalPorts: config.deniedInternalPorts,
});
const deviceTrees = buildIgdDeviceTrees('igd-lab-broker');
const shutdown = new AbortController();

const igd = new IgdServer(
  { mappingService, logger, deviceTrees },
  { listenAddress: config.listenAddress, port: config.httpPort, signal: shutdown.signal },
);
const ssdp = new SsdpServer(
  {
    mappingService,
    logger,
    deviceTrees,
    // In the lab the broker is the client's gateway itself.
    locationHostFor: () => config.listenAddress,
    httpPort: config.httpPort,
  },
  { port: config.ssdpPort, multicastInterfaces: [config.listenAddress], signal: shutdown.signal },
);

await igd.start();
await ssdp.start();
process.stdout.write('ready\n');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    shutdown.abort();
    setTimeout(() => process.exit(0), 200).unref();
  });
}
