import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Dom0QrexecTransport,
  LabQrexecRouter,
  LabQrexecTransport,
  QrexecClientVmTransport,
  readServiceInvocation,
} from '../rpc/qrexec/index.js';
import {
  decodeReplyFrame,
  decodeRequestFrame,
  encodeReplyFrame,
  encodeRequestFrame,
} from '../rpc/qrexec/lab-router-framing.js';

const printArgs = resolve('test/fixtures/qrexec/print-args.sh');

describe('lab router framing', () => {
  it('round-trips a request', () => {
    const request = {
      target: 'dom0',
      service: 'qubes.Test',
      argument: 'a+b',
      payload: Buffer.from('x\ny'),
    };
    expect(decodeRequestFrame(encodeRequestFrame(request), 1024)).toEqual({
      ok: true,
      value: request,
    });
  });

  it('round-trips a reply', () => {
    const reply = { exitCode: 126, stdout: Buffer.from('out'), stderr: Buffer.from('err') };
    expect(decodeReplyFrame(encodeReplyFrame(reply))).toEqual({ ok: true, value: reply });
  });

  it('decoders never throw on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        expect(typeof decodeRequestFrame(buffer, 256).ok).toBe('boolean');
        expect(typeof decodeReplyFrame(buffer).ok).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });

  it('decoders never throw on JSON-like headers', () => {
    const header = fc.record(
      {
        version: fc.oneof(fc.constant(1), fc.integer()),
        target: fc.string({ maxLength: 70 }),
        service: fc.string({ maxLength: 70 }),
        argument: fc.string({ maxLength: 70 }),
        payloadBytes: fc.oneof(fc.nat(10), fc.double()),
        exitCode: fc.integer(),
        stdoutBytes: fc.nat(10),
        stderrBytes: fc.nat(10),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 20 }), (value, body) => {
        const bytes = Buffer.concat([Buffer.from(`${JSON.stringify(value)}\n`), body]);
        const request = decodeRequestFrame(bytes, 256);
        if (request.ok) {
          expect(request.value.payload.length).toBe(value.payloadBytes);
        }
        expect(typeof decodeReplyFrame(bytes).ok).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });
});

