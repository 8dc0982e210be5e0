import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseFirewallRules,
  parsePropertyValue,
  parseVmList,
  validatePropertyValue,
} from '../rpc/admin-api/admin-api-parsers.js';
import {
  encodeQubesdEvent,
  QUBESD_MAX_EVENT_BYTES,
  QubesdEventStreamParser,
} from '../rpc/admin-api/qubesd-events.js';
import {
  encodeExceptionReply,
  encodeQubesdRequest,
  encodeSuccessReply,
  parseQubesdReply,
  parseQubesdRequest,
  splitWithLimit,
} from '../rpc/admin-api/qubesd-wire.js';

const nameArbitrary = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,30}$/);
const eventTextArbitrary = fc
  .string({ unit: 'grapheme', maxLength: 40 })
  .filter((text) => !text.includes('\0'));

describe('qubesd reply parser', () => {
  it('parses a success reply', () => {
    expect(parseQubesdReply(Buffer.from('0\0default=True type=vm sys-firewall'))).toEqual({
      ok: true,
      value: { kind: 'success', value: 'default=True type=vm sys-firewall' },
    });
  });

  it('parses an exception reply as qubesd sends it', () => {
    const reply = Buffer.from(
      '2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: x\0',
    );
    expect(parseQubesdReply(reply)).toEqual({
      ok: true,
      value: {
        kind: 'exception',
        type: 'QubesFeatureNotFoundError',
        traceback: '',
        message: 'Feature not set for domain work: x',
      },
    });
  });

  it('accepts extra format arguments after the message', () => {
    const parsed = parseQubesdReply(Buffer.from('2\0QubesException\0tb\0failed %s\0arg\0'));
    expect(parsed.ok && parsed.value.kind === 'exception' && parsed.value.message).toBe(
      'failed %s',
    );
  });

  it('reports an empty reply as empty', () => {
    expect(parseQubesdReply(Buffer.alloc(0))).toEqual({ ok: true, value: { kind: 'empty' } });
  });

  it.each([
    ['single byte', '0'],
    ['missing NUL after code', '0x'],
    ['unknown code', '9\0'],
    ['event on a call', '1\0\0connection-established\0\0'],
    ['unterminated exception', '2\0QubesException\0\0message'],
    ['exception with two fields', '2\0QubesException\0\0'],
    ['exception type with spaces', '2\0Qubes Exception\0\0m\0'],
    ['empty exception type', '2\0\0\0m\0'],
  ])('rejects %s', (_label, text) => {
    expect(parseQubesdReply(Buffer.from(text, 'latin1')).ok).toBe(false);
  });

  it('rejects invalid UTF-8 in a success value', () => {
    expect(parseQubesdReply(Buffer.from([0x30, 0x00, 0xff, 0xfe])).ok).toBe(false);
  });

  it('round-trips success and exception replies', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (value) => {
        expect(parseQubesdReply(encodeSuccessReply(value))).toEqual({
          ok: true,
          value: { kind: 'success', value },
        });
      }),
    );
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,40}$/),
        eventTextArbitrary,
        eventTextArbitrary,
        (type, message, traceback) => {
          expect(parseQubesdReply(encodeExceptionReply(type, message, traceback))).toEqual({
            ok: true,
            value: { kind: 'exception', type, traceback, message },
          });
        },
      ),
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const result = parseQubesdReply(Buffer.from(bytes));
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('qubesd request parser', () => {
  it('parses the current header format', () => {
    const parsed = parseQubesdRequest(
      Buffer.from('admin.vm.feature.Set+nat-traversal dom0 name work\x001'),
    );
    expect(parsed).toEqual({
      ok: true,
      value: {
        method: 'admin.vm.feature.Set',
        argument: 'nat-traversal',
        source: 'dom0',
        destination: 'work',
        payload: Buffer.from('1'),
      },
    });
  });

  it('maps keyword adminvm to dom0', () => {
    const parsed = parseQubesdRequest(Buffer.from('admin.vm.List+ work keyword adminvm\0'));
    expect(parsed.ok && parsed.value.destination).toBe('dom0');
  });

  it.each([
    ['no NUL', 'admin.vm.List+ dom0 name dom0'],
    ['three fields', 'admin.vm.List+ dom0 dom0\0'],
    ['legacy NUL-separated format', 'dom0\0admin.vm.List\0dom0\0\0'],
    ['uuid destination type', 'admin.vm.List+ dom0 uuid 1234\0'],
    ['control byte in header', 'admin.vm.List+\x01 dom0 name dom0\0'],
  ])('rejects %s', (_label, text) => {
    expect(parseQubesdRequest(Buffer.from(text, 'latin1')).ok).toBe(false);
  });

  it('rejects a request over 64 KiB', () => {
    const big = Buffer.concat([
      Buffer.from('admin.vm.List+ dom0 name dom0\0'),
      Buffer.alloc(65536),
    ]);
    expect(parseQubesdRequest(big).ok).toBe(false);
  });

  it('round-trips encoded requests', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
        fc.stringMatching(/^[A-Za-z0-9+._-]{0,64}$/),
        nameArbitrary,
        nameArbitrary,
        fc.uint8Array({ maxLength: 100 }),
        (method, argument, source, destination, payload) => {
          const request = { method, argument, source, destination, payload: Buffer.from(payload) };
          const parsed = parseQubesdRequest(encodeQubesdRequest(request));
          expect(parsed.ok).toBe(true);
          if (parsed.ok) {
            // The first `+` separates method and argument, as qubesd splits it.
            expect(parsed.value.source).toBe(source);
            expect(parsed.value.destination).toBe(destination);
            expect(Buffer.compare(parsed.value.payload, request.payload)).toBe(0);
            expect(`${parsed.value.method}+${parsed.value.argument}`).toBe(`${method}+${argument}`);
          }
        },
      ),
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(typeof parseQubesdRequest(Buffer.from(bytes)).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('splitWithLimit matches Python str.split with maxsplit', () => {
    expect(splitWithLimit('a b c d e', ' ', 3)).toEqual(['a', 'b', 'c', 'd e']);
    expect(splitWithLimit('a', '+', 1)).toEqual(['a']);
    expect(splitWithLimit('a+', '+', 1)).toEqual(['a', '']);
  });
});

describe('admin.Events stream parser', () => {
  const eventArbitrary = fc.record({
    subject: fc.option(nameArbitrary, { nil: null }),
    event: eventTextArbitrary.filter((text) => text !== ''),
    properties: fc.dictionary(
      eventTextArbitrary.filter((key) => key !== '' && key !== '__proto__'),
      eventTextArbitrary,
      { maxKeys: 5 },
    ),
  });

  it('parses connection-established with an empty subject', () => {
    const parser = new QubesdEventStreamParser();
    const items = parser.push(Buffer.from('1\0\0connection-established\0\0'));
    expect(items.ok && items.value).toEqual([
      { kind: 'event', event: { subject: null, event: 'connection-established', properties: {} } },
    ]);
  });

  it('parses events split at every byte', () => {
    const stream = Buffer.concat([
      encodeQubesdEvent(null, 'connection-established'),
      encodeQubesdEvent('work', 'domain-feature-set:nat-traversal', {
        feature: 'nat-traversal',
        value: '',
      }),
    ]);
    const parser = new QubesdEventStreamParser();
    const events = [];
    for (const byte of stream) {
      const items = parser.push(Buffer.from([byte]));
      expect(items.ok).toBe(true);
      if (items.ok) {
        events.push(...items.value);
      }
    }
    expect(events).toHaveLength(2);
    expect(events[1]).toEqual({
      kind: 'event',
      event: {
        subject: 'work',
        event: 'domain-feature-set:nat-traversal',
        properties: { feature: 'nat-traversal', value: '' },
      },
    });
  });

  it('round-trips random events in random chunks', () => {
    fc.assert(
      fc.property(
        fc.array(eventArbitrary, { maxLength: 6 }),
        fc.integer({ min: 1, max: 17 }),
        (events, chunkSize) => {
          const stream = Buffer.concat(
            events.map((e) => encodeQubesdEvent(e.subject, e.event, e.properties)),
          );
          const parser = new QubesdEventStreamParser();
          const received = [];
          for (let offset = 0; offset < stream.length; offset += chunkSize) {
            const items = parser.push(stream.subarray(offset, offset + chunkSize));
            expect(items.ok).toBe(true);
            if (items.ok) {
              received.push(...items.value);
            }
          }
          expect(parser.finish()).toEqual({ ok: true, value: [] });
          expect(
            received.map(
              (item) =>
                item.kind === 'event' && {
                  ...item.event,
                  properties: { ...item.event.properties },
                },
            ),
          ).toEqual(events);
        },
      ),
    );
  });

  it('returns an exception reply at finish', () => {
    const parser = new QubesdEventStreamParser();
    expect(
      parser.push(encodeExceptionReply('QubesVMNotFoundError', "No such domain: 'x'")).ok,
    ).toBe(true);
    expect(parser.finish()).toEqual({
      ok: true,
      value: [
        {
          kind: 'exception',
          type: 'QubesVMNotFoundError',
          traceback: '',
          message: "No such domain: 'x'",
        },
      ],
    });
  });

  it.each([
    ['unknown code', '7\0'],
    ['empty event name', '1\0work\0\0\0'],
    ['repeated argument', '1\0work\0e\0k\0a\0k\0b\0\0'],
    ['reply header after events', '1\0\0connection-established\0\x000\0'],
  ])('rejects %s', (_label, text) => {
    const parser = new QubesdEventStreamParser();
    expect(parser.push(Buffer.from(text, 'latin1')).ok).toBe(false);
  });

  it('rejects a stream cut inside an event', () => {
    const parser = new QubesdEventStreamParser();
    expect(parser.push(Buffer.from('1\0work\0domain-start\0')).ok).toBe(true);
    expect(parser.finish().ok).toBe(false);
  });

  it('rejects an event larger than the limit', () => {
    const parser = new QubesdEventStreamParser();
    const result = parser.push(
      Buffer.concat([Buffer.from('1\0'), Buffer.alloc(QUBESD_MAX_EVENT_BYTES + 1, 0x61)]),
    );
    expect(result.ok).toBe(false);
  });

  it('keeps __proto__ keys as plain properties', () => {
    const parser = new QubesdEventStreamParser();
    const items = parser.push(Buffer.from('1\0work\0e\0__proto__\0x\0\0'));
    expect(items.ok).toBe(true);
    if (items.ok && items.value[0]?.kind === 'event') {
      expect(
        Object.getOwnPropertyDescriptor(items.value[0].event.properties, '__proto__')?.value,
      ).toBe('x');
      expect(Object.getPrototypeOf(items.value[0].event.properties)).toBeNull();
    }
  });

  it('never throws on arbitrary chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }), (chunks) => {
        const parser = new QubesdEventStreamParser();
        for (const chunk of chunks) {
          if (!parser.push(Buffer.from(chunk)).ok) {
            return;
          }
        }
        expect(typeof parser.finish().ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('Admin API value parsers', () => {
  it('parses admin.vm.List with and without uuid', () => {
    const text =
      'dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\nwork class=AppVM state=Halted\n';
    expect(parseVmList(text)).toEqual({
      ok: true,
      value: [
        { name: 'dom0', klass: 'AdminVM', state: 'Running' },
        { name: 'work', klass: 'AppVM', state: 'Halted' },
      ],
    });
  });

  it.each([
    ['bad name', '-work class=AppVM state=Running\n'],
    ['missing class', 'work state=Running\n'],
    ['unknown state', 'work class=AppVM state=Asleep\n'],
    ['duplicate VM', 'work class=AppVM state=Running\nwork class=AppVM state=Running\n'],
    ['word without =', 'work class=AppVM state=Running extra\n'],
    ['duplicate key', 'work class=AppVM class=AdminVM state=Running\n'],
  ])('rejects admin.vm.List with %s', (_label, text) => {
    expect(parseVmList(text).ok).toBe(false);
  });

  it('parses property values, empty meaning none', () => {
    expect(parsePropertyValue('default=True type=vm sys-firewall')).toEqual({
      ok: true,
      value: { isDefault: true, type: 'vm', value: 'sys-firewall' },
    });
    expect(parsePropertyValue('default=False type=vm ')).toEqual({
      ok: true,
      value: { isDefault: false, type: 'vm', value: null },
    });
  });

  it.each([
    ['missing value separator', 'default=True type=vm'],
    ['unknown type', 'default=True type=float 1.5'],
    ['lower-case default', 'default=true type=str x'],
    ['newline in value', 'default=True type=str a\nb'],
  ])('rejects property value with %s', (_label, text) => {
    expect(parsePropertyValue(text).ok).toBe(false);
  });

  it('validates IP and VM property values', () => {
    expect(
      validatePropertyValue('ip', { isDefault: true, type: 'str', value: '10.137.0.20' }),
    ).toBeNull();
    expect(
      validatePropertyValue('ip', { isDefault: true, type: 'str', value: '10.137.0.256' }),
    ).toMatch(/IPv4/);
    expect(validatePropertyValue('netvm', { isDefault: true, type: 'vm', value: 'a b' })).toMatch(
      /VM name/,
    );
    expect(
      validatePropertyValue('provides_network', { isDefault: true, type: 'bool', value: 'yes' }),
    ).toMatch(/True or False/);
  });

  it('parses firewall rules and rejects others', () => {
    expect(parseFirewallRules('action=accept\n')).toEqual({ ok: true, value: ['action=accept'] });
    expect(parseFirewallRules('action=forward proto=tcp\n').ok).toBe(false);
    expect(parseFirewallRules('proto=tcp action=accept\n').ok).toBe(false);
    expect(parseFirewallRules('action=drop comment=caf\u00e9\n').ok).toBe(false);
  });

  it('value parsers never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        expect(typeof parseVmList(text).ok).toBe('boolean');
        expect(typeof parsePropertyValue(text).ok).toBe('boolean');
        expect(typeof parseFirewallRules(text).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});
