import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { QrexecSystemInfo } from '../policy/qrexec-policy/index.js';
import {
  LabQrexecRouter,
  LabQrexecTransport,
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_REFUSED,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  QrexecClientVmTransport,
  ScriptedPrompter,
} from '../rpc/qrexec/index.js';
import { decodeReplyFrame } from '../rpc/qrexec/lab-router-framing.js';

const fixtures = resolve('test/fixtures/qrexec');
const standIn = resolve('bin/lab/qrexec-client-vm');

const systemInfo: QrexecSystemInfo = {
  domains: {
    dom0: { type: 'AdminVM', tags: [] },
    work: { type: 'AppVM', tags: [] },
    'sys-nat': { type: 'AppVM', tags: ['broker'] },
    personal: { type: 'AppVM', tags: [] },
  },
};

const logLines: Array<Record<string, unknown>> = [];
const logStream = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    logLines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
    callback();
  },
});

let baseDir = '';
let policyDir = '';
let markerFile = '';
let router: LabQrexecRouter;
const prompter = new ScriptedPrompter();

function transportFor(vm: string): LabQrexecTransport {
  return new LabQrexecTransport({ socketPath: router.socketPath(vm), defaultTimeoutMs: 20_000 });
}

async function setPolicy(text: string): Promise<void> {
  await writeFile(join(policyDir, '50-test.policy'), text);
}

/** Sends raw bytes to a router socket and returns the decoded reply. */
function sendRaw(vm: string, bytes: Buffer, halfClose = true) {
  return new Promise<ReturnType<typeof decodeReplyFrame>>((resolvePromise, reject) => {
    const socket = createConnection({ path: router.socketPath(vm), allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('connect', () => (halfClose ? socket.end(bytes) : socket.write(bytes)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      socket.destroy();
      resolvePromise(decodeReplyFrame(Buffer.concat(chunks)));
    });
    socket.on('error', reject);
  });
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'hq1-qrexec-router-'));
  policyDir = join(baseDir, 'policy.d');
  markerFile = join(baseDir, 'marker');
  await rm(policyDir, { recursive: true, force: true });
  await import('node:fs/promises').then((fs) => fs.mkdir(policyDir));

  const markerEnv = { MARKER_FILE: markerFile };
  router = new LabQrexecRouter({
    socketDir: join(baseDir, 'sockets'),
    policyDir,
    vms: {
      dom0: { namespace: null, env: { ...markerEnv, LAB_VM: 'dom0' } },
      work: { namespace: null, env: { ...markerEnv, LAB_VM: 'work' } },
      'sys-nat': { namespace: null, env: { ...markerEnv, LAB_VM: 'sys-nat' } },
      personal: { namespace: null, env: { ...markerEnv, LAB_VM: 'personal' } },
    },
    services: {
      'test.Echo': { argv: [join(fixtures, 'echo-service.sh')] },
      'test.Marker': { argv: [join(fixtures, 'marker-service.sh')] },
      'test.Sleep': { argv: [join(fixtures, 'sleep-service.sh')] },
      'test.Missing': { argv: [join(fixtures, 'does-not-exist.sh')] },
    },
    systemInfo: () => systemInfo,
    logger: pino({ level: 'info' }, logStream),
    prompter,
    callTimeoutMs: 15_000,
    maxPayloadBytes: 4096,
  });
  await router.start();
});

afterAll(async () => {
  await router?.stop();
  await rm(baseDir, { recursive: true, force: true });
});

beforeEach(async () => {
  await rm(markerFile, { force: true });
  prompter.prompts.length = 0;
  await setPolicy('');
});

