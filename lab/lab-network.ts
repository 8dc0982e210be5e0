import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadNftScript, runInNamespace, runIpBatch } from './lab-exec.js';
import { labNamespace } from './lab-state.js';
import {
  clientsOf,
  DOWNSTREAM_GROUP,
  gatewayOf,
  LAB_ADDRESSES,
  type LabVmPlan,
  ROUTER_LAN_BRIDGE,
  ROUTER_WAN_IFNAME,
  UPLINK_GROUP,
  UPLINK_IFNAME,
  vifName,
} from './lab-topology.js';
import { renderRemoteHomeTables } from './remote-home.js';
import { type RouterNatMode, renderRouterTables } from './router-config.js';
import { renderStockNetvmTables, renderStockQubeTables } from './stock-qubes-tables.js';

/**
 * Builds the lab's namespaces, links, addresses, routes, sysctls and stock
 * nftables tables. Every veth is created with both ends inside lab
 * namespaces; nothing is added to the root namespace.
 */

/** Folder of per-namespace files that `ip netns exec` bind-mounts over /etc. */
export const NETNS_ETC_DIR = '/etc/netns';

const LAN_PEER_PORT = 'lan-peer';
const LAN_SYSNET_PORT = 'lan-sysnet';

export interface NetworkPlan {
  prefix: string;
  vms: LabVmPlan[];
  routerNat: RouterNatMode;
}

function ns(plan: NetworkPlan, vmName: string): string {
  return labNamespace(plan.prefix, vmName);
}

/**
 * Returns the `ip` batch lines per namespace: first the `create:<ns>` entries
 * that add links, then the `configure:<ns>` entries that set addresses,
 * groups and routes.
 */
function planLinks(plan: NetworkPlan): Map<string, string[]> {
  const create = new Map<string, string[]>();
  const configure = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, namespace: string, line: string) => {
    const list = map.get(namespace) ?? [];
    list.push(line);
    map.set(namespace, list);
  };

  for (const vm of plan.vms) add(configure, ns(plan, vm.name), 'link set lo up');

  const inet = ns(plan, 'inet');
  const router = ns(plan, 'router');
  const lanpeer = ns(plan, 'lanpeer');
  const sysNet = ns(plan, 'sys-net');
  const a = LAB_ADDRESSES;

  // WAN: router wan0 <-> inet eth0.
  add(create, router, `link add ${ROUTER_WAN_IFNAME} type veth peer name eth0 netns ${inet}`);
  add(configure, router, `addr add ${a.routerWan}/${a.wanPrefixLength} dev ${ROUTER_WAN_IFNAME}`);
  add(configure, router, `link set ${ROUTER_WAN_IFNAME} up`);
  add(configure, inet, `addr add ${a.internetGateway}/${a.wanPrefixLength} dev eth0`);
  add(configure, inet, 'link set eth0 up');
  for (const address of [a.stunPrimary, a.stunSecondary, a.internetPeer]) {
    add(configure, inet, `addr add ${address}/32 dev lo`);
  }

  // The remote home: inet eth1 <-> rhome wan0, and rhome lan0 <-> rpeer eth0.
  const rhome = ns(plan, 'rhome');
  const rpeer = ns(plan, 'rpeer');
  add(create, rhome, `link add ${ROUTER_WAN_IFNAME} type veth peer name eth1 netns ${inet}`);
  add(create, rhome, `link add lan0 type veth peer name eth0 netns ${rpeer}`);
  add(configure, inet, `addr add ${a.remoteInternetGateway}/24 dev eth1`);
  add(configure, inet, 'link set eth1 up');
  add(configure, rhome, `addr add ${a.remoteHomeWan}/24 dev ${ROUTER_WAN_IFNAME}`);
  add(configure, rhome, `link set ${ROUTER_WAN_IFNAME} up`);
  add(configure, rhome, `addr add ${a.remoteHomeLan}/24 dev lan0`);
  add(configure, rhome, 'link set lan0 up');
  add(configure, rhome, `route add default via ${a.remoteInternetGateway}`);
  add(configure, rpeer, `addr add ${a.remotePeer}/24 dev eth0`);
  add(configure, rpeer, 'link set eth0 up');
  add(configure, rpeer, `route add default via ${a.remoteHomeLan}`);

  // LAN: a bridge in the router with one port per LAN host.
  add(create, router, `link add ${ROUTER_LAN_BRIDGE} type bridge`);
  add(create, router, `link add ${LAN_PEER_PORT} type veth peer name eth0 netns ${lanpeer}`);
  add(
    create,
    router,
    `link add ${LAN_SYSNET_PORT} type veth peer name ${UPLINK_IFNAME} netns ${sysNet}`,
  );
  add(configure, router, `addr add ${a.routerLan}/${a.lanPrefixLength} dev ${ROUTER_LAN_BRIDGE}`);
  for (const port of [LAN_PEER_PORT, LAN_SYSNET_PORT]) {
    add(configure, router, `link set ${port} master ${ROUTER_LAN_BRIDGE}`);
    add(configure, router, `link set ${port} up`);
  }
  add(configure, router, `link set ${ROUTER_LAN_BRIDGE} up`);
  add(configure, router, `route add default via ${a.internetGateway} dev ${ROUTER_WAN_IFNAME}`);

  add(configure, lanpeer, `addr add ${a.lanPeer}/${a.lanPrefixLength} dev eth0`);
  add(configure, lanpeer, 'link set eth0 up');
  add(configure, lanpeer, `route add default via ${a.routerLan}`);

  add(configure, sysNet, `addr add ${a.sysNetLan}/${a.lanPrefixLength} dev ${UPLINK_IFNAME}`);
  add(configure, sysNet, `link set ${UPLINK_IFNAME} group ${UPLINK_GROUP} up`);
  add(configure, sysNet, `route add default via ${a.routerLan} dev ${UPLINK_IFNAME}`);

  // Qubes links: vif<domid>.0 in the netvm (group 2, gateway /32, host route)
  // and eth0 in the client (group 1, own /32, route to gateway, default route).
  for (const client of plan.vms) {
    if (client.netvm === null || client.address === null) continue;
    const netvmNs = ns(plan, client.netvm);
    const clientNs = ns(plan, client.name);
    const vif = vifName(client);
    const gateway = gatewayOf(plan.vms, client);
    if (gateway === null)
      throw new Error(`netvm ${client.netvm} of ${client.name} has no gateway address`);

    add(create, netvmNs, `link add ${vif} type veth peer name ${UPLINK_IFNAME} netns ${clientNs}`);
    add(configure, netvmNs, `addr add ${gateway}/32 dev ${vif}`);
    add(configure, netvmNs, `link set ${vif} group ${DOWNSTREAM_GROUP} up`);
    add(configure, netvmNs, `route add ${client.address}/32 dev ${vif}`);
    add(configure, clientNs, `addr add ${client.address}/32 dev ${UPLINK_IFNAME}`);
    add(configure, clientNs, `link set ${UPLINK_IFNAME} group ${UPLINK_GROUP} up`);
    add(configure, clientNs, `route add ${gateway}/32 dev ${UPLINK_IFNAME}`);
    add(configure, clientNs, `route add default via ${gateway} dev ${UPLINK_IFNAME}`);
  }

  const ordered = new Map<string, string[]>();
  for (const [namespace, lines] of create) ordered.set(`create:${namespace}`, lines);
  for (const [namespace, lines] of configure) ordered.set(`configure:${namespace}`, lines);
  return ordered;
}

