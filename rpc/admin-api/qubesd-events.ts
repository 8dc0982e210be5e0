import {
  decodeUtf8,
  type ParseResult,
  parseQubesdReply,
  QUBESD_EVENT_HEADER,
  QUBESD_EXCEPTION_HEADER,
  QUBESD_SUCCESS_HEADER,
} from './qubesd-wire.js';

/**
 * The admin.Events stream, as QubesOS/qubes-core-admin `qubes/api/__init__.py`
 * (`send_event`) writes it. There is no `0\0` reply header: the stream is a
 * sequence of events, each
 *
 * | field | content |
 * |---|---|
 * | `1\0` | event header |
 * | `SUBJECT\0` | VM name, or empty for the Qubes application itself |
 * | `EVENT\0` | event name, for example `domain-feature-set:nat-traversal` |
 * | `KEY\0VALUE\0` | zero or more event arguments, values as Python `str()` |
 * | `\0` | end of event (an empty key) |
 *
 * The first event is always `connection-established` with an empty subject.
 * A call that fails before streaming (unknown destination VM) gets an ordinary
 * `2\0` exception reply instead, and a denied one gets nothing.
 */

/** Largest single event this parser buffers before it reports the stream as malformed. */
export const QUBESD_MAX_EVENT_BYTES = 65536;

/** Most arguments (key/value pairs) one event may carry. */
export const QUBESD_MAX_EVENT_PROPERTIES = 256;

export interface QubesdEvent {
  /** VM name, or null for events of the Qubes application (subject sent empty). */
  subject: string | null;
  event: string;
  /** Event arguments; a null-prototype object, so wire keys never reach Object.prototype. */
  properties: Readonly<Record<string, string>>;
}

export type EventStreamItem =
  | { kind: 'event'; event: QubesdEvent }
  | { kind: 'exception'; type: string; traceback: string; message: string };

/**
 * Incremental parser of an admin.Events stream: feed chunks with `push`, and
 * call `finish` once the connection ended.
 */
export class QubesdEventStreamParser {
  private pending: Buffer = Buffer.alloc(0);
  private exceptionSeen = false;
  private eventsSeen = 0;

  /** Returns the items completed by `chunk`, or an error for a malformed stream. */
  push(chunk: Buffer): ParseResult<EventStreamItem[]> {
    if (this.exceptionSeen) {
      return { ok: false, error: 'data after an exception reply' };
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);

    const items: EventStreamItem[] = [];
    for (;;) {
      if (this.pending.length < 2) {
        break;
      }
      if (this.pending[1] !== 0) {
        return { ok: false, error: 'stream item does not start with a one-byte code and NUL' };
      }
      if (
        this.pending[0] === QUBESD_EXCEPTION_HEADER[0] ||
        this.pending[0] === QUBESD_SUCCESS_HEADER[0]
      ) {
        // An exception or a plain reply runs to the end of the connection; finish() parses it.
        if (this.eventsSeen > 0) {
          return { ok: false, error: 'reply header after events' };
        }
        return this.checkPendingSize(items);
      }
      if (this.pending[0] !== QUBESD_EVENT_HEADER[0]) {
        return { ok: false, error: `unknown stream code 0x${(this.pending[0] ?? 0).toString(16)}` };
      }

      const parsed = parseOneEvent(this.pending);
      if (!parsed.ok) {
        return parsed;
      }
      if (parsed.value === null) {
        return this.checkPendingSize(items);
      }
      items.push({ kind: 'event', event: parsed.value.event });
      this.eventsSeen += 1;
      this.pending = this.pending.subarray(parsed.value.length);
    }
    return { ok: true, value: items };
  }

  /** Completes the stream at end of connection: returns a final exception, or an error for a cut event. */
  finish(): ParseResult<EventStreamItem[]> {
    if (this.pending.length === 0) {
      return { ok: true, value: [] };
    }
    if (this.pending[0] === QUBESD_EVENT_HEADER[0]) {
      return {
        ok: false,
        error: `stream ended inside an event (${this.pending.length} bytes left)`,
      };
    }

    const reply = parseQubesdReply(this.pending);
    this.pending = Buffer.alloc(0);
    if (!reply.ok) {
      return reply;
    }
    if (reply.value.kind === 'exception') {
      this.exceptionSeen = true;
      const { type, traceback, message } = reply.value;
      return { ok: true, value: [{ kind: 'exception', type, traceback, message }] };
    }
    return { ok: false, error: 'admin.Events got a plain reply instead of events' };
  }

  private checkPendingSize(items: EventStreamItem[]): ParseResult<EventStreamItem[]> {
    if (this.pending.length > QUBESD_MAX_EVENT_BYTES) {
      return { ok: false, error: `event exceeds ${QUBESD_MAX_EVENT_BYTES} bytes` };
    }
    return { ok: true, value: items };
  }
}

/**
 * Parses one event at the start of `data` (which begins with `1\0`). Returns
 * null when the event is not complete yet.
 */
export function parseOneEvent(
  data: Buffer,
): ParseResult<{ event: QubesdEvent; length: number } | null> {
  let position = 2;
  const fields: string[] = [];

  const readField = (): ParseResult<string | null> => {
    const end = data.indexOf(0, position);
    if (end < 0) {
      return { ok: true, value: null };
    }
    const text = decodeUtf8(data.subarray(position, end));
    if (text === null) {
      return { ok: false, error: 'event field is not valid UTF-8' };
    }
    position = end + 1;
    return { ok: true, value: text };
  };

  for (;;) {
    const field = readField();
    if (!field.ok) {
      return field;
    }
    if (field.value === null) {
      return { ok: true, value: null };
    }
    // Subject and event name come first; after them an empty key ends the event.
    if (fields.length >= 2 && (fields.length - 2) % 2 === 0 && field.value === '') {
      break;
    }
    fields.push(field.value);
    if (fields.length > 2 + 2 * QUBESD_MAX_EVENT_PROPERTIES) {
      return { ok: false, error: `event has more than ${QUBESD_MAX_EVENT_PROPERTIES} arguments` };
    }
  }

  const [subject = '', event = ''] = fields;
  if (event === '') {
    return { ok: false, error: 'event name is empty' };
  }

  const properties: Record<string, string> = Object.create(null);
  for (let index = 2; index < fields.length; index += 2) {
    const key = fields[index] ?? '';
    if (Object.hasOwn(properties, key)) {
      return { ok: false, error: `event ${event} repeats argument ${key}` };
    }
    properties[key] = fields[index + 1] ?? '';
  }

  return {
    ok: true,
    value: {
      event: { subject: subject === '' ? null : subject, event, properties },
      length: position,
    },
  };
}

/** Encodes one event as qubesd `send_event` does. */
export function encodeQubesdEvent(
  subject: string | null,
  event: string,
  properties: Readonly<Record<string, string>> = {},
): Buffer {
  const parts = [subject ?? '', event];
  for (const [key, value] of Object.entries(properties)) {
    parts.push(key, value);
  }
  return Buffer.concat([QUBESD_EVENT_HEADER, Buffer.from(`${parts.join('\0')}\0\0`, 'utf8')]);
}
