import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DaemonContext, daemonDir, startDaemon, waitUntil } from './lab-daemons.js';
import { runInNamespace } from './lab-exec.js';
import { type LabProcess, labNamespace } from './lab-state.js';
import { LAB_ADDRESSES, ROUTER_UPNP_HTTP_PORT, STUN_PORT } from './lab-topology.js';
import { renderMiniupnpdConfig } from './router-config.js';

/**
 * Starts the lab's third-party peers: coturn as the internet STUN server and
 * miniupnpd as the home router's UPnP IGD, NAT-PMP and PCP server.
 */

const STARTUP_TIMEOUT_MS = 10_000;

/**
 * Returns true when a socket listens on the port in a namespace, bound to the
 * address or to the wildcard address. `ss` shows a socket bound to a device as
 * `*%br0:5000`; the device part is ignored.
 */
async function listening(
  namespace: string,
  protocol: 'udp' | 'tcp',
  address: string,
  port: number,
): Promise<boolean> {
  const flag = protocol === 'udp' ? '-uln' : '-tln';
  const result = await runInNamespace(namespace, ['ss', '-H', flag], { allowFailure: true });
  const accepted = new Set([`${address}:${port}`, `0.0.0.0:${port}`, `*:${port}`]);
  return result.stdout.split('\n').some((line) =>
    line
      .trim()
      .split(/\s+/)
      .some((column) => accepted.has(column.replace(/%[^:]*:/, ':'))),
  );
}

/**
 * Starts coturn in STUN-only mode on the two STUN addresses (RFC 5780 needs
 * two). `-c` points at an empty file so /etc/turnserver.conf is never read,
 * and `--userdb` keeps its database in the run dir.
 */
export async function startCoturn(context: DaemonContext): Promise<LabProcess> {
  const dir = daemonDir(context.runDir, 'inet');
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, 'turnserver.conf');
  await writeFile(configFile, '# Intentionally empty: every option is on the command line.\n');

  const processInfo = await startDaemon(context, {
    name: 'coturn',
    vm: 'inet',
    command: [
      'turnserver',
      '-c',
      configFile,
      '--stun-only',
      '--no-cli',
      '--no-tls',
      '--no-dtls',
      '--listening-ip',
      LAB_ADDRESSES.stunPrimary,
      '--listening-ip',
      LAB_ADDRESSES.stunSecondary,
      '--listening-port',
      String(STUN_PORT),
      '--pidfile',
      join(dir, 'turnserver.pid'),
      '--log-file',
      join(dir, 'turnserver.log'),
      '--simple-log',
      '--userdb',
      join(dir, 'turndb'),
    ],
  });

  const namespace = labNamespace(context.prefix, 'inet');
  await waitUntil(
    'coturn did not open its STUN ports',
    async () =>
      (await listening(namespace, 'udp', LAB_ADDRESSES.stunPrimary, STUN_PORT)) &&
      (await listening(namespace, 'udp', LAB_ADDRESSES.stunSecondary, STUN_PORT)),
    { timeoutMs: STARTUP_TIMEOUT_MS, process: processInfo },
  );
  return processInfo;
}

/** Starts miniupnpd in the router namespace in the foreground (`-d`), logging to its log file. */
export async function startMiniupnpd(context: DaemonContext): Promise<LabProcess> {
  const dir = daemonDir(context.runDir, 'router');
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, 'miniupnpd.conf');
  const uuidTail = Buffer.from(context.prefix.padEnd(6, '0')).toString('hex').slice(0, 12);
  await writeFile(
    configFile,
    renderMiniupnpdConfig({
      leaseFile: join(dir, 'miniupnpd.leases'),
      uuid: `4c616220-726f-7574-6572-${uuidTail.padEnd(12, '0')}`,
    }),
  );

  const processInfo = await startDaemon(context, {
    name: 'miniupnpd',
    vm: 'router',
    command: ['miniupnpd', '-f', configFile, '-d', '-P', join(dir, 'miniupnpd.pid')],
  });

  const namespace = labNamespace(context.prefix, 'router');
  await waitUntil(
    'miniupnpd did not open its ports',
    async () =>
      (await listening(namespace, 'tcp', LAB_ADDRESSES.routerLan, ROUTER_UPNP_HTTP_PORT)) &&
      (await listening(namespace, 'udp', LAB_ADDRESSES.routerLan, 5351)),
    { timeoutMs: STARTUP_TIMEOUT_MS, process: processInfo },
  );
  return processInfo;
}
