import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStateApplier } from '../agent-hooks/agent-setup.js';
import { runRestore } from '../agent-hooks/restore.js';
import type { StateApplier } from '../agent-hooks/state-applier.js';
import type { InputAcceptEntry, NatTraversalRedirect } from '../rpc/agent-state.js';
import { inNamespace, silentLogger, stateFor, waitFor } from './agent-lab-helpers.js';
import {
  BROKER_ADDRESS,
  createRedirectLab,
  GATEWAY_ADDRESS,
  httpGet,
  IGD_HTTP_PORT,
  INTERNET_STUN_ADDRESS,
  M_SEARCH,
  NETVM_UPLINK_ADDRESS,
  QUBE_ADDRESS,
  RESPONDER_EXTERNAL_ADDRESS,
  type RedirectLab,
  runTool,
  STUN_PORT,
  udpExchange,
} from './agent-redirect-lab-helpers.js';

/**
 * Real packets through real nftables next to the stock Qubes tables: a qube
 * with NAT traversal reaches the broker through its netvm's redirect, with
 * unmodified `natpmpc` and `upnpc` among the clients, in namespaces `hr1-*`.
 */

const NETVM = 'sys-firewall';
const QUBE = 'work';
const BROKER = 'sys-nat';
const SSDP_MULTICAST = '239.255.255.250';
const NATPMP_SOURCE_PORT = 40_351;

const REDIRECT: NatTraversalRedirect = {
  clientAddress: QUBE_ADDRESS,
  gatewayAddress: GATEWAY_ADDRESS,
  brokerAddress: BROKER_ADDRESS,
  igdHttpPort: IGD_HTTP_PORT,
  stunPorts: [STUN_PORT, 19_302],
};

function fromQube(forwardId: string, protocol: 'tcp' | 'udp', port: number): InputAcceptEntry {
  return {
    forwardId,
    protocol,
    sourceCidr: `${QUBE_ADDRESS}/32`,
    ports: { first: port, last: port },
    expiresAtUnixSeconds: null,
  };
}

/** What dom0 gives the broker VM: its servers accept the qube's requests. */
const BROKER_ACCEPTS = [
  fromQube('natpmp', 'udp', 5351),
  fromQube('ssdp', 'udp', 1900),
  fromQube('igd', 'tcp', IGD_HTTP_PORT),
  fromQube('stun', 'udp', STUN_PORT),
];

