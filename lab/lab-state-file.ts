import { rename, writeFile } from 'node:fs/promises';
import { type DaemonSpec, startDaemon } from './lab-daemons.js';
import { type LabProcess, type LabState, labStateFile, labStateSchema } from './lab-state.js';

/** Writes the state file atomically (write to a temporary file, then rename). */
export async function writeLabState(state: LabState): Promise<void> {
  const checked = labStateSchema.parse(state);
  const file = labStateFile(checked.prefix);
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(checked, null, 2)}\n`);
  await rename(temporary, file);
}

/**
 * Starts a daemon in a lab VM's namespace, appends it to `state.processes`
 * and rewrites the state file. Teardown stops it whether or not it is
 * recorded, because it stops every process in the lab's namespaces.
 */
export async function startLabDaemon(state: LabState, spec: DaemonSpec): Promise<LabProcess> {
  if (state.vms[spec.vm] === undefined) {
    throw new Error(
      `unknown lab VM "${spec.vm}" for daemon ${spec.name}; known VMs: ${Object.keys(state.vms).join(', ')}`,
    );
  }
  const started = await startDaemon({ prefix: state.prefix, runDir: state.runDir }, spec);
  state.processes.push(started);
  await writeLabState(state);
  return started;
}
