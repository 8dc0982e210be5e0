import { join } from 'node:path';
import { AdminApi } from '../rpc/admin-api/admin-api.js';
import { QUBESD_SOCKET_PATH, QubesdClient } from '../rpc/admin-api/qubesd-client.js';
import { createLogger, type Logger } from '../rpc/logger.js';
import { Dom0QrexecTransport } from '../rpc/qrexec/dom0-qrexec-transport.js';
import { LabQrexecTransport } from '../rpc/qrexec/lab-qrexec-transport.js';
import type { QrexecTransport } from '../rpc/qrexec-transport.js';
import { ForwardManager } from './forwards/forward-manager.js';
import { ForwardStore } from './forwards/forward-store.js';
import { RouterMappings } from './forwards/router-mappings.js';
import { DecisionService } from './nat-traversal/decision-service.js';
import { LeaseManager } from './nat-traversal/lease-manager.js';
import { readNatTraversalTopology } from './nat-traversal/nat-topology.js';
import { QubeInventory } from './network/qube-inventory.js';
import { RulePusher } from './network/rule-pusher.js';

/**
 * Builds the dom0 components from the environment. On Qubes every variable
 * is unset and the real paths apply; the lab sets them to its own sockets and
 * folders.
 *
 * - `QNB_STATE_DIR`: dom0 state (the forward store and the log), default
 *   `/var/lib/qubes-nat-broker`
 * - `QNB_QUBESD_SOCKET`: the Admin API socket, default `/var/run/qubesd.sock`
 * - `QNB_QREXEC_SOCKET`: when set, calls go through the lab's qrexec router
 *   socket instead of `qvm-run --service`
 */

export const DEFAULT_DOM0_STATE_DIR = '/var/lib/qubes-nat-broker';

/** Log of every change dom0 made (pino JSON lines), kept in the state folder as an audit trail. */
export const DOM0_LOG_FILE = 'dom0.log';

export interface Dom0Context {
  adminApi: AdminApi;
  inventory: QubeInventory;
  transport: QrexecTransport;
  manager: ForwardManager;
  leases: LeaseManager;
  decisions: DecisionService;
  routerMappings: RouterMappings;
  logger: Logger;
  stateDir: string;
  nowUnixMs: () => number;
}

export function createDom0Context(
  env: NodeJS.ProcessEnv,
  options: { logger?: Logger; nowUnixMs?: () => number } = {},
): Dom0Context {
  const stateDir = env.QNB_STATE_DIR ?? DEFAULT_DOM0_STATE_DIR;
  const logger = options.logger ?? createLogger('dom0', { file: join(stateDir, DOM0_LOG_FILE) });
  const nowUnixMs = options.nowUnixMs ?? Date.now;

  const adminApi = new AdminApi(
    new QubesdClient({ logger }, { socketPath: env.QNB_QUBESD_SOCKET ?? QUBESD_SOCKET_PATH }),
  );
  const inventory = new QubeInventory(adminApi);
  const transport: QrexecTransport =
    env.QNB_QREXEC_SOCKET === undefined
      ? new Dom0QrexecTransport()
      : new LabQrexecTransport({ socketPath: env.QNB_QREXEC_SOCKET });

  const store = new ForwardStore({ filePath: join(stateDir, 'forwards.json'), logger });
  const pusher = new RulePusher({ transport, logger });
  const manager = new ForwardManager({
    store,
    inventory,
    pusher,
    logger,
    nowUnixMs,
    readTopology: (snapshot) => readNatTraversalTopology(adminApi, snapshot),
  });
  const leases = new LeaseManager(manager, logger);
  const decisions = new DecisionService({ adminApi, inventory, leases, logger });
  const routerMappings = new RouterMappings({
    adminApi,
    inventory,
    transport,
    manager,
    logger,
    nowUnixMs,
  });
  return {
    routerMappings,
    adminApi,
    inventory,
    transport,
    manager,
    leases,
    decisions,
    logger,
    stateDir,
    nowUnixMs,
  };
}
