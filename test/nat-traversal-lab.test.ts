import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lab/lab-exec.js';
import { LabSession } from '../lab/lab-session.js';
import type { PromptMessage } from '../lab/services/prompt-socket.js';

/**
 * NAT traversal end to end in the lab: unmodified upnpc and natpmpc in
 * `work` against the broker, real miniupnpd upstream, a real peer on the
 * internet. The dom0 prompt is answered by the test, in place of a person
 * at the Qubes dialog: every port is allowed except those in `denied`.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });
const HOPS = ['sys-net', 'sys-firewall', 'work'];

describe('NAT traversal in the lab', () => {
  let lab: LabSession;
  let work: string;
  let routerWan: string;
  const prompts: PromptMessage[] = [];
  const denied = new Set<string>();
  let stopAnswering: () => void = () => {};

  const upnpc = (vm: string, ...args: string[]) =>
    lab.exec(vm, ['upnpc', '-i', ...args], { timeoutMs: 60_000 });
  const natpmpc = (...args: string[]) =>
    lab.exec('work', ['natpmpc', '-g', '10.137.0.1', ...args], { timeoutMs: 60_000 });
  const routerList = async () =>
    (
      await upnpc(
        'sys-net',
        '-u',
        `http://${lab.state.addresses.routerLan}:5000/rootDesc.xml`,
        '-l',
      )
    ).stdout;
  const hopRules = async () => (await Promise.all(HOPS.map((vm) => lab.ruleset(vm)))).join('\n');

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'tnt', logger });
    work = lab.address('work');
    routerWan = lab.state.addresses.routerWan;
    stopAnswering = await lab.answerPrompts((prompt) => {
      prompts.push(prompt);
      return !denied.has(prompt.argument);
    });
    for (const port of [8080, 8082, 8083]) {
      await lab.startServer('work', 'tcp', port);
    }
    await lab.startServer('work', 'udp', 9000);
    await lab.startServer('work', 'udp', 9001);
  }, 120_000);

  afterAll(async () => {
    stopAnswering();
    await lab?.close();
  });

  it('gives a qube without NAT traversal no answer and no prompt', async () => {
    const discovery = await upnpc('work', '-s');
    expect(discovery.stdout).not.toContain('Found valid IGD');
    const natpmp = await lab.exec('work', ['natpmpc', '-g', '10.137.0.1'], { timeoutMs: 30_000 });
    expect(natpmp.exitCode).not.toBe(0);
    expect(prompts).toEqual([]);
    expect(await lab.ruleset('sys-firewall')).not.toContain('5351');
  });

  it('redirects only after nat-traversal is enabled', async () => {
    const result = await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal', '1']);
    expect(result.exitCode).toBe(0);
    for (
      let attempt = 0;
      attempt < 50 && !(await lab.ruleset('sys-firewall')).includes('5351');
      attempt++
    ) {
      await sleep(100);
    }
    expect(await lab.ruleset('sys-firewall')).toContain('5351');
  });

  it('maps TCP with upnpc after a prompt; the internet reaches work', async () => {
    const result = await upnpc('work', '-a', work, '8080', '8080', 'TCP');
    expect(result.stdout).toContain(
      `external ${routerWan}:8080 TCP is redirected to internal ${work}:8080`,
    );
    expect(
      prompts.map((prompt) => `${prompt.source} ${prompt.service}+${prompt.argument}`),
    ).toContain('sys-nat qubes.NatTraversal+work+tcp+8080');

    const probe = await lab.probe('inet', 'tcp', routerWan, 8080);
    expect(probe.reply).toMatch(/^work saw 203\.0\.113\.254:\d+: ping$/);
    expect(await routerList()).toMatch(/TCP\s+8080->192\.168\.77\.10:8080/);
  });

  it('maps UDP with natpmpc; the internet reaches work', async () => {
    const result = await natpmpc('-a', '9000', '9000', 'udp', '3600');
    expect(result.stdout).toMatch(
      /Mapped public port 9000 protocol UDP to local port 9000 (liftime|lifetime) \d+/,
    );
    expect(result.stdout).toContain(`Public IP address : ${routerWan}`);
    const probe = await lab.probe('inet', 'udp', routerWan, 9000);
    expect(probe.reply).toMatch(/^work saw 203\.0\.113\.254:\d+: ping$/);
  });

  it('renews without a second prompt', async () => {
    const before = prompts.length;
    const result = await natpmpc('-a', '9000', '9000', 'udp', '3600');
    expect(result.stdout).toContain('Mapped public port 9000');
    expect(prompts.length).toBe(before);
  });

  it('lists the lease in dom0 with its external address', async () => {
    const list = await lab.qvmForward('work');
    expect(list.stdout).toMatch(/tcp\s+8080\s+8080\s+-\s+in \d+[hm].*203\.0\.113\.1:8080\s+upnp:/);
  });

  it('denies with 606 and leaves nothing on any hop or the router', async () => {
    denied.add('work+tcp+8082');
    const result = await upnpc('work', '-a', work, '8082', '8082', 'TCP');
    expect(`${result.stdout}${result.stderr}`).toContain('606');
    expect(await hopRules()).not.toMatch(/tcp \. 8082\b/);
    expect(await routerList()).not.toContain('8082->');
    expect((await lab.probe('inet', 'tcp', routerWan, 8082)).reached).toBe(false);
  });

  it('refuses a mapping for another qube address', async () => {
    const personal = lab.address('personal');
    const result = await upnpc('work', '-a', personal, '8083', '8083', 'TCP');
    expect(`${result.stdout}${result.stderr}`).toMatch(/606|718|402/);
    expect(await routerList()).not.toContain('8083->');
    expect(prompts.some((prompt) => prompt.argument === 'work+tcp+8083')).toBe(false);
  });

  it('removes a mapping the client deletes, on the router and every hop', async () => {
    await upnpc('work', '-d', '8080', 'TCP');
    expect(await routerList()).not.toContain('8080->');
    expect(await hopRules()).not.toMatch(/tcp \. 8080\b/);
    expect((await lab.probe('inet', 'tcp', routerWan, 8080)).reached).toBe(false);
  });

  it('removes a lease revoked in dom0 from the router too', async () => {
    const list = await lab.qvmForward('--raw', 'work');
    expect(list.stdout).toContain('proto=udp port=9000');
    const removed = await lab.qvmForward('work', 'del', 'proto=udp', 'port=9000');
    expect(removed.exitCode).toBe(0);
    expect((await lab.probe('inet', 'udp', routerWan, 9000)).reached).toBe(false);

    // The broker compares its leases with dom0's every few seconds.
    let router = await routerList();
    for (let attempt = 0; attempt < 40 && router.includes('9000->'); attempt++) {
      await sleep(250);
      router = await routerList();
    }
    expect(router).not.toContain('9000->');
  });

  it('releases everything cleanly when the broker restarts', async () => {
    expect((await natpmpc('-a', '9001', '9001', 'udp', '3600')).stdout).toContain(
      'Mapped public port 9001',
    );
    expect(await routerList()).toContain('9001->');

    await lab.restartBroker();

    expect(await routerList()).not.toContain('9001->');
    expect(await hopRules()).not.toMatch(/udp \. 9001\b/);
    const again = await natpmpc('-a', '9001', '9001', 'udp', '3600');
    expect(again.stdout).toContain('Mapped public port 9001');
    expect((await lab.probe('inet', 'udp', routerWan, 9001)).reached).toBe(true);
  });

  it('expires a lease on every hop and on the router', async () => {
    await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal-max-lease', '3']);
    const result = await natpmpc('-a', '9001', '9001', 'udp', '3600');
    expect(result.stdout).toContain('Mapped public port 9001');

    await sleep(9000);
    expect(await hopRules()).not.toMatch(/udp \. 9001\b/);
    expect(await routerList()).not.toContain('9001->');
    expect((await lab.probe('inet', 'udp', routerWan, 9001)).reached).toBe(false);
  });

  it('drops the redirects and leases when nat-traversal is disabled', async () => {
    await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal-max-lease', '3600']);
    expect((await upnpc('work', '-a', work, '8080', '8080', 'TCP')).stdout).toContain(
      'is redirected',
    );
    await lab.exec('dom0', ['qvm-features', '--unset', 'work', 'nat-traversal']);

    // The dom0 service reacts to the feature event; give it a few seconds.
    let rules = await hopRules();
    for (let attempt = 0; attempt < 50 && /5351|tcp \. 8080\b/.test(rules); attempt++) {
      await sleep(100);
      rules = await hopRules();
    }
    expect(rules).not.toContain('5351');
    expect(rules).not.toMatch(/tcp \. 8080\b/);
  });
});