describe('readServiceInvocation', () => {
  it('reads service, argument and caller', () => {
    const env = {
      QREXEC_REMOTE_DOMAIN: 'sys-nat',
      QREXEC_SERVICE_FULL_NAME: 'qubes.NatTraversal+work+tcp+8080',
      QREXEC_SERVICE_ARGUMENT: 'work+tcp+8080',
    };
    expect(readServiceInvocation(env, ['work+tcp+8080'])).toEqual({
      ok: true,
      invocation: {
        serviceName: 'qubes.NatTraversal',
        argument: 'work+tcp+8080',
        remoteDomain: 'sys-nat',
      },
    });
  });

  it('accepts a call without argument', () => {
    const env = { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_SERVICE_FULL_NAME: 'qubes.Ping' };
    expect(readServiceInvocation(env, [])).toEqual({
      ok: true,
      invocation: { serviceName: 'qubes.Ping', argument: '', remoteDomain: 'dom0' },
    });
  });

  const bad: Array<[string, Record<string, string>, string[], string]> = [
    ['missing caller', { QREXEC_SERVICE_FULL_NAME: 's' }, [], 'missing-remote-domain'],
    [
      'invalid caller',
      { QREXEC_REMOTE_DOMAIN: '../x', QREXEC_SERVICE_FULL_NAME: 's' },
      [],
      'invalid-remote-domain',
    ],
    ['missing name', { QREXEC_REMOTE_DOMAIN: 'work' }, [], 'missing-service-name'],
    [
      'invalid name',
      { QREXEC_REMOTE_DOMAIN: 'work', QREXEC_SERVICE_FULL_NAME: 'a/b' },
      [],
      'invalid-service-name',
    ],
    [
      'invalid argument',
      {
        QREXEC_REMOTE_DOMAIN: 'work',
        QREXEC_SERVICE_FULL_NAME: 's+a:b',
        QREXEC_SERVICE_ARGUMENT: 'a:b',
      },
      ['a:b'],
      'invalid-argument',
    ],
    [
      'mismatched argument',
      {
        QREXEC_REMOTE_DOMAIN: 'work',
        QREXEC_SERVICE_FULL_NAME: 's+a',
        QREXEC_SERVICE_ARGUMENT: 'a',
      },
      ['b'],
      'argument-mismatch',
    ],
  ];
  for (const [name, env, argv, code] of bad) {
    it(`rejects ${name}`, () => {
      expect(readServiceInvocation(env, argv)).toMatchObject({ ok: false, code });
    });
  }

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(
            'QREXEC_REMOTE_DOMAIN',
            'QREXEC_SERVICE_FULL_NAME',
            'QREXEC_SERVICE_ARGUMENT',
          ),
          fc.string({ maxLength: 80 }),
        ),
        fc.array(fc.string({ maxLength: 80 }), { maxLength: 3 }),
        (env, argv) => {
          expect(typeof readServiceInvocation(env, argv).ok).toBe('boolean');
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('command-line transports', () => {
  it('QrexecClientVmTransport passes target, service and input', async () => {
    const transport = new QrexecClientVmTransport({ executable: printArgs });
    const result = await transport.call({
      target: 'dom0',
      service: 'qubes.Test',
      argument: 'x',
      payload: 'in',
    });
    expect(result.exitCode).toBe(3);
    expect(result.stdout.toString()).toBe('dom0\nqubes.Test+x\nin');
  });

  it('Dom0QrexecTransport runs qvm-run --service', async () => {
    const transport = new Dom0QrexecTransport({ executable: printArgs, autostart: false });
    const result = await transport.call({
      target: 'sys-net',
      service: 'qubes.Test',
      payload: 'in',
    });
    expect(result.stdout.toString()).toBe(
      '--pass-io\n--no-gui\n--no-autostart\n--service\n--\nsys-net\nqubes.Test\nin',
    );
  });

  it('reports a missing executable', async () => {
    const transport = new QrexecClientVmTransport({ executable: '/nonexistent/qrexec-client-vm' });
    await expect(transport.call({ target: 'dom0', service: 's' })).rejects.toMatchObject({
      reason: 'not-found',
    });
  });
});

describe('LabQrexecRouter in a network namespace', () => {
  const namespace = 'hq1-qrexec';
  let baseDir = '';
  let router: LabQrexecRouter | undefined;

  beforeAll(async () => {
    baseDir = await mkdtemp(join(tmpdir(), 'hq1-qrexec-netns-'));
    await mkdir(join(baseDir, 'policy.d'));
    await writeFile(
      join(baseDir, 'policy.d', '50-test.policy'),
      'test.Netns + work sys-net allow\n',
    );
    // A namespace left by an interrupted run is removed first.
    try {
      execFileSync('ip', ['netns', 'delete', namespace], { stdio: 'ignore' });
    } catch {
      // No stale namespace.
    }
    execFileSync('ip', ['netns', 'add', namespace]);
    router = new LabQrexecRouter({
      socketDir: join(baseDir, 'sockets'),
      policyDir: join(baseDir, 'policy.d'),
      vms: { work: { namespace: null, env: {} }, 'sys-net': { namespace, env: {} } },
      services: { 'test.Netns': { argv: [resolve('test/fixtures/qrexec/netns-service.sh')] } },
      systemInfo: () => ({
        domains: { work: { type: 'AppVM', tags: [] }, 'sys-net': { type: 'AppVM', tags: [] } },
      }),
      logger: pino({ level: 'silent' }),
    });
    await router.start();
  });

  afterAll(async () => {
    await router?.stop();
    execFileSync('ip', ['netns', 'delete', namespace]);
    await rm(baseDir, { recursive: true, force: true });
  });

  it('runs the service in the target namespace', async () => {
    const transport = new LabQrexecTransport({ socketPath: router?.socketPath('work') ?? '' });
    const result = await transport.call({ target: 'sys-net', service: 'test.Netns' });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.toString().trim()).toBe(namespace);
  });
});
