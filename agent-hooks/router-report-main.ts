import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import {
  buildMSearch,
  IGD_SEARCH_TARGETS,
  parseSsdpReply,
  SSDP_PORT,
} from '../broker/upstream/ssdp-discovery.js';
import type { RouterInfo } from '../broker/upstream/upstream-types.js';
import { createLogger } from '../rpc/logger.js';
import { QrexecClientVmTransport } from '../rpc/qrexec/qrexec-client-vm-transport.js';

/**
 * Runs in sys-net: finds the home router on the uplink and reports it to the
 * broker VM (`qubes.NatBrokerRouterInfo`), which cannot see the LAN.
 *
 * The search is sent unicast to the default gateway's SSDP port (UPnP Device
 * Architecture 1.1 allows unicast M-SEARCH). A multicast search would get its
 * reply from the gateway's own address, which conntrack cannot tie to the
 * multicast request, so the stock Qubes input chain of sys-net drops it.
 *
 *   node dist/agent-hooks/router-report-main.js [--broker sys-nat]
 */

const SEARCH_TIMEOUT_MS = 1500;
const exec = promisify(execFile);
const logger = createLogger('router-report');
const brokerVm = process.argv[process.argv.indexOf('--broker') + 1] ?? 'sys-nat';

async function defaultRoute(): Promise<{ gatewayAddress: string; lanAddress: string }> {
  const route = await exec('ip', ['-4', 'route', 'show', 'default']);
  const gateway = /default via (\S+)/.exec(route.stdout)?.[1];
  if (gateway === undefined) {
    throw new Error('sys-net has no IPv4 default route, so there is no home router to report');
  }
  const lookup = await exec('ip', ['-4', 'route', 'get', gateway]);
  const source = /\bsrc (\S+)/.exec(lookup.stdout)?.[1];
  if (source === undefined) {
    throw new Error(`cannot find sys-net's own address towards ${gateway}`);
  }
  return { gatewayAddress: gateway, lanAddress: source };
}

async function searchGateway(gatewayAddress: string): Promise<string | null> {
  const socket = createSocket('udp4');
  try {
    return await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), SEARCH_TIMEOUT_MS);
      socket.on('message', (message, remote) => {
        if (remote.address !== gatewayAddress) {
          return;
        }
        const reply = parseSsdpReply(message.toString('latin1'));
        if (reply.ok && new URL(reply.value.location).hostname === gatewayAddress) {
          clearTimeout(timer);
          resolve(reply.value.location);
        }
      });
      socket.bind(0, () => {
        for (const target of IGD_SEARCH_TARGETS) {
          socket.send(buildMSearch(target, 1), SSDP_PORT, gatewayAddress);
        }
      });
    });
  } finally {
    socket.close();
  }
}

const route = await defaultRoute();
const report: RouterInfo = { ...route, igdLocation: await searchGateway(route.gatewayAddress) };
logger.info(report, 'home router found');

const result = await new QrexecClientVmTransport({}).call({
  target: brokerVm,
  service: 'qubes.NatBrokerRouterInfo',
  payload: JSON.stringify(report),
});
if (result.exitCode !== 0) {
  logger.error(
    { exitCode: result.exitCode, output: result.stdout.toString().trim() },
    'report refused',
  );
  process.exitCode = 1;
} else {
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
