import type { Readable } from 'node:stream';
import { createLogger, type Logger } from '../rpc/logger.js';
import { readServiceInvocation } from '../rpc/qrexec/service-invocation.js';
import {
  type ActivityReply,
  MAX_ACTIVITY_PAYLOAD_BYTES,
  parseActivityRequest,
} from './activity-messages.js';
import { AgentError } from './agent-errors.js';
import { isMainModule } from './agent-setup.js';
import { readLimited } from './apply-service.js';
import { FlowActivity } from './flow-activity.js';
import { type CommandRunner, SpawnCommandRunner } from './nft-runner.js';

/**
 * The qrexec service `qubes.NatBrokerActivity`, run in a qube's netvm. dom0
 * writes a JSON list of `{clientAddress, protocol: "udp", port}` on standard
 * input, and the service prints one line
 * `{"result":"ok","flows":[{…,"active":true}]}` with exit code 0, or
 * `{"result":"error","code":"…","message":"…"}` with a non-zero exit code.
 * Only dom0 may call it: the reply reveals which sockets of a qube are in use.
 */

export const ActivityServiceErrorCode = {
  CallerNotDom0: 'caller-not-dom0',
  InvalidInvocation: 'invalid-invocation',
  PayloadTooLarge: 'payload-too-large',
  InvalidJson: 'invalid-json',
  InvalidPayload: 'invalid-payload',
  ConntrackFailed: 'conntrack-failed',
} as const;
export type ActivityServiceErrorCode =
  (typeof ActivityServiceErrorCode)[keyof typeof ActivityServiceErrorCode];

/** Process exit codes per result code; 0 is success. */
export const ACTIVITY_EXIT_CODES: Record<ActivityServiceErrorCode, number> = {
  'caller-not-dom0': 3,
  'invalid-invocation': 3,
  'payload-too-large': 2,
  'invalid-json': 2,
  'invalid-payload': 2,
  'conntrack-failed': 6,
};

export interface ActivityServiceOptions {
  env: NodeJS.ProcessEnv;
  argv: readonly string[];
  input: Readable;
  conntrack: CommandRunner;
  logger: Logger;
}

export interface ActivityServiceResult {
  exitCode: number;
  /** The one-line JSON to print on standard output, without the newline. */
  output: string;
}

/** Runs the service once: check the caller, read and validate the list, and look up each flow. */
export async function runActivityService(
  options: ActivityServiceOptions,
): Promise<ActivityServiceResult> {
  const invocation = readServiceInvocation(options.env, options.argv);
  if (!invocation.ok) {
    return failure(options.logger, ActivityServiceErrorCode.InvalidInvocation, invocation.message);
  }
  const { remoteDomain } = invocation.invocation;
  const logger = options.logger.child({ caller: remoteDomain });
  if (remoteDomain !== 'dom0') {
    return failure(
      logger,
      ActivityServiceErrorCode.CallerNotDom0,
      `caller ${remoteDomain} is not dom0; only dom0 may ask for flow activity`,
    );
  }

  let payload: Buffer;
  try {
    payload = await readLimited(options.input, MAX_ACTIVITY_PAYLOAD_BYTES);
  } catch (error) {
    if (error instanceof AgentError) {
      return failure(logger, ActivityServiceErrorCode.PayloadTooLarge, error.message);
    }
    throw error;
  }

  const parsed = parseActivityRequest(payload.toString('utf8'));
  if (!parsed.ok) {
    return failure(logger, parsed.code, parsed.message);
  }

  const activity = new FlowActivity(options.conntrack, logger);
  const reply: ActivityReply = { result: 'ok', flows: [] };
  try {
    for (const query of parsed.queries) {
      reply.flows.push({ ...query, active: await activity.isActive(query) });
    }
  } catch (error) {
    return failure(logger, ActivityServiceErrorCode.ConntrackFailed, (error as Error).message);
  }
  return { exitCode: 0, output: JSON.stringify(reply) };
}

function failure(
  logger: Logger,
  code: ActivityServiceErrorCode,
  message: string,
): ActivityServiceResult {
  logger.error({ code }, message);
  return {
    exitCode: ACTIVITY_EXIT_CODES[code],
    output: JSON.stringify({ result: 'error', code, message }),
  };
}

if (isMainModule(import.meta.url)) {
  const result = await runActivityService({
    env: process.env,
    argv: process.argv.slice(2),
    input: process.stdin,
    conntrack: new SpawnCommandRunner('conntrack'),
    logger: createLogger('agent-activity'),
  });
  process.stdout.write(`${result.output}\n`);
  process.exitCode = result.exitCode;
}
