import {
  LAB_ADDRESSES,
  ROUTER_LAN_BRIDGE,
  ROUTER_UPNP_HTTP_PORT,
  ROUTER_WAN_IFNAME,
  STUN_PORT,
} from './lab-topology.js';

/**
 * Configuration of the lab's home router: its nftables table and the
 * miniupnpd 2.3.1 config file.
 */

export type RouterNatMode = 'cone' | 'symmetric';

/** The one table that holds the router's filter and NAT chains and miniupnpd's chains. */
export const ROUTER_TABLE = 'lab-router';
export const MINIUPNPD_FORWARD_CHAIN = 'miniupnpd';
export const MINIUPNPD_NAT_CHAIN = 'prerouting_miniupnpd';
export const MINIUPNPD_POSTROUTING_CHAIN = 'postrouting_miniupnpd';

/**
 * Renders the router's `inet lab-router` table. miniupnpd 2.3.1 fills the
 * three chains it is configured with; our base chains jump to them. Debian's
 * `nft_init.sh` is not used because its table layout does not match what the
 * daemon expects.
 *
 * `cone` masquerades with Linux's default port preservation, so one inside
 * socket keeps one outside port for every destination. `symmetric` adds
 * `random`, which picks the source port from a hash that includes the
 * destination, so each destination sees a different outside port. Only LAN
 * traffic is masqueraded: the router's own STUN test must see its real source
 * port, or miniupnpd decides it is behind another NAT.
 */
export function renderRouterTables(mode: RouterNatMode): string {
  const masquerade = mode === 'symmetric' ? 'masquerade random' : 'masquerade';
  return `#!/usr/sbin/nft -f
table inet ${ROUTER_TABLE}
delete table inet ${ROUTER_TABLE}
table inet ${ROUTER_TABLE} {
   chain input {
      type filter hook input priority filter; policy accept;
   }

   chain forward {
      type filter hook forward priority filter; policy drop;
      ct state established,related accept
      ct state invalid drop
      iifname "${ROUTER_LAN_BRIDGE}" oifname "${ROUTER_WAN_IFNAME}" accept
      jump ${MINIUPNPD_FORWARD_CHAIN}
   }

   chain ${MINIUPNPD_FORWARD_CHAIN} {
   }

   chain prerouting {
      type nat hook prerouting priority dstnat; policy accept;
      jump ${MINIUPNPD_NAT_CHAIN}
   }

   chain ${MINIUPNPD_NAT_CHAIN} {
   }

   chain postrouting {
      type nat hook postrouting priority srcnat; policy accept;
      jump ${MINIUPNPD_POSTROUTING_CHAIN}
      ip saddr ${LAB_ADDRESSES.routerLan}/${LAB_ADDRESSES.lanPrefixLength} oifname "${ROUTER_WAN_IFNAME}" ${masquerade}
   }

   chain ${MINIUPNPD_POSTROUTING_CHAIN} {
   }
}
`;
}

export interface MiniupnpdConfigOptions {
  leaseFile: string;
  /** Stable per lab, so clients see the same device across restarts. */
  uuid: string;
}

/**
 * Renders miniupnpd.conf. miniupnpd 2.3.1 treats the TEST-NET WAN address as
 * reserved and has no `ext_allow_private_ipv4`, so it runs a STUN test against
 * the lab's coturn; the test finds no filtering in front of the WAN and the
 * daemon then allows mappings. `enable_natpmp=yes` turns on NAT-PMP and PCP.
 */
export function renderMiniupnpdConfig(options: MiniupnpdConfigOptions): string {
  return `ext_ifname=${ROUTER_WAN_IFNAME}
listening_ip=${ROUTER_LAN_BRIDGE}
http_port=${ROUTER_UPNP_HTTP_PORT}
enable_upnp=yes
enable_natpmp=yes
ext_perform_stun=yes
ext_stun_host=${LAB_ADDRESSES.stunPrimary}
ext_stun_port=${STUN_PORT}
upnp_table_name=${ROUTER_TABLE}
upnp_nat_table_name=${ROUTER_TABLE}
upnp_forward_chain=${MINIUPNPD_FORWARD_CHAIN}
upnp_nat_chain=${MINIUPNPD_NAT_CHAIN}
upnp_nat_postrouting_chain=${MINIUPNPD_POSTROUTING_CHAIN}
lease_file=${options.leaseFile}
secure_mode=yes
system_uptime=yes
notify_interval=60
clean_ruleset_interval=600
uuid=${options.uuid}
friendly_name=Lab home router
allow 1024-65535 ${LAB_ADDRESSES.routerLan}/${LAB_ADDRESSES.lanPrefixLength} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`;
}
