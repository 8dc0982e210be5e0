/**
 * nftables scripts equivalent to the tables a stock Qubes OS R4.2 VM loads, so
 * that lab tests run our rules next to the real ones.
 *
 * Sources (QubesOS/qubes-core-agent-linux):
 * - `network/qubes-ipv4.nft`: table `ip qubes` with chains `postrouting`
 *   (masquerade), `input` (policy drop), `forward`, `custom-input` and
 *   `custom-forward`. Loaded in every VM.
 * - `network/qubes-antispoof.nft`: sets `downstream` and `allowed`, chains
 *   `prerouting` (raw) and `antispoof`, in the same `ip qubes` table. The
 *   elements are added by `network/vif-route-qubes` when a vif comes up.
 * - `network/qubes-setup-dnat-to-ns`: chain `dnat-dns` (nat, prerouting,
 *   dstnat) that sends DNS to the Qubes virtual resolvers 10.139.1.1 and
 *   10.139.1.2 on to the netvm's own resolvers. Netvms only.
 * - `qubesagent/firewall.py` (`NftablesWorker.init`, `create_chain`,
 *   `prepare_rules`, `update_connected_ips`): table `ip qubes-firewall`.
 *   Netvms only. With the default qube firewall (qubesd writes `policy=drop`
 *   and the single rule `0000 action=accept`), each client chain
 *   `qbs-<ip-with-dashes>` is `accept` followed by the policy rule
 *   `reject with icmp type admin-prohibited`.
 *
 * Differences from a real Qubes VM:
 * - Only IPv4. The `ip6` tables (`qubes-ipv6.nft`, the `ip6` half of the
 *   antispoof file and the `ip6 qubes-firewall` table) are left out because
 *   the lab has no IPv6 links.
 * - Every rule is written in one script instead of by several services at
 *   different times, so a test sees the final state at once.
 * - Two versions of `qubes-ipv4.nft` exist upstream. The one used here ends the
 *   `forward` chain with `oifgroup 2 counter drop`; a later one also has
 *   `iifgroup != 2 counter drop` before it. Both drop new inbound connections
 *   to qubes unless `custom-forward` accepts them first.
 */

/** Qubes virtual DNS addresses that qubes get as nameservers (qubes-core-admin `vm/mix/net.py`). */
export const QUBES_VIRTUAL_DNS = ['10.139.1.1', '10.139.1.2'] as const;

/** One downstream vif of a netvm and the address of the qube behind it. */
export interface StockVif {
  /** Interface name, `vif<domid>.0`. */
  ifname: string;
  /** IPv4 address of the qube behind the vif. */
  address: string;
}

export interface StockNetvmTablesOptions {
  /** IPv4 addresses of the qubes whose netvm this is (qubesdb `/connected-ips`). */
  downstreamAddresses: string[];
  /**
   * Downstream vifs to add to the antispoof sets, as `vif-route-qubes` does on
   * vif up. Without an entry here, the antispoof chain drops every packet from
   * that vif.
   */
  downstreamVifs?: StockVif[];
  /**
   * The netvm's own resolvers, the DNAT targets of `dnat-dns`. Default: the
   * Qubes virtual DNS addresses themselves, which is what a netvm behind
   * another netvm has in its resolv.conf (the rules then change nothing).
   */
  upstreamDnsServers?: string[];
}

const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const VIF_PATTERN = /^vif\d+\.\d+$/;

function checkIpv4(address: string, what: string): void {
  if (!IPV4_PATTERN.test(address)) {
    throw new Error(
      `invalid ${what} "${address}": expected a dotted IPv4 address such as 10.137.0.20`,
    );
  }
}

/** Chain name the firewall agent gives a client: `qbs-` plus the address with dashes. */
export function qubesFirewallChainName(address: string): string {
  return `qbs-${address.replaceAll('.', '-').replaceAll(':', '-')}`;
}

/** Renders `qubes-ipv4.nft` plus `qubes-antispoof.nft` (IPv4 part) with the given set elements. */
function renderQubesTable(downstream: string[], vifs: StockVif[], dnatDns: string | null): string {
  const downstreamElements =
    downstream.length > 0 ? `      elements = { ${downstream.join(', ')} }\n` : '';
  const allowedElements =
    vifs.length > 0
      ? `      elements = { ${vifs.map((vif) => `"${vif.ifname}" . ${vif.address}`).join(', ')} }\n`
      : '';

  return `table ip qubes {
   set downstream {
      type ipv4_addr
${downstreamElements}   }

   set allowed {
      type ifname . ipv4_addr
${allowedElements}   }

   chain prerouting {
      type filter hook prerouting priority raw; policy accept;
      iifgroup 2 goto antispoof
      ip saddr @downstream counter drop
   }

   chain antispoof {
      iifname . ip saddr @allowed accept
      counter drop
   }

   chain postrouting {
      type nat hook postrouting priority srcnat; policy accept;
      oifgroup 2 accept
      oif lo accept
      masquerade
   }

   chain input {
      type filter hook input priority filter; policy drop;
      jump custom-input
      ct state invalid counter drop
      iifgroup 2 meta l4proto udp udp dport 68 counter drop
      ct state related,established accept
      iifgroup 2 meta l4proto icmp accept
      iif lo accept
      iifgroup 2 counter reject with icmp type host-prohibited
      counter
   }

   chain forward {
      type filter hook forward priority filter; policy accept;
      jump custom-forward
      ct state invalid counter drop
      ct state related,established accept
      oifgroup 2 counter drop
   }

   # These chains are reserved for end-users.  Qubes OS itself will
   # never modify them.
   chain custom-input {}
   chain custom-forward {}
${dnatDns ?? ''}}
`;
}