describe('agent NAT traversal redirect lab', () => {
  let lab: RedirectLab;
  let issuedAt = Date.now();
  let netvmApplier: StateApplier;
  let qubeApplier: StateApplier;

  function nextIssuedAt(): number {
    issuedAt += 1;
    return issuedAt;
  }

  function applier(namespace: string, vm: string): Promise<StateApplier> {
    return createStateApplier({
      env: { QNB_VM_NAME: vm, QNB_STATE_DIR: lab.stateDir(vm) },
      commandPrefix: ['ip', 'netns', 'exec', namespace],
      logger: silentLogger,
    });
  }

  function customForward(): string {
    return inNamespace(lab.netvm, ['nft', 'list', 'chain', 'ip', 'qubes', 'custom-forward']);
  }

  beforeAll(async () => {
    lab = createRedirectLab('hr1');
    const brokerApplier = await applier(lab.broker, BROKER);
    netvmApplier = await applier(lab.netvm, NETVM);
    qubeApplier = await applier(lab.qube, QUBE);
    await brokerApplier.apply(stateFor(BROKER, nextIssuedAt(), { inputAccept: BROKER_ACCEPTS }));

    const listening = await waitFor(
      () =>
        httpGet(lab.broker, '127.0.0.1', IGD_HTTP_PORT) !== '' &&
        udpExchange(lab.peer, '127.0.0.1', STUN_PORT, 'ping') !== '',
      5000,
    );
    expect(listening).toBe(true);
  });

  afterAll(() => {
    lab?.destroy();
  });

  it('leaves NAT-PMP unanswered without a redirect', () => {
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping')).toBe('');
    expect(udpExchange(lab.qube, INTERNET_STUN_ADDRESS, STUN_PORT, 'ping')).toBe(
      `${INTERNET_STUN_ADDRESS}:${STUN_PORT} internet-stun ${NETVM_UPLINK_ADDRESS}\n`,
    );
  });

  it('applies the redirect and the reply source', async () => {
    const netvmOutcome = await netvmApplier.apply(
      stateFor(NETVM, nextIssuedAt(), { natTraversalRedirects: [REDIRECT] }),
    );
    const qubeOutcome = await qubeApplier.apply(
      stateFor(QUBE, nextIssuedAt(), { ssdpReplySources: [BROKER_ADDRESS] }),
    );

    expect(netvmOutcome.natTraversalRedirects).toBe(1);
    expect(qubeOutcome.ssdpReplySources).toBe(1);
  });

  it('answers unmodified natpmpc from the gateway', () => {
    const output = runTool(lab.qube, ['natpmpc', '-g', GATEWAY_ADDRESS], 15_000);

    expect(output).toContain(`Public IP address : ${RESPONDER_EXTERNAL_ADDRESS}`);
  });

  it('replies to NAT-PMP from the gateway address', () => {
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping')).toBe(
      `${GATEWAY_ADDRESS}:5351 udp5351 ${QUBE_ADDRESS}`,
    );
  });

  it('lets the IGD server see the qube', () => {
    expect(httpGet(lab.qube, GATEWAY_ADDRESS, IGD_HTTP_PORT)).toBe(`igd ${QUBE_ADDRESS}`);
  });

  it('answers an SSDP multicast search unicast', () => {
    const reply = udpExchange(lab.qube, SSDP_MULTICAST, 1900, M_SEARCH);

    expect(reply.startsWith(`${BROKER_ADDRESS}:1900 HTTP/1.1 200 OK`)).toBe(true);
    expect(reply).toContain(`LOCATION: http://${GATEWAY_ADDRESS}:${IGD_HTTP_PORT}/rootDesc.xml`);
  });

  it('lets unmodified upnpc discover the broker', () => {
    const output = runTool(lab.qube, ['upnpc', '-s'], 30_000);

    expect(output).toContain(`desc: http://${GATEWAY_ADDRESS}:${IGD_HTTP_PORT}/rootDesc.xml`);
  });

  it('redirects unicast SSDP to the gateway', () => {
    const reply = udpExchange(lab.qube, GATEWAY_ADDRESS, 1900, M_SEARCH);

    expect(reply.startsWith(`${GATEWAY_ADDRESS}:1900 HTTP/1.1 200 OK`)).toBe(true);
  });

  it('redirects STUN to any address', () => {
    expect(udpExchange(lab.qube, INTERNET_STUN_ADDRESS, STUN_PORT, 'ping')).toBe(
      `${INTERNET_STUN_ADDRESS}:${STUN_PORT} udp${STUN_PORT} ${QUBE_ADDRESS}`,
    );
  });

  it('leaves a qube without redirect alone', () => {
    expect(udpExchange(lab.plain, GATEWAY_ADDRESS, 5351, 'ping')).toBe('');
    expect(httpGet(lab.plain, GATEWAY_ADDRESS, IGD_HTTP_PORT)).toBe('');
    expect(udpExchange(lab.plain, SSDP_MULTICAST, 1900, M_SEARCH)).toBe('');
    expect(udpExchange(lab.plain, INTERNET_STUN_ADDRESS, STUN_PORT, 'ping')).toBe(
      `${INTERNET_STUN_ADDRESS}:${STUN_PORT} internet-stun ${NETVM_UPLINK_ADDRESS}\n`,
    );
  });

  it('drops the SSDP reply without a reply source', async () => {
    await qubeApplier.apply(stateFor(QUBE, nextIssuedAt(), {}));
    expect(udpExchange(lab.qube, SSDP_MULTICAST, 1900, M_SEARCH)).toBe('');

    await qubeApplier.apply(stateFor(QUBE, nextIssuedAt(), { ssdpReplySources: [BROKER_ADDRESS] }));
    expect(udpExchange(lab.qube, SSDP_MULTICAST, 1900, M_SEARCH)).toContain('200 OK');
  });

  it('adds each custom-forward rule once', async () => {
    await netvmApplier.apply(
      stateFor(NETVM, nextIssuedAt(), { natTraversalRedirects: [REDIRECT] }),
    );
    const chain = customForward();

    expect(chain.match(/comment "qubes-nat-broker"/g)).toHaveLength(2);
    expect(chain.match(/ct state untracked/g)).toHaveLength(1);
  });

  it('restores the redirect after a stock reload', async () => {
    lab.reloadNetvmStockTables();
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping')).toBe('');

    const result = await runRestore({
      env: { QNB_VM_NAME: NETVM, QNB_STATE_DIR: lab.stateDir(NETVM) },
      commandPrefix: ['ip', 'netns', 'exec', lab.netvm],
      logger: silentLogger,
    });

    expect(JSON.parse(result.output)).toMatchObject({
      result: 'restored',
      natTraversalRedirects: 1,
    });
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping')).toBe(
      `${GATEWAY_ADDRESS}:5351 udp5351 ${QUBE_ADDRESS}`,
    );
    expect(udpExchange(lab.qube, SSDP_MULTICAST, 1900, M_SEARCH)).toContain('200 OK');
  });

  it('removes everything with the redirect', async () => {
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping', NATPMP_SOURCE_PORT)).not.toBe('');
    const flows = inNamespace(lab.netvm, ['conntrack', '-L', '-p', 'udp', '-s', QUBE_ADDRESS]);
    expect(flows).toContain(`sport=${NATPMP_SOURCE_PORT} dport=5351`);

    const outcome = await netvmApplier.apply(stateFor(NETVM, nextIssuedAt(), {}));

    expect(outcome.natTraversalRedirects).toBe(0);
    expect(outcome.removedConntrackEntries).toBeGreaterThanOrEqual(1);
    expect(customForward()).not.toContain('ct state untracked');
    expect(udpExchange(lab.qube, GATEWAY_ADDRESS, 5351, 'ping', NATPMP_SOURCE_PORT)).toBe('');
    expect(httpGet(lab.qube, GATEWAY_ADDRESS, IGD_HTTP_PORT)).toBe('');
    expect(udpExchange(lab.qube, SSDP_MULTICAST, 1900, M_SEARCH)).toBe('');
    expect(udpExchange(lab.qube, INTERNET_STUN_ADDRESS, STUN_PORT, 'ping')).toBe(
      `${INTERNET_STUN_ADDRESS}:${STUN_PORT} internet-stun ${NETVM_UPLINK_ADDRESS}\n`,
    );
  });
});
