import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LabQubesd } from '../lab/dom0/lab-qubesd.js';
import type { LabState, LabVm } from '../lab/lab-state.js';
import { AdminApi } from '../rpc/admin-api/admin-api.js';
import { QubesdClient } from '../rpc/admin-api/qubesd-client.js';
import {
  QubesdCommunicationError,
  QubesdError,
  QubesdNoResponseError,
} from '../rpc/admin-api/qubesd-errors.js';
import type { QubesdEvent } from '../rpc/admin-api/qubesd-events.js';

const logger = pino({ level: 'silent' });
const repoRoot = join(import.meta.dirname, '..');

function labVm(
  name: string,
  kind: LabVm['kind'],
  address: string | null,
  netvm: string | null,
): LabVm {
  return { name, kind, namespace: `qnbt-${name}`, address, netvm, stateDir: '/nonexistent' };
}

function makeLabState(dir: string): LabState {
  const vms = [
    labVm('dom0', 'dom0', null, null),
    labVm('sys-net', 'netvm', '10.138.0.1', null),
    labVm('sys-firewall', 'netvm', '10.138.0.2', 'sys-net'),
    labVm('sys-nat', 'broker', '10.137.0.30', 'sys-firewall'),
    labVm('work', 'qube', '10.137.0.20', 'sys-firewall'),
    labVm('personal', 'qube', '10.137.0.21', 'sys-firewall'),
    labVm('router', 'router', '192.168.77.1', null),
  ];
  return {
    prefix: 'qnbt',
    runDir: dir,
    createdAtUnixMs: 0,
    ownerPid: process.pid,
    options: { withVpn: false, routerNat: 'cone' },
    vms: Object.fromEntries(vms.map((vm) => [vm.name, vm])),
    addresses: {
      routerWan: '203.0.113.1',
      routerLan: '192.168.77.1',
      sysNetLan: '192.168.77.10',
      lanPeer: '192.168.77.50',
      internetGateway: '203.0.113.254',
      internetPeer: '198.51.100.10',
      stunPrimary: '198.51.100.1',
      stunSecondary: '198.51.100.2',
    },
    dom0: {
      qubesdSocket: join(dir, 'qubesd.sock'),
      qrexecSocketDir: dir,
      policyDir: dir,
      stateDir: dir,
    },
    processes: [],
  };
}

/** Sends raw bytes, half-closes, and returns everything the server sends back. */
function rawExchange(socketPath: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks)) : reject(error),
    );
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.end(request);
  });
}

/** Reads events until one matches, failing after `maxEvents`. */
async function nextMatching(
  iterator: AsyncIterator<QubesdEvent>,
  matches: (event: QubesdEvent) => boolean,
  maxEvents = 20,
): Promise<QubesdEvent> {
  for (let count = 0; count < maxEvents; count += 1) {
    const result = await iterator.next();
    if (result.done === true) {
      throw new Error('event stream ended before the expected event');
    }
    if (matches(result.value)) {
      return result.value;
    }
  }
  throw new Error(`no matching event in ${maxEvents} events`);
}

