/**
 * Result codes of the agent, shared by the qrexec service, the restore hook
 * and the state applier. Each code has its own process exit code so that dom0
 * can tell a bad payload from a stale push or a failed apply without parsing
 * text.
 */

export const AgentErrorCode = {
  /** The payload is larger than the service reads. */
  PayloadTooLarge: 'payload-too-large',
  /** The payload is not JSON. */
  InvalidJson: 'invalid-json',
  /** The JSON does not match the AgentState schema. */
  InvalidPayload: 'invalid-payload',
  /** Two entries match the same packets, which an nftables interval set cannot hold. */
  OverlappingEntries: 'overlapping-entries',
  /** The state names another VM than the one the agent runs in. */
  WrongVm: 'wrong-vm',
  /** The agent could not find out the name of its own VM. */
  VmNameUnknown: 'vm-name-unknown',
  /** The state was issued before the one already applied. */
  StaleState: 'stale-state',
  /** The stock `ip qubes` table or one of its `custom-*` chains is missing. */
  StockTableMissing: 'stock-table-missing',
  /** `nft` rejected the transaction; nothing was changed. */
  NftFailed: 'nft-failed',
  /** The stored state file could not be read or written. */
  StateStoreFailed: 'state-store-failed',
} as const;
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

/** Process exit codes per result code; 0 is success. */
export const AGENT_EXIT_CODES: Record<AgentErrorCode, number> = {
  'payload-too-large': 2,
  'invalid-json': 2,
  'invalid-payload': 2,
  'overlapping-entries': 2,
  'wrong-vm': 3,
  'vm-name-unknown': 3,
  'stale-state': 4,
  'stock-table-missing': 5,
  'nft-failed': 6,
  'state-store-failed': 7,
};

/** One schema violation: where it is, the value found there, and what to do. */
export interface Violation {
  path: string;
  value: unknown;
  message: string;
}

export class AgentError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
    readonly violations: readonly Violation[] = [],
  ) {
    super(message);
    this.name = 'AgentError';
  }
}

/** The one-line JSON that the service prints on failure. */
export interface AgentErrorResult {
  result: 'error';
  code: AgentErrorCode;
  message: string;
  violations?: Violation[];
}

export function toErrorResult(error: AgentError): AgentErrorResult {
  const result: AgentErrorResult = { result: 'error', code: error.code, message: error.message };
  if (error.violations.length > 0) {
    result.violations = [...error.violations];
  }
  return result;
}
