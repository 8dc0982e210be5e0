import type { AgentState } from '../rpc/agent-state.js';

/**
 * Pure rendering of the static source NAT of UDP NAT traversal leases: a
 * map `source address . source port : port` whose elements expire with their
 * lease, and one rule in a NAT postrouting chain that runs before the stock
 * Qubes masquerade (priority srcnat - 10). The first NAT chain that binds a
 * flow wins, so the stock masquerade leaves these flows alone. Only new
 * flows pass NAT chains; replies follow conntrack as before.
 */

/** Map `ip saddr . udp sport : port` of the flows that keep their port upstream. */
export const MAP_SNAT_PORT = 'snat-port';

/** The Qubes uplink is in interface group 1. */
const UPLINK_GROUP = 1;

export interface RenderedSnat {
  declarations: string;
  chains: string;
  snatCount: number;
  expiredCount: number;
}

/**
 * Renders the map and chain; `timeoutOf` turns an expiry into an element
 * timeout suffix ('' for none) or null when the entry has expired.
 */
export function renderSnat(
  state: AgentState,
  timeoutOf: (expiresAtUnixSeconds: number | null) => string | null,
): RenderedSnat {
  const elements: string[] = [];
  const seen = new Set<string>();
  let expiredCount = 0;
  for (const entry of state.snat ?? []) {
    const timeout = timeoutOf(entry.expiresAtUnixSeconds);
    const key = `${entry.sourceAddress} . ${entry.sourcePort}`;
    if (timeout === null) {
      expiredCount += 1;
      continue;
    }
    if (seen.has(key)) {
      continue;
    }
    seen.add(key);
    elements.push(`${key}${timeout} : ${entry.toPort}`);
  }

  const body =
    elements.length === 0
      ? ''
      : `\t\telements = {\n${elements.map((element) => `\t\t\t${element}`).join(',\n')}\n\t\t}\n`;
  const declarations = `\tmap ${MAP_SNAT_PORT} {\n\t\ttype ipv4_addr . inet_service : inet_service\n\t\tflags timeout\n${body}\t}\n`;
  const key = 'ip saddr . udp sport';
  const chains = [
    '\tchain postrouting {\n',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;\n',
    `\t\toifgroup ${UPLINK_GROUP} meta l4proto udp ${key} @${MAP_SNAT_PORT} masquerade to : ${key} map @${MAP_SNAT_PORT}\n`,
    '\t}\n',
  ].join('');
  return { declarations, chains, snatCount: elements.length, expiredCount };
}
