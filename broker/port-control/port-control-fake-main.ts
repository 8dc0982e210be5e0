import { createLogger } from '../../rpc/logger.js';
import { InMemoryMappingService, type InMemoryMappingTable } from './in-memory-mapping-service.js';
import { PortControlServer } from './port-control-server.js';
import { systemClock } from './warn-limiter.js';

/**
 * Runs the NAT-PMP/PCP server against the in-memory MappingService, for
 * lab tests inside a network namespace:
 *
 *   node dist/broker/port-control/port-control-fake-main.js '<table JSON>' [address] [port]
 *
 * The table is an InMemoryMappingTable. Prints one JSON line
 * `{"listening":{"address":...,"port":...}}` on standard output once bound;
 * logs go to standard error. Stops on SIGTERM or SIGINT.
 */
async function main(): Promise<void> {
  const [tableJson, address = '0.0.0.0', portText = '5351'] = process.argv.slice(2);
  if (tableJson === undefined) {
    process.stderr.write('usage: port-control-fake-main.js <table JSON> [address] [port]\n');
    process.exit(2);
  }

  const table = JSON.parse(tableJson) as InMemoryMappingTable;
  const logger = createLogger('port-control-fake');
  const shutdown = new AbortController();
  const server = new PortControlServer({
    mappingService: new InMemoryMappingService(table, systemClock),
    logger,
    address,
    port: Number(portText),
    signal: shutdown.signal,
  });

  const bound = await server.start();
  process.stdout.write(`${JSON.stringify({ listening: bound })}\n`);
  for (const signalName of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signalName, () => shutdown.abort());
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`port-control-fake-main failed: ${String(error)}\n`);
  process.exit(1);
});