function runTool(
  tool: string,
  args: string[],
  socketPath: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(repoRoot, 'bin/lab', tool),
      args,
      {
        env: { ...process.env, QNB_QUBESD_SOCKET: socketPath, QNB_LOG_LEVEL: 'silent' },
        timeout: 30_000,
      },
      (error, stdout, stderr) => {
        let code = 0;
        if (error !== null) {
          code = typeof error.code === 'number' ? error.code : -1;
        }
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('lab qubesd over a Unix socket', () => {
  let dir: string;
  let labState: LabState;
  let server: LabQubesd;
  let client: QubesdClient;
  let api: AdminApi;
  const aborters: AbortController[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'qnb-admin-api-'));
    labState = makeLabState(dir);
    server = new LabQubesd(
      { logger },
      { socketPath: labState.dom0.qubesdSocket, stateDir: dir, labState },
    );
    await server.start();
    client = new QubesdClient(
      { logger },
      { socketPath: labState.dom0.qubesdSocket, timeoutMs: 10_000 },
    );
    api = new AdminApi(client);
  });

  afterEach(async () => {
    for (const aborter of aborters.splice(0)) {
      aborter.abort();
    }
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function subscribe(): AsyncIterator<QubesdEvent> {
    const aborter = new AbortController();
    aborters.push(aborter);
    return api.events(aborter.signal)[Symbol.asyncIterator]();
  }

  it('creates the socket with mode 0600', () => {
    expect(statSync(labState.dom0.qubesdSocket).mode & 0o777).toBe(0o600);
  });

  it('lists Qubes VMs only, sorted, with classes', async () => {
    expect(await api.listVms()).toEqual([
      { name: 'dom0', klass: 'AdminVM', state: 'Running' },
      { name: 'personal', klass: 'AppVM', state: 'Running' },
      { name: 'sys-firewall', klass: 'AppVM', state: 'Running' },
      { name: 'sys-nat', klass: 'AppVM', state: 'Running' },
      { name: 'sys-net', klass: 'AppVM', state: 'Running' },
      { name: 'work', klass: 'AppVM', state: 'Running' },
    ]);
  });

  it('sends admin.vm.List lines with uuid like current qubesd', async () => {
    const text = await client.call('admin.vm.List', 'work');
    expect(text).toMatch(/^work class=AppVM state=Running uuid=[0-9a-f-]{36}\n$/);
  });

  it('reads network properties of a qube', async () => {
    expect(await api.getProperty('work', 'ip')).toEqual({
      isDefault: true,
      type: 'str',
      value: '10.137.0.20',
    });
    expect(await api.getProperty('work', 'netvm')).toEqual({
      isDefault: true,
      type: 'vm',
      value: 'sys-firewall',
    });
    expect(await api.getProperty('work', 'provides_network')).toEqual({
      isDefault: true,
      type: 'bool',
      value: 'False',
    });
    expect(await api.getProperty('work', 'gateway')).toEqual({
      isDefault: true,
      type: 'str',
      value: null,
    });
    // The lab gives each netvm a downstream gateway address of its own.
    expect(await api.getProperty('work', 'visible_gateway')).toEqual({
      isDefault: true,
      type: 'str',
      value: '10.137.0.1',
    });
    expect(await api.getProperty('work', 'klass')).toEqual({
      isDefault: true,
      type: 'str',
      value: 'AppVM',
    });
    expect(await api.getProperty('work', 'name')).toEqual({
      isDefault: false,
      type: 'str',
      value: 'work',
    });
    expect((await api.getProperty('work', 'label')).type).toBe('label');
  });

  it('reads netvm properties', async () => {
    expect(await api.getProperty('sys-firewall', 'provides_network')).toEqual({
      isDefault: false,
      type: 'bool',
      value: 'True',
    });
    expect(await api.getProperty('sys-firewall', 'gateway')).toEqual({
      isDefault: true,
      type: 'str',
      value: '10.137.0.1',
    });
    expect(await api.getProperty('sys-firewall', 'visible_ip')).toEqual({
      isDefault: true,
      type: 'str',
      value: '10.138.0.2',
    });
    expect(await api.getProperty('sys-firewall', 'netvm')).toEqual({
      isDefault: false,
      type: 'vm',
      value: 'sys-net',
    });
    expect(await api.getProperty('sys-net', 'netvm')).toEqual({
      isDefault: false,
      type: 'vm',
      value: null,
    });
    expect(await api.getProperty('sys-nat', 'provides_network')).toEqual({
      isDefault: true,
      type: 'bool',
      value: 'False',
    });
  });

  it('raises QubesNoSuchPropertyError for dom0 ip', async () => {
    const error = await api.getProperty('dom0', 'ip').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QubesdError);
    expect((error as QubesdError).type).toBe('QubesNoSuchPropertyError');
    expect((error as QubesdError).message).toBe("Invalid property 'ip' of dom0");
  });

  it('raises QubesVMNotFoundError for an unknown VM', async () => {
    const error = await api.getFeature('nosuch', 'x').catch((caught: unknown) => caught);
    expect((error as QubesdError).type).toBe('QubesVMNotFoundError');
    expect((error as QubesdError).message).toBe("No such domain: 'nosuch'");
  });

  it('gets, sets, lists and removes features', async () => {
    expect(await api.getFeature('work', 'nat-traversal')).toBeNull();
    await api.setFeature('work', 'nat-traversal', '1');
    await api.setFeature('work', 'nat-allowed-ports', 'tcp:8080 udp:5000-5010');
    await api.setFeature('work', 'empty', '');
    expect(await api.getFeature('work', 'nat-traversal')).toBe('1');
    expect(await api.getFeature('work', 'empty')).toBe('');
    expect((await api.listFeatures('work')).sort()).toEqual([
      'empty',
      'nat-allowed-ports',
      'nat-traversal',
    ]);
    expect(await api.listFeatures('personal')).toEqual([]);
    expect(await api.removeFeature('work', 'nat-traversal')).toBe(true);
    expect(await api.removeFeature('work', 'nat-traversal')).toBe(false);
    expect(await api.getFeature('work', 'nat-traversal')).toBeNull();
  });

  it('sends QubesFeatureNotFoundError in the real format', async () => {
    const reply = await rawExchange(
      labState.dom0.qubesdSocket,
      Buffer.from('admin.vm.feature.Get+x dom0 name work\0'),
    );
    expect(reply.toString('latin1')).toBe(
      '2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: x\0',
    );
  });

  it('rejects a feature value with control characters', async () => {
    const error = await client
      .call('admin.vm.feature.Set', 'work', 'x', 'a\nb')
      .catch((caught: unknown) => caught);
    expect((error as QubesdError).type).toBe('QubesValueError');
  });

  it('keeps features and netvm across a server restart', async () => {
    await api.setFeature('work', 'nat-traversal', '1');
    await api.setProperty('work', 'netvm', 'sys-net');
    await server.stop();

    server = new LabQubesd(
      { logger },
      { socketPath: labState.dom0.qubesdSocket, stateDir: dir, labState },
    );
    await server.start();
    expect(await api.getFeature('work', 'nat-traversal')).toBe('1');
    expect(await api.getProperty('work', 'netvm')).toEqual({
      isDefault: false,
      type: 'vm',
      value: 'sys-net',
    });
  });

  it('returns the default firewall rule', async () => {
    expect(await api.getFirewallRules('work')).toEqual(['action=accept']);
  });

  it('delivers feature events to two listeners', async () => {
    const first = subscribe();
    const second = subscribe();
    for (const listener of [first, second]) {
      const established = await nextMatching(
        listener,
        (event) => event.event === 'connection-established',
      );
      expect(established.subject).toBeNull();
    }

    await api.setFeature('work', 'nat-traversal', '1');
    await api.setFeature('work', 'nat-traversal', '2');
    await api.removeFeature('work', 'nat-traversal');
    for (const listener of [first, second]) {
      const set = await nextMatching(
        listener,
        (event) => event.event === 'domain-feature-set:nat-traversal',
      );
      expect(set).toEqual({
        subject: 'work',
        event: 'domain-feature-set:nat-traversal',
        properties: { feature: 'nat-traversal', value: '1' },
      });
      const changed = await nextMatching(
        listener,
        (event) => event.event === 'domain-feature-set:nat-traversal',
      );
      expect({ ...changed.properties }).toEqual({
        feature: 'nat-traversal',
        value: '2',
        oldvalue: '1',
      });
      const deleted = await nextMatching(
        listener,
        (event) => event.event === 'domain-feature-delete:nat-traversal',
      );
      expect({ ...deleted.properties }).toEqual({ feature: 'nat-traversal' });
    }
  });

  it('emits property-set:netvm and rejects a non-network netvm', async () => {
    const listener = subscribe();
    await nextMatching(listener, (event) => event.event === 'connection-established');

    await api.setProperty('work', 'netvm', '');
    const set = await nextMatching(listener, (event) => event.event === 'property-set:netvm');
    expect({ ...set.properties }).toEqual({
      name: 'netvm',
      newvalue: 'None',
      oldvalue: 'sys-firewall',
    });
    expect((await api.getProperty('work', 'netvm')).value).toBeNull();

    const error = await api
      .setProperty('work', 'netvm', 'personal')
      .catch((caught: unknown) => caught);
    expect((error as QubesdError).type).toBe('QubesPropertyValueError');
    const loop = await api
      .setProperty('sys-net', 'netvm', 'sys-firewall')
      .catch((caught: unknown) => caught);
    expect((loop as QubesdError).type).toBe('QubesPropertyValueError');
  });

  it('announces a restart via lab.vm.Restarted', async () => {
    const listener = subscribe();
    await nextMatching(listener, (event) => event.event === 'connection-established');

    expect(await client.call('lab.vm.Restarted', 'sys-firewall')).toBe('');
    const shutdown = await nextMatching(listener, () => true);
    const start = await nextMatching(listener, () => true);
    expect([shutdown.subject, shutdown.event]).toEqual(['sys-firewall', 'domain-shutdown']);
    expect([start.subject, start.event]).toEqual(['sys-firewall', 'domain-start']);
  });

  it('emits domain-start in process', async () => {
    const listener = subscribe();
    await nextMatching(listener, (event) => event.event === 'connection-established');
    server.emitDomainStart('work');
    const start = await nextMatching(listener, (event) => event.event === 'domain-start');
    expect(start.subject).toBe('work');
  });

  it('aborts lab.vm.Restarted from a qube', async () => {
    const qubeClient = new QubesdClient(
      { logger },
      { socketPath: labState.dom0.qubesdSocket, source: 'work' },
    );
    await expect(qubeClient.call('lab.vm.Restarted', 'sys-firewall')).rejects.toBeInstanceOf(
      QubesdNoResponseError,
    );
  });

  it('aborts an unknown method without a reply', async () => {
    const error = await client
      .call('admin.vm.NoSuchMethod', 'work')
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QubesdNoResponseError);
    expect((error as QubesdError).type).toBe('QubesDaemonAccessError');
  });

  it('aborts unexpected arguments and payloads', async () => {
    await expect(client.call('admin.vm.List', 'dom0', 'extra')).rejects.toBeInstanceOf(
      QubesdNoResponseError,
    );
    await expect(
      client.call('admin.vm.feature.Get', 'work', 'x', 'payload'),
    ).rejects.toBeInstanceOf(QubesdNoResponseError);
    await expect(client.call('admin.vm.firewall.Get', 'dom0')).rejects.toBeInstanceOf(
      QubesdNoResponseError,
    );
  });

  it.each([
    ['legacy NUL-separated request', 'dom0\0admin.vm.List\0dom0\0\0'],
    ['header without NUL', 'admin.vm.List+ dom0 name dom0'],
    ['uuid destination', 'admin.vm.List+ dom0 uuid 00000000-0000-0000-0000-000000000000\0'],
    ['empty request', ''],
  ])('aborts a malformed request: %s', async (_label, text) => {
    const reply = await rawExchange(labState.dom0.qubesdSocket, Buffer.from(text, 'latin1'));
    expect(reply.length).toBe(0);
  });

  it('aborts a request over 64 KiB', async () => {
    const big = Buffer.concat([
      Buffer.from('admin.vm.feature.Set+x dom0 name work\0'),
      Buffer.alloc(70_000, 0x61),
    ]);
    const reply = await rawExchange(labState.dom0.qubesdSocket, big);
    expect(reply.length).toBe(0);
  });

  it('answers keyword adminvm as dom0', async () => {
    const reply = await rawExchange(
      labState.dom0.qubesdSocket,
      Buffer.from('admin.vm.List+ dom0 keyword adminvm\0'),
    );
    expect(reply.subarray(0, 2).toString('latin1')).toBe('0\0');
    expect(reply.toString('latin1')).toContain('sys-nat class=AppVM state=Running');
  });

  it('reports a missing socket as a communication error', async () => {
    const absent = new QubesdClient({ logger }, { socketPath: join(dir, 'absent.sock') });
    await expect(absent.call('admin.vm.List', 'dom0')).rejects.toBeInstanceOf(
      QubesdCommunicationError,
    );
  });

  it('refuses to start on a live socket', async () => {
    const second = new LabQubesd(
      { logger },
      { socketPath: labState.dom0.qubesdSocket, stateDir: dir, labState },
    );
    await expect(second.start()).rejects.toThrow(/in use/);
  });

  it('ends the event stream on abort', async () => {
    const aborter = new AbortController();
    const iterator = api.events(aborter.signal)[Symbol.asyncIterator]();
    await nextMatching(iterator, (event) => event.event === 'connection-established');
    const pending = iterator.next();
    aborter.abort();
    expect((await pending).done).toBe(true);
  });

  it('raises QubesVMNotFoundError on admin.Events to an unknown VM', async () => {
    const iterator = client.events({ destination: 'nosuch' })[Symbol.asyncIterator]();
    const error = await iterator.next().catch((caught: unknown) => caught);
    expect((error as QubesdError).type).toBe('QubesVMNotFoundError');
  });

  describe('bin/lab stand-ins', () => {
    it('qvm-ls --raw-list prints VM names', async () => {
      const result = await runTool('qvm-ls', ['--raw-list'], labState.dom0.qubesdSocket);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('dom0\npersonal\nsys-firewall\nsys-nat\nsys-net\nwork\n');
    });

    it('qvm-features sets, reads and unsets', async () => {
      const socket = labState.dom0.qubesdSocket;
      expect((await runTool('qvm-features', ['work', 'nat-traversal', '1'], socket)).code).toBe(0);
      expect(await api.getFeature('work', 'nat-traversal')).toBe('1');
      expect(await runTool('qvm-features', ['work', 'nat-traversal'], socket)).toMatchObject({
        code: 0,
        stdout: '1\n',
      });
      expect((await runTool('qvm-features', ['work'], socket)).stdout).toBe('nat-traversal  1\n');
      expect(
        (await runTool('qvm-features', ['--unset', 'work', 'nat-traversal'], socket)).code,
      ).toBe(0);
      expect(await runTool('qvm-features', ['work', 'nat-traversal'], socket)).toMatchObject({
        code: 1,
        stdout: '',
      });
    });

    it('qvm-features reports an unknown VM', async () => {
      const result = await runTool('qvm-features', ['nosuch'], labState.dom0.qubesdSocket);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("no such domain: 'nosuch'");
    });

    it('qvm-prefs prints one property and all', async () => {
      const socket = labState.dom0.qubesdSocket;
      expect(await runTool('qvm-prefs', ['work', 'ip'], socket)).toMatchObject({
        code: 0,
        stdout: '10.137.0.20\n',
      });
      const all = await runTool('qvm-prefs', ['work'], socket);
      expect(all.code).toBe(0);
      expect(all.stdout).toMatch(/^netvm +D +sys-firewall$/m);
      expect(all.stdout).toMatch(/^provides_network +D +False$/m);
    });

    it('qvm-prefs prints usage without a VM', async () => {
      const result = await runTool('qvm-prefs', [], labState.dom0.qubesdSocket);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('usage: qvm-prefs');
    });
  });
});