/** Returns the nft script a VM loads, or null when it has no tables. */
export function nftScriptFor(plan: NetworkPlan, vm: LabVmPlan): string | null {
  if (vm.kind === 'router') return renderRouterTables(plan.routerNat);
  if (vm.kind === 'remote-router') return renderRemoteHomeTables();
  if (vm.providesNetwork !== null) {
    const clients = clientsOf(plan.vms, vm.name).filter((client) => client.address !== null);
    return renderStockNetvmTables({
      downstreamAddresses: clients.map((client) => client.address as string),
      downstreamVifs: clients.map((client) => ({
        ifname: vifName(client),
        address: client.address as string,
      })),
      ...(vm.providesNetwork.upstreamDnsServers
        ? { upstreamDnsServers: vm.providesNetwork.upstreamDnsServers }
        : {}),
    });
  }
  if (vm.kind === 'qube' || vm.kind === 'broker') return renderStockQubeTables();
  return null;
}

/** Returns the resolv.conf of a VM: Qubes VMs use the virtual DNS, sys-net the router, others nothing. */
function resolvConfFor(vm: LabVmPlan): string {
  if (vm.name === 'sys-net') return `nameserver ${LAB_ADDRESSES.routerLan}\n`;
  if (vm.netvm !== null) return 'nameserver 10.139.1.1\nnameserver 10.139.1.2\n';
  // Nothing listens on 127.0.0.1:53 in these namespaces, so lookups fail at once.
  return 'nameserver 127.0.0.1\n';
}

/** Creates the namespaces and everything inside them. */
export async function buildNetwork(plan: NetworkPlan): Promise<void> {
  await runIpBatch(
    null,
    plan.vms.map((vm) => `netns add ${ns(plan, vm.name)}`),
  );

  await Promise.all(
    plan.vms.map(async (vm) => {
      const dir = join(NETNS_ETC_DIR, ns(plan, vm.name));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'resolv.conf'), resolvConfFor(vm));
    }),
  );

  const batches = planLinks(plan);
  const createBatches = [...batches].filter(([key]) => key.startsWith('create:'));
  const configureBatches = [...batches].filter(([key]) => key.startsWith('configure:'));
  await Promise.all(
    createBatches.map(([key, lines]) => runIpBatch(key.slice('create:'.length), lines)),
  );
  await Promise.all(
    configureBatches.map(([key, lines]) => runIpBatch(key.slice('configure:'.length), lines)),
  );

  await Promise.all(
    plan.vms.map(async (vm) => {
      const namespace = ns(plan, vm.name);
      if (vm.forwards) {
        await runInNamespace(namespace, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      }
      if (vm.kind === 'router') {
        await disableBridgeNetfilter(namespace);
      }
      const script = nftScriptFor(plan, vm);
      if (script !== null) await loadNftScript(namespace, script);
    }),
  );
}

/**
 * Keeps the router's LAN bridge a plain switch. Where the kernel has
 * br_netfilter, bridged frames also pass the IP hooks of the namespace
 * (`bridge-nf-call-iptables` is per namespace and 1 by default), so the
 * router's forward chain with policy drop would cut LAN hosts off from each
 * other, as a home router's switch never does.
 */
async function disableBridgeNetfilter(namespace: string): Promise<void> {
  if (!existsSync('/proc/sys/net/bridge')) {
    return;
  }
  await runInNamespace(namespace, [
    'sysctl',
    '-q',
    '-w',
    'net.bridge.bridge-nf-call-iptables=0',
    'net.bridge.bridge-nf-call-ip6tables=0',
    'net.bridge.bridge-nf-call-arptables=0',
  ]);
}
