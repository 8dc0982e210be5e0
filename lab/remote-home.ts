import { LAB_ADDRESSES, ROUTER_WAN_IFNAME } from './lab-topology.js';

/**
 * The remote home's router: an ordinary home NAT as most households have.
 * It masquerades its LAN with Linux's default port preservation (one outside
 * port per inside socket, whatever the destination: endpoint-independent
 * mapping), and its forward chain admits from the internet only packets of
 * flows the LAN started (address- and port-dependent filtering, as conntrack
 * does). It runs no UPnP: the peer behind it gets no help.
 */

export const REMOTE_HOME_TABLE = 'lab-remote-home';
export const REMOTE_HOME_LAN_IFNAME = 'lan0';

export function renderRemoteHomeTables(): string {
  return `#!/usr/sbin/nft -f
table inet ${REMOTE_HOME_TABLE}
delete table inet ${REMOTE_HOME_TABLE}
table inet ${REMOTE_HOME_TABLE} {
   chain forward {
      type filter hook forward priority filter; policy drop;
      ct state established,related accept
      ct state invalid drop
      iifname "${REMOTE_HOME_LAN_IFNAME}" oifname "${ROUTER_WAN_IFNAME}" accept
   }

   chain postrouting {
      type nat hook postrouting priority srcnat; policy accept;
      ip saddr ${LAB_ADDRESSES.remoteHomeLan}/24 oifname "${ROUTER_WAN_IFNAME}" masquerade
   }
}
`;
}
