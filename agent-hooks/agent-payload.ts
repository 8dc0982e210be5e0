import type { z } from 'zod';
import { type AgentState, agentStateSchema } from '../rpc/agent-state.js';
import { AgentError, AgentErrorCode, type Violation } from './agent-errors.js';
import { assertNoOverlappingEntries } from './entry-conflicts.js';

/**
 * Total parser of the `qubes.NatBrokerApply` payload: bytes in, an AgentState
 * or a typed AgentError out, never an exception of another type.
 */

/**
 * Largest payload the service reads. A full state of 2 × 4096 entries is
 * about 2 MB of JSON, so 4 MiB leaves room without letting a caller make the
 * agent buffer without bound.
 */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** Maximum length of a string value quoted back in a violation, so a hostile payload cannot bloat the reply. */
const MAX_QUOTED_VALUE_CHARS = 80;

export type AgentPayloadResult = { ok: true; state: AgentState } | { ok: false; error: AgentError };

function valueAtPath(root: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (current === null || typeof current !== 'object') {
      return undefined;
    }
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** Quotes a value briefly: scalars as they are, long strings cut, objects by kind, a missing value as null. */
function quoteValue(value: unknown): unknown {
  if (value === undefined) {
    return null;
  }
  if (typeof value === 'string') {
    return value.length > MAX_QUOTED_VALUE_CHARS
      ? `${value.slice(0, MAX_QUOTED_VALUE_CHARS)}…`
      : value;
  }
  if (Array.isArray(value)) {
    return `array of ${value.length}`;
  }
  if (value !== null && typeof value === 'object') {
    return 'object';
  }
  return value;
}

function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    text += typeof key === 'number' ? `[${key}]` : `${text === '' ? '' : '.'}${String(key)}`;
  }
  return text === '' ? '(payload)' : text;
}

/** Turns every zod issue into a violation with path, value found and the rule to follow. */
export function violationsFromZod(error: z.ZodError, input: unknown): Violation[] {
  return error.issues.map((issue) => {
    const value = valueAtPath(input, issue.path);
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message = `unknown key(s) ${issue.keys.join(', ')}: remove them`;
    }
    return { path: formatPath(issue.path), value: quoteValue(value), message };
  });
}

/** Parses and validates a payload, collecting every violation at once. */
export function parseAgentPayload(payload: Uint8Array | string): AgentPayloadResult {
  const byteLength =
    typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
  if (byteLength > MAX_PAYLOAD_BYTES) {
    return {
      ok: false,
      error: new AgentError(
        AgentErrorCode.PayloadTooLarge,
        `payload of ${byteLength} bytes is larger than ${MAX_PAYLOAD_BYTES} bytes; send at most ${MAX_PAYLOAD_BYTES} bytes`,
      ),
    };
  }

  const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      ok: false,
      error: new AgentError(
        AgentErrorCode.InvalidJson,
        `payload is not valid JSON (${reason}); send one AgentState JSON object`,
      ),
    };
  }

  const parsed = agentStateSchema.safeParse(json);
  if (!parsed.success) {
    const violations = violationsFromZod(parsed.error, json);
    return {
      ok: false,
      error: new AgentError(
        AgentErrorCode.InvalidPayload,
        `payload is not a valid AgentState: ${violations.length} violation(s)`,
        violations,
      ),
    };
  }

  try {
    assertNoOverlappingEntries(parsed.data);
  } catch (error) {
    if (error instanceof AgentError) {
      return { ok: false, error };
    }
    throw error;
  }
  return { ok: true, state: parsed.data };
}
