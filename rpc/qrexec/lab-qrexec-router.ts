import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { evaluatePolicy } from '../../policy/qrexec-policy/policy-evaluator.js';
import { loadPolicyDirectory } from '../../policy/qrexec-policy/policy-loader.js';
import type { PolicyRequest, QrexecSystemInfo } from '../../policy/qrexec-policy/policy-types.js';
import { VM_NAME_PATTERN } from '../../policy/qrexec-policy/vm-tokens.js';
import type { Logger } from '../logger.js';
import { formatServiceWithArgument, type QrexecResult } from '../qrexec-transport.js';
import { ChildProcessCallError, runChildProcess } from './child-process-call.js';
import {
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_REFUSED,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
} from './exit-codes.js';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  decodeRequestFrame,
  encodeReplyFrame,
  type LabRequest,
  MAX_HEADER_BYTES,
  parseRequestHeader,
  splitHeaderLine,
} from './lab-router-framing.js';
import type { Prompter } from './prompter.js';

/**
 * The lab's stand-in for dom0's qrexec daemon and policy daemon. Each lab VM
 * gets its own socket `<socketDir>/<vm>.sock` (mode 0600), so the source of a
 * call is the socket it arrived on, never a claim of the client. Calls from
 * `dom0` skip the policy, as in Qubes. Every other call is checked against
 * the policy directory, which is read anew for each call so edits apply at once.
 * Allowed calls run the service's argv in the target VM's network namespace
 * (`ip netns exec NS ARGV... ARGUMENT`). The wire format is described in
 * `lab-router-framing.ts`.
 */

export interface LabVmEntry {
  /** Network namespace of the VM, or null to run its services in the router's namespace. */
  namespace: string | null;
  /** Extra environment of every service run in this VM. */
  env: Record<string, string>;
}

export interface LabServiceEntry {
  /** Handler command; the argument is appended as the last word when not empty. */
  argv: string[];
}

export interface LabQrexecRouterOptions {
  socketDir: string;
  policyDir: string;
  /** VMs that get a socket and can be targets; `dom0` is the admin VM. */
  vms: Record<string, LabVmEntry>;
  /** Handlers by `SERVICE+ARGUMENT` (looked up first) or `SERVICE`, like `/etc/qubes-rpc/`. */
  services: Record<string, LabServiceEntry>;
  /** Types and tags of every VM, read for each call. */
  systemInfo: () => QrexecSystemInfo | Promise<QrexecSystemInfo>;
  logger: Logger;
  /** Decides `ask` rules. Without a prompter, `ask` is a deny. */
  prompter?: Prompter;
  /** Time for one call, prompt included; default 60000 ms. */
  callTimeoutMs?: number;
  /** Limit of a request payload; default 1 MiB. */
  maxPayloadBytes?: number;
  /** Limit of a service's standard output and standard error each; default 16 MiB. */
  maxOutputBytes?: number;
  /** Path of the `ip` tool; default `ip` from PATH. */
  ipExecutable?: string;
}

const DEFAULT_CALL_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
const DOM0 = 'dom0';

type CallDecision =
  | { allowed: true; target: string; decision: string; rule?: string }
  | { allowed: false; decision: string; reason: string; rule?: string };

export class LabQrexecRouter {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly shutdown = new AbortController();
  private readonly callTimeoutMs: number;
  private readonly maxPayloadBytes: number;
  private readonly maxOutputBytes: number;

  constructor(private readonly options: LabQrexecRouterOptions) {
    for (const name of Object.keys(options.vms)) {
      if (!VM_NAME_PATTERN.test(name)) {
        throw new Error(
          `invalid VM name ${JSON.stringify(name)} in the router's VM table: use a letter, then letters, digits and _.-`,
        );
      }
    }
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  }

  /** Returns the socket path that VM `vm` uses to make calls. */
  socketPath(vm: string): string {
    return join(this.options.socketDir, `${vm}.sock`);
  }

