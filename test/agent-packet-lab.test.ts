import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../agent-hooks/agent-errors.js';
import { createStateApplier } from '../agent-hooks/agent-setup.js';
import { AgentStateStore } from '../agent-hooks/agent-state-store.js';
import { runApplyService } from '../agent-hooks/apply-service.js';
import { ConntrackCleaner } from '../agent-hooks/conntrack-cleaner.js';
import {
  type CommandRunner,
  createNftRunner,
  SpawnCommandRunner,
} from '../agent-hooks/nft-runner.js';
import { runRestore } from '../agent-hooks/restore.js';
import { StateApplier, systemClock } from '../agent-hooks/state-applier.js';
import type { AgentState, DnatEntry, InputAcceptEntry } from '../rpc/agent-state.js';
import {
  type AgentLab,
  createAgentLab,
  inNamespace,
  NETVM_UPLINK_ADDRESS,
  PEER_ADDRESS,
  PEER_SECOND_ADDRESS,
  QUBE_ADDRESS,
  silentLogger,
  stateFor,
  tcpRequest,
  udpRequest,
  waitFor,
} from './agent-lab-helpers.js';

/**
 * Real packets through real nftables next to the stock Qubes tables:
 * peer → netvm (our DNAT) → qube (our input accept), in namespaces `ha1-*`.
 */

const NETVM = 'sys-net';
const QUBE = 'work';
const UDP_SOURCE_PORT = 40_123;

function dnat(
  forwardId: string,
  protocol: 'tcp' | 'udp',
  ports: [number, number],
  targetPorts: [number, number],
  extra: Partial<DnatEntry> = {},
): DnatEntry {
  return {
    forwardId,
    protocol,
    sourceCidr: '0.0.0.0/0',
    ports: { first: ports[0], last: ports[1] },
    targetAddress: QUBE_ADDRESS,
    targetPorts: { first: targetPorts[0], last: targetPorts[1] },
    expiresAtUnixSeconds: null,
    ...extra,
  };
}

function accept(
  forwardId: string,
  protocol: 'tcp' | 'udp',
  ports: [number, number],
): InputAcceptEntry {
  return {
    forwardId,
    protocol,
    sourceCidr: '0.0.0.0/0',
    ports: { first: ports[0], last: ports[1] },
    expiresAtUnixSeconds: null,
  };
}

const WEB = dnat('web', 'tcp', [8080, 8080], [80, 80]);
const GAME = dnat('game', 'udp', [5000, 5002], [5000, 5002]);
const ADMIN = dnat('admin', 'tcp', [9090, 9090], [80, 80], {
  sourceCidr: `${PEER_SECOND_ADDRESS}/32`,
});
const QUBE_ACCEPTS = [accept('web', 'tcp', [80, 80]), accept('game', 'udp', [5000, 5002])];