/** Renders the `dnat-dns` chain the way `qubes-setup-dnat-to-ns` builds it. */
function renderDnatDnsChain(upstreamDnsServers: string[]): string {
  const rules: string[] = [];
  if (upstreamDnsServers.length === 0) {
    // No IPv4 resolver upstream: qubes-setup-dnat-to-ns drops DNS to the virtual addresses.
    for (const virtual of QUBES_VIRTUAL_DNS) {
      rules.push(`ip daddr ${virtual} udp dport 53 drop`, `ip daddr ${virtual} tcp dport 53 drop`);
    }
  } else {
    QUBES_VIRTUAL_DNS.forEach((virtual, index) => {
      const target = upstreamDnsServers[index % upstreamDnsServers.length];
      rules.push(
        `ip daddr ${virtual} udp dport 53 dnat to ${target}`,
        `ip daddr ${virtual} tcp dport 53 dnat to ${target}`,
      );
    });
  }

  return `
   chain dnat-dns {
      type nat hook prerouting priority dstnat; policy accept;
${rules.map((rule) => `      ${rule}\n`).join('')}   }
`;
}

/** Renders the `ip qubes-firewall` table after `init`, `create_chain` per client and `update_connected_ips`. */
function renderQubesFirewallTable(downstream: string[]): string {
  const jumps = downstream.map(
    (address) => `      ip saddr ${address} jump ${qubesFirewallChainName(address)}\n`,
  );
  const clientChains = downstream.map(
    (address) => `
   chain ${qubesFirewallChainName(address)} {
      accept
      reject with icmp type admin-prohibited
   }
`,
  );
  const connected = downstream.length > 0 ? `{ ${downstream.join(', ')} }` : null;
  const preroutingRule = connected ? `      iifname != "vif*" ip saddr ${connected} drop\n` : '';
  const postroutingRule = connected ? `      oifname != "vif*" ip daddr ${connected} drop\n` : '';

  return `table ip qubes-firewall {
   chain forward {
      type filter hook forward priority 0; policy drop;
      ct state established,related accept
      meta iifname != "vif*" accept
${jumps.join('')}   }

   chain prerouting {
      type filter hook prerouting priority -300; policy accept;
${preroutingRule}   }

   chain postrouting {
      type filter hook postrouting priority -300; policy accept;
${postroutingRule}   }
${clientChains.join('')}}
`;
}

/**
 * Renders the stock tables of a Qubes netvm (sys-net, sys-firewall or a proxy
 * qube) whose clients have the given addresses. Deletes older copies of
 * `ip qubes` and `ip qubes-firewall` first, so loading it twice gives the same
 * state.
 */
export function renderStockNetvmTables(options: StockNetvmTablesOptions): string {
  const downstream = [...options.downstreamAddresses];
  const vifs = [...(options.downstreamVifs ?? [])];
  const upstreamDns = [...(options.upstreamDnsServers ?? QUBES_VIRTUAL_DNS)];

  for (const address of downstream) checkIpv4(address, 'downstream address');
  for (const address of upstreamDns) checkIpv4(address, 'upstream DNS server');
  for (const vif of vifs) {
    checkIpv4(vif.address, `address of ${vif.ifname}`);
    if (!VIF_PATTERN.test(vif.ifname)) {
      throw new Error(`invalid vif name "${vif.ifname}": expected vif<domid>.0 such as vif4.0`);
    }
  }

  return [
    '#!/usr/sbin/nft -f',
    'table ip qubes\ndelete table ip qubes',
    'table ip qubes-firewall\ndelete table ip qubes-firewall',
    renderQubesTable(downstream, vifs, renderDnatDnsChain(upstreamDns)),
    renderQubesFirewallTable(downstream),
  ].join('\n');
}

/** Renders the stock tables of a qube that provides no network (an app qube or sys-nat). */
export function renderStockQubeTables(): string {
  return [
    '#!/usr/sbin/nft -f',
    'table ip qubes\ndelete table ip qubes',
    renderQubesTable([], [], null),
  ].join('\n');
}
