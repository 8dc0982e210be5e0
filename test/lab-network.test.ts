import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLab, teardownLab } from '../lab/lab-builder.js';
import { processAlive } from '../lab/lab-daemons.js';
import { runCommand } from '../lab/lab-exec.js';
import { type LabState, labRunDir, labStateFile, readLabState } from '../lab/lab-state.js';
import { startLabDaemon } from '../lab/lab-state-file.js';
import { inVm, startEchoPeerServers, udpRequest, waitForListener } from './lab-helpers.js';

/**
 * Two labs side by side: hl1 with a proxy qube (work → sys-vpn →
 * sys-firewall → sys-net → router, cone NAT) and hl2 without one (work →
 * sys-firewall → sys-net → router, symmetric NAT). Real nftables, miniupnpd,
 * coturn, socat and the Debian clients; no mocks.
 */

const TCP_PORT = 7000;
const UDP_PORTS = [7001, 7002];
const labs: Record<'hl1' | 'hl2', LabState> = {} as Record<'hl1' | 'hl2', LabState>;

beforeAll(async () => {
  await teardownLab('hl1');
  await teardownLab('hl2');

  let startMs = Date.now();
  labs.hl1 = await buildLab({ prefix: 'hl1', withVpn: true, routerNat: 'cone' });
  console.log(`lab hl1 (with sys-vpn) built in ${Date.now() - startMs} ms`);
  startMs = Date.now();
  labs.hl2 = await buildLab({ prefix: 'hl2', withVpn: false, routerNat: 'symmetric' });
  console.log(`lab hl2 built in ${Date.now() - startMs} ms`);

  await startEchoPeerServers(labs.hl1, TCP_PORT, UDP_PORTS);
  await startEchoPeerServers(labs.hl2, TCP_PORT, UDP_PORTS);
}, 60_000);

afterAll(async () => {
  const startMs = Date.now();
  await teardownLab('hl1');
  await teardownLab('hl2');
  console.log(`labs hl1 and hl2 torn down in ${Date.now() - startMs} ms`);
}, 60_000);

describe('lab topology', () => {
  it('writes a complete state file', () => {
    const state = readLabState('hl1');
    expect(state.vms['sys-vpn']?.netvm).toBe('sys-firewall');
    expect(state.vms.work?.netvm).toBe('sys-vpn');
    expect(readLabState('hl2').vms.work?.netvm).toBe('sys-firewall');
    expect(state.dom0.qubesdSocket).toBe(`${labRunDir('hl1')}/vm/dom0/qubesd.sock`);
    expect(existsSync(state.vms.work?.stateDir ?? '')).toBe(true);
    expect(existsSync(state.dom0.policyDir)).toBe(true);
  });

  it('refuses to build over an existing lab', async () => {
    await expect(buildLab({ prefix: 'hl1', withVpn: false, routerNat: 'cone' })).rejects.toThrow(
      /npm run lab -- down --prefix hl1/,
    );
  });

  it('loads stock Qubes tables in netvms and qubes', async () => {
    for (const vm of ['sys-net', 'sys-firewall', 'sys-vpn']) {
      const tables = await inVm(labs.hl1, vm, ['nft', 'list', 'tables']);
      expect(tables.stdout, vm).toContain('table ip qubes\n');
      expect(tables.stdout, vm).toContain('table ip qubes-firewall');
      const chains = await inVm(labs.hl1, vm, ['nft', 'list', 'table', 'ip', 'qubes']);
      for (const chain of [
        'custom-input',
        'custom-forward',
        'dnat-dns',
        'antispoof',
        'postrouting',
      ]) {
        expect(chains.stdout, `${vm} ${chain}`).toContain(`chain ${chain} {`);
      }
    }
    const firewall = await inVm(labs.hl1, 'sys-firewall', [
      'nft',
      'list',
      'table',
      'ip',
      'qubes-firewall',
    ]);
    expect(firewall.stdout).toContain('chain qbs-10-137-0-40');
    expect(firewall.stdout).toContain('chain qbs-10-137-0-30');

    for (const vm of ['work', 'personal', 'sys-nat']) {
      const tables = await inVm(labs.hl1, vm, ['nft', 'list', 'tables']);
      expect(tables.stdout.trim(), vm).toBe('table ip qubes');
    }
  });

  it('uses Qubes interface groups and /32 addresses', async () => {
    const vif = await inVm(labs.hl2, 'sys-firewall', ['ip', '-d', 'link', 'show', 'vif4.0']);
    expect(vif.stdout).toContain('group 2');
    const uplink = await inVm(labs.hl2, 'work', ['ip', '-d', 'link', 'show', 'eth0']);
    expect(uplink.stdout).toContain('group 1');
    const address = await inVm(labs.hl2, 'work', ['ip', '-4', '-br', 'addr', 'show', 'eth0']);
    expect(address.stdout).toContain('10.137.0.20/32');
  });

  it('enables forwarding only in forwarding namespaces', async () => {
    const forwarding = await inVm(labs.hl2, 'sys-firewall', [
      'sysctl',
      '-n',
      'net.ipv4.ip_forward',
    ]);
    expect(forwarding.stdout.trim()).toBe('1');
    const qube = await inVm(labs.hl2, 'work', ['sysctl', '-n', 'net.ipv4.ip_forward']);
    expect(qube.stdout.trim()).toBe('0');
  });
});

