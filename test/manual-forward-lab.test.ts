import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInNamespace, sleep } from '../lab/lab-exec.js';
import { LabSession } from '../lab/lab-session.js';

/**
 * The manual forward path in a full lab: real nftables on every hop next to
 * the stock Qubes tables, real packets from a LAN peer, dom0 driven through
 * its command line only.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });
const HOPS = ['sys-net', 'sys-firewall', 'work'];

describe('manual forward in the lab', () => {
  let lab: LabSession;
  let sysNetLan: string;
  let lanPeer: string;

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'tmf', logger });
    sysNetLan = lab.state.addresses.sysNetLan;
    lanPeer = lab.state.addresses.lanPeer;
    await lab.startServer('work', 'tcp', 8080);
    await lab.startServer('work', 'udp', 9000);
    await lab.startServer('work', 'tcp', 2222);
    await lab.startServer('personal', 'tcp', 8081);
  }, 120_000);

  afterAll(async () => {
    await lab?.close();
  });

  async function storeText(): Promise<string> {
    return readFile(join(lab.state.dom0.stateDir, 'forwards.json'), 'utf8').catch(() => '');
  }

  async function rulesets(): Promise<string[]> {
    return Promise.all(HOPS.map((vm) => lab.ruleset(vm)));
  }

  it('forwards TCP and UDP and keeps the peer address', async () => {
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=8080');
    await lab.qvmForwardOk('work', 'add', 'proto=udp', 'port=9000');

    const tcp = await lab.probe('lanpeer', 'tcp', sysNetLan, 8080);
    expect(tcp.reply).toMatch(new RegExp(`^work saw ${lanPeer}:\\d+: ping$`));
    const udp = await lab.probe('lanpeer', 'udp', sysNetLan, 9000);
    expect(udp.reply).toMatch(new RegExp(`^work saw ${lanPeer}:\\d+: ping$`));
  });

  it('remaps a port with to-port', async () => {
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=2200', 'to-port=2222');
    const probe = await lab.probe('lanpeer', 'tcp', sysNetLan, 2200);
    expect(probe.reply).toContain('work saw');
    const direct = await lab.probe('lanpeer', 'tcp', sysNetLan, 2222);
    expect(direct.reached).toBe(false);
  });

  it('forwards two external ports to one port in the qube', async () => {
    await lab.startServer('work', 'tcp', 5443);
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=5001', 'to-port=5443');
    await lab.qvmForwardOk(
      'work',
      'add',
      'proto=tcp',
      'port=5002',
      'to-port=5443',
      'src=192.168.77.0/24',
    );
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 5001)).reply).toContain('work saw');
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 5002)).reply).toContain('work saw');

    await lab.qvmForwardOk('work', 'del', 'proto=tcp', 'port=5001', 'to-port=5443');
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 5001)).reached).toBe(false);
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 5002)).reached).toBe(true);
    await lab.qvmForwardOk(
      'work',
      'del',
      'proto=tcp',
      'port=5002',
      'to-port=5443',
      'src=192.168.77.0/24',
    );
  });

  it('restricts sources with src', async () => {
    await lab.startServer('work', 'tcp', 7000);
    await lab.startServer('work', 'tcp', 7001);
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=7000', 'src=192.168.77.99');
    expect(
      (await lab.qvmForward('work', 'add', 'proto=tcp', 'port=7001', 'src=192.168.77.0/24'))
        .exitCode,
    ).toBe(0);

    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 7000)).reached).toBe(false);
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 7001)).reached).toBe(true);
  });

  it('never delivers to personal', async () => {
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8081)).reached).toBe(false);
    expect((await lab.probe('lanpeer', 'tcp', lab.address('personal'), 8081)).reached).toBe(false);
    expect(await lab.ruleset('personal')).not.toContain('qubes-nat-broker');
  });

  it('lists forwards like qvm-firewall, and raw', async () => {
    const table = await lab.qvmForward('work');
    expect(table.stdout.split('\n')[0]).toMatch(
      /^NO\s+PROTO\s+PORT\(S\)\s+TO-PORT\s+SOURCE\s+EXPIRE\s+EXTERNAL\s+COMMENT$/,
    );
    const raw = await lab.qvmForward('--raw', 'work');
    expect(raw.stdout.split('\n')).toContain('proto=tcp port=2200 to-port=2222');
    expect(raw.stdout.split('\n')).toContain('proto=tcp port=7000 src=192.168.77.99/32');
  });

  it.each([
    [['proto=tcp', 'port=70000'], 'port=70000'],
    [['proto=tcp', 'port=8080'], 'already forwarded to work'],
    [['proto=icmp', 'port=1'], 'proto=icmp'],
    [['proto=tcp', 'port=1', 'expire=+0'], 'expire=+0'],
    [['proto=tcp', 'port=1', 'src=10.0.0.1/8'], 'src=10.0.0.1/8'],
    [['proto=tcp', 'port=1-5', 'to-port=6-10'], 'keeps its port numbers'],
    [['port=1', 'action=forward'], 'unknown key "action"'],
  ])('rejects add %j and changes nothing', async (words, fragment) => {
    const storeBefore = await storeText();
    const rulesBefore = await rulesets();

    const result = await lab.qvmForward('work', 'add', ...words);

    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(fragment);
    expect(await storeText()).toBe(storeBefore);
    expect(await rulesets()).toEqual(rulesBefore);
  });

  it.each([
    [['nosuchqube', 'add', 'proto=tcp', 'port=1'], 'no qube named "nosuchqube"'],
    [['sys-net', 'add', 'proto=tcp', 'port=1'], 'has no netvm'],
    [['work', 'del', '99'], 'has no forward number 99'],
    [['work', 'frobnicate'], 'unknown action'],
    [['work', 'del', 'proto=tcp', 'port=4444'], 'no forward of work matches'],
  ])('rejects %j and changes nothing', async (args, fragment) => {
    const storeBefore = await storeText();
    const result = await lab.qvmForward(...args);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(fragment);
    expect(await storeText()).toBe(storeBefore);
  });

  it('maps the port on the home router with upstream=yes', async () => {
    await lab.startServer('work', 'tcp', 4443);
    const added = await lab.qvmForwardOk(
      'work',
      'add',
      'proto=tcp',
      'port=4444',
      'to-port=4443',
      'upstream=yes',
    );
    expect(added.stdout).toContain('router: 203.0.113.1:4444 -> sys-net port 4444');

    const probe = await lab.probe('inet', 'tcp', lab.state.addresses.routerWan, 4444);
    expect(probe.reply).toMatch(/^work saw 203\.0\.113\.254:\d+: ping$/);
    expect((await lab.qvmForward('work')).stdout).toMatch(
      /tcp\s+4444\s+4443\s+-\s+-\s+203\.0\.113\.1:4444/,
    );

    await lab.qvmForwardOk('work', 'del', 'proto=tcp', 'port=4444', 'to-port=4443');
    const routerList = await lab.exec('sys-net', [
      'upnpc',
      '-i',
      '-u',
      `http://${lab.state.addresses.routerLan}:5000/rootDesc.xml`,
      '-l',
    ]);
    expect(routerList.stdout).not.toContain('4444->');
    expect((await lab.probe('inet', 'tcp', lab.state.addresses.routerWan, 4444)).reached).toBe(
      false,
    );
  });

  it('cuts an established UDP flow on del', async () => {
    const flow = { localPort: 40000 };
    expect((await lab.probe('lanpeer', 'udp', sysNetLan, 9000, flow)).reached).toBe(true);

    const removed = await lab.qvmForward('work', 'del', 'proto=udp', 'port=9000');
    expect(removed.exitCode).toBe(0);

    expect((await lab.probe('lanpeer', 'udp', sysNetLan, 9000, flow)).reached).toBe(false);
    for (const ruleset of await rulesets()) {
      expect(ruleset).not.toMatch(/udp \. 9000\b/);
    }
  });

  it('restores rules when the agent restarts with its table gone', async () => {
    await runInNamespace(lab.state.vms['sys-net']?.namespace ?? '', [
      'nft',
      'delete',
      'table',
      'ip',
      'qubes-nat-broker',
    ]);
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8080)).reached).toBe(false);

    const restore = await lab.exec('sys-net', [process.execPath, 'dist/agent-hooks/restore.js']);
    expect(restore.exitCode).toBe(0);
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8080)).reached).toBe(true);
  });

  it('restores rules when a netvm restarts', async () => {
    await lab.restartVm('sys-firewall');
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8080)).reached).toBe(true);
  });

  it('reload pushes the same state again', async () => {
    const before = await rulesets();
    const result = await lab.qvmForward('--reload');
    expect(result.exitCode).toBe(0);
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8080)).reached).toBe(true);
    expect((await rulesets()).map(withoutTimers)).toEqual(before.map(withoutTimers));
  });

  it('expires a forward on every hop with every daemon dead', async () => {
    await lab.startServer('work', 'tcp', 6000);
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=6000', 'expire=+3');
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 6000)).reached).toBe(true);

    for (const process of lab.state.processes.filter((entry) => entry.vm === 'dom0')) {
      try {
        globalThis.process.kill(process.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(4000);

    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 6000)).reached).toBe(false);
    for (const ruleset of await rulesets()) {
      expect(ruleset).not.toMatch(/tcp \. 6000\b/);
    }
    expect((await lab.probe('lanpeer', 'tcp', sysNetLan, 8080)).reached).toBe(true);
  });
});

/** Drops the `expires ...` countdowns that nft prints, which differ between two listings. */
function withoutTimers(ruleset: string): string {
  return ruleset.replace(/ expires [0-9hms]+/g, '');
}
