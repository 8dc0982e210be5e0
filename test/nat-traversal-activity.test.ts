import { Readable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  MAX_ACTIVITY_PAYLOAD_BYTES,
  MAX_ACTIVITY_QUERIES,
  parseActivityRequest,
} from '../agent-hooks/activity-messages.js';
import { runActivityService } from '../agent-hooks/activity-service.js';
import { isRedirectedFlow } from '../agent-hooks/flow-activity.js';
import type { CommandResult, CommandRunner } from '../agent-hooks/nft-runner.js';
import {
  parseActivityCheckIntervalMs,
  renewWindowSeconds,
} from '../policy/nat-traversal/activity-renewal.js';

const logger = pino({ level: 'silent' });
const DOM0_ENV = {
  QREXEC_REMOTE_DOMAIN: 'dom0',
  QREXEC_SERVICE_FULL_NAME: 'qubes.NatBrokerActivity',
};

/** Returns fixed `conntrack -L` output: the flow lines that `flows` picks for the arguments. */
class FakeConntrack implements CommandRunner {
  readonly calls: string[][] = [];
  constructor(private readonly flows: (args: readonly string[]) => string[] | null) {}
  async run(args: readonly string[]): Promise<CommandResult> {
    this.calls.push([...args]);
    const lines = this.flows(args);
    if (lines === null) {
      return { exitCode: 1, stdout: '', stderr: 'conntrack v1.4.7: Operation failed\n' };
    }
    return {
      exitCode: 0,
      stdout: lines.map((line) => `${line}\n`).join(''),
      stderr: `conntrack v1.4.7 (conntrack-tools): ${lines.length} flow entries have been shown.\n`,
    };
  }
}

const run = (payload: string, conntrack: CommandRunner, env: NodeJS.ProcessEnv = DOM0_ENV) =>
  runActivityService({ env, argv: [], input: Readable.from([payload]), conntrack, logger });

const query = { clientAddress: '10.137.0.10', protocol: 'udp', port: 41000 };
const PEER_FLOW =
  'udp      17 28 src=10.137.0.10 dst=203.0.113.254 sport=41000 dport=7777 src=203.0.113.254 dst=10.137.0.10 sport=7777 dport=41000 mark=0 use=1';
const BROKER_FLOW =
  'udp      17 20 src=10.137.0.10 dst=198.51.100.1 sport=41000 dport=3478 src=10.137.0.20 dst=10.137.0.10 sport=3478 dport=41000 mark=0 use=1';

describe('activity request parser', () => {
  it('accepts every valid list', () => {
    const entry = fc.record({
      clientAddress: fc.ipV4(),
      protocol: fc.constant('udp'),
      port: fc.integer({ min: 1, max: 65535 }),
    });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: MAX_ACTIVITY_QUERIES }), (list) => {
        const parsed = parseActivityRequest(JSON.stringify(list));
        expect(parsed).toEqual({ ok: true, queries: list });
      }),
    );
  });

  it('never throws on any string', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        expect(() => parseActivityRequest(text)).not.toThrow();
      }),
    );
  });

  it.each([
    ['not JSON', '{', 'invalid-json'],
    ['an object', JSON.stringify(query), 'invalid-payload'],
    ['tcp', JSON.stringify([{ ...query, protocol: 'tcp' }]), 'invalid-payload'],
    ['port 0', JSON.stringify([{ ...query, port: 0 }]), 'invalid-payload'],
    ['port 65536', JSON.stringify([{ ...query, port: 65536 }]), 'invalid-payload'],
    ['a host name', JSON.stringify([{ ...query, clientAddress: 'work' }]), 'invalid-payload'],
    ['an unknown key', JSON.stringify([{ ...query, extra: 1 }]), 'invalid-payload'],
    [
      'too many entries',
      JSON.stringify(Array.from({ length: MAX_ACTIVITY_QUERIES + 1 }, () => query)),
      'invalid-payload',
    ],
  ])('rejects %s', (_name, payload, code) => {
    const parsed = parseActivityRequest(payload);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? null : parsed.code).toBe(code);
  });
});

