import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../rpc/logger.js';
import { runCommand } from './lab-exec.js';
import { buildNetwork } from './lab-network.js';
import { startCoturn, startMiniupnpd } from './lab-peers.js';
import {
  LAB_PREFIX_PATTERN,
  type LabState,
  type LabVm,
  labNamespace,
  labRunDir,
  labStateFile,
} from './lab-state.js';
import { writeLabState } from './lab-state-file.js';
import { teardownLabByPrefix } from './lab-teardown.js';
import { ALL_LAB_VM_NAMES, LAB_ADDRESSES, type LabVmPlan, planLabVms } from './lab-topology.js';
import type { RouterNatMode } from './router-config.js';

/**
 * Builds and tears down a whole lab: namespaces and links, stock Qubes
 * tables, the router with miniupnpd, coturn in the internet, and the state
 * file that other processes read.
 */

export interface BuildLabOptions {
  prefix: string;
  withVpn: boolean;
  routerNat: RouterNatMode;
  logger?: Logger;
}

/** Throws unless the process runs as root, which namespaces and nftables need. */
export function assertRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(
      'the lab needs root to create network namespaces and nftables rules; run it with sudo or as root',
    );
  }
}

async function existingLabParts(prefix: string): Promise<string[]> {
  const parts: string[] = [];
  if (existsSync(labStateFile(prefix))) parts.push(labStateFile(prefix));
  const listed = await runCommand(['ip', 'netns', 'list'], { allowFailure: true });
  const present = new Set(listed.stdout.split('\n').map((line) => line.split(' ')[0] ?? ''));
  for (const vm of ALL_LAB_VM_NAMES) {
    const namespace = labNamespace(prefix, vm);
    if (present.has(namespace)) parts.push(`namespace ${namespace}`);
  }
  return parts;
}

function labVmFromPlan(prefix: string, runDir: string, plan: LabVmPlan): LabVm {
  return {
    name: plan.name,
    kind: plan.kind,
    namespace: labNamespace(prefix, plan.name),
    address: plan.address,
    netvm: plan.netvm,
    stateDir: join(runDir, 'vm', plan.name, 'state'),
  };
}

function initialState(options: BuildLabOptions, plans: LabVmPlan[]): LabState {
  const runDir = labRunDir(options.prefix);
  const dom0Dir = join(runDir, 'vm', 'dom0');
  return {
    prefix: options.prefix,
    runDir,
    createdAtUnixMs: Date.now(),
    ownerPid: process.pid,
    options: { withVpn: options.withVpn, routerNat: options.routerNat },
    vms: Object.fromEntries(
      plans.map((plan) => [plan.name, labVmFromPlan(options.prefix, runDir, plan)]),
    ),
    addresses: {
      routerWan: LAB_ADDRESSES.routerWan,
      routerLan: LAB_ADDRESSES.routerLan,
      sysNetLan: LAB_ADDRESSES.sysNetLan,
      lanPeer: LAB_ADDRESSES.lanPeer,
      internetGateway: LAB_ADDRESSES.internetGateway,
      internetPeer: LAB_ADDRESSES.internetPeer,
      stunPrimary: LAB_ADDRESSES.stunPrimary,
      stunSecondary: LAB_ADDRESSES.stunSecondary,
      remoteHomeWan: LAB_ADDRESSES.remoteHomeWan,
      remoteHomeLan: LAB_ADDRESSES.remoteHomeLan,
      remotePeer: LAB_ADDRESSES.remotePeer,
    },
    dom0: {
      qubesdSocket: join(dom0Dir, 'qubesd.sock'),
      qrexecSocketDir: join(dom0Dir, 'qrexec'),
      policyDir: join(dom0Dir, 'policy.d'),
      stateDir: join(dom0Dir, 'state'),
    },
    processes: [],
  };
}

async function createFolders(state: LabState): Promise<void> {
  await mkdir(state.runDir, { recursive: true, mode: 0o755 });
  const folders = [
    ...Object.values(state.vms).map((vm) => vm.stateDir),
    state.dom0.qrexecSocketDir,
    state.dom0.policyDir,
    state.dom0.stateDir,
  ];
  await Promise.all(folders.map((folder) => mkdir(folder, { recursive: true })));
}

/**
 * Builds a lab and returns its state, also written to labStateFile(prefix).
 * Refuses when any part of a lab with this prefix exists. On failure it tears
 * down what it built and rethrows.
 */
export async function buildLab(options: BuildLabOptions): Promise<LabState> {
  if (!LAB_PREFIX_PATTERN.test(options.prefix)) {
    throw new Error(
      `invalid lab prefix "${options.prefix}": use 1 to 8 lower-case letters and digits, starting with a letter`,
    );
  }
  assertRoot();

  const existing = await existingLabParts(options.prefix);
  if (existing.length > 0) {
    throw new Error(
      `a lab with prefix "${options.prefix}" already exists (${existing.join(', ')}); ` +
        `remove it with: npm run lab -- down --prefix ${options.prefix}`,
    );
  }

  const plans = planLabVms(options.withVpn);
  const state = initialState(options, plans);
  const log = options.logger;
  try {
    await createFolders(state);
    await buildNetwork({ prefix: options.prefix, vms: plans, routerNat: options.routerNat });
    await writeLabState(state);
    log?.info({ prefix: options.prefix, namespaces: plans.length }, 'lab network built');

    const context = { prefix: state.prefix, runDir: state.runDir };
    state.processes.push(await startCoturn(context));
    await writeLabState(state);
    state.processes.push(await startMiniupnpd(context));
    await writeLabState(state);
    log?.info({ prefix: options.prefix, processes: state.processes.length }, 'lab peers started');
    return state;
  } catch (error) {
    log?.error({ err: error, prefix: options.prefix }, 'lab build failed; tearing down');
    await teardownLabByPrefix(options.prefix);
    throw error;
  }
}

/** Tears down the lab with this prefix; safe to call when it is already gone. */
export async function teardownLab(prefix: string): Promise<void> {
  await teardownLabByPrefix(prefix);
}
