import type { AgentState, NatTraversalRedirect } from '../rpc/agent-state.js';
import { NAT_PMP_PORT, SSDP_PORT } from './render-redirects.js';
import { FORWARD_CT_MARK_HEX } from './stock-chain-rules.js';

/**
 * The conntrack flows that a NAT traversal redirect or an SSDP reply source
 * lets through, so that the agent can delete those of the entries a new state
 * removed. A changed redirect removes only the flows the new one no longer
 * has (a new STUN port list keeps the NAT-PMP flows, for example).
 */

export type RedirectFlow =
  /** From the client to its gateway on `port`, DNATed to the broker. */
  | {
      kind: 'gateway';
      protocol: 'tcp' | 'udp';
      clientAddress: string;
      gatewayAddress: string;
      port: number;
      brokerAddress: string;
    }
  /** STUN from the client to any address on UDP `port`, DNATed to the broker. */
  | { kind: 'stun'; clientAddress: string; port: number; brokerAddress: string }
  /** The broker's unicast SSDP reply to the client, through the netvm. */
  | { kind: 'ssdp-broker-reply'; clientAddress: string; brokerAddress: string }
  /** An SSDP reply that a qube accepted from `sourceAddress`. */
  | { kind: 'ssdp-reply-source'; sourceAddress: string };

/** Lists the flows one redirect admits in its netvm. */
export function listRedirectFlows(redirect: NatTraversalRedirect): RedirectFlow[] {
  const { clientAddress, gatewayAddress, brokerAddress } = redirect;
  const gatewayPorts: Array<['tcp' | 'udp', number]> = [
    ['udp', NAT_PMP_PORT],
    ['tcp', redirect.igdHttpPort],
    ['udp', SSDP_PORT],
  ];

  const flows: RedirectFlow[] = gatewayPorts.map(([protocol, port]) => ({
    kind: 'gateway',
    protocol,
    clientAddress,
    gatewayAddress,
    port,
    brokerAddress,
  }));
  for (const port of new Set(redirect.stunPorts)) {
    flows.push({ kind: 'stun', clientAddress, port, brokerAddress });
  }
  flows.push({ kind: 'ssdp-broker-reply', clientAddress, brokerAddress });
  return flows;
}

function listStateFlows(state: AgentState): RedirectFlow[] {
  return [
    ...state.natTraversalRedirects.flatMap(listRedirectFlows),
    ...state.ssdpReplySources.map(
      (sourceAddress): RedirectFlow => ({ kind: 'ssdp-reply-source', sourceAddress }),
    ),
  ];
}

/** Lists the flows that `previous` admitted and `next` no longer admits, each once. */
export function findRemovedRedirectFlows(
  previous: AgentState | null,
  next: AgentState,
): RedirectFlow[] {
  if (previous === null) {
    return [];
  }

  const kept = new Set(listStateFlows(next).map((flow) => JSON.stringify(flow)));
  const removed = new Map<string, RedirectFlow>();
  for (const flow of listStateFlows(previous)) {
    const key = JSON.stringify(flow);
    if (!kept.has(key)) {
      removed.set(key, flow);
    }
  }
  return [...removed.values()];
}

/**
 * Returns the `conntrack -D` filters that select one flow kind. Every filter
 * includes our mark bit, because only flows our chains admitted carry it.
 */
export function conntrackFiltersOf(flow: RedirectFlow): string[] {
  const mark = ['--mark', `${FORWARD_CT_MARK_HEX}/${FORWARD_CT_MARK_HEX}`];
  switch (flow.kind) {
    case 'gateway':
      return [
        '-p',
        flow.protocol,
        '-s',
        flow.clientAddress,
        '-d',
        flow.gatewayAddress,
        '--orig-port-dst',
        String(flow.port),
        '--reply-src',
        flow.brokerAddress,
        ...mark,
      ];
    case 'stun':
      return [
        '-p',
        'udp',
        '-s',
        flow.clientAddress,
        '--orig-port-dst',
        String(flow.port),
        '--reply-src',
        flow.brokerAddress,
        ...mark,
      ];
    case 'ssdp-broker-reply':
      return [
        '-p',
        'udp',
        '-s',
        flow.brokerAddress,
        '-d',
        flow.clientAddress,
        '--orig-port-src',
        String(SSDP_PORT),
        ...mark,
      ];
    case 'ssdp-reply-source':
      return ['-p', 'udp', '-s', flow.sourceAddress, '--orig-port-src', String(SSDP_PORT), ...mark];
  }
}

/** Names a flow in logs, such as `stun 10.137.0.20 udp/3478`. */
export function describeRedirectFlow(flow: RedirectFlow): string {
  switch (flow.kind) {
    case 'gateway':
      return `redirect ${flow.clientAddress} ${flow.protocol}/${flow.port}`;
    case 'stun':
      return `stun ${flow.clientAddress} udp/${flow.port}`;
    case 'ssdp-broker-reply':
      return `ssdp reply ${flow.brokerAddress} to ${flow.clientAddress}`;
    case 'ssdp-reply-source':
      return `ssdp reply source ${flow.sourceAddress}`;
  }
}
