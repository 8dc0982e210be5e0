import { createDom0Context } from './dom0-context.js';
import { Dom0Daemon } from './dom0-daemon.js';
import { ActivityRenewal, parseActivityCheckIntervalMs } from './nat-traversal/activity-renewal.js';

/**
 * Entry point of the dom0 service (systemd unit `qubes-nat-broker-dom0`).
 * `QNB_ACTIVITY_CHECK_INTERVAL_MS` sets the longest wait between two
 * activity checks of STUN leases (default 30000 ms, 1000 to 300000).
 */
const context = createDom0Context(process.env);
const activity = new ActivityRenewal({
  adminApi: context.adminApi,
  inventory: context.inventory,
  transport: context.transport,
  leases: context.leases,
  logger: context.logger,
  nowUnixMs: context.nowUnixMs,
  checkIntervalMs: parseActivityCheckIntervalMs(process.env.QNB_ACTIVITY_CHECK_INTERVAL_MS),
});
const daemon = new Dom0Daemon({
  adminApi: context.adminApi,
  manager: context.manager,
  leases: context.leases,
  activity,
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
