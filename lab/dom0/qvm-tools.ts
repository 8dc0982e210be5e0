import { AdminApi } from '../../rpc/admin-api/admin-api.js';
import { QUBESD_SOCKET_PATH, QubesdClient } from '../../rpc/admin-api/qubesd-client.js';
import {
  InvalidQubesdRequestError,
  QubesdError,
  QubesExceptionType,
} from '../../rpc/admin-api/qubesd-errors.js';
import { createLogger } from '../../rpc/logger.js';
import { compareByName } from './lab-qubesd-methods.js';

/**
 * Stand-ins for the dom0 tools `qvm-features`, `qvm-prefs` and `qvm-ls` with
 * their basic command lines, talking to the socket in `QNB_QUBESD_SOCKET`
 * (default `/var/run/qubesd.sock`). Exit codes follow the real tools: 0 on
 * success, 1 for a failed call or an unset feature, 2 for a usage error or an
 * unknown VM (argparse's code).
 */

export const QVM_TOOL_NAMES = ['qvm-features', 'qvm-prefs', 'qvm-ls'] as const;
export type QvmToolName = (typeof QVM_TOOL_NAMES)[number];

export interface ToolOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}

const USAGE: Record<QvmToolName, string> = {
  'qvm-features':
    'usage: qvm-features VMNAME [FEATURE [VALUE]] | qvm-features --unset VMNAME FEATURE',
  'qvm-prefs': 'usage: qvm-prefs VMNAME [PROPERTY [VALUE]]',
  'qvm-ls': 'usage: qvm-ls [--raw-list]',
};

class UsageError extends Error {}

/** Runs one tool and returns its exit code. */
export async function runQvmTool(
  tool: QvmToolName,
  argv: readonly string[],
  output: ToolOutput,
  api: AdminApi = new AdminApi(
    new QubesdClient(
      { logger: createLogger(tool) },
      { socketPath: process.env.QNB_QUBESD_SOCKET ?? QUBESD_SOCKET_PATH },
    ),
  ),
): Promise<number> {
  try {
    switch (tool) {
      case 'qvm-features':
        return await qvmFeatures(argv, api, output);
      case 'qvm-prefs':
        return await qvmPrefs(argv, api, output);
      case 'qvm-ls':
        return await qvmLs(argv, api, output);
    }
  } catch (error) {
    return reportError(tool, error, output);
  }
}

async function qvmFeatures(
  argv: readonly string[],
  api: AdminApi,
  output: ToolOutput,
): Promise<number> {
  const unset = argv.some((word) => word === '--unset' || word === '--delete' || word === '-D');
  const positional = argv.filter((word) => !['--unset', '--delete', '-D'].includes(word));
  rejectOptions(positional);

  const [vm, feature, value] = positional;
  if (
    vm === undefined ||
    positional.length > 3 ||
    (unset && (feature === undefined || value !== undefined))
  ) {
    throw new UsageError();
  }

  if (unset && feature !== undefined) {
    // The stand-in treats unsetting a feature that is not set as success.
    await api.removeFeature(vm, feature);
    return 0;
  }
  if (feature === undefined) {
    const names = (await api.listFeatures(vm)).sort();
    const width = Math.max(0, ...names.map((name) => name.length));
    for (const name of names) {
      output.stdout(`${name.padEnd(width)}  ${(await api.getFeature(vm, name)) ?? ''}\n`);
    }
    return 0;
  }
  if (value === undefined) {
    const current = await api.getFeature(vm, feature);
    if (current === null) {
      return 1;
    }
    output.stdout(`${current}\n`);
    return 0;
  }
  await api.setFeature(vm, feature, value);
  return 0;
}

async function qvmPrefs(
  argv: readonly string[],
  api: AdminApi,
  output: ToolOutput,
): Promise<number> {
  rejectOptions(argv);
  const [vm, property, value] = argv;
  if (vm === undefined || argv.length > 3) {
    throw new UsageError();
  }

  if (property === undefined) {
    const names = await api.listProperties(vm);
    const width = Math.max(0, ...names.map((name) => name.length));
    for (const name of names) {
      const current = await api.getProperty(vm, name);
      output.stdout(
        `${name.padEnd(width)}  ${current.isDefault ? 'D' : '-'}  ${current.value ?? ''}\n`,
      );
    }
    return 0;
  }
  if (value === undefined) {
    const current = await api.getProperty(vm, property);
    output.stdout(`${current.value ?? ''}\n`);
    return 0;
  }
  // qvm-prefs takes the words "None" and "none" as "no value".
  await api.setProperty(vm, property, value === 'None' || value === 'none' ? '' : value);
  return 0;
}

async function qvmLs(argv: readonly string[], api: AdminApi, output: ToolOutput): Promise<number> {
  const raw = argv.includes('--raw-list');
  if (argv.some((word) => word !== '--raw-list')) {
    throw new UsageError();
  }

  const vms = (await api.listVms()).sort(compareByName);
  if (raw) {
    output.stdout(vms.map((vm) => `${vm.name}\n`).join(''));
    return 0;
  }

  const width = Math.max(4, ...vms.map((vm) => vm.name.length));
  output.stdout(`${'NAME'.padEnd(width)}  ${'STATE'.padEnd(9)}  CLASS\n`);
  for (const vm of vms) {
    output.stdout(`${vm.name.padEnd(width)}  ${vm.state.padEnd(9)}  ${vm.klass}\n`);
  }
  return 0;
}

function rejectOptions(words: readonly string[]): void {
  if (words.some((word) => word.startsWith('-'))) {
    throw new UsageError();
  }
}

function reportError(tool: QvmToolName, error: unknown, output: ToolOutput): number {
  if (error instanceof UsageError) {
    output.stderr(`${USAGE[tool]}\n`);
    return 2;
  }
  if (error instanceof QubesdError && error.type === QubesExceptionType.vmNotFound) {
    output.stderr(
      `${tool}: error: ${error.message.replace(/^No such domain/, 'no such domain')}\n`,
    );
    return 2;
  }
  if (error instanceof QubesdError || error instanceof InvalidQubesdRequestError) {
    output.stderr(`${tool}: error: ${error.message}\n`);
    return 1;
  }
  throw error;
}
