import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lab/lab-exec.js';
import { LabSession } from '../lab/lab-session.js';

/**
 * Activity renewal of STUN leases in the lab: with nat-traversal-max-lease
 * 40, a STUN lease lasts 40 s. A socket that keeps exchanging datagrams
 * with a peer on the internet keeps its lease, hop rules and router
 * mapping past that time; a socket that only sent its Binding request
 * loses all three when the lease ends.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });
/** Debian's stun-client; npm's stun package puts a server named stun on PATH. */
const STUN_CLIENT = '/usr/bin/stun';
const HOPS = ['sys-net', 'sys-firewall', 'work'];
const ACTIVE_PORT = 41_000;
const IDLE_PORT = 41_002;
const PEER_PORT = 7777;

describe('activity renewal of STUN leases', () => {
  let lab: LabSession;
  let routerWan: string;

  const routerList = async () =>
    (
      await lab.exec(
        'sys-net',
        ['upnpc', '-i', '-u', `http://${lab.state.addresses.routerLan}:5000/rootDesc.xml`, '-l'],
        { timeoutMs: 60_000 },
      )
    ).stdout;
  const hopRules = async () => (await Promise.all(HOPS.map((vm) => lab.ruleset(vm)))).join('\n');
  const leaseList = async () => (await lab.qvmForward('--raw', 'work')).stdout;
  const routerMaps = (list: string, port: number) =>
    new RegExp(`UDP\\s+\\d+->[\\d.]+:${port}\\b`).test(list);

  /** Sends Binding requests from `port` until the broker replies with the router's address. */
  const stunBinding = async (port: number): Promise<string> => {
    let output = '';
    for (
      let attempt = 0;
      attempt < 5 && !output.includes(`MappedAddress = ${routerWan}`);
      attempt++
    ) {
      const result = await lab.exec(
        'work',
        [STUN_CLIENT, lab.state.addresses.stunPrimary, '1', '-v', '-p', String(port)],
        { timeoutMs: 60_000 },
      );
      output = `${result.stdout}${result.stderr}`;
      if (!output.includes(`MappedAddress = ${routerWan}`)) {
        await sleep(1000);
      }
    }
    return output;
  };

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'hv1', logger, answer: 'allow' });
    routerWan = lab.state.addresses.routerWan;
    await lab.startServer('inet', 'udp', PEER_PORT);
  }, 180_000);

  afterAll(async () => {
    await lab?.close();
  });

  it('enables NAT traversal with 40 s leases and allows STUN', async () => {
    for (const [name, value] of [
      ['nat-traversal', '1'],
      ['nat-traversal-max-lease', '40'],
    ]) {
      const result = await lab.exec('dom0', ['qvm-features', 'work', name ?? '', value ?? '']);
      expect(result.exitCode).toBe(0);
    }
    const allow = await lab.exec('dom0', ['qvm-nat-traversal', 'work', 'p2p', 'allow']);
    expect(allow.exitCode).toBe(0);

    const key = `${lab.address('work')} . 3478`;
    for (
      let attempt = 0;
      attempt < 100 && !(await lab.ruleset('sys-firewall')).includes(key);
      attempt++
    ) {
      await sleep(100);
    }
    expect(await lab.ruleset('sys-firewall')).toContain(key);
  });

  it('keeps an active socket lease past its lifetime', async () => {
    const active = await stunBinding(ACTIVE_PORT);
    expect(active).toContain(`MappedAddress = ${routerWan}`);
    // A second socket sends its Binding request and then nothing; the next
    // test checks that its lease ended meanwhile.
    const idle = await stunBinding(IDLE_PORT);
    expect(idle).toContain(`MappedAddress = ${routerWan}`);
    const leases = await leaseList();
    expect(leases).toContain(`port=${ACTIVE_PORT}`);
    expect(leases).toContain(`port=${IDLE_PORT}`);
    expect(routerMaps(await routerList(), IDLE_PORT)).toBe(true);

    // 55 s of traffic, 15 s more than the lease, in at most 40 rounds.
    const deadlineMs = Date.now() + 55_000;
    const replies: boolean[] = [];
    for (let round = 0; round < 40 && Date.now() < deadlineMs; round++) {
      const probe = await lab.probe('work', 'udp', lab.state.addresses.internetPeer, PEER_PORT, {
        localPort: ACTIVE_PORT,
      });
      replies.push(probe.reached);
      await sleep(1500);
    }
    expect(replies.filter((reached) => !reached)).toEqual([]);

    expect(await leaseList()).toContain(`port=${ACTIVE_PORT}`);
    expect(await hopRules()).toMatch(new RegExp(`udp \\. ${ACTIVE_PORT}\\b`));
    expect(routerMaps(await routerList(), ACTIVE_PORT)).toBe(true);
  }, 300_000);

  it('lets an idle socket lease expire everywhere', async () => {
    // The idle lease lasted 40 s from its grant, before the 55 s of traffic
    // above; the broker notices its end within 5 s, so this waits little.
    let gone = false;
    for (let attempt = 0; attempt < 15 && !gone; attempt++) {
      const rules = await hopRules();
      gone =
        !(await leaseList()).includes(`port=${IDLE_PORT}`) &&
        !new RegExp(`udp \\. ${IDLE_PORT}\\b`).test(rules) &&
        !routerMaps(await routerList(), IDLE_PORT);
      if (!gone) {
        await sleep(2000);
      }
    }
    expect(await leaseList()).not.toContain(`port=${IDLE_PORT}`);
    expect(await hopRules()).not.toMatch(new RegExp(`udp \\. ${IDLE_PORT}\\b`));
    expect(routerMaps(await routerList(), IDLE_PORT)).toBe(false);
  }, 120_000);
});
