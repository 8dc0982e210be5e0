import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger, type Logger } from '../../rpc/logger.js';
import { startLabDashboard } from '../../ui/server/lab-dashboard.js';
import { startLabComponents } from '../components.js';
import { assertRoot, buildLab, teardownLab } from '../lab-builder.js';
import { labVmEnvironment } from '../lab-env.js';
import {
  DEFAULT_LAB_PREFIX,
  LAB_PREFIX_PATTERN,
  type LabState,
  labStateFile,
  readLabState,
} from '../lab-state.js';
import { writeLabState } from '../lab-state-file.js';
import type { RouterNatMode } from '../router-config.js';
import { restartVm, runScenario } from './scenario-commands.js';
import { promptInTerminal } from './terminal-prompter.js';

/**
 * `npm run lab -- [COMMAND] [OPTIONS]`: builds, inspects and removes the
 * network-namespace stand-in for a Qubes system.
 */

const USAGE = `Usage: npm run lab -- [COMMAND] [OPTIONS]

Commands:
  up                 Build the lab, start its components and wait; Ctrl-C tears it down (default)
  up --detach        Build the lab and exit, leaving it running
  down               Tear the lab down (safe to repeat)
  status             Print the lab's VMs, addresses and processes
  exec VM -- CMD...  Run CMD as lab VM (dom0, work, sys-net, ...) and exit with its code
  dashboard          Serve the dom0 dashboard for a running lab (up starts one too)
  restart VM         Restart a VM's network stack as a reboot would (tables flushed, rules restored)
  scenario NAME      Run a user story on a fresh lab of its own; exit 0 only if every step held
                     (manual-forward)

Options:
  --prefix P               Lab name prefix, 1-8 lower-case letters or digits (default: $LAB_PREFIX or ${DEFAULT_LAB_PREFIX})
  --with-vpn               Put a proxy qube sys-vpn between work and sys-firewall
  --answer allow|deny      Answer every dom0 policy prompt this way (default: ask in the
                           terminal of \`up\`; a detached lab without it denies)
  --router-nat cone|symmetric
                           Home router NAT: cone keeps one outside port per socket,
                           symmetric picks a new one per destination (default: cone)
  -h, --help               Show this help`;

export interface CommandContext {
  prefix: string;
  withVpn: boolean;
  routerNat: RouterNatMode;
  detach: boolean;
  /** Answer to every dom0 prompt; undefined asks in this terminal (or denies when detached). */
  answer: 'allow' | 'deny' | undefined;
  /** Words after the command name. */
  args: string[];
  log: Logger;
}

/** Returns the process exit code. */
export type LabCommand = (context: CommandContext) => Promise<number>;

function printAccessHelp(state: LabState, detached: boolean): void {
  const vmNames = Object.keys(state.vms).join(', ');
  const flag = state.prefix === DEFAULT_LAB_PREFIX ? '' : ` --prefix ${state.prefix}`;
  process.stdout.write(`Lab "${state.prefix}" is up.
State file: ${labStateFile(state.prefix)}
VMs: ${vmNames}

Act as dom0:      npm run lab --${flag} exec dom0 -- bash
Act as a qube:    npm run lab --${flag} exec work -- upnpc -l
Any VM:           npm run lab --${flag} exec VM -- CMD ...
${detached ? `Remove the lab:   npm run lab --${flag} down` : 'Remove the lab:   Ctrl-C here'}
Faster calls:     node dist/lab/cli/lab-cli.js${flag} exec VM -- CMD (skips set-up and build)
`);
}

