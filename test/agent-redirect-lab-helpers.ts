import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderStockNetvmTables, renderStockQubeTables } from '../lab/stock-qubes-tables.js';
import { deleteNamespace, inNamespace, ip } from './agent-lab-helpers.js';

/**
 * A Qubes stand-in for the NAT traversal redirect tests, in five namespaces.
 * `<prefix>-qube` (10.137.0.20, NAT traversal enabled), `<prefix>-plain`
 * (10.137.0.21, no redirect) and `<prefix>-broker` (10.137.0.30) sit behind
 * `<prefix>-netvm` (gateway 10.137.0.1 on every vif, uplink 198.51.100.2).
 * `<prefix>-peer` (198.51.100.1) stands in for an internet STUN server.
 * Qubes-style /32 veth links; the netvm loads the stock netvm tables, the
 * others the stock qube tables. Every link has both ends inside these
 * namespaces.
 */

export const QUBE_ADDRESS = '10.137.0.20';
export const PLAIN_QUBE_ADDRESS = '10.137.0.21';
export const BROKER_ADDRESS = '10.137.0.30';
export const GATEWAY_ADDRESS = '10.137.0.1';
export const NETVM_UPLINK_ADDRESS = '198.51.100.2';
export const INTERNET_STUN_ADDRESS = '198.51.100.1';
export const IGD_HTTP_PORT = 49152;
export const STUN_PORT = 3478;
/** External address the lab NAT-PMP responder reports. */
export const RESPONDER_EXTERNAL_ADDRESS = '203.0.113.7';

/**
 * Broker stand-in. It replies to NAT-PMP opcode 0 with the 12-byte response
 * of RFC 6886 section 3.2 (version 0, opcode 128, result 0, epoch, external
 * address), and to an SSDP M-SEARCH unicast with a LOCATION on the gateway.
 * Any other datagram on 5351, 1900 or 3478, and any HTTP request, gets a text
 * reply naming the sender.
 */
const RESPONDER_SCRIPT = `
const dgram = require('node:dgram');
const http = require('node:http');
const [gateway, igdPort, external] = process.argv.slice(1);
const started = Date.now();
function natpmp(msg) {
  if (msg.length !== 2 || msg[0] !== 0 || msg[1] !== 0) return null;
  const reply = Buffer.alloc(12);
  reply[1] = 128;
  reply.writeUInt32BE(Math.floor((Date.now() - started) / 1000), 4);
  external.split('.').forEach((octet, i) => { reply[8 + i] = Number(octet); });
  return reply;
}
function ssdp(msg) {
  const text = msg.toString('latin1');
  if (!text.startsWith('M-SEARCH')) return null;
  const st = (/^ST:\\s*(.*?)\\s*$/im.exec(text) || [])[1] || 'upnp:rootdevice';
  return Buffer.from('HTTP/1.1 200 OK\\r\\nCACHE-CONTROL: max-age=120\\r\\nEXT:\\r\\nST: ' + st +
    '\\r\\nUSN: uuid:00000000-0000-0000-0000-000000000001::' + st +
    '\\r\\nSERVER: Linux UPnP/1.1 lab-broker/1\\r\\nLOCATION: http://' + gateway + ':' + igdPort +
    '/rootDesc.xml\\r\\n\\r\\n');
}
for (const [port, answer] of [[5351, natpmp], [1900, ssdp], [3478, () => null]]) {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const reply = answer(msg) || Buffer.from('udp' + port + ' ' + rinfo.address);
    socket.send(reply, rinfo.port, rinfo.address);
  });
  socket.bind(port);
}
http.createServer((req, res) => { res.end('igd ' + req.socket.remoteAddress); }).listen(Number(igdPort), '0.0.0.0');
`;

/**
 * Test client. `udp ADDRESS PORT PAYLOAD [SOURCE_PORT]` prints
 * `<address>:<port> <reply>` of the first reply, from any sender, or nothing
 * after 2 s. `tcp ADDRESS PORT` prints the body of an HTTP GET, or nothing.
 */
const CLIENT_SCRIPT = `
const [mode, address, port, payload, sourcePort] = process.argv.slice(1);
const done = (text) => { process.stdout.write(text); process.exit(0); };
setTimeout(() => done(''), 3000);
if (mode === 'udp') {
  const socket = require('node:dgram').createSocket('udp4');
  socket.on('message', (msg, rinfo) => done(rinfo.address + ':' + rinfo.port + ' ' + msg.toString('latin1')));
  socket.on('error', () => done(''));
  // Sent three times, as UDP clients retransmit, so one packet lost on a
  // loaded machine does not fail the exchange.
  const send = () => socket.send(Buffer.from(payload), Number(port), address);
  socket.bind(sourcePort ? Number(sourcePort) : 0, () => {
    send();
    setTimeout(send, 700);
    setTimeout(send, 1400);
  });
} else {
  const request = require('node:http').get({ host: address, port: Number(port), path: '/' }, (res) => {
    let body = '';
    res.on('data', (chunk) => { body += chunk; });
    res.on('end', () => done(body));
  });
  request.on('error', () => done(''));
}
`;

export const M_SEARCH =
  'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n';

export interface RedirectLab {
  qube: string;
  plain: string;
  broker: string;
  netvm: string;
  peer: string;
  stateDir(vm: string): string;
  /** Flushes the netvm's ruleset and loads its stock tables again, as a Qubes firewall reload may. */
  reloadNetvmStockTables(): void;
  destroy(): void;
}

