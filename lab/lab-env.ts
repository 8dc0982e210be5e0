import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabState } from './lab-state.js';

/** Root of the repository checkout; this file is `lab/lab-env.ts` or `dist/lab/lab-env.js`. */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const parent = resolve(here, '..');
  return parent.endsWith('/dist') ? resolve(parent, '..') : parent;
}

/**
 * Returns the environment a program gets when it runs as the given lab VM:
 * the VM's name, state folder and qrexec socket, and PATH with the
 * repository's `bin` and `bin/lab` first. dom0 also gets the qubesd socket
 * and the policy folder.
 */
export function labVmEnvironment(state: LabState, vmName: string): Record<string, string> {
  const vm = state.vms[vmName];
  if (vm === undefined) {
    throw new Error(`unknown lab VM "${vmName}"; known VMs: ${Object.keys(state.vms).join(', ')}`);
  }

  const root = repoRoot();
  const environment: Record<string, string> = {
    QNB_VM_NAME: vm.name,
    QNB_STATE_DIR: vm.stateDir,
    QNB_QREXEC_SOCKET: join(state.dom0.qrexecSocketDir, `${vm.name}.sock`),
    PATH: [
      join(root, 'bin'),
      join(root, 'bin', 'lab'),
      process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    ].join(':'),
  };

  if (vm.kind === 'dom0') {
    environment.QNB_QUBESD_SOCKET = state.dom0.qubesdSocket;
    environment.QNB_POLICY_DIR = state.dom0.policyDir;
  }
  return environment;
}
