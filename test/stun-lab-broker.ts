import { StunServer } from '../broker/stun/stun-server.js';
import { createLogger } from '../rpc/logger.js';
import { StunFakeMappingService, type StunFakeMappingTable } from './stun-fake-mapping-service.js';

/**
 * Test entry point: runs the STUN server on top of StunFakeMappingService,
 * which replaces the broker core (that one needs dom0 and a home
 * router). Configured by one JSON argument, a StunFakeMappingTable plus the
 * listening address and ports:
 *   {"listenAddress":"10.202.0.1","ports":[3478,19302],
 *    "enabledClients":["10.202.0.2"],"externalAddress":"203.0.113.9",
 *    "externalPort":45678,"deniedClientPorts":[40403]}
 * Prints one JSON line `{"listening":[...]}` on standard output once bound;
 * logs go to standard error. Stops on SIGTERM or SIGINT.
 */
interface StunLabBrokerConfig extends StunFakeMappingTable {
  listenAddress: string;
  ports: number[];
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as StunLabBrokerConfig;
  const shutdown = new AbortController();
  const server = new StunServer({
    mappingService: new StunFakeMappingService(config),
    logger: createLogger('stun-lab-broker'),
    address: config.listenAddress,
    ports: config.ports,
    signal: shutdown.signal,
  });

  const listening = await server.start();
  process.stdout.write(`${JSON.stringify({ listening })}\n`);
  for (const signalName of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signalName, () => shutdown.abort());
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`stun-lab-broker failed: ${String(error)}\n`);
  process.exit(1);
});
