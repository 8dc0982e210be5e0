import { z } from 'zod';
import {
  QREXEC_ARGUMENT_PATTERN,
  QREXEC_SERVICE_PATTERN,
  type QrexecResult,
} from '../qrexec-transport.js';

/**
 * Wire format between a lab VM and the lab's dom0 router, one call per
 * connection on the VM's own Unix socket:
 *
 *   request:  one JSON header line `{"version":1,"target":T,"service":S,
 *             "argument":A,"payloadBytes":N}` + `\n`, then exactly N payload
 *             bytes, then the client half-closes the connection.
 *   reply:    one JSON header line `{"exitCode":C,"stdoutBytes":O,
 *             "stderrBytes":E}` + `\n`, then O bytes of standard output, then
 *             E bytes of standard error, then the router closes.
 *
 * The header has no source field: the router takes the source VM from the
 * socket the call arrived on, and rejects a header with unknown keys.
 */

export const LAB_FRAME_VERSION = 1;
/** Limit of a header line, newline included. */
export const MAX_HEADER_BYTES = 4096;
/** Default limit of a request payload. Real qrexec streams without a limit, but the lab router buffers the payload. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;

const requestHeaderSchema = z.strictObject({
  version: z.literal(LAB_FRAME_VERSION),
  target: z.string().min(1).max(64),
  service: z.string().regex(QREXEC_SERVICE_PATTERN),
  argument: z.string().regex(QREXEC_ARGUMENT_PATTERN),
  payloadBytes: z.number().int().min(0),
});
export type LabRequestHeader = z.infer<typeof requestHeaderSchema>;

const replyHeaderSchema = z.strictObject({
  exitCode: z.number().int().min(0).max(255),
  stdoutBytes: z.number().int().min(0),
  stderrBytes: z.number().int().min(0),
});

export interface LabRequest {
  target: string;
  service: string;
  argument: string;
  payload: Buffer;
}

export type FrameDecodeResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function encodeRequestFrame(request: LabRequest): Buffer {
  const header: LabRequestHeader = {
    version: LAB_FRAME_VERSION,
    target: request.target,
    service: request.service,
    argument: request.argument,
    payloadBytes: request.payload.length,
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), request.payload]);
}

/** Splits the header line off a buffer; null while no newline has arrived yet. */
export function splitHeaderLine(
  bytes: Buffer,
): FrameDecodeResult<{ header: string; rest: Buffer }> | null {
  const newline = bytes.subarray(0, MAX_HEADER_BYTES).indexOf(0x0a);
  if (newline < 0) {
    return bytes.length >= MAX_HEADER_BYTES
      ? { ok: false, error: `header line longer than ${MAX_HEADER_BYTES} bytes` }
      : null;
  }
  return {
    ok: true,
    value: {
      header: bytes.subarray(0, newline).toString('utf8'),
      rest: bytes.subarray(newline + 1),
    },
  };
}

/** Parses a request header line, checking the payload against `maxPayloadBytes`. */
export function parseRequestHeader(
  line: string,
  maxPayloadBytes: number,
): FrameDecodeResult<LabRequestHeader> {
  const json = parseJson(line);
  if (!json.ok) {
    return json;
  }

  const parsed = requestHeaderSchema.safeParse(json.value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || 'header'}: ${issue.message}`,
    );
    return { ok: false, error: `invalid request header: ${issues.join('; ')}` };
  }

  if (parsed.data.payloadBytes > maxPayloadBytes) {
    return {
      ok: false,
      error: `payload of ${parsed.data.payloadBytes} bytes exceeds the limit of ${maxPayloadBytes} bytes`,
    };
  }
  return { ok: true, value: parsed.data };
}

/** Decodes a complete request (everything the client sent before half-closing). */
export function decodeRequestFrame(
  bytes: Buffer,
  maxPayloadBytes: number,
): FrameDecodeResult<LabRequest> {
  const split = splitHeaderLine(bytes);
  if (split === null) {
    return { ok: false, error: 'connection closed before the end of the header line' };
  }
  if (!split.ok) {
    return split;
  }

  const header = parseRequestHeader(split.value.header, maxPayloadBytes);
  if (!header.ok) {
    return header;
  }

  const payload = split.value.rest;
  if (payload.length !== header.value.payloadBytes) {
    return {
      ok: false,
      error: `header announced ${header.value.payloadBytes} payload bytes but ${payload.length} arrived`,
    };
  }

  const { target, service, argument } = header.value;
  return { ok: true, value: { target, service, argument, payload } };
}

export function encodeReplyFrame(result: QrexecResult): Buffer {
  const header = {
    exitCode: result.exitCode,
    stdoutBytes: result.stdout.length,
    stderrBytes: result.stderr.length,
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), result.stdout, result.stderr]);
}

export function decodeReplyFrame(bytes: Buffer): FrameDecodeResult<QrexecResult> {
  const split = splitHeaderLine(bytes);
  if (split === null) {
    return { ok: false, error: 'reply ended before the end of the header line' };
  }
  if (!split.ok) {
    return split;
  }

  const json = parseJson(split.value.header);
  if (!json.ok) {
    return json;
  }
  const header = replyHeaderSchema.safeParse(json.value);
  if (!header.success) {
    return { ok: false, error: `invalid reply header: ${header.error.issues[0]?.message}` };
  }

  const { stdoutBytes, stderrBytes } = header.data;
  const body = split.value.rest;
  if (body.length !== stdoutBytes + stderrBytes) {
    return {
      ok: false,
      error: `reply announced ${stdoutBytes + stderrBytes} bytes of output but ${body.length} arrived`,
    };
  }

  return {
    ok: true,
    value: {
      exitCode: header.data.exitCode,
      stdout: Buffer.from(body.subarray(0, stdoutBytes)),
      stderr: Buffer.from(body.subarray(stdoutBytes)),
    },
  };
}

function parseJson(line: string): FrameDecodeResult<unknown> {
  try {
    return { ok: true, value: JSON.parse(line) as unknown };
  } catch {
    return {
      ok: false,
      error: `header line is not valid JSON: ${JSON.stringify(line.slice(0, 80))}`,
    };
  }
}
