import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../../rpc/logger.js';
import { LabQrexecRouter, type LabVmEntry } from '../../rpc/qrexec/lab-qrexec-router.js';
import { labVmEnvironment } from '../lab-env.js';
import { labStateSchema } from '../lab-state.js';
import { labPromptSocket } from './lab-paths.js';
import { labServiceTable } from './lab-service-table.js';
import { SocketPrompter } from './prompt-socket.js';

/**
 * The lab's qrexec daemon in dom0: one socket per Qubes VM, policy from the
 * lab's policy folder, services run inside the target VM's namespace.
 *
 *   node dist/lab/services/qrexec-router-main.js --state-file FILE
 */

const { values } = parseArgs({
  options: { 'state-file': { type: 'string' }, answer: { type: 'string' } },
});
if (values.answer !== undefined && values.answer !== 'allow' && values.answer !== 'deny') {
  throw new Error(`invalid --answer ${values.answer}: use allow or deny`);
}
const stateFile = values['state-file'];
if (stateFile === undefined) {
  throw new Error('missing --state-file FILE (the lab-state.json of the lab)');
}
const state = labStateSchema.parse(JSON.parse(readFileSync(stateFile, 'utf8')));
const logger = createLogger('lab-qrexec');

const qubesVms = Object.values(state.vms).filter((vm) =>
  ['dom0', 'netvm', 'qube', 'broker'].includes(vm.kind),
);
const vms: Record<string, LabVmEntry> = {};
for (const vm of qubesVms) {
  vms[vm.name] = { namespace: vm.namespace, env: labVmEnvironment(state, vm.name) };
}

const prompter = new SocketPrompter(
  labPromptSocket(state),
  values.answer === undefined ? null : { allowed: values.answer === 'allow' },
  logger,
);
await prompter.start();

const router = new LabQrexecRouter({
  socketDir: state.dom0.qrexecSocketDir,
  policyDir: state.dom0.policyDir,
  vms,
  services: labServiceTable(),
  systemInfo: () => ({
    domains: Object.fromEntries(
      qubesVms.map((vm) => [vm.name, { type: vm.kind === 'dom0' ? 'AdminVM' : 'AppVM', tags: [] }]),
    ),
  }),
  logger,
  prompter,
});

await router.start();
logger.info({ socketDir: state.dom0.qrexecSocketDir }, 'lab qrexec router listening');
process.stdout.write('listening\n');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void Promise.all([router.stop(), prompter.stop()]).then(() => process.exit(0));
  });
}
