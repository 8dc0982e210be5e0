import { QREXEC_ARGUMENT_PATTERN, QREXEC_SERVICE_PATTERN } from '../qrexec-transport.js';
import { QUBE_NAME_PATTERN } from '../wire-types.js';

/**
 * Framing of the qubesd Unix socket (`/var/run/qubesd.sock`), as
 * QubesOS/qubes-core-admin `qubes/api/__init__.py` (QubesDaemonProtocol)
 * reads and writes it, and as qubesadmin `QubesLocal.qubesd_call` sends it.
 *
 * Request, ended by the client shutting down its write side:
 *
 * | bytes | content |
 * |---|---|
 * | header | `METHOD+ARGUMENT SOURCE DEST_TYPE DEST`, ASCII; `+` is present even with an empty argument |
 * | 1 | NUL |
 * | rest | payload, up to the 64 KiB request limit |
 *
 * DEST_TYPE is `name`, or `keyword` with DEST `adminvm` (meaning dom0). This is
 * the header qrexec gives socket services. Qubes R4.0 and R4.1 used
 * `SOURCE\0METHOD\0DEST\0ARGUMENT\0` instead; current qubesd no longer reads it.
 *
 * Reply, ended by qubesd closing the connection:
 *
 * | header | body |
 * |---|---|
 * | `0\0` | the method's return value, UTF-8 |
 * | `2\0` | `TYPE\0TRACEBACK\0MESSAGE\0`: exception class name, traceback (empty unless qubesd runs with `--debug`), `str(exc)` |
 * | `1\0` | one event (admin.Events only), see qubesd-events.ts |
 * | nothing | the call was denied or malformed: qubesd aborts without a reply |
 */

/** QubesDaemonProtocol.buffer_size: qubesd aborts a request (header and payload) above this. */
export const QUBESD_MAX_REQUEST_BYTES = 65536;

/** Maximum length of an exception class name that this parser accepts. */
export const QUBESD_MAX_EXCEPTION_TYPE_LENGTH = 128;

export const QUBESD_SUCCESS_HEADER = Buffer.from([0x30, 0x00]);
export const QUBESD_EVENT_HEADER = Buffer.from([0x31, 0x00]);
export const QUBESD_EXCEPTION_HEADER = Buffer.from([0x32, 0x00]);

const EXCEPTION_TYPE_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface QubesdRequest {
  method: string;
  /** Empty for none. */
  argument: string;
  source: string;
  destination: string;
  payload: Buffer;
}

export type QubesdReply =
  | { kind: 'success'; value: string }
  | { kind: 'exception'; type: string; traceback: string; message: string }
  | { kind: 'empty' };

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes strict UTF-8, or returns null for invalid bytes. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Returns why `request` cannot be sent, or null when it is valid. */
export function validateQubesdRequest(request: Omit<QubesdRequest, 'payload'>): string | null {
  if (!QREXEC_SERVICE_PATTERN.test(request.method)) {
    return `invalid method name ${JSON.stringify(request.method)}: use letters, digits and ._- (for example admin.vm.List)`;
  }
  if (!QREXEC_ARGUMENT_PATTERN.test(request.argument)) {
    return `invalid argument ${JSON.stringify(request.argument)}: use at most 64 of A-Za-z0-9+._-`;
  }
  if (!QUBE_NAME_PATTERN.test(request.source)) {
    return `invalid source VM name ${JSON.stringify(request.source)}`;
  }
  if (!QUBE_NAME_PATTERN.test(request.destination)) {
    return `invalid destination VM name ${JSON.stringify(request.destination)}`;
  }
  return null;
}

/** Encodes a request; the caller checks it with `validateQubesdRequest` first. */
export function encodeQubesdRequest(request: QubesdRequest): Buffer {
  const header = `${request.method}+${request.argument} ${request.source} name ${request.destination}\0`;
  return Buffer.concat([Buffer.from(header, 'ascii'), request.payload]);
}

/**
 * Parses a whole request as qubesd does in `eof_received`. A failure here is a
 * framing error, which qubesd handles by aborting the connection.
 */
