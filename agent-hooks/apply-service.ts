import type { Readable } from 'node:stream';
import { createLogger } from '../rpc/logger.js';
import { AgentError, AgentErrorCode } from './agent-errors.js';
import { MAX_PAYLOAD_BYTES, parseAgentPayload } from './agent-payload.js';
import {
  type AgentRuntimeOptions,
  createStateApplier,
  type EntryPointResult,
  failureResult,
  isMainModule,
} from './agent-setup.js';

/**
 * The qrexec service `qubes.NatBrokerApply`. dom0 writes the VM's complete
 * AgentState as JSON on standard input. The service applies it and prints one
 * JSON line such as
 * `{"result":"applied","dnat":2,"inputAccept":0,"natTraversalRedirects":1,"ssdpReplySources":0,"removedConntrackEntries":1}`
 * with exit code 0, or `{"result":"error","code":"stale-state","message":"…"}`
 * with the exit code from AGENT_EXIT_CODES.
 */

/** Reads the stream to its end, and throws `payload-too-large` as soon as it passes `maxBytes`. */
export async function readLimited(input: Readable, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of input) {
    const buffer =
      typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    total += buffer.byteLength;
    if (total > maxBytes) {
      input.destroy();
      throw new AgentError(
        AgentErrorCode.PayloadTooLarge,
        `payload is larger than ${maxBytes} bytes; send at most ${maxBytes} bytes`,
      );
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

export interface ApplyServiceOptions extends AgentRuntimeOptions {
  input: Readable;
}

/** Runs the service once: read, validate, apply, and return the result line with its exit code. */
export async function runApplyService(options: ApplyServiceOptions): Promise<EntryPointResult> {
  const logger = (options.logger ?? createLogger('agent-apply')).child({
    caller: options.env.QREXEC_REMOTE_DOMAIN ?? 'unknown',
  });

  try {
    const payload = await readLimited(options.input, MAX_PAYLOAD_BYTES);
    const parsed = parseAgentPayload(payload);
    if (!parsed.ok) {
      throw parsed.error;
    }

    const applier = await createStateApplier({ ...options, logger });
    const outcome = await applier.apply(parsed.state);
    return { exitCode: 0, output: JSON.stringify(outcome) };
  } catch (error) {
    return failureResult(error, logger);
  }
}

if (isMainModule(import.meta.url)) {
  const result = await runApplyService({ env: process.env, input: process.stdin });
  process.stdout.write(`${result.output}\n`);
  process.exitCode = result.exitCode;
}
