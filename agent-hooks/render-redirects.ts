import type { AgentState } from '../rpc/agent-state.js';
import { FORWARD_CT_MARK_HEX } from './stock-chain-rules.js';

/**
 * Pure rendering of the NAT traversal part of our table: the redirect of a
 * qube's NAT-PMP/PCP, IGD HTTP, SSDP and STUN traffic to the broker (in its
 * netvm), and the accept of the broker's SSDP replies (in the qube). Every
 * rule looks up one set or map, so the per-packet cost does not grow with the
 * number of qubes.
 *
 * NOTE: the stock `ip qubes-firewall` table also votes on the redirected
 * traffic. It admits it through the qube's own `qbs-<address>` chain, so a
 * qube whose Qubes firewall rules deny traffic to the broker's address cannot
 * reach the broker.
 */

/** NAT-PMP (RFC 6886) and PCP (RFC 6887) server port. */
export const NAT_PMP_PORT = 5351;
/** SSDP port and multicast group (UPnP Device Architecture 2.0, section 1). */
export const SSDP_PORT = 1900;
export const SSDP_MULTICAST_ADDRESS = '239.255.255.250';

/** Map `client . gateway . protocol . port : broker` of the requests sent to the gateway. */
export const MAP_REDIRECT_DNAT = 'redirect-dnat';
/** Map `client . UDP port : broker` of STUN requests, sent to any address. */
export const MAP_STUN_DNAT = 'stun-dnat';
/** Map `client : broker` of the stateless SSDP multicast rewrite. */
export const MAP_SSDP_MULTICAST = 'ssdp-multicast-broker';
/** Set `broker . client` of the unicast SSDP replies the netvm lets through. */
export const SET_SSDP_BROKER_REPLIES = 'ssdp-broker-replies';
/** Set of the addresses whose SSDP replies a qube accepts. */
export const SET_SSDP_REPLY_SOURCES = 'ssdp-reply-sources';

const MARK_STATEMENT = `ct mark set ct mark or ${FORWARD_CT_MARK_HEX}`;

export interface RenderedRedirects {
  /** Set and map declarations, to place inside the table. */
  declarations: string;
  /** Rules for our NAT prerouting chain. */
  preroutingRules: string[];
  /** Rules for our input chain. */
  inputRules: string[];
  /** Whole chains of their own: the raw SSDP rewrite and the reply mark. */
  chains: string;
  redirectCount: number;
  ssdpReplySourceCount: number;
}

function renderElements(elements: readonly string[]): string {
  if (elements.length === 0) {
    return '';
  }
  return `\t\telements = {\n${elements.map((element) => `\t\t\t${element}`).join(',\n')}\n\t\t}\n`;
}

/** Renders a set or map of exact keys: no interval or timeout flags, because redirects do not expire. */
function renderExactSet(
  kind: 'set' | 'map',
  name: string,
  type: string,
  elements: readonly string[],
): string {
  return `\t${kind} ${name} {\n\t\ttype ${type}\n${renderElements(elements)}\t}\n`;
}

/** Renders the NAT traversal sets, maps, rules and chains of `state`. */
export function renderRedirects(state: AgentState): RenderedRedirects {
  const redirectDnat: string[] = [];
  const stunDnat: string[] = [];
  const ssdpMulticast: string[] = [];
  const brokerReplies: string[] = [];

  for (const redirect of state.natTraversalRedirects) {
    const { clientAddress: client, gatewayAddress: gateway, brokerAddress: broker } = redirect;
    redirectDnat.push(
      `${client} . ${gateway} . udp . ${NAT_PMP_PORT} : ${broker}`,
      `${client} . ${gateway} . tcp . ${redirect.igdHttpPort} : ${broker}`,
      `${client} . ${gateway} . udp . ${SSDP_PORT} : ${broker}`,
    );
    for (const port of new Set(redirect.stunPorts)) {
      stunDnat.push(`${client} . ${port} : ${broker}`);
    }
    ssdpMulticast.push(`${client} : ${broker}`);
    brokerReplies.push(`${broker} . ${client}`);
  }
  const replySources = [...new Set(state.ssdpReplySources)];

  const declarations = [
    renderExactSet(
      'map',
      MAP_REDIRECT_DNAT,
      'ipv4_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr',
      redirectDnat,
    ),
    renderExactSet('map', MAP_STUN_DNAT, 'ipv4_addr . inet_service : ipv4_addr', stunDnat),
    renderExactSet('map', MAP_SSDP_MULTICAST, 'ipv4_addr : ipv4_addr', ssdpMulticast),
    renderExactSet('set', SET_SSDP_BROKER_REPLIES, 'ipv4_addr . ipv4_addr', brokerReplies),
    renderExactSet('set', SET_SSDP_REPLY_SOURCES, 'ipv4_addr', replySources),
  ].join('');

  // Requests from a downstream vif (group 2) only. A map used after `@` is a
  // membership test, so the mark is set only for keys the map has.
  const redirectKey = 'ip saddr . ip daddr . meta l4proto . th dport';
  const stunKey = 'ip saddr . udp dport';
  const preroutingRules = [
    `iifgroup 2 meta l4proto { tcp, udp } ${redirectKey} @${MAP_REDIRECT_DNAT} ${MARK_STATEMENT} dnat ip to ${redirectKey} map @${MAP_REDIRECT_DNAT}`,
    `iifgroup 2 ${stunKey} @${MAP_STUN_DNAT} ${MARK_STATEMENT} dnat ip to ${stunKey} map @${MAP_STUN_DNAT}`,
  ];

  const inputRules = [
    `udp sport ${SSDP_PORT} ip saddr @${SET_SSDP_REPLY_SOURCES} ${MARK_STATEMENT}`,
  ];

  const chains = [
    // Stateful DNAT cannot carry a multicast search: the broker's unicast
    // reply would not match the multicast flow. So the search is rewritten
    // before conntrack tracks it (raw runs before conntrack at -200) and stays
    // untracked; the SSDP accept in the stock custom-forward chain passes it.
    // A search is meant for the local link, and many clients send it with
    // TTL 1 (Node's dgram default; UPnP Device Architecture 2.0 suggests 2),
    // which the forward to the broker would expire: so TTL is set to 2.
    '\tchain ssdp-rewrite {\n',
    '\t\ttype filter hook prerouting priority raw; policy accept;\n',
    `\t\tiifgroup 2 ip daddr ${SSDP_MULTICAST_ADDRESS} udp dport ${SSDP_PORT} ip saddr @${MAP_SSDP_MULTICAST} notrack meta pkttype set host ip ttl set 2 ip daddr set ip saddr map @${MAP_SSDP_MULTICAST}\n`,
    '\t}\n',
    // The broker replies to such a search unicast from its own address: a new
    // flow towards a downstream vif, which the stock forward chain drops
    // unless our mark lets the accept rule in custom-forward pass it. Mangle
    // runs after conntrack, so the mark lands on the new connection.
    '\tchain ssdp-reply-mark {\n',
    '\t\ttype filter hook prerouting priority mangle; policy accept;\n',
    `\t\tiifgroup 2 ct state new udp sport ${SSDP_PORT} ip saddr . ip daddr @${SET_SSDP_BROKER_REPLIES} ${MARK_STATEMENT}\n`,
    '\t}\n',
  ].join('');

  return {
    declarations,
    preroutingRules,
    inputRules,
    chains,
    redirectCount: state.natTraversalRedirects.length,
    ssdpReplySourceCount: replySources.length,
  };
}