describe('LabQrexecRouter', () => {
  it('creates one 0600 socket per VM', async () => {
    const info = await stat(router.socketPath('work'));
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
  });

  it('allows and delivers argument, env and payload', async () => {
    await setPolicy('test.Echo * work sys-nat allow\n');
    const result = await transportFor('work').call({
      target: 'sys-nat',
      service: 'test.Echo',
      argument: 'work+tcp+8080',
      payload: 'hello',
    });
    const lines = result.stdout.toString().split('\n');
    expect(result.exitCode).toBe(7);
    expect(lines).toContain('arg1=work+tcp+8080');
    expect(lines).toContain('argc=1');
    expect(lines).toContain('QREXEC_SERVICE_ARGUMENT=work+tcp+8080');
    expect(lines).toContain('QREXEC_REMOTE_DOMAIN=work');
    expect(lines).toContain('QREXEC_SERVICE_FULL_NAME=test.Echo+work+tcp+8080');
    expect(lines).toContain('LAB_VM=sys-nat');
    expect(lines).toContain('stdin=hello');
    expect(result.stderr.toString()).toBe('to stderr\n');
  });

  it('passes no $1 for an empty argument', async () => {
    await setPolicy('test.Echo + work sys-nat allow\n');
    const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Echo' });
    const lines = result.stdout.toString().split('\n');
    expect(lines).toContain('argc=0');
    expect(lines).toContain('QREXEC_SERVICE_ARGUMENT=<unset>');
    expect(lines).toContain('QREXEC_SERVICE_FULL_NAME=test.Echo');
  });

  it('refuses with 126 and starts nothing', async () => {
    await setPolicy('test.Marker + work sys-nat deny\n');
    const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' });
    expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
    expect(existsSync(markerFile)).toBe(false);
  });

  it('denies by default with no rule', async () => {
    const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' });
    expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
    expect(existsSync(markerFile)).toBe(false);
  });

  it('takes the source from the socket', async () => {
    await setPolicy('test.Echo + sys-nat personal allow\n');
    const asWork = await transportFor('work').call({ target: 'personal', service: 'test.Echo' });
    expect(asWork.exitCode).toBe(QREXEC_EXIT_REFUSED);
    const asNat = await transportFor('sys-nat').call({ target: 'personal', service: 'test.Echo' });
    expect(asNat.stdout.toString()).toContain('QREXEC_REMOTE_DOMAIN=sys-nat');
  });

  it('rereads the policy on every call', async () => {
    await setPolicy('test.Marker + work sys-nat allow\n');
    expect(
      (await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' })).exitCode,
    ).toBe(0);
    await setPolicy('test.Marker + work sys-nat deny\n');
    expect(
      (await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' })).exitCode,
    ).toBe(QREXEC_EXIT_REFUSED);
  });

  it('fails closed on a malformed policy file', async () => {
    await setPolicy('test.Marker + work sys-nat allow\n');
    await writeFile(join(policyDir, '60-broken.policy'), 'this is not a rule\n');
    try {
      const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' });
      expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
      expect(existsSync(markerFile)).toBe(false);
    } finally {
      await rm(join(policyDir, '60-broken.policy'));
    }
  });

  it('lets dom0 bypass the policy', async () => {
    const result = await transportFor('dom0').call({
      target: 'work',
      service: 'test.Echo',
      argument: 'x',
    });
    expect(result.exitCode).toBe(7);
    expect(result.stdout.toString()).toContain('QREXEC_REMOTE_DOMAIN=dom0');
    expect(result.stdout.toString()).toContain('LAB_VM=work');
  });

  it('runs an allowed ask through the prompter', async () => {
    await setPolicy('test.Echo +p sys-nat @adminvm ask default_target=@adminvm\n');
    prompter.enqueue({ allowed: true });
    const result = await transportFor('sys-nat').call({
      target: 'dom0',
      service: 'test.Echo',
      argument: 'p',
    });
    expect(result.exitCode).toBe(7);
    expect(result.stdout.toString()).toContain('LAB_VM=dom0');
    expect(prompter.prompts).toEqual([
      {
        request: { service: 'test.Echo', argument: 'p', source: 'sys-nat', target: 'dom0' },
        choices: { defaultTarget: '@adminvm', targets: ['dom0'] },
      },
    ]);
  });

  it('refuses an ask the user denies', async () => {
    await setPolicy('test.Marker + work @anyvm ask\n');
    prompter.enqueue({ allowed: false });
    const result = await transportFor('work').call({ target: 'personal', service: 'test.Marker' });
    expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
    expect(prompter.prompts).toHaveLength(1);
    expect(existsSync(markerFile)).toBe(false);
  });

  it('uses the target the user chose', async () => {
    await setPolicy('test.Echo + work @anyvm ask\n');
    prompter.enqueue({ allowed: true, target: 'personal' });
    const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Echo' });
    expect(result.stdout.toString()).toContain('LAB_VM=personal');
    expect(prompter.prompts[0]?.choices.targets).toEqual(['personal', 'sys-nat', 'work']);
  });

  it('refuses a chosen target outside the choices', async () => {
    await setPolicy('test.Marker + work sys-nat ask target=sys-nat\n');
    prompter.enqueue({ allowed: true, target: 'personal' });
    const result = await transportFor('work').call({ target: 'sys-nat', service: 'test.Marker' });
    expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
    expect(existsSync(markerFile)).toBe(false);
  });

  it('returns 127 for an unknown service', async () => {
    await setPolicy('* * work @anyvm allow\n');
    const unknown = await transportFor('work').call({ target: 'sys-nat', service: 'test.Unknown' });
    expect(unknown.exitCode).toBe(QREXEC_EXIT_SERVICE_NOT_FOUND);
    const missingFile = await transportFor('work').call({
      target: 'sys-nat',
      service: 'test.Missing',
    });
    expect(missingFile.exitCode).toBe(QREXEC_EXIT_SERVICE_NOT_FOUND);
  });

  it('logs each call with its decision', async () => {
    await setPolicy('test.Marker +logged work sys-nat deny\n');
    await transportFor('work').call({
      target: 'sys-nat',
      service: 'test.Marker',
      argument: 'logged',
    });
    const entry = logLines.find(
      (line) => line.msg === 'qrexec call' && line.service === 'test.Marker+logged',
    );
    expect(entry).toMatchObject({ level: 30, source: 'work', target: 'sys-nat', decision: 'deny' });
    expect(String(entry?.rule)).toContain('50-test.policy:1');
  });
});

describe('LabQrexecRouter malformed frames', () => {
  const cases: Array<[string, Buffer]> = [
    ['non-JSON header', Buffer.from('hello\n')],
    ['missing newline', Buffer.from('{"version":1')],
    [
      'claimed source',
      Buffer.from(
        '{"version":1,"target":"sys-nat","service":"test.Marker","argument":"","payloadBytes":0,"source":"dom0"}\n',
      ),
    ],
    [
      'bad argument',
      Buffer.from(
        '{"version":1,"target":"sys-nat","service":"test.Marker","argument":"a/b","payloadBytes":0}\n',
      ),
    ],
    [
      'short payload',
      Buffer.from(
        '{"version":1,"target":"sys-nat","service":"test.Marker","argument":"","payloadBytes":5}\nab',
      ),
    ],
    [
      'extra payload',
      Buffer.from(
        '{"version":1,"target":"sys-nat","service":"test.Marker","argument":"","payloadBytes":1}\nabc',
      ),
    ],
    [
      'oversized payload',
      Buffer.from(
        '{"version":1,"target":"sys-nat","service":"test.Marker","argument":"","payloadBytes":999999}\n',
      ),
    ],
    ['oversized header', Buffer.alloc(5000, 0x61)],
  ];

  for (const [name, bytes] of cases) {
    it(`rejects ${name}`, async () => {
      await setPolicy('test.Marker * @anyvm @anyvm allow\n');
      const reply = await sendRaw('work', bytes);
      expect(reply.ok).toBe(true);
      expect(reply.ok && reply.value.exitCode).toBe(QREXEC_EXIT_PROBLEM);
      expect(reply.ok && reply.value.stderr.toString()).toMatch(/^malformed request: /);
      expect(existsSync(markerFile)).toBe(false);
    });
  }
});

describe('QrexecClientVmTransport via the stand-in', () => {
  const execFileAsync = promisify(execFile);

  // The stand-in runs the compiled tree. tsc emits even when files elsewhere in the
  // project have type errors, so only the presence of the entry point is required here.
  beforeAll(async () => {
    await execFileAsync('npx', ['tsc', '-p', 'tsconfig.json'], { timeout: 180_000 }).catch(
      () => undefined,
    );
    expect(existsSync(resolve('dist/rpc/qrexec/lab-qrexec-client-vm.js'))).toBe(true);
  }, 200_000);

  function standInTransport(vm: string): QrexecClientVmTransport {
    return new QrexecClientVmTransport({
      executable: standIn,
      env: { ...process.env, QNB_QREXEC_SOCKET: router.socketPath(vm) },
      defaultTimeoutMs: 20_000,
    });
  }

  it('runs an allowed call end to end', async () => {
    await setPolicy('test.Echo * work sys-nat allow\n');
    const result = await standInTransport('work').call({
      target: 'sys-nat',
      service: 'test.Echo',
      argument: 'a+b',
      payload: 'payload bytes',
    });
    expect(result.exitCode).toBe(7);
    expect(result.stdout.toString()).toContain('stdin=payload bytes');
    expect(result.stdout.toString()).toContain('QREXEC_SERVICE_FULL_NAME=test.Echo+a+b');
    expect(result.stderr.toString()).toBe('to stderr\n');
  });

  it('exits 126 when refused', async () => {
    const result = await standInTransport('work').call({
      target: 'sys-nat',
      service: 'test.Marker',
    });
    expect(result.exitCode).toBe(QREXEC_EXIT_REFUSED);
    expect(result.stderr.toString()).toContain('Request refused');
    expect(existsSync(markerFile)).toBe(false);
  });

  it('prints usage for a wrong command line', async () => {
    const result = await standInTransport('work').call({ target: '', service: '' });
    expect(result.exitCode).not.toBe(0);
  });

  it('kills the child on timeout', async () => {
    await setPolicy('test.Sleep + work sys-nat allow\n');
    await expect(
      standInTransport('work').call(
        { target: 'sys-nat', service: 'test.Sleep' },
        { timeoutMs: 1500 },
      ),
    ).rejects.toMatchObject({ reason: 'timed-out' });
  });

  it('kills the child on abort', async () => {
    await setPolicy('test.Sleep + work sys-nat allow\n');
    const controller = new AbortController();
    const call = standInTransport('work').call(
      { target: 'sys-nat', service: 'test.Sleep' },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 300);
    await expect(call).rejects.toMatchObject({ reason: 'aborted' });
  });
});