describe('lab connectivity', () => {
  it('reaches the internet peer over TCP through the NAT chain', async () => {
    for (const prefix of ['hl1', 'hl2'] as const) {
      const state = labs[prefix];
      const result = await inVm(state, 'work', [
        'socat',
        '-T3',
        '-',
        `TCP:${state.addresses.internetPeer}:${TCP_PORT}`,
      ]);
      expect(result.stdout.trim().split(':')[0], prefix).toBe(state.addresses.routerWan);
    }
  });

  it('reaches the internet peer over UDP through the NAT chain', async () => {
    for (const prefix of ['hl1', 'hl2'] as const) {
      const state = labs[prefix];
      const reply = await udpRequest(
        state,
        'work',
        state.addresses.internetPeer,
        UDP_PORTS[0] as number,
      );
      expect(reply.split(':')[0], prefix).toBe(state.addresses.routerWan);
    }
  });

  it('keeps the mapped port per destination in cone mode', async () => {
    const state = labs.hl1;
    const first = await udpRequest(state, 'personal', state.addresses.internetPeer, 7001, 41001);
    const second = await udpRequest(state, 'personal', state.addresses.internetPeer, 7002, 41001);
    expect(first).toBe(`${state.addresses.routerWan}:41001`);
    expect(second).toBe(`${state.addresses.routerWan}:41001`);
  });

  it('changes the mapped port per destination in symmetric mode', async () => {
    const state = labs.hl2;
    const first = await udpRequest(state, 'personal', state.addresses.internetPeer, 7001, 41001);
    const second = await udpRequest(state, 'personal', state.addresses.internetPeer, 7002, 41001);
    expect(first.split(':')[0]).toBe(state.addresses.routerWan);
    expect(second.split(':')[0]).toBe(state.addresses.routerWan);
    expect(first).not.toBe(second);
  });

  it('blocks unsolicited connections from the LAN to a qube', async () => {
    const state = labs.hl2;
    await startLabDaemon(state, {
      name: 'tcp-listener',
      vm: 'work',
      command: ['socat', 'TCP-LISTEN:7100,reuseaddr,fork', 'SYSTEM:echo reached'],
    });
    await waitForListener(state, 'work', 'tcp', 7100);

    // A LAN host that knows the route to the qubes still gets nothing through sys-net.
    await inVm(state, 'lanpeer', [
      'ip',
      'route',
      'add',
      '10.137.0.0/16',
      'via',
      state.addresses.sysNetLan,
    ]);
    const direct = await inVm(state, 'lanpeer', [
      'socat',
      '-T2',
      '-',
      'TCP:10.137.0.20:7100,connect-timeout=2',
    ]);
    expect(direct.stdout).not.toContain('reached');
    expect(direct.exitCode).not.toBe(0);
    const toSysNet = await inVm(state, 'lanpeer', [
      'socat',
      '-T2',
      '-',
      `TCP:${state.addresses.sysNetLan}:7100,connect-timeout=2`,
    ]);
    expect(toSysNet.exitCode).not.toBe(0);
  });

  it('lets sys-net see the router IGD with upnpc', async () => {
    const state = labs.hl1;
    const url = `http://${state.addresses.routerLan}:5000/rootDesc.xml`;
    const status = await inVm(state, 'sys-net', ['upnpc', '-i', '-u', url, '-s']);
    expect(status.stdout).toContain(`ExternalIPAddress = ${state.addresses.routerWan}`);

    const discovery = await inVm(state, 'lanpeer', ['upnpc', '-i', '-s']);
    expect(discovery.stdout).toContain(`desc: ${url}`);
  });

  it('lets sys-net use NAT-PMP on the router', async () => {
    for (const prefix of ['hl1', 'hl2'] as const) {
      const state = labs[prefix];
      const result = await inVm(state, 'sys-net', ['natpmpc', '-g', state.addresses.routerLan]);
      expect(result.stdout, prefix).toContain(`Public IP address : ${state.addresses.routerWan}`);
    }
  });

  it('answers STUN from a qube through coturn', async () => {
    const cone = await inVm(labs.hl1, 'work', [
      '/usr/bin/stun',
      labs.hl1.addresses.stunPrimary,
      '-v',
    ]);
    expect(cone.stdout + cone.stderr).toContain(`MappedAddress = ${labs.hl1.addresses.routerWan}`);
    expect(cone.stdout).toContain('Independent Mapping');

    const symmetric = await inVm(labs.hl2, 'work', [
      '/usr/bin/stun',
      labs.hl2.addresses.stunPrimary,
      '-v',
    ]);
    expect(symmetric.stdout + symmetric.stderr).toContain(
      `MappedAddress = ${labs.hl2.addresses.routerWan}`,
    );
    expect(symmetric.stdout).not.toContain('Independent Mapping');
  });
});

describe('lab teardown', () => {
  it('leaves no namespace, process or file', async () => {
    const state = readLabState('hl2');
    const pids = state.processes.map((entry) => entry.pid);
    expect(pids.length).toBeGreaterThan(2);

    const startMs = Date.now();
    await teardownLab('hl2');
    console.log(`lab hl2 torn down in ${Date.now() - startMs} ms`);

    const namespaces = await runCommand(['ip', 'netns', 'list']);
    expect(namespaces.stdout).not.toMatch(/^hl2-/m);
    expect(namespaces.stdout).toMatch(/^hl1-work/m);
    for (const pid of pids) expect(processAlive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(labStateFile('hl2'))).toBe(false);
    expect(existsSync(labRunDir('hl2'))).toBe(false);
    expect(existsSync('/etc/netns/hl2-work')).toBe(false);

    await teardownLab('hl2');
  });
});
