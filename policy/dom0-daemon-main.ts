import { createDom0Context } from './dom0-context.js';
import { Dom0Daemon } from './dom0-daemon.js';

/** Entry point of the dom0 service (systemd unit `qubes-nat-broker-dom0`). */
const context = createDom0Context(process.env);
const daemon = new Dom0Daemon({
  adminApi: context.adminApi,
  manager: context.manager,
  leases: context.leases,
  onNatTraversalChanged: () => context.routerMappings.refreshBrokerClients(),
  logger: context.logger,
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    context.logger.info({ signal }, 'stopping');
    void daemon.stop().then(() => process.exit(0));
  });
}

context.logger.info('dom0 service starting');
await daemon.start();
context.logger.info('dom0 service ready');
process.stdout.write('dom0 service ready\n');
