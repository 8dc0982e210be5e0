import type { LabVmKind } from './lab-state.js';

/**
 * The lab's fixed layout: which VMs exist, their addresses and the links
 * between them. Documentation ranges (RFC 5737) stand for the internet and
 * private ranges exist only inside the lab namespaces.
 */

export const LAB_ADDRESSES = {
  routerWan: '203.0.113.1',
  routerLan: '192.168.77.1',
  lanPrefixLength: 24,
  wanPrefixLength: 24,
  sysNetLan: '192.168.77.10',
  lanPeer: '192.168.77.50',
  internetGateway: '203.0.113.254',
  internetPeer: '198.51.100.10',
  stunPrimary: '198.51.100.1',
  stunSecondary: '198.51.100.2',
  /** The remote home: another household on the internet, behind an ordinary NAT. */
  remoteInternetGateway: '192.0.2.254',
  remoteHomeWan: '192.0.2.1',
  remoteHomeLan: '192.168.88.1',
  remotePeer: '192.168.88.50',
} as const;

export const STUN_PORT = 3478;
/** miniupnpd's IGD HTTP port on the router's LAN address. */
export const ROUTER_UPNP_HTTP_PORT = 5000;

/** Interface names of the Qubes uplink and of the router ports. */
export const UPLINK_IFNAME = 'eth0';
export const ROUTER_WAN_IFNAME = 'wan0';
export const ROUTER_LAN_BRIDGE = 'br0';

/** Qubes interface groups: the uplink is in group 1, downstream vifs in group 2. */
export const UPLINK_GROUP = 1;
export const DOWNSTREAM_GROUP = 2;

/** A Qubes VM that provides network to others: its downstream gateway address. */
export interface LabNetvmPlan {
  gateway: string;
  /** The netvm's own resolvers; null for a netvm behind another netvm. */
  upstreamDnsServers: string[] | null;
}

export interface LabVmPlan {
  name: string;
  kind: LabVmKind;
  address: string | null;
  netvm: string | null;
  /** Replaces the Xen domain id, which names the vif in the netvm (`vif<domid>.0`). */
  domid: number | null;
  providesNetwork: LabNetvmPlan | null;
  /** Namespaces that route packets for others get ip_forward=1. */
  forwards: boolean;
}

function vm(plan: Partial<LabVmPlan> & Pick<LabVmPlan, 'name' | 'kind'>): LabVmPlan {
  return {
    address: null,
    netvm: null,
    domid: null,
    providesNetwork: null,
    forwards: false,
    ...plan,
  };
}

/** Returns the VMs of a lab, in build order (netvms before their clients). */
export function planLabVms(withVpn: boolean): LabVmPlan[] {
  const vms: LabVmPlan[] = [
    vm({ name: 'dom0', kind: 'dom0' }),
    vm({
      name: 'inet',
      kind: 'internet',
      address: LAB_ADDRESSES.internetGateway,
      forwards: true,
    }),
    vm({
      name: 'rhome',
      kind: 'remote-router',
      address: LAB_ADDRESSES.remoteHomeWan,
      forwards: true,
    }),
    vm({ name: 'rpeer', kind: 'remote-peer', address: LAB_ADDRESSES.remotePeer }),
    vm({ name: 'router', kind: 'router', address: LAB_ADDRESSES.routerLan, forwards: true }),
    vm({ name: 'lanpeer', kind: 'lanpeer', address: LAB_ADDRESSES.lanPeer }),
    vm({
      name: 'sys-net',
      kind: 'netvm',
      address: '10.138.0.1',
      domid: 1,
      providesNetwork: { gateway: '10.138.0.1', upstreamDnsServers: [LAB_ADDRESSES.routerLan] },
      forwards: true,
    }),
    vm({
      name: 'sys-firewall',
      kind: 'netvm',
      address: '10.138.0.2',
      netvm: 'sys-net',
      domid: 2,
      providesNetwork: { gateway: '10.137.0.1', upstreamDnsServers: null },
      forwards: true,
    }),
  ];

  if (withVpn) {
    vms.push(
      vm({
        name: 'sys-vpn',
        kind: 'netvm',
        address: '10.137.0.40',
        netvm: 'sys-firewall',
        domid: 6,
        providesNetwork: { gateway: '10.137.0.41', upstreamDnsServers: null },
        forwards: true,
      }),
    );
  }

  vms.push(
    vm({
      name: 'sys-nat',
      kind: 'broker',
      address: '10.137.0.30',
      netvm: 'sys-firewall',
      domid: 3,
    }),
    vm({
      name: 'work',
      kind: 'qube',
      address: '10.137.0.20',
      netvm: withVpn ? 'sys-vpn' : 'sys-firewall',
      domid: 4,
    }),
    vm({ name: 'personal', kind: 'qube', address: '10.137.0.21', netvm: 'sys-firewall', domid: 5 }),
  );
  return vms;
}

/** Every VM name a lab can have, for teardown without a state file. */
export const ALL_LAB_VM_NAMES = planLabVms(true).map((plan) => plan.name);

/** Returns the clients of a netvm, in plan order. */
export function clientsOf(vms: LabVmPlan[], netvmName: string): LabVmPlan[] {
  return vms.filter((plan) => plan.netvm === netvmName);
}

/** Returns the downstream vif name of a client in its netvm. */
export function vifName(client: LabVmPlan): string {
  if (client.domid === null) throw new Error(`VM ${client.name} has no domid, so it has no vif`);
  return `vif${client.domid}.0`;
}

/** Returns the gateway address a Qubes VM uses: its netvm's downstream gateway. */
export function gatewayOf(vms: LabVmPlan[], plan: LabVmPlan): string | null {
  if (plan.netvm === null) return null;
  const netvm = vms.find((candidate) => candidate.name === plan.netvm);
  return netvm?.providesNetwork?.gateway ?? null;
}
