import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lab/lab-exec.js';
import { LabSession } from '../lab/lab-session.js';
import { runWebrtcCall } from '../lab/scenarios/webrtc-call.js';
import { distRoot } from '../lab/services/lab-service-table.js';

/**
 * STUN through the broker behind a symmetric home router, in the lab: the
 * NAT behaviour `work` sees with the Debian stun client (RFC 3489) and
 * coturn's turnutils_natdiscovery (RFC 5780, against the lab's two-address
 * coturn), with and without the broker; werift against the broker; and a
 * denied qube. The dom0 prompt is answered by the test (deny), in place of
 * a person; allowed requests pass by the policy line qvm-nat-traversal writes.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });
/** Debian's stun-client; npm's stun package puts a server named stun on PATH. */
const STUN_CLIENT = '/usr/bin/stun';

describe('peer-to-peer STUN through the broker', () => {
  let lab: LabSession;
  let stunPrimary: string;
  let routerWan: string;
  const prompts: string[] = [];
  let stopAnswering: () => void = () => {};

  const waitForStunRedirect = async (qube: string) => {
    const key = `${lab.address(qube)} . 3478`;
    for (let attempt = 0; attempt < 100; attempt++) {
      if ((await lab.ruleset('sys-firewall')).includes(key)) {
        return;
      }
      await sleep(100);
    }
    throw new Error(`no STUN redirect of ${qube} in sys-firewall`);
  };

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'hp4', routerNat: 'symmetric', logger });
    stunPrimary = lab.state.addresses.stunPrimary;
    routerWan = lab.state.addresses.routerWan;
    stopAnswering = await lab.answerPrompts((prompt) => {
      prompts.push(prompt.argument);
      return false;
    });
  }, 120_000);

  afterAll(async () => {
    stopAnswering();
    await lab?.close();
  });

  it('without the broker, the stun client sees the symmetric router', async () => {
    const result = await lab.exec('work', [STUN_CLIENT, stunPrimary], { timeoutMs: 60_000 });
    expect(result.stdout).toContain('Primary: Dependent Mapping');
  });

  it('without the broker, RFC 5780 finds address and port dependent mapping and filtering', async () => {
    const mapping = await lab.exec('work', ['turnutils_natdiscovery', '-m', stunPrimary], {
      timeoutMs: 60_000,
    });
    expect(`${mapping.stdout}${mapping.stderr}`).toContain(
      'NAT with Address and Port Dependent Mapping',
    );
    const filtering = await lab.exec('work', ['turnutils_natdiscovery', '-f', stunPrimary], {
      timeoutMs: 60_000,
    });
    expect(`${filtering.stdout}${filtering.stderr}`).toContain(
      'NAT with Address and Port Dependent Filtering',
    );
  });

  it('enables NAT traversal and allows work STUN mappings with one policy line', async () => {
    expect((await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal', '1'])).exitCode).toBe(
      0,
    );
    const allow = await lab.exec('dom0', ['qvm-nat-traversal', 'work', 'p2p', 'allow']);
    expect(allow.exitCode).toBe(0);
    expect(allow.stderr).toContain('qubes.NatTraversal  +work+udp+stun  sys-nat  @adminvm  allow');
    await waitForStunRedirect('work');
  });

  it('with the broker, RFC 5780 mapping discovery sees one mapping for every server', async () => {
    // The broker learns the newly enabled qube from dom0 within a few seconds
    // and ignores its datagrams until then, so the first attempts may time out.
    let reflexive: string[] = [];
    for (let attempt = 0; attempt < 5 && reflexive.length < 2; attempt++) {
      const mapping = await lab.exec('work', ['turnutils_natdiscovery', '-m', stunPrimary], {
        timeoutMs: 60_000,
      });
      reflexive = [
        ...`${mapping.stdout}${mapping.stderr}`.matchAll(/UDP reflexive addr: (\S+)/g),
      ].map((match) => match[1] ?? '');
    }
    expect(reflexive.length).toBeGreaterThanOrEqual(2);
    expect(new Set(reflexive).size).toBe(1);
    expect(reflexive[0]).toMatch(/^203\.0\.113\.1:\d+$/);
    expect(prompts).toEqual([]);
  });

  it('filtering is endpoint-independent with broker', async () => {
    const port = 40_000;
    const binding = await lab.exec(
      'work',
      [STUN_CLIENT, stunPrimary, '1', '-v', '-p', String(port)],
      {
        timeoutMs: 60_000,
      },
    );
    const mapped = /MappedAddress = (\S+):(\d+)/.exec(`${binding.stdout}${binding.stderr}`);
    expect(mapped?.[1]).toBe(routerWan);
    await lab.startServer('work', 'udp', port);
    const probe = await lab.probe('inet', 'udp', routerWan, Number(mapped?.[2]));
    expect(probe.reply).toMatch(/^work saw 203\.0\.113\.254:\d+: ping$/);
    const fromRemoteHome = await lab.probe('rpeer', 'udp', routerWan, Number(mapped?.[2]));
    expect(fromRemoteHome.reply).toMatch(/^work saw 192\.0\.2\.1:\d+: ping$/);
  });

  it('werift connects to rpeer through broker', async () => {
    const call = await runWebrtcCall(lab, {
      offerVm: 'work',
      answerVm: 'rpeer',
      stun: `${stunPrimary}:3478`,
      timeoutMs: 15_000,
    });
    expect(call.offerCandidates.some((candidate) => candidate.startsWith(`${routerWan} `))).toBe(
      true,
    );
    expect(call.connected).toBe(true);
    expect(call.echo).toBe('echo: hello from work');
  }, 60_000);

  it('denied: personal gets a 403 error response and nothing is installed', async () => {
    await lab.exec('dom0', ['qvm-features', 'personal', 'nat-traversal', '1']);
    const deny = await lab.exec('dom0', ['qvm-nat-traversal', 'personal', 'p2p', 'deny']);
    expect(deny.exitCode).toBe(0);
    await waitForStunRedirect('personal');

    const client = join(distRoot(), 'test', 'stun-npm-client.js');
    const result = await lab.exec('personal', [process.execPath, client, `${stunPrimary}:3478`], {
      timeoutMs: 30_000,
    });
    // stun 2.1.0 decodes ERROR-CODE as class * (number + 100): 403 reads as 412.
    expect(JSON.parse(result.stdout.trim())).toMatchObject({
      ok: false,
      error: { code: 4 * (3 + 100), reason: 'Forbidden' },
    });
    expect(prompts).toEqual([]);
    const list = await lab.qvmForward('--raw', 'personal');
    expect(list.stdout).not.toContain('proto=udp');
    for (const vm of ['sys-net', 'sys-firewall']) {
      expect(await lab.ruleset(vm)).not.toMatch(/10\.137\.0\.21 \. \d+ timeout/);
    }
  });
});