export function parseQubesdRequest(data: Buffer): ParseResult<QubesdRequest> {
  if (data.length > QUBESD_MAX_REQUEST_BYTES) {
    return {
      ok: false,
      error: `request of ${data.length} bytes exceeds ${QUBESD_MAX_REQUEST_BYTES}`,
    };
  }

  const headerEnd = data.indexOf(0);
  if (headerEnd < 0) {
    return { ok: false, error: 'request header is not NUL-terminated' };
  }

  const headerBytes = data.subarray(0, headerEnd);
  if (!headerBytes.every((byte) => byte >= 0x20 && byte <= 0x7e)) {
    return { ok: false, error: 'request header is not printable ASCII' };
  }

  const fields = splitWithLimit(headerBytes.toString('ascii'), ' ', 3);
  if (fields.length !== 4) {
    return { ok: false, error: 'request header needs METHOD+ARG SOURCE DEST_TYPE DEST' };
  }

  const [methodWithArgument = '', source = '', destinationTypeField = '', destinationField = ''] =
    fields;
  let destinationType = destinationTypeField;
  let destination = destinationField;
  if (destinationType === 'keyword' && destination === 'adminvm') {
    destinationType = 'name';
    destination = 'dom0';
  }
  if (destinationType !== 'name') {
    return { ok: false, error: `destination type ${destinationType} is not supported, only name` };
  }

  const [method = '', argument = ''] = splitWithLimit(methodWithArgument, '+', 1);
  return {
    ok: true,
    value: { method, argument, source, destination, payload: data.subarray(headerEnd + 1) },
  };
}

export function encodeSuccessReply(value: string): Buffer {
  return Buffer.concat([QUBESD_SUCCESS_HEADER, Buffer.from(value, 'utf8')]);
}

export function encodeExceptionReply(type: string, message: string, traceback = ''): Buffer {
  return Buffer.concat([
    QUBESD_EXCEPTION_HEADER,
    Buffer.from(`${type}\0${traceback}\0${message}\0`, 'utf8'),
  ]);
}

/**
 * Parses the whole reply to one call. Exception replies may carry extra
 * NUL-terminated fields after the message (format arguments that older qubesd
 * versions sent); they are accepted and ignored.
 */
export function parseQubesdReply(data: Buffer): ParseResult<QubesdReply> {
  if (data.length === 0) {
    return { ok: true, value: { kind: 'empty' } };
  }
  if (data.length < 2 || data[1] !== 0) {
    return { ok: false, error: 'reply does not start with a one-byte code and NUL' };
  }

  const body = data.subarray(2);
  if (data[0] === QUBESD_SUCCESS_HEADER[0]) {
    const value = decodeUtf8(body);
    if (value === null) {
      return { ok: false, error: 'reply value is not valid UTF-8' };
    }
    return { ok: true, value: { kind: 'success', value } };
  }
  if (data[0] === QUBESD_EXCEPTION_HEADER[0]) {
    return parseExceptionBody(body);
  }
  if (data[0] === QUBESD_EVENT_HEADER[0]) {
    return { ok: false, error: 'reply is an event, but the call was not admin.Events' };
  }
  return { ok: false, error: `unknown reply code 0x${(data[0] ?? 0).toString(16)}` };
}

function parseExceptionBody(body: Buffer): ParseResult<QubesdReply> {
  if (body.length === 0 || body[body.length - 1] !== 0) {
    return { ok: false, error: 'exception reply is not NUL-terminated' };
  }

  const text = decodeUtf8(body.subarray(0, body.length - 1));
  if (text === null) {
    return { ok: false, error: 'exception reply is not valid UTF-8' };
  }

  const fields = text.split('\0');
  if (fields.length < 3) {
    return { ok: false, error: 'exception reply needs TYPE, TRACEBACK and MESSAGE fields' };
  }

  const [type = '', traceback = '', message = ''] = fields;
  if (type.length > QUBESD_MAX_EXCEPTION_TYPE_LENGTH || !EXCEPTION_TYPE_PATTERN.test(type)) {
    return { ok: false, error: `invalid exception type ${JSON.stringify(type.slice(0, 64))}` };
  }
  return { ok: true, value: { kind: 'exception', type, traceback, message } };
}

/** Splits like Python's `str.split(separator, maxSplits)`. */
export function splitWithLimit(text: string, separator: string, maxSplits: number): string[] {
  const parts: string[] = [];
  let rest = text;
  while (parts.length < maxSplits) {
    const index = rest.indexOf(separator);
    if (index < 0) {
      break;
    }
    parts.push(rest.slice(0, index));
    rest = rest.slice(index + separator.length);
  }
  parts.push(rest);
  return parts;
}
