import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QubesdClient } from '../rpc/admin-api/qubesd-client.js';
import type { Logger } from '../rpc/logger.js';
import { restoreAgentState, startBroker, startLabComponents } from './components.js';
import { buildLab, teardownLab } from './lab-builder.js';
import { processAlive, waitUntil } from './lab-daemons.js';
import { labVmEnvironment } from './lab-env.js';
import { type CommandResult, loadNftScript, runInNamespace } from './lab-exec.js';
import { nftScriptFor } from './lab-network.js';
import { type LabState, labStateFile, readLabState } from './lab-state.js';
import { planLabVms } from './lab-topology.js';
import { labPromptSocket } from './services/lab-paths.js';
import { distRoot } from './services/lab-service-table.js';
import { answerPrompts, type PromptMessage } from './services/prompt-socket.js';

/**
 * A running lab with every component, as scenarios and tests use it: run
 * commands as a VM, start test servers, probe reachability, restart a VM.
 * `close()` tears everything down; `open()` registers it for SIGINT and
 * SIGTERM too, so Ctrl-C never leaves namespaces behind.
 */

export type ProbeProtocol = 'tcp' | 'udp' | 'https';

export interface ProbeResult {
  reached: boolean;
  reply: string;
}

export interface LabSessionOptions {
  prefix: string;
  withVpn?: boolean;
  routerNat?: 'cone' | 'symmetric';
  /** Answers every dom0 prompt; without it prompts go to `answerPrompts` (none connected: deny). */
  answer?: 'allow' | 'deny';
  logger: Logger;
}

const openSessions = new Set<LabSession>();
let signalHandlersInstalled = false;

function installSignalHandlers(): void {
  if (signalHandlersInstalled) {
    return;
  }
  signalHandlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void Promise.all([...openSessions].map((session) => session.close())).finally(() =>
        process.exit(130),
      );
    });
  }
}

export class LabSession {
  private readonly servers: ChildProcess[] = [];
  private closed = false;

  private constructor(
    readonly state: LabState,
    private readonly logger: Logger,
    /** False for a session attached to a lab that another process owns: close() keeps it up. */
    private readonly ownsLab: boolean,
  ) {}

  /** Attaches to a running lab (started by `lab up`) without taking it over. */
  static attach(prefix: string, logger: Logger): LabSession {
    return new LabSession(readLabState(prefix), logger, false);
  }

