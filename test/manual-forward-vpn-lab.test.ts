import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabSession } from '../lab/lab-session.js';

/**
 * A longer chain: work → sys-vpn → sys-firewall → sys-net. The forward must
 * get a DNAT on every netvm, sys-vpn included, and keep the peer address.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });

describe('manual forward through a proxy qube', () => {
  let lab: LabSession;

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'tmv', withVpn: true, logger });
    await lab.startServer('work', 'tcp', 443);
    await lab.startServer('work', 'udp', 5000);
  }, 120_000);

  afterAll(async () => {
    await lab?.close();
  });

  it('forwards TCP and UDP through four hops', async () => {
    const sysNetLan = lab.state.addresses.sysNetLan;
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', 'port=8443', 'to-port=443');
    await lab.qvmForwardOk('work', 'add', 'proto=udp', 'port=5000');

    const tcp = await lab.probe('lanpeer', 'tcp', sysNetLan, 8443);
    expect(tcp.reply).toMatch(/^work saw 192\.168\.77\.50:\d+: ping$/);
    const udp = await lab.probe('lanpeer', 'udp', sysNetLan, 5000);
    expect(udp.reply).toMatch(/^work saw 192\.168\.77\.50:\d+: ping$/);
  });

  it('puts a DNAT on sys-vpn towards work', async () => {
    const ruleset = await lab.ruleset('sys-vpn');
    expect(ruleset).toContain(`tcp . 8443 : ${lab.address('work')} . 443`);
    const firewall = await lab.ruleset('sys-firewall');
    expect(firewall).toContain(`tcp . 8443 : ${lab.address('sys-vpn')} . 8443`);
  });

  it('removes the forward from all four hops', async () => {
    await lab.qvmForwardOk('work', 'reset');
    for (const vm of ['sys-net', 'sys-firewall', 'sys-vpn', 'work']) {
      expect(await lab.ruleset(vm)).not.toMatch(/tcp \. (8443|443)\b/);
    }
    const tcp = await lab.probe('lanpeer', 'tcp', lab.state.addresses.sysNetLan, 8443);
    expect(tcp.reached).toBe(false);
  });
});
