import { QUBE_NAME_PATTERN } from '../rpc/wire-types.js';
import { AgentError, AgentErrorCode } from './agent-errors.js';
import type { CommandRunner } from './nft-runner.js';

/**
 * Finds the name of the VM the agent runs in: `QNB_VM_NAME` when set (the
 * lab), otherwise `qubesdb-read /name` as on a real Qubes VM.
 */

export type VmNameResolver = () => Promise<string>;

export function createVmNameResolver(
  env: NodeJS.ProcessEnv,
  qubesdbRead: CommandRunner,
): VmNameResolver {
  return async () => {
    const fromEnv = env.QNB_VM_NAME;
    const result =
      fromEnv === undefined || fromEnv === ''
        ? await qubesdbRead.run(['/name'])
        : { exitCode: 0, stdout: fromEnv, stderr: '' };

    if (result.exitCode !== 0) {
      throw new AgentError(
        AgentErrorCode.VmNameUnknown,
        `qubesdb-read /name failed (exit ${result.exitCode}): ${result.stderr.trim()}; outside Qubes set QNB_VM_NAME`,
      );
    }

    const name = result.stdout.trim();
    if (!QUBE_NAME_PATTERN.test(name)) {
      throw new AgentError(
        AgentErrorCode.VmNameUnknown,
        `VM name "${name.slice(0, 40)}" is not a Qubes VM name; set QNB_VM_NAME to this VM's name`,
      );
    }
    return name;
  };
}