  async start(): Promise<void> {
    await mkdir(this.options.socketDir, { recursive: true, mode: 0o700 });

    for (const vm of Object.keys(this.options.vms)) {
      const path = this.socketPath(vm);
      await rm(path, { force: true });

      const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket, vm));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      await chmod(path, 0o600);
      this.servers.push(server);
    }

    this.options.logger.info(
      { socketDir: this.options.socketDir, vms: Object.keys(this.options.vms) },
      'qrexec router started',
    );
  }

  async stop(): Promise<void> {
    this.shutdown.abort();
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await Promise.all(
      this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
    this.servers.length = 0;
    for (const vm of Object.keys(this.options.vms)) {
      await rm(this.socketPath(vm), { force: true });
    }
    this.options.logger.info({ socketDir: this.options.socketDir }, 'qrexec router stopped');
  }

  private accept(socket: Socket, source: string): void {
    this.sockets.add(socket);
    const chunks: Buffer[] = [];
    let receivedBytes = 0;
    let answered = false;

    const reply = (result: QrexecResult): void => {
      if (!answered) {
        answered = true;
        socket.end(encodeReplyFrame(result));
      }
    };
    const rejectFrame = (error: string): void => {
      this.options.logger.warn({ source, error }, 'malformed qrexec request rejected');
      reply(problem(`malformed request: ${error}`));
    };

    socket.on('data', (chunk: Buffer) => {
      if (answered) {
        return;
      }
      chunks.push(chunk);
      receivedBytes += chunk.length;

      const early = this.checkPartialFrame(Buffer.concat(chunks), receivedBytes);
      if (early !== null) {
        rejectFrame(early);
      }
    });

    socket.on('end', () => {
      if (answered) {
        return;
      }
      const frame = decodeRequestFrame(Buffer.concat(chunks), this.maxPayloadBytes);
      if (!frame.ok) {
        rejectFrame(frame.error);
        return;
      }
      this.handleCall(source, frame.value).then(reply, (error: unknown) => {
        this.options.logger.error({ source, err: error }, 'qrexec call failed');
        reply(problem('internal error in the qrexec router'));
      });
    });

    socket.on('error', (error) => {
      this.options.logger.warn({ source, err: error }, 'qrexec client connection failed');
    });
    socket.on('close', () => this.sockets.delete(socket));
  }

  /** Returns an error as soon as the bytes so far cannot become a valid frame. */
  private checkPartialFrame(bytes: Buffer, receivedBytes: number): string | null {
    if (receivedBytes > MAX_HEADER_BYTES + this.maxPayloadBytes) {
      return `request larger than ${MAX_HEADER_BYTES + this.maxPayloadBytes} bytes`;
    }

    const split = splitHeaderLine(bytes);
    if (split === null) {
      return null;
    }
    if (!split.ok) {
      return split.error;
    }

    const header = parseRequestHeader(split.value.header, this.maxPayloadBytes);
    if (!header.ok) {
      return header.error;
    }
    if (split.value.rest.length > header.value.payloadBytes) {
      return `more than the announced ${header.value.payloadBytes} payload bytes arrived`;
    }
    return null;
  }

  private async handleCall(source: string, request: LabRequest): Promise<QrexecResult> {
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.callTimeoutMs)]);
    const fullName = formatServiceWithArgument(request.service, request.argument);
    const decision = await this.decide(source, request, signal);

    this.options.logger.info(
      {
        source,
        service: fullName,
        target: request.target,
        decision: decision.decision,
        rule: decision.rule,
        resolvedTarget: decision.allowed ? decision.target : undefined,
        reason: decision.allowed ? undefined : decision.reason,
      },
      'qrexec call',
    );

    if (!decision.allowed) {
      return {
        exitCode: QREXEC_EXIT_REFUSED,
        stdout: Buffer.alloc(0),
        stderr: Buffer.from('Request refused\n'),
      };
    }
    return this.runService(source, decision.target, request, signal);
  }

  private async decide(
    source: string,
    request: LabRequest,
    signal: AbortSignal,
  ): Promise<CallDecision> {
    if (source === DOM0) {
      const target = request.target === '@adminvm' ? DOM0 : request.target;
      return { allowed: true, target, decision: 'allow (dom0 bypasses policy)' };
    }

    const policyRequest: PolicyRequest = {
      service: request.service,
      argument: request.argument,
      source,
      target: request.target,
    };
    const policy = await loadPolicyDirectory(this.options.policyDir, this.options.logger);
    const systemInfo = await this.options.systemInfo();
    const result = evaluatePolicy(policy, policyRequest, systemInfo);
    const rule = result.rule
      ? `${result.rule.file}:${result.rule.line}: ${result.rule.text}`
      : undefined;

    if (result.action === 'deny') {
      return { allowed: false, decision: 'deny', reason: result.reason, rule };
    }
    if (result.action === 'allow') {
      return { allowed: true, target: normalizeTarget(result.target), decision: 'allow', rule };
    }

    if (this.options.prompter === undefined) {
      return { allowed: false, decision: 'ask', reason: 'ask without a prompter is a deny', rule };
    }
    const answer = await withAbort(
      this.options.prompter.prompt(policyRequest, {
        defaultTarget: result.defaultTarget,
        targets: result.targets,
      }),
      signal,
    );
    if (answer === null || !answer.allowed) {
      const reason = answer === null ? 'prompt timed out or was aborted' : 'denied by the user';
      return { allowed: false, decision: 'ask: denied', reason, rule };
    }

    const chosen =
      answer.target ??
      result.defaultTarget ??
      (result.targets.length === 1 ? result.targets[0] : undefined);
    const choices = result.targets.map(normalizeTarget);
    if (chosen === undefined || !choices.includes(normalizeTarget(chosen))) {
      return {
        allowed: false,
        decision: 'ask: denied',
        reason: `target ${chosen ?? '(none)'} is not a valid choice`,
        rule,
      };
    }
    return { allowed: true, target: normalizeTarget(chosen), decision: 'ask: allowed', rule };
  }

  private async runService(
    source: string,
    target: string,
    request: LabRequest,
    signal: AbortSignal,
  ): Promise<QrexecResult> {
    if (target.startsWith('@dispvm')) {
      return problem(`disposable targets (${target}) are not available in the lab`);
    }
    const vm = this.options.vms[target];
    if (vm === undefined) {
      return problem(`target VM ${target} is not in the lab`);
    }

    const fullName = formatServiceWithArgument(request.service, request.argument);
    const service = this.options.services[fullName] ?? this.options.services[request.service];
    if (service === undefined || service.argv.length === 0) {
      return notFound(fullName, target);
    }

    const argv = request.argument === '' ? [...service.argv] : [...service.argv, request.argument];
    const command = vm.namespace === null ? argv : ['netns', 'exec', vm.namespace, ...argv];
    const executable =
      vm.namespace === null ? command.shift() : (this.options.ipExecutable ?? 'ip');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      ...vm.env,
      QREXEC_REMOTE_DOMAIN: source,
      QREXEC_SERVICE_FULL_NAME: fullName,
    };
    if (request.argument !== '') {
      env.QREXEC_SERVICE_ARGUMENT = request.argument;
    }

    try {
      return await runChildProcess({
        executable: executable ?? '',
        args: command,
        env,
        stdin: request.payload,
        timeoutMs: this.callTimeoutMs,
        signal,
        maxOutputBytes: this.maxOutputBytes,
      });
    } catch (error) {
      if (error instanceof ChildProcessCallError) {
        this.options.logger.error(
          { source, target, service: fullName, err: error },
          'qrexec service failed',
        );
        return error.reason === 'not-found' ? notFound(fullName, target) : problem(error.message);
      }
      throw error;
    }
  }
}

function normalizeTarget(target: string): string {
  return target === '@adminvm' ? DOM0 : target;
}

function problem(message: string): QrexecResult {
  return {
    exitCode: QREXEC_EXIT_PROBLEM,
    stdout: Buffer.alloc(0),
    stderr: Buffer.from(`${message}\n`),
  };
}

function notFound(service: string, target: string): QrexecResult {
  return {
    exitCode: QREXEC_EXIT_SERVICE_NOT_FOUND,
    stdout: Buffer.alloc(0),
    stderr: Buffer.from(`service ${service} not found in ${target}\n`),
  };
}

/** Resolves with the promise's value, or null when the signal fires first. */
function withAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) {
    return Promise.resolve(null);
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