describe('agent packet lab', () => {
  let lab: AgentLab;
  let issuedAt = Date.now();
  let netvmApplier: StateApplier;
  let qubeApplier: StateApplier;

  function nextIssuedAt(): number {
    issuedAt += 1;
    return issuedAt;
  }

  function runtime(namespace: string, vm: string, stateDir: string) {
    return {
      env: { QNB_VM_NAME: vm, QNB_STATE_DIR: stateDir },
      commandPrefix: ['ip', 'netns', 'exec', namespace],
      logger: silentLogger,
    };
  }

  function netvmRuntime() {
    return runtime(lab.netvm, NETVM, lab.netvmStateDir);
  }

  function listOurTable(namespace: string): string {
    return inNamespace(namespace, ['nft', 'list', 'table', 'ip', 'qubes-nat-broker']);
  }

  beforeAll(async () => {
    lab = createAgentLab('ha1');
    lab.startProcess(lab.qube, [
      'socat',
      'TCP-LISTEN:80,fork,reuseaddr',
      'SYSTEM:echo tcp $SOCAT_PEERADDR',
    ]);
    lab.startProcess(lab.qube, [
      'socat',
      'UDP-RECVFROM:5000,fork',
      'SYSTEM:echo udp $SOCAT_PEERADDR',
    ]);

    const listening = await waitFor(() => tcpRequest(lab.qube, '127.0.0.1', 80) !== '', 5000);
    expect(listening).toBe(true);

    netvmApplier = await createStateApplier(netvmRuntime());
    qubeApplier = await createStateApplier(runtime(lab.qube, QUBE, lab.qubeStateDir));
  });

  afterAll(() => {
    lab?.destroy();
  });

  it('drops inbound traffic without our state', () => {
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe('');
    expect(udpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 5000)).toBe('');
  });

  it('drops in the qube when only the netvm has state', async () => {
    await netvmApplier.apply(stateFor(NETVM, nextIssuedAt(), { dnat: [WEB, GAME, ADMIN] }));

    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe('');
  });

  it('forwards TCP and UDP with the real peer address', async () => {
    const outcome = await qubeApplier.apply(
      stateFor(QUBE, nextIssuedAt(), { inputAccept: QUBE_ACCEPTS }),
    );
    expect(outcome).toEqual({
      result: 'applied',
      dnat: 0,
      inputAccept: 2,
      natTraversalRedirects: 0,
      ssdpReplySources: 0,
      removedConntrackEntries: 0,
    });

    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe(`tcp ${PEER_ADDRESS}`);
    expect(udpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 5000)).toBe(`udp ${PEER_ADDRESS}`);
  });

  it('adds the custom chain rules once', async () => {
    await netvmApplier.apply(stateFor(NETVM, nextIssuedAt(), { dnat: [WEB, GAME, ADMIN] }));
    const forward = inNamespace(lab.netvm, [
      'nft',
      'list',
      'chain',
      'ip',
      'qubes',
      'custom-forward',
    ]);
    const input = inNamespace(lab.qube, ['nft', 'list', 'chain', 'ip', 'qubes', 'custom-input']);

    expect(forward.match(/comment "qubes-nat-broker"/g)).toHaveLength(1);
    expect(input.match(/comment "qubes-nat-broker"/g)).toHaveLength(1);
  });

  it('restricts by source CIDR', () => {
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 9090, PEER_ADDRESS)).toBe('');
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 9090, PEER_SECOND_ADDRESS)).toBe(
      `tcp ${PEER_SECOND_ADDRESS}`,
    );
  });

  it('cuts an established UDP flow on removal', async () => {
    expect(udpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 5000, UDP_SOURCE_PORT)).toBe(
      `udp ${PEER_ADDRESS}`,
    );
    const flows = inNamespace(lab.netvm, [
      'conntrack',
      '-L',
      '-p',
      'udp',
      '--orig-port-src',
      String(UDP_SOURCE_PORT),
    ]);
    expect(flows).toContain('dport=5000');

    const outcome = await netvmApplier.apply(
      stateFor(NETVM, nextIssuedAt(), { dnat: [WEB, ADMIN] }),
    );

    expect(outcome.dnat).toBe(2);
    expect(outcome.removedConntrackEntries).toBeGreaterThanOrEqual(1);
    expect(listOurTable(lab.netvm)).not.toContain('udp . 5000-5002');
    expect(udpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 5000, UDP_SOURCE_PORT)).toBe('');
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe(`tcp ${PEER_ADDRESS}`);
  });

  it('expires a forward in the kernel', async () => {
    const expiresAtUnixSeconds = Math.ceil(Date.now() / 1000) + 3;
    const shortLived = dnat('short', 'tcp', [8181, 8181], [80, 80], { expiresAtUnixSeconds });
    await netvmApplier.apply(stateFor(NETVM, nextIssuedAt(), { dnat: [WEB, ADMIN, shortLived] }));
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8181)).toBe(`tcp ${PEER_ADDRESS}`);

    const elementExpired = await waitFor(() => !listOurTable(lab.netvm).includes('. 8181'), 10_000);

    expect(elementExpired).toBe(true);
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8181)).toBe('');
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe(`tcp ${PEER_ADDRESS}`);
  });

  it('rejects a stale state through the service', async () => {
    const stale = stateFor(NETVM, issuedAt - 10, { dnat: [] });
    const before = listOurTable(lab.netvm);

    const result = await runApplyService({
      ...netvmRuntime(),
      input: Readable.from([JSON.stringify(stale)]),
    });

    expect(result.exitCode).not.toBe(0);
    expect(JSON.parse(result.output)).toMatchObject({ result: 'error', code: 'stale-state' });
    expect(listOurTable(lab.netvm)).toBe(before);
  });

  it('re-applies an equal issuedAt through the service', async () => {
    const same = stateFor(NETVM, issuedAt, { dnat: [WEB, ADMIN] });
    const first = await runApplyService({
      ...netvmRuntime(),
      input: Readable.from([JSON.stringify(same)]),
    });
    expect(first.exitCode).toBe(0);

    const second = await runApplyService({
      ...netvmRuntime(),
      input: Readable.from([JSON.stringify(same)]),
    });

    expect(second.exitCode).toBe(0);
    expect(JSON.parse(second.output)).toEqual({
      result: 'applied',
      dnat: 2,
      inputAccept: 0,
      natTraversalRedirects: 0,
      ssdpReplySources: 0,
      removedConntrackEntries: 0,
    });
  });

  it('leaves the ruleset unchanged when nft fails', async () => {
    const before = listOurTable(lab.netvm);
    const realNft = createNftRunner({ prefix: ['ip', 'netns', 'exec', lab.netvm] });
    // Appends a rule for a chain that does not exist, so the kernel rejects the transaction.
    const failingNft: CommandRunner = {
      run: (args, input) =>
        realNft.run(
          args,
          input === undefined ? input : `${input}add rule ip qubes no-such-chain accept\n`,
        ),
    };
    const applier = new StateApplier({
      vmName: NETVM,
      nft: failingNft,
      conntrack: new ConntrackCleaner(
        new SpawnCommandRunner('conntrack', { prefix: ['ip', 'netns', 'exec', lab.netvm] }),
        silentLogger,
      ),
      store: new AgentStateStore(lab.netvmStateDir, silentLogger),
      clock: systemClock,
      logger: silentLogger,
    });

    const error = await applier
      .apply(stateFor(NETVM, nextIssuedAt(), { dnat: [WEB] }))
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(AgentError);
    expect((error as AgentError).code).toBe('nft-failed');
    expect(listOurTable(lab.netvm)).toBe(before);
  });

  it('fails without the stock table and changes nothing', async () => {
    const before = listOurTable(lab.netvm);
    inNamespace(lab.netvm, ['nft', 'delete', 'table', 'ip', 'qubes']);

    const error = await netvmApplier
      .apply(stateFor(NETVM, nextIssuedAt(), { dnat: [WEB] }))
      .catch((caught: unknown) => caught);

    expect((error as AgentError).code).toBe('stock-table-missing');
    expect(listOurTable(lab.netvm)).toBe(before);
  });

  it('restores after a flush and stock reload', async () => {
    inNamespace(lab.netvm, ['nft', 'flush', 'ruleset']);
    lab.reloadStockTables(lab.netvm);
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe('');

    const result = await runRestore(netvmRuntime());

    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.output)).toEqual({
      result: 'restored',
      dnat: 2,
      inputAccept: 0,
      natTraversalRedirects: 0,
      ssdpReplySources: 0,
    });
    expect(tcpRequest(lab.peer, NETVM_UPLINK_ADDRESS, 8080)).toBe(`tcp ${PEER_ADDRESS}`);
  });

  it('restore without stored state exits 0', async () => {
    const result = await runRestore({
      ...netvmRuntime(),
      env: { QNB_VM_NAME: NETVM, QNB_STATE_DIR: `${lab.netvmStateDir}-empty` },
    });

    expect(result).toEqual({ exitCode: 0, output: '{"result":"no-state"}' });
  });

  it('rejects a state for another VM', async () => {
    const foreign: AgentState = stateFor(QUBE, nextIssuedAt(), {});

    const result = await runApplyService({
      ...netvmRuntime(),
      input: Readable.from([JSON.stringify(foreign)]),
    });

    expect(JSON.parse(result.output)).toMatchObject({ result: 'error', code: 'wrong-vm' });
    expect(result.exitCode).not.toBe(0);
  });

  it('keeps peer traffic inside the lab', () => {
    const routes = execFileSync('ip', ['-n', lab.peer, 'route', 'show'], { encoding: 'utf8' });

    expect(routes).not.toContain('default');
  });
});