describe('flow line direction', () => {
  it('tells a redirected flow from a peer flow', () => {
    expect(isRedirectedFlow(BROKER_FLOW)).toBe(true);
    expect(isRedirectedFlow(PEER_FLOW)).toBe(false);
    expect(isRedirectedFlow('garbage')).toBe(false);
  });
});

describe('activity service', () => {
  it('reports a socket with peer traffic as active', async () => {
    const conntrack = new FakeConntrack((args) => (args.includes('--orig-src') ? [PEER_FLOW] : []));
    const result = await run(JSON.stringify([query]), conntrack);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.output)).toEqual({
      result: 'ok',
      flows: [{ ...query, active: true }],
    });
    expect(conntrack.calls[0]).toEqual([
      '-L',
      '-p',
      'udp',
      '--orig-src',
      '10.137.0.10',
      '--sport',
      '41000',
    ]);
  });

  it('reports a socket with only broker traffic as idle', async () => {
    const conntrack = new FakeConntrack((args) =>
      args.includes('--orig-src') ? [BROKER_FLOW] : [],
    );
    const result = await run(JSON.stringify([query]), conntrack);
    expect(JSON.parse(result.output).flows[0].active).toBe(false);
  });

  it('reports inbound peer traffic as active', async () => {
    const conntrack = new FakeConntrack((args) =>
      args.includes('--reply-src') ? [PEER_FLOW] : [],
    );
    const result = await run(JSON.stringify([query]), conntrack);
    expect(JSON.parse(result.output).flows[0].active).toBe(true);
  });

  it('rejects a caller other than dom0', async () => {
    const conntrack = new FakeConntrack(() => []);
    const result = await run(JSON.stringify([query]), conntrack, {
      ...DOM0_ENV,
      QREXEC_REMOTE_DOMAIN: 'sys-nat',
    });
    expect(result.exitCode).not.toBe(0);
    expect(JSON.parse(result.output).code).toBe('caller-not-dom0');
    expect(conntrack.calls).toEqual([]);
  });

  it('rejects a call outside qrexec', async () => {
    const result = await run('[]', new FakeConntrack(() => []), {});
    expect(JSON.parse(result.output).code).toBe('invalid-invocation');
  });

  it('rejects an oversized payload', async () => {
    const result = await run(
      ' '.repeat(MAX_ACTIVITY_PAYLOAD_BYTES + 1),
      new FakeConntrack(() => []),
    );
    expect(JSON.parse(result.output).code).toBe('payload-too-large');
  });

  it('reports a conntrack failure', async () => {
    const result = await run(JSON.stringify([query]), new FakeConntrack(() => null));
    expect(result.exitCode).not.toBe(0);
    expect(JSON.parse(result.output).code).toBe('conntrack-failed');
  });
});

describe('activity check settings', () => {
  it('parses the interval variable', () => {
    expect(parseActivityCheckIntervalMs(undefined)).toBe(30_000);
    expect(parseActivityCheckIntervalMs('5000')).toBe(5000);
    for (const bad of ['0', '999', '300001', '1e4', '-5', 'fast', ' 5000']) {
      expect(() => parseActivityCheckIntervalMs(bad)).toThrow(/QNB_ACTIVITY_CHECK_INTERVAL_MS/);
    }
  });

  it('never throws anything but an Error on any string', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (text) => {
        try {
          const value = parseActivityCheckIntervalMs(text);
          expect(value).toBeGreaterThanOrEqual(1000);
          expect(value).toBeLessThanOrEqual(300_000);
        } catch (error) {
          expect(error).toBeInstanceOf(Error);
        }
      }),
    );
  });

  it('opens the renew window at 90 s or half the lifetime', () => {
    expect(renewWindowSeconds(300)).toBe(90);
    expect(renewWindowSeconds(40)).toBe(20);
  });
});