async function upCommand(context: CommandContext): Promise<number> {
  assertRoot();
  let tornDown = false;
  const teardownOnce = async () => {
    if (tornDown) return;
    tornDown = true;
    const startedAtMs = performance.now();
    await teardownLab(context.prefix);
    process.stdout.write(
      `Lab "${context.prefix}" is down (${Math.round(performance.now() - startedAtMs)} ms).\n`,
    );
  };

  let closeDashboard: (() => Promise<void>) | null = null;

  // A signal during the build or the wait tears the lab down before exiting.
  let signalled: NodeJS.Signals | null = null;
  let wake: (() => void) | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    signalled = signal;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const startedAtMs = performance.now();
    process.stdout.write(`Building lab "${context.prefix}"...\n`);
    const state = await buildLab({
      prefix: context.prefix,
      withVpn: context.withVpn,
      routerNat: context.routerNat,
      logger: context.log,
    });
    const withComponents = await startLabComponents(
      state,
      context.log,
      context.answer === undefined ? {} : { answer: context.answer },
    );
    await writeLabState(withComponents);
    process.stdout.write(
      `Lab "${context.prefix}" built and every component started in ${Math.round(performance.now() - startedAtMs)} ms.\n`,
    );
    printAccessHelp(withComponents, context.detach);

    if (context.detach && signalled === null) {
      tornDown = true;
      return 0;
    }
    if (signalled === null) {
      const dashboard = await startLabDashboard(withComponents, context.log);
      closeDashboard = () => dashboard.close();
      process.stdout.write(`Dashboard (dom0 GUI): ${dashboard.loginUrl}\n`);
      process.stdout.write('Press Ctrl-C to tear the lab down.\n');
      if (context.answer === undefined) {
        await promptInTerminal(withComponents);
      }
      // Signal handlers alone do not keep Node's event loop alive, so a timer does.
      const keepAlive = setInterval(() => {}, 60_000);
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      clearInterval(keepAlive);
    }
    process.stdout.write(`Tearing lab "${context.prefix}" down...\n`);
    return 0;
  } finally {
    await closeDashboard?.();
    await teardownOnce();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Serves the dashboard for a running (detached) lab until Ctrl-C. */
async function dashboardCommand(context: CommandContext): Promise<number> {
  const state = readLabState(context.prefix);
  const dashboard = await startLabDashboard(state, context.log);
  process.stdout.write(`Dashboard (dom0 GUI): ${dashboard.loginUrl}\nPress Ctrl-C to stop it.\n`);
  const keepAlive = setInterval(() => {}, 60_000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(keepAlive);
  await dashboard.close();
  return 0;
}

async function downCommand(context: CommandContext): Promise<number> {
  assertRoot();
  await teardownLab(context.prefix);
  process.stdout.write(`Lab "${context.prefix}" is down.\n`);
  return 0;
}

async function statusCommand(context: CommandContext): Promise<number> {
  if (!existsSync(labStateFile(context.prefix))) {
    process.stdout.write(`No lab with prefix "${context.prefix}" is running.\n`);
    return 1;
  }
  const state = readLabState(context.prefix);
  const lines = [
    `Lab "${state.prefix}" (router NAT ${state.options.routerNat}${state.options.withVpn ? ', with sys-vpn' : ''})`,
    `State file: ${labStateFile(state.prefix)}`,
    '',
    'VM            kind           namespace              address        netvm',
    ...Object.values(state.vms).map(
      (vm) =>
        `${vm.name.padEnd(13)} ${vm.kind.padEnd(14)} ${vm.namespace.padEnd(22)} ${(vm.address ?? '-').padEnd(14)} ${vm.netvm ?? '-'}`,
    ),
    '',
    'Processes:',
    ...state.processes.map(
      (entry) => `  ${entry.vm}/${entry.name} pid ${entry.pid} log ${entry.logFile}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function execCommand(context: CommandContext): Promise<number> {
  const [vmName, ...rest] = context.args;
  const command = rest[0] === '--' ? rest.slice(1) : rest;
  if (vmName === undefined || command.length === 0) {
    throw new UsageError('exec needs a VM and a command: npm run lab -- exec work -- upnpc -l');
  }
  assertRoot();
  const state = readLabState(context.prefix);
  const vm = state.vms[vmName];
  if (vm === undefined) {
    throw new UsageError(
      `unknown lab VM "${vmName}"; known VMs: ${Object.keys(state.vms).join(', ')}`,
    );
  }

  const child = spawn('ip', ['netns', 'exec', vm.namespace, ...command], {
    stdio: 'inherit',
    env: { ...process.env, ...labVmEnvironment(state, vmName) },
  });
  // The child shares the terminal, so it gets Ctrl-C itself; we only wait for it.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) =>
        resolve(code ?? (signal ? 128 + signalNumber(signal) : 1)),
      );
    });
  } finally {
    process.off('SIGINT', ignore);
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGKILL: 9,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 0;
}

/**
 * Commands by name; each gets the parsed options and the words after its
 * name in `context.args`.
 */
export const LAB_COMMANDS: Record<string, LabCommand> = {
  up: upCommand,
  down: downCommand,
  status: statusCommand,
  exec: execCommand,
  scenario: (context) => runScenario(context.args[0], context.prefix, context.log),
  dashboard: dashboardCommand,
  restart: (context) => restartVm(context.args[0], context.prefix, context.log),
};

class UsageError extends Error {}

function parseCommandLine(
  argv: string[],
): { command: string; context: Omit<CommandContext, 'log'> } | 'help' {
  // Everything after `--` belongs to `exec`'s command, so it is kept out of parseArgs.
  const separator = argv.indexOf('--');
  const own = separator === -1 ? argv : argv.slice(0, separator);
  const passthrough = separator === -1 ? [] : argv.slice(separator);

  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      prefix: { type: 'string' },
      'with-vpn': { type: 'boolean', default: false },
      'router-nat': { type: 'string', default: 'cone' },
      detach: { type: 'boolean', default: false },
      answer: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';

  const prefix = values.prefix ?? process.env.LAB_PREFIX ?? DEFAULT_LAB_PREFIX;
  if (!LAB_PREFIX_PATTERN.test(prefix)) {
    throw new UsageError(
      `invalid --prefix "${prefix}": use 1 to 8 lower-case letters and digits, starting with a letter`,
    );
  }
  const routerNat = values['router-nat'];
  if (routerNat !== 'cone' && routerNat !== 'symmetric') {
    throw new UsageError(`invalid --router-nat "${routerNat}": use cone or symmetric`);
  }

  const answer = values.answer;
  if (answer !== undefined && answer !== 'allow' && answer !== 'deny') {
    throw new UsageError(`invalid --answer "${answer}": use allow or deny`);
  }

  const [command = 'up', ...args] = positionals;
  if (LAB_COMMANDS[command] === undefined) {
    throw new UsageError(
      `unknown command "${command}"; commands: ${Object.keys(LAB_COMMANDS).join(', ')}`,
    );
  }
  return {
    command,
    context: {
      prefix,
      withVpn: values['with-vpn'],
      routerNat,
      detach: values.detach,
      answer,
      args: [...args, ...passthrough],
    },
  };
}

async function main(argv: string[]): Promise<number> {
  // When the terminal's Ctrl-C also ends a pipe reader (`npm run lab | tee`),
  // writes fail with EPIPE; the teardown must still run.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`lab: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  // Progress goes to the terminal as plain lines; pino lines only for
  // warnings and errors unless QNB_LOG_LEVEL asks for more.
  const log = createLogger('lab', { level: process.env.QNB_LOG_LEVEL ?? 'warn' });
  const handler = LAB_COMMANDS[parsed.command] as LabCommand;
  try {
    return await handler({ ...parsed.context, log });
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`lab: ${error.message}\n\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`lab ${parsed.command} failed: ${(error as Error).message}\n`);
    return 1;
  }
}

// Exit explicitly: the terminal prompter's readline keeps standard input
// open, which would keep the process alive after the lab is torn down.
process.exit(await main(process.argv.slice(2)));
