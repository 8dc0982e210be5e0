import { watch } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createLogger } from '../rpc/logger.js';
import { QrexecClientVmTransport } from '../rpc/qrexec/qrexec-client-vm-transport.js';
import { BrokerMappingService } from './core/broker-mapping-service.js';
import { ClientDirectory } from './core/client-directory.js';
import { ControlSocketServer, controlSocketPath } from './core/control-socket.js';
import { Dom0Client } from './core/dom0-client.js';
import { ROUTER_INFO_FILE, readRouterInfo } from './core/router-info-file.js';
import { buildIgdDeviceTrees } from './igd/device-tree.js';
import { IgdServer } from './igd/igd-server.js';
import { PortControlServer } from './port-control/port-control-server.js';
import { SsdpServer } from './ssdp/ssdp-server.js';
import { STUN_DEFAULT_PORTS, StunServer } from './stun/stun-server.js';
import { UpstreamMapper } from './upstream/upstream-mapper.js';
import type { RouterInfo } from './upstream/upstream-types.js';

/**
 * The NAT traversal broker in sys-nat: UPnP IGD (SSDP + HTTP), NAT-PMP, PCP
 * and STUN servers for qubes, backed by dom0's decisions and the home router.
 *
 *   QNB_STATE_DIR   state folder (router report), default /var/lib/qubes-nat-broker
 *   QNB_VM_NAME     this VM's name, used as the seed of the IGD device UUIDs
 *   QNB_STUN_PORTS  UDP ports of the STUN server, comma-separated, default 3478,19302;
 *                   they must match the ports the netvms redirect (dom0 feature
 *                   nat-traversal-stun-ports of this VM)
 */

const logger = createLogger('broker');
const stateDir = process.env.QNB_STATE_DIR ?? '/var/lib/qubes-nat-broker';
await mkdir(stateDir, { recursive: true });

const dom0 = new Dom0Client(
  new QrexecClientVmTransport({}),
  logger.child({ component: 'dom0-client' }),
);
const clients = new ClientDirectory(dom0, logger.child({ component: 'clients' }));

let routerInfo: RouterInfo | null = null;
let upstream: UpstreamMapper | null = null;

/** Starts a mapper for a new router report; the old one keeps its mappings until they expire. */
async function useRouterInfo(info: RouterInfo | null): Promise<void> {
  if (info === null || JSON.stringify(info) === JSON.stringify(routerInfo)) {
    return;
  }
  routerInfo = info;
  const previous = upstream;
  const mapper = new UpstreamMapper({ logger, router: info });
  await mapper.start();
  upstream = mapper;
  logger.info({ router: info, upstream: mapper.status() }, 'home router in use');
  await previous?.stop({ keepMappings: false });
}

const mappingService = new BrokerMappingService({
  dom0,
  clients,
  upstream: () => upstream,
  uplinkAddress: () => routerInfo?.lanAddress ?? null,
  logger: logger.child({ component: 'mappings' }),
});

const deviceTrees = buildIgdDeviceTrees(process.env.QNB_VM_NAME ?? 'sys-nat');
const portControl = new PortControlServer({
  mappingService,
  logger: logger.child({ component: 'port-control' }),
});
const igd = new IgdServer({
  mappingService,
  logger: logger.child({ component: 'igd' }),
  deviceTrees,
});
const ssdp = new SsdpServer({
  mappingService,
  logger: logger.child({ component: 'ssdp' }),
  deviceTrees,
  locationHostFor: (clientAddress) => clients.lookup(clientAddress)?.gatewayAddress ?? null,
  httpPort: 2189,
});

const stun = new StunServer({
  mappingService,
  logger: logger.child({ component: 'stun' }),
  ports: parseStunPorts(process.env.QNB_STUN_PORTS),
});

await useRouterInfo(await readRouterInfo(stateDir));
const watcher = watch(stateDir, (_event, file) => {
  if (file === ROUTER_INFO_FILE) {
    void readRouterInfo(stateDir).then(useRouterInfo);
  }
});

const control = new ControlSocketServer(
  controlSocketPath(stateDir),
  () => upstream,
  async () => {
    await clients.refresh();
    return clients.all().length;
  },
  logger.child({ component: 'control' }),
);
await control.start();
await clients.start();
mappingService.start();
await portControl.start();
await igd.start();
await ssdp.start();
await stun.start();
logger.info({ clients: clients.all().length, router: routerInfo }, 'broker started');
process.stdout.write('listening\n');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'broker stopping; releasing mappings');
    void (async () => {
      watcher.close();
      await control.stop();
      await Promise.allSettled([portControl.stop(), igd.stop(), ssdp.stop(), stun.stop()]);
      await mappingService.stop();
      await upstream?.stop();
      clients.stop();
      process.exit(0);
    })();
  });
}

/** Parses QNB_STUN_PORTS; exits with the value and the fix when it is invalid. */
function parseStunPorts(text: string | undefined): readonly number[] {
  if (text === undefined || text.trim() === '') {
    return STUN_DEFAULT_PORTS;
  }
  const ports = text.split(',').map((part) => part.trim());
  if (
    ports.length > 8 ||
    !ports.every((port) => /^[1-9]\d{0,4}$/.test(port) && Number(port) <= 65535)
  ) {
    logger.fatal(
      { QNB_STUN_PORTS: text },
      'invalid QNB_STUN_PORTS: use up to 8 ports from 1 to 65535, comma-separated, e.g. 3478,19302',
    );
    process.exit(2);
  }
  return [...new Set(ports.map(Number))];
}
