import type { AgentState } from '../../rpc/agent-state.js';
import type { Logger } from '../../rpc/logger.js';
import { QREXEC_EXIT_REFUSED, type QrexecTransport } from '../../rpc/qrexec-transport.js';

/** The qrexec service in each netvm and target qube that applies an `AgentState`. */
export const APPLY_SERVICE = 'qubes.NatBrokerApply';

/** Time allowed for one VM to apply its state; nft and conntrack take milliseconds. */
export const DEFAULT_PUSH_TIMEOUT_MS = 20_000;

export interface PushFailure {
  vm: string;
  message: string;
}

export class PushError extends Error {
  override name = 'PushError';

  constructor(readonly failures: PushFailure[]) {
    super(
      failures
        .map((failure) => `cannot apply forward rules in ${failure.vm}: ${failure.message}`)
        .join('\n'),
    );
  }
}

/**
 * Sends each VM its complete desired state through `qubes.NatBrokerApply`.
 * dom0 is the only caller of that service; the VMs never push to each other.
 */
export class RulePusher {
  private readonly transport: QrexecTransport;
  private readonly logger: Logger;
  private readonly timeoutMs: number;

  constructor(options: { transport: QrexecTransport; logger: Logger; timeoutMs?: number }) {
    this.transport = options.transport;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_PUSH_TIMEOUT_MS;
  }

  /** Pushes every state in parallel; returns the VMs that applied theirs and the failures. */
  async push(
    states: Iterable<AgentState>,
  ): Promise<{ applied: string[]; failures: PushFailure[] }> {
    const list = [...states];
    const outcomes = await Promise.all(list.map((state) => this.pushOne(state)));

    const applied: string[] = [];
    const failures: PushFailure[] = [];
    outcomes.forEach((failure, index) => {
      const vm = list[index]?.vm ?? '';
      if (failure === null) {
        applied.push(vm);
      } else {
        failures.push({ vm, message: failure });
      }
    });
    return { applied, failures };
  }

  private async pushOne(state: AgentState): Promise<string | null> {
    try {
      const result = await this.transport.call(
        { target: state.vm, service: APPLY_SERVICE, payload: JSON.stringify(state) },
        { timeoutMs: this.timeoutMs },
      );
      if (result.exitCode === 0) {
        this.logger.debug(
          { vm: state.vm, dnat: state.dnat.length, inputAccept: state.inputAccept.length },
          'state applied',
        );
        return null;
      }

      const detail = lastLine(result.stdout.toString()) || lastLine(result.stderr.toString());
      const message =
        result.exitCode === QREXEC_EXIT_REFUSED
          ? `the call to ${APPLY_SERVICE} was refused (is qubes-nat-broker installed in its template?)`
          : `${APPLY_SERVICE} exited with ${result.exitCode}${detail ? `: ${detail}` : ''}`;
      this.logger.error({ vm: state.vm, exitCode: result.exitCode, detail }, 'apply failed');
      return message;
    } catch (error) {
      this.logger.error({ vm: state.vm, err: error }, 'apply call failed');
      return (error as Error).message;
    }
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)?.trim() ?? '';
}
