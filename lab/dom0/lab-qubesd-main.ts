import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../../rpc/logger.js';
import { labStateSchema } from '../lab-state.js';
import { LabQubesd } from './lab-qubesd.js';

/**
 * Runs the lab's qubesd stand-in on the lab state's `dom0.qubesdSocket` until
 * SIGTERM or SIGINT:
 *
 *     node dist/lab/dom0/lab-qubesd-main.js --state-file /run/qubes-nat-broker-lab/qnb/lab-state.json
 */

const USAGE = 'usage: lab-qubesd-main --state-file <lab-state.json>';

async function main(): Promise<void> {
  const logger = createLogger('lab-qubesd');
  const { values } = parseArgs({ options: { 'state-file': { type: 'string' } }, strict: true });
  const stateFile = values['state-file'];
  if (stateFile === undefined) {
    throw new Error(`missing --state-file; ${USAGE}`);
  }

  const labState = labStateSchema.parse(JSON.parse(readFileSync(stateFile, 'utf8')));
  const server = new LabQubesd(
    { logger },
    { socketPath: labState.dom0.qubesdSocket, stateDir: labState.dom0.stateDir, labState },
  );
  await server.start();

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await server.stop();
}

main().catch((error: unknown) => {
  process.stderr.write(`lab-qubesd: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
