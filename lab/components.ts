import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NAT_BROKER_FEATURE } from '../policy/nat-traversal/nat-settings.js';
import { AdminApi } from '../rpc/admin-api/admin-api.js';
import { QubesdClient } from '../rpc/admin-api/qubesd-client.js';
import type { Logger } from '../rpc/logger.js';
import { daemonLogFile, startDaemon, waitUntil } from './lab-daemons.js';
import { labVmEnvironment } from './lab-env.js';
import { runInNamespace } from './lab-exec.js';
import { type LabProcess, type LabState, labStateFile, labStateSchema } from './lab-state.js';
import { distRoot } from './services/lab-service-table.js';

/**
 * Starts the product's own components in a lab whose network is built, in
 * the order a booting Qubes system starts them: the policy files and qubesd
 * in dom0, the qrexec daemon, each VM's boot-time restore of its forward
 * rules, sys-net's report of the home router, the broker in sys-nat, then
 * the dom0 forward service.
 *
 * Returns the state with the started processes added; the caller writes it.
 */
export interface LabComponentOptions {
  /** Answers every dom0 prompt this way; without it prompts go to the prompt socket. */
  answer?: 'allow' | 'deny';
}

export async function startLabComponents(
  state: LabState,
  log: Logger,
  options: LabComponentOptions = {},
): Promise<LabState> {
  const context = { prefix: state.prefix, runDir: state.runDir };
  const node = process.execPath;
  const stateFile = labStateFile(state.prefix);
  const processes = [...state.processes];

  await installPolicy(state.dom0.policyDir);
  await writeFile(stateFile, `${JSON.stringify({ ...state, processes }, null, 2)}\n`);

  const qubesd = await startDaemon(context, {
    name: 'qubesd',
    vm: 'dom0',
    command: [
      node,
      join(distRoot(), 'lab', 'dom0', 'lab-qubesd-main.js'),
      '--state-file',
      stateFile,
    ],
    env: { ...process.env, ...labVmEnvironment(state, 'dom0') },
  });
  const qrexec = await startDaemon(context, {
    name: 'qrexec',
    vm: 'dom0',
    command: [
      node,
      join(distRoot(), 'lab', 'services', 'qrexec-router-main.js'),
      '--state-file',
      stateFile,
      ...(options.answer === undefined ? [] : ['--answer', options.answer]),
    ],
    env: { ...process.env, ...labVmEnvironment(state, 'dom0') },
  });
  processes.push(qubesd, qrexec);
  await waitUntil('the lab qubesd socket', async () => existsSync(state.dom0.qubesdSocket), {
    timeoutMs: 10_000,
    process: qubesd,
  });
  await waitUntil(
    'the lab qrexec sockets',
    async () => existsSync(join(state.dom0.qrexecSocketDir, 'dom0.sock')),
    { timeoutMs: 10_000, process: qrexec },
  );

  for (const vm of Object.values(state.vms)) {
    if (vm.kind === 'netvm' || vm.kind === 'qube' || vm.kind === 'broker') {
      await restoreAgentState(state, vm.name);
    }
  }

  // The broker VM is marked by a feature, as the dom0 user does on Qubes.
  const adminApi = new AdminApi(
    new QubesdClient({ logger: log }, { socketPath: state.dom0.qubesdSocket }),
  );
  await adminApi.setFeature('sys-nat', NAT_BROKER_FEATURE, '1');

  // sys-net reports the home router before the broker starts, as its
  // network-up hook would on Qubes.
  await runInNamespace(
    namespaceOf(state, 'sys-net'),
    [node, join(distRoot(), 'agent-hooks', 'router-report-main.js'), '--broker', 'sys-nat'],
    { env: { ...process.env, ...labVmEnvironment(state, 'sys-net') } },
  );

  processes.push(await startBroker(state));

  const dom0Service = await startDaemon(context, {
    name: 'qubes-nat-broker-dom0',
    vm: 'dom0',
    command: [node, join(distRoot(), 'policy', 'dom0-daemon-main.js')],
    env: { ...process.env, ...labVmEnvironment(state, 'dom0') },
  });
  processes.push(dom0Service);
  // Ready means subscribed to qubesd events: a change made after this is seen.
  await waitUntil(
    'the dom0 service',
    async () => (await countLogLines(dom0Service.logFile, 'dom0 service ready')) > 0,
    { timeoutMs: 20_000, process: dom0Service },
  );

  log.info({ processes: processes.length }, 'lab components started');
  return labStateSchema.parse({ ...state, processes });
}

/**
 * Runs the boot-time restore of a VM's forward rules, as the systemd unit
 * does on Qubes after the stock firewall tables are loaded.
 */
export async function restoreAgentState(state: LabState, vmName: string): Promise<void> {
  const vm = state.vms[vmName];
  if (vm === undefined) {
    throw new Error(`unknown lab VM "${vmName}"`);
  }
  await runInNamespace(
    vm.namespace,
    [process.execPath, join(distRoot(), 'agent-hooks', 'restore.js')],
    {
      env: { ...process.env, ...labVmEnvironment(state, vmName) },
    },
  );
}

/** Starts the broker in sys-nat and waits until its servers listen. */
export async function startBroker(state: LabState): Promise<LabProcess> {
  const logFile = daemonLogFile(state.runDir, 'sys-nat', 'broker');
  const startsBefore = await countLogLines(logFile, 'broker started');
  const broker = await startDaemon(
    { prefix: state.prefix, runDir: state.runDir },
    {
      name: 'broker',
      vm: 'sys-nat',
      command: [process.execPath, join(distRoot(), 'broker', 'broker-main.js')],
      env: { ...process.env, ...labVmEnvironment(state, 'sys-nat') },
    },
  );
  await waitUntil(
    'the broker',
    async () => (await countLogLines(logFile, 'broker started')) > startsBefore,
    { timeoutMs: 15_000, process: broker },
  );
  return broker;
}

function namespaceOf(state: LabState, vm: string): string {
  const namespace = state.vms[vm]?.namespace;
  if (namespace === undefined) {
    throw new Error(`the lab has no VM "${vm}"`);
  }
  return namespace;
}

async function countLogLines(file: string, text: string): Promise<number> {
  const log = await readFile(file, 'utf8').catch(() => '');
  return log.split('\n').filter((line) => line.includes(text)).length;
}

/** Copies the shipped qrexec policy files into the lab dom0's policy folder. */
async function installPolicy(policyDir: string): Promise<void> {
  await mkdir(policyDir, { recursive: true });
  const shipped = join(distRoot(), '..', 'packaging', 'policy');
  for (const file of await readdir(shipped)) {
    if (file.endsWith('.policy')) {
      await copyFile(join(shipped, file), join(policyDir, file));
    }
  }
}
