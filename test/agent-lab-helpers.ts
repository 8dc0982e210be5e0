import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { renderStockNetvmTables, renderStockQubeTables } from '../lab/stock-qubes-tables.js';
import { type AgentState, emptyAgentState } from '../rpc/agent-state.js';

/**
 * A three-namespace Qubes stand-in for the agent's packet tests:
 * `<prefix>-peer` (198.51.100.10 and .20) — `<prefix>-netvm` (uplink eth0
 * 198.51.100.1/24 in group 1, vif1.0 10.137.0.1/32 in group 2) —
 * `<prefix>-qube` (eth0 10.137.0.20/32). The netvm and the qube load the stock
 * Qubes tables. Every link has both ends inside these namespaces.
 */

export const PEER_ADDRESS = '198.51.100.10';
export const PEER_SECOND_ADDRESS = '198.51.100.20';
export const NETVM_UPLINK_ADDRESS = '198.51.100.1';
export const QUBE_ADDRESS = '10.137.0.20';
export const QUBE_GATEWAY = '10.137.0.1';

export const silentLogger = pino({ level: 'silent' });

export interface AgentLab {
  peer: string;
  netvm: string;
  qube: string;
  netvmStateDir: string;
  qubeStateDir: string;
  /** Starts a process inside a namespace; it is killed by `destroy()`. */
  startProcess(namespace: string, command: string[]): ChildProcess;
  reloadStockTables(namespace: string): void;
  destroy(): void;
}

export function inNamespace(namespace: string, command: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', namespace, ...command], {
    input,
    encoding: 'utf8',
    timeout: 10_000,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

export function killNamespaceProcesses(namespace: string): void {
  let pids: string[] = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8', stdio: 'pipe' })
      .split('\n')
      .filter((pid) => pid !== '');
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // The process ended meanwhile.
    }
  }
}

export function deleteNamespace(namespace: string): void {
  killNamespaceProcesses(namespace);
  try {
    ip(['netns', 'del', namespace]);
  } catch {
    // Not created, or already gone.
  }
}

export function createAgentLab(prefix: string): AgentLab {
  const peer = `${prefix}-peer`;
  const netvm = `${prefix}-netvm`;
  const qube = `${prefix}-qube`;
  const namespaces = [peer, netvm, qube];
  const children: ChildProcess[] = [];
  const workDir = mkdtempSync(join(tmpdir(), `${prefix}-agent-`));

  for (const namespace of namespaces) deleteNamespace(namespace);

  const stockNetvm = renderStockNetvmTables({
    downstreamAddresses: [QUBE_ADDRESS],
    downstreamVifs: [{ ifname: 'vif1.0', address: QUBE_ADDRESS }],
  });
  const stockQube = renderStockQubeTables();

  const lab: AgentLab = {
    peer,
    netvm,
    qube,
    netvmStateDir: join(workDir, 'netvm'),
    qubeStateDir: join(workDir, 'qube'),
    startProcess(namespace, command) {
      const child = spawn('ip', ['netns', 'exec', namespace, ...command], { stdio: 'ignore' });
      children.push(child);
      return child;
    },
    reloadStockTables(namespace) {
      inNamespace(namespace, ['nft', '-f', '-'], namespace === netvm ? stockNetvm : stockQube);
    },
    destroy() {
      for (const child of children) child.kill('SIGKILL');
      for (const namespace of namespaces) deleteNamespace(namespace);
      rmSync(workDir, { recursive: true, force: true });
    },
  };

  try {
    for (const namespace of namespaces) {
      ip(['netns', 'add', namespace]);
      ip(['-n', namespace, 'link', 'set', 'lo', 'up']);
    }

    // Uplink: peer eth0 <-> netvm eth0 (group 1), an ordinary /24.
    ip(['-n', peer, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netvm]);
    ip(['-n', peer, 'addr', 'add', `${PEER_ADDRESS}/24`, 'dev', 'eth0']);
    ip(['-n', peer, 'addr', 'add', `${PEER_SECOND_ADDRESS}/24`, 'dev', 'eth0']);
    ip(['-n', peer, 'link', 'set', 'eth0', 'up']);
    ip(['-n', netvm, 'addr', 'add', `${NETVM_UPLINK_ADDRESS}/24`, 'dev', 'eth0']);
    ip(['-n', netvm, 'link', 'set', 'eth0', 'group', '1', 'up']);

    // Downstream: Qubes-style /32 point-to-point link, vif in group 2.
    ip([
      '-n',
      netvm,
      'link',
      'add',
      'vif1.0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      qube,
    ]);
    ip(['-n', netvm, 'addr', 'add', `${QUBE_GATEWAY}/32`, 'dev', 'vif1.0']);
    ip(['-n', netvm, 'link', 'set', 'vif1.0', 'group', '2', 'up']);
    ip(['-n', netvm, 'route', 'add', `${QUBE_ADDRESS}/32`, 'dev', 'vif1.0']);
    ip(['-n', qube, 'addr', 'add', `${QUBE_ADDRESS}/32`, 'dev', 'eth0']);
    ip(['-n', qube, 'link', 'set', 'eth0', 'up']);
    ip(['-n', qube, 'route', 'add', `${QUBE_GATEWAY}/32`, 'dev', 'eth0']);
    ip(['-n', qube, 'route', 'add', 'default', 'via', QUBE_GATEWAY, 'dev', 'eth0']);

    inNamespace(netvm, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    lab.reloadStockTables(netvm);
    lab.reloadStockTables(qube);
  } catch (error) {
    lab.destroy();
    throw error;
  }
  return lab;
}

/** Connects over TCP and returns what the server sent, or '' when the connection failed. */
export function tcpRequest(
  namespace: string,
  address: string,
  port: number,
  bindAddress?: string,
): string {
  const bind = bindAddress === undefined ? '' : `,bind=${bindAddress}`;
  try {
    return inNamespace(namespace, [
      'socat',
      '-T',
      '2',
      '-u',
      `TCP:${address}:${port},connect-timeout=2${bind}`,
      '-',
    ]).trim();
  } catch {
    return '';
  }
}

/** Sends one UDP datagram and returns the reply, or '' when none came within 1 s. */
export function udpRequest(
  namespace: string,
  address: string,
  port: number,
  sourcePort?: number,
): string {
  // Sent three times, as UDP clients retransmit, so one datagram lost on a
  // loaded machine does not fail the exchange; the first reply counts.
  const script = `
const [address, port, sourcePort] = process.argv.slice(1);
const socket = require('node:dgram').createSocket({ type: 'udp4', reuseAddr: true });
const done = (text) => { process.stdout.write(text); process.exit(0); };
setTimeout(() => done(''), 3000);
socket.on('message', (message) => done(message.toString()));
socket.on('error', () => done(''));
const send = () => socket.send('ping\\n', Number(port), address);
socket.bind(sourcePort === '' ? 0 : Number(sourcePort), () => {
  send();
  setTimeout(send, 700);
  setTimeout(send, 1400);
});`;
  try {
    return inNamespace(namespace, [
      process.execPath,
      '-e',
      script,
      address,
      String(port),
      sourcePort === undefined ? '' : String(sourcePort),
    ]).trim();
  } catch {
    return '';
  }
}

/** Polls `check` every 200 ms until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

export function stateFor(
  vm: string,
  issuedAtUnixMs: number,
  parts: Partial<AgentState>,
): AgentState {
  return { ...emptyAgentState(vm, issuedAtUnixMs), ...parts };
}