/** Sends one datagram from `namespace` and returns `<address>:<port> <reply>`, or '' without reply. */
export function udpExchange(
  namespace: string,
  address: string,
  port: number,
  payload: string,
  sourcePort?: number,
): string {
  const args = ['udp', address, String(port), payload];
  if (sourcePort !== undefined) args.push(String(sourcePort));
  return inNamespace(namespace, [process.execPath, '-e', CLIENT_SCRIPT, ...args]);
}

/** Sends an HTTP GET from `namespace` and returns the body, or '' when it failed. */
export function httpGet(namespace: string, address: string, port: number): string {
  return inNamespace(namespace, [
    process.execPath,
    '-e',
    CLIENT_SCRIPT,
    'tcp',
    address,
    String(port),
  ]);
}

/** Runs a command inside a namespace and returns its standard output, whatever its exit code. */
export function runTool(namespace: string, command: string[], timeoutMs: number): string {
  const result = spawnSync('ip', ['netns', 'exec', namespace, ...command], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return `${result.stdout ?? ''}${result.stderr ?? ''}`;
}

function addDownstreamLink(netvm: string, vif: string, qube: string, address: string): void {
  ip(['-n', netvm, 'link', 'add', vif, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', qube]);
  ip(['-n', netvm, 'addr', 'add', `${GATEWAY_ADDRESS}/32`, 'dev', vif]);
  ip(['-n', netvm, 'link', 'set', vif, 'group', '2', 'up']);
  ip(['-n', netvm, 'route', 'add', `${address}/32`, 'dev', vif]);
  ip(['-n', qube, 'addr', 'add', `${address}/32`, 'dev', 'eth0']);
  ip(['-n', qube, 'link', 'set', 'eth0', 'up']);
  ip(['-n', qube, 'route', 'add', `${GATEWAY_ADDRESS}/32`, 'dev', 'eth0']);
  ip(['-n', qube, 'route', 'add', 'default', 'via', GATEWAY_ADDRESS, 'dev', 'eth0']);
}

export function createRedirectLab(prefix: string): RedirectLab {
  const names = {
    qube: `${prefix}-qube`,
    plain: `${prefix}-plain`,
    broker: `${prefix}-broker`,
    netvm: `${prefix}-netvm`,
    peer: `${prefix}-peer`,
  };
  const namespaces = Object.values(names);
  const children: ChildProcess[] = [];
  const workDir = mkdtempSync(join(tmpdir(), `${prefix}-redirect-`));
  for (const namespace of namespaces) deleteNamespace(namespace);

  const downstream = [
    { ifname: 'vif1.0', namespace: names.qube, address: QUBE_ADDRESS },
    { ifname: 'vif2.0', namespace: names.plain, address: PLAIN_QUBE_ADDRESS },
    { ifname: 'vif3.0', namespace: names.broker, address: BROKER_ADDRESS },
  ];
  const stockNetvm = renderStockNetvmTables({
    downstreamAddresses: downstream.map((link) => link.address),
    downstreamVifs: downstream.map((link) => ({ ifname: link.ifname, address: link.address })),
  });

  const lab: RedirectLab = {
    ...names,
    stateDir: (vm) => join(workDir, vm),
    reloadNetvmStockTables() {
      inNamespace(names.netvm, ['nft', 'flush', 'ruleset']);
      inNamespace(names.netvm, ['nft', '-f', '-'], stockNetvm);
    },
    destroy() {
      for (const child of children) child.kill('SIGKILL');
      for (const namespace of namespaces) deleteNamespace(namespace);
      rmSync(workDir, { recursive: true, force: true });
    },
  };
  const start = (namespace: string, command: string[]): void => {
    children.push(spawn('ip', ['netns', 'exec', namespace, ...command], { stdio: 'ignore' }));
  };

  try {
    for (const namespace of namespaces) {
      ip(['netns', 'add', namespace]);
      ip(['-n', namespace, 'link', 'set', 'lo', 'up']);
    }

    // Uplink: peer eth0 <-> netvm eth0 (group 1), an ordinary /24.
    ip([
      '-n',
      names.peer,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      names.netvm,
    ]);
    ip(['-n', names.peer, 'addr', 'add', `${INTERNET_STUN_ADDRESS}/24`, 'dev', 'eth0']);
    ip(['-n', names.peer, 'link', 'set', 'eth0', 'up']);
    ip(['-n', names.netvm, 'addr', 'add', `${NETVM_UPLINK_ADDRESS}/24`, 'dev', 'eth0']);
    ip(['-n', names.netvm, 'link', 'set', 'eth0', 'group', '1', 'up']);

    for (const link of downstream) {
      addDownstreamLink(names.netvm, link.ifname, link.namespace, link.address);
    }

    inNamespace(names.netvm, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    inNamespace(names.netvm, ['nft', '-f', '-'], stockNetvm);
    for (const namespace of [names.qube, names.plain, names.broker]) {
      inNamespace(namespace, ['nft', '-f', '-'], renderStockQubeTables());
    }

    start(names.broker, [
      process.execPath,
      '-e',
      RESPONDER_SCRIPT,
      GATEWAY_ADDRESS,
      String(IGD_HTTP_PORT),
      RESPONDER_EXTERNAL_ADDRESS,
    ]);
    start(names.peer, [
      'socat',
      `UDP-RECVFROM:${STUN_PORT},fork`,
      'SYSTEM:echo internet-stun $SOCAT_PEERADDR',
    ]);
  } catch (error) {
    lab.destroy();
    throw error;
  }
  return lab;
}
