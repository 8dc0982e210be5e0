import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive } from './lab-daemons.js';
import { runCommand, runIpBatch, sleep } from './lab-exec.js';
import { NETNS_ETC_DIR } from './lab-network.js';
import {
  LAB_PREFIX_PATTERN,
  labNamespace,
  labRunDir,
  labStateFile,
  labStateSchema,
} from './lab-state.js';
import { ALL_LAB_VM_NAMES } from './lab-topology.js';

/**
 * Tears a lab down from its prefix alone, so it works from another process,
 * after a crash and a second time. It stops every process in the lab's
 * namespaces, waits for them, deletes the namespaces, their /etc/netns
 * folders and the run dir.
 */

const TERM_GRACE_MS = 3000;
const KILL_WAIT_MS = 3000;
const POLL_INTERVAL_MS = 25;

/** Returns the lab's namespaces that exist now. Only names `<prefix>-<known VM>` count. */
async function existingNamespaces(prefix: string): Promise<string[]> {
  const names = new Set(ALL_LAB_VM_NAMES.map((vm) => labNamespace(prefix, vm)));

  const stateFile = labStateFile(prefix);
  if (existsSync(stateFile)) {
    try {
      const state = labStateSchema.parse(JSON.parse(readFileSync(stateFile, 'utf8')));
      for (const vm of Object.values(state.vms)) names.add(vm.namespace);
    } catch {
      // A damaged state file still leaves the fixed VM names to clean up.
    }
  }

  const listed = await runCommand(['ip', 'netns', 'list'], { allowFailure: true });
  const present = new Set(listed.stdout.split('\n').map((line) => line.split(' ')[0] ?? ''));
  return [...names].filter((name) => present.has(name));
}

async function namespacePids(namespace: string): Promise<number[]> {
  const result = await runCommand(['ip', 'netns', 'pids', namespace], { allowFailure: true });
  return result.stdout
    .split('\n')
    .map((line) => Number.parseInt(line, 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid);
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(processAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(POLL_INTERVAL_MS);
    alive = alive.filter(processAlive);
  }
  return alive;
}

/** Stops every process in the namespaces: SIGTERM, then SIGKILL after a grace period. */
async function stopProcesses(namespaces: string[]): Promise<void> {
  const pids = (await Promise.all(namespaces.map(namespacePids))).flat();
  if (pids.length === 0) return;

  signalAll(pids, 'SIGTERM');
  const survivors = await waitForExit(pids, TERM_GRACE_MS);
  if (survivors.length === 0) return;

  signalAll(survivors, 'SIGKILL');
  const unkillable = await waitForExit(survivors, KILL_WAIT_MS);
  if (unkillable.length > 0) {
    throw new Error(`lab processes did not exit after SIGKILL: ${unkillable.join(', ')}`);
  }
}

/** Tears down the lab with this prefix; does nothing when no part of it exists. */
export async function teardownLabByPrefix(prefix: string): Promise<void> {
  if (!LAB_PREFIX_PATTERN.test(prefix)) {
    throw new Error(
      `invalid lab prefix "${prefix}": use 1 to 8 lower-case letters and digits, starting with a letter`,
    );
  }

  const namespaces = await existingNamespaces(prefix);
  await stopProcesses(namespaces);
  await runIpBatch(
    null,
    namespaces.map((namespace) => `netns del ${namespace}`),
  );

  await Promise.all(
    ALL_LAB_VM_NAMES.map((vm) =>
      rm(join(NETNS_ETC_DIR, labNamespace(prefix, vm)), { recursive: true, force: true }),
    ),
  );
  await rm(labRunDir(prefix), { recursive: true, force: true });
}
