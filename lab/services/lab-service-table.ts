import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabServiceEntry } from '../../rpc/qrexec/lab-qrexec-router.js';

/**
 * Returns the compiled output folder. This file runs as
 * `dist/lab/services/lab-service-table.js`, or from source under vitest;
 * programs started in lab namespaces always run the compiled code.
 */
export function distRoot(): string {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  return root.endsWith('/dist') ? root : join(root, 'dist');
}

/**
 * Returns the lab's `/etc/qubes-rpc/`: the qrexec services the package installs in
 * every VM, by name, with the command each runs.
 */
export function labServiceTable(): Record<string, LabServiceEntry> {
  const node = process.execPath;
  const decisions = {
    argv: [node, join(distRoot(), 'policy', 'nat-traversal', 'decision-service-main.js')],
  };
  return {
    'qubes.NatBrokerApply': { argv: [node, join(distRoot(), 'agent-hooks', 'apply-service.js')] },
    'qubes.NatBrokerActivity': {
      argv: [node, join(distRoot(), 'agent-hooks', 'activity-service.js')],
    },
    'qubes.NatBrokerControl': { argv: [node, join(distRoot(), 'broker', 'control-service.js')] },
    'qubes.NatBrokerRouterInfo': {
      argv: [node, join(distRoot(), 'broker', 'router-info-service.js')],
    },
    'qubes.NatTraversal': decisions,
    'qubes.NatTraversalRenew': decisions,
    'qubes.NatTraversalRelease': decisions,
    'qubes.NatTraversalClients': decisions,
    'qubes.NatTraversalLeases': decisions,
  };
}