  static async open(options: LabSessionOptions): Promise<LabSession> {
    installSignalHandlers();
    const built = await buildLab({
      prefix: options.prefix,
      withVpn: options.withVpn ?? false,
      routerNat: options.routerNat ?? 'cone',
      logger: options.logger,
    });

    try {
      const state = await startLabComponents(
        built,
        options.logger,
        options.answer === undefined ? {} : { answer: options.answer },
      );
      await writeFile(labStateFile(state.prefix), `${JSON.stringify(state, null, 2)}\n`);
      const session = new LabSession(state, options.logger, true);
      openSessions.add(session);
      return session;
    } catch (error) {
      await teardownLab(options.prefix);
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    openSessions.delete(this);
    for (const server of this.servers) {
      server.kill('SIGTERM');
    }
    if (this.ownsLab) {
      await teardownLab(this.state.prefix);
    }
  }

  address(vm: string): string {
    const address = this.state.vms[vm]?.address;
    if (address === undefined || address === null) {
      throw new Error(`lab VM "${vm}" has no address`);
    }
    return address;
  }

  /** Runs a command as a lab VM, with that VM's environment; never throws on a non-zero exit. */
  exec(vm: string, command: string[], options: { timeoutMs?: number; input?: string } = {}) {
    const namespace = this.namespace(vm);
    return runInNamespace(namespace, command, {
      env: { ...process.env, ...labVmEnvironment(this.state, vm) },
      allowFailure: true,
      ...options,
    });
  }

  /**
   * Answers the lab's dom0 prompts with `decide` (a scripted dom0 user, in
   * place of the person at the Qubes dialog). Returns a function that stops.
   */
  answerPrompts(
    decide: (prompt: PromptMessage) => boolean | Promise<boolean>,
  ): Promise<() => void> {
    return answerPrompts(labPromptSocket(this.state), decide);
  }

  /** Runs qvm-forward in dom0 and throws with its output unless it exits 0. */
  async qvmForwardOk(...args: string[]): Promise<CommandResult> {
    const result = await this.qvmForward(...args);
    if (result.exitCode !== 0) {
      throw new Error(
        `qvm-forward ${args.join(' ')} exited with ${result.exitCode}: ${result.stderr.trim()}`,
      );
    }
    return result;
  }

  qvmForward(...args: string[]): Promise<CommandResult> {
    return this.exec('dom0', ['qvm-forward', ...args]);
  }

  /**
   * Restarts the broker in sys-nat (SIGTERM, then a new process), as a
   * restart of its systemd unit would. Returns once the new one listens.
   */
  async restartBroker(): Promise<void> {
    const index = this.state.processes.findIndex((entry) => entry.name === 'broker');
    const old = this.state.processes[index];
    if (old !== undefined) {
      process.kill(old.pid, 'SIGTERM');
      await waitUntil('the old broker to exit', async () => !processAlive(old.pid), {
        timeoutMs: 15_000,
      });
    }
    const started = await startBroker(this.state);
    this.state.processes.splice(index === -1 ? this.state.processes.length : index, 1, started);
  }

  /** Returns the VM's whole nft ruleset. */
  async ruleset(vm: string): Promise<string> {
    return (await this.exec(vm, ['nft', 'list', 'ruleset'])).stdout;
  }

  /** Starts an echo server from lab/peers in a VM and waits until it listens. */
  async startServer(
    vm: string,
    protocol: ProbeProtocol,
    port: number,
    extra: string[] = [],
  ): Promise<ChildProcess> {
    const command = [
      process.execPath,
      join(distRoot(), 'lab', 'peers', 'echo-server.js'),
      '--protocol',
      protocol,
      '--port',
      String(port),
      '--name',
      vm,
      ...extra,
    ];
    const child = spawn('ip', ['netns', 'exec', this.namespace(vm), ...command], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.servers.push(child);

    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) =>
        reject(new Error(`${protocol} server in ${vm} exited with ${code}: ${stderr.trim()}`)),
      );
    });
    return child;
  }

  /** Sends one message from a VM and reports whether the server replied. */
  async probe(
    fromVm: string,
    protocol: ProbeProtocol,
    host: string,
    port: number,
    options: { message?: string; timeoutMs?: number; localPort?: number } = {},
  ): Promise<ProbeResult> {
    const timeoutMs = options.timeoutMs ?? 1500;
    const command = [
      process.execPath,
      join(distRoot(), 'lab', 'peers', 'probe.js'),
      '--protocol',
      protocol,
      '--host',
      host,
      '--port',
      String(port),
      '--message',
      options.message ?? 'ping',
      '--timeout-ms',
      String(timeoutMs),
    ];
    if (options.localPort !== undefined) {
      command.push('--local-port', String(options.localPort));
    }
    const result = await runInNamespace(this.namespace(fromVm), command, {
      allowFailure: true,
      timeoutMs: timeoutMs + 5000,
    });
    return { reached: result.exitCode === 0, reply: result.stdout.trim() };
  }

  /**
   * Restarts a VM's network stack as a reboot would: every nft table is
   * gone, the stock Qubes tables are loaded again, the VM's boot-time
   * restore runs, and qubesd announces `domain-start` so dom0 pushes too.
   */
  async restartVm(vm: string): Promise<void> {
    const kind = this.state.vms[vm]?.kind;
    if (kind !== 'netvm' && kind !== 'qube' && kind !== 'broker') {
      const restartable = Object.values(this.state.vms)
        .filter((candidate) => ['netvm', 'qube', 'broker'].includes(candidate.kind))
        .map((candidate) => candidate.name);
      throw new Error(
        `cannot restart "${vm}": only Qubes netvms and qubes restart (${restartable.join(', ')})`,
      );
    }
    const namespace = this.namespace(vm);
    await runInNamespace(namespace, ['nft', 'flush', 'ruleset']);
    await runInNamespace(namespace, ['conntrack', '-F'], { allowFailure: true });

    const plan = {
      prefix: this.state.prefix,
      vms: planLabVms(this.state.options.withVpn),
      routerNat: this.state.options.routerNat,
    };
    const vmPlan = plan.vms.find((candidate) => candidate.name === vm);
    const script = vmPlan === undefined ? null : nftScriptFor(plan, vmPlan);
    if (script !== null) {
      await loadNftScript(namespace, script);
    }

    await restoreAgentState(this.state, vm);
    const qubesd = new QubesdClient(
      { logger: this.logger },
      { socketPath: this.state.dom0.qubesdSocket },
    );
    await qubesd.call('lab.vm.Restarted', vm);
  }

  private namespace(vm: string): string {
    const namespace = this.state.vms[vm]?.namespace;
    if (namespace === undefined) {
      throw new Error(`unknown lab VM "${vm}"; known: ${Object.keys(this.state.vms).join(', ')}`);
    }
    return namespace;
  }
}
