import { type CommandResult, runInNamespace, sleep } from '../lab/lab-exec.js';
import type { LabState } from '../lab/lab-state.js';
import { startLabDaemon } from '../lab/lab-state-file.js';

/** Runs a command as a lab VM and returns its output; never throws on a non-zero exit. */
export function inVm(
  state: LabState,
  vm: string,
  command: string[],
  timeoutMs = 10_000,
): Promise<CommandResult> {
  const namespace = state.vms[vm]?.namespace;
  if (namespace === undefined) throw new Error(`lab ${state.prefix} has no VM ${vm}`);
  return runInNamespace(namespace, command, { allowFailure: true, timeoutMs });
}

/** Waits until a socket listens on the given port in a VM, for at most 5 s. */
export async function waitForListener(
  state: LabState,
  vm: string,
  protocol: 'tcp' | 'udp',
  port: number,
) {
  const flag = protocol === 'tcp' ? '-tln' : '-uln';
  for (let attempt = 0; attempt < 100; attempt++) {
    const result = await inVm(state, vm, ['ss', '-H', flag, `sport = :${port}`]);
    if (result.stdout.trim().length > 0) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${protocol} port ${port} in ${state.prefix}/${vm}`);
}

/** Node program for the internet peer: replies to every TCP connection and UDP datagram with `address:port` of the sender. */
const ECHO_PEER_PROGRAM = `
const net = require('node:net');
const dgram = require('node:dgram');
const [host, tcpPort, ...udpPorts] = process.argv.slice(1);
net.createServer((socket) => socket.end(socket.remoteAddress + ':' + socket.remotePort + '\\n')).listen(Number(tcpPort), host);
for (const port of udpPorts) {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (_message, sender) => socket.send(sender.address + ':' + sender.port + '\\n', sender.port, sender.address));
  socket.bind(Number(port), host);
}
`;

/** Starts the echo peer on the internet peer address and waits for its ports. */
export async function startEchoPeerServers(
  state: LabState,
  tcpPort: number,
  udpPorts: number[],
): Promise<void> {
  await startLabDaemon(state, {
    name: 'echo-peer',
    vm: 'inet',
    command: [
      process.execPath,
      '-e',
      ECHO_PEER_PROGRAM,
      state.addresses.internetPeer,
      String(tcpPort),
      ...udpPorts.map(String),
    ],
  });
  await waitForListener(state, 'inet', 'tcp', tcpPort);
  for (const port of udpPorts) await waitForListener(state, 'inet', 'udp', port);
}

/** Sends one UDP datagram from a VM and returns the reply line, or '' on timeout. */
export async function udpRequest(
  state: LabState,
  vm: string,
  target: string,
  port: number,
  sourcePort?: number,
): Promise<string> {
  const source = sourcePort === undefined ? '' : `,sourceport=${sourcePort},reuseaddr`;
  const result = await inVm(state, vm, [
    'sh',
    '-c',
    `echo ping | socat -T2 - UDP:${target}:${port}${source}`,
  ]);
  return result.stdout.trim();
}
