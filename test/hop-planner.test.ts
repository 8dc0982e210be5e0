import { describe, expect, it } from 'vitest';
import type { ForwardRule } from '../policy/forwards/forward-rule.js';
import { planAgentStates, vmsOfForward } from '../policy/network/hop-planner.js';
import { mergeInputAccepts } from '../policy/network/input-accept-merge.js';
import { InventorySnapshot, type QubeInfo } from '../policy/network/qube-inventory.js';
import { agentStateSchema } from '../rpc/agent-state.js';

function qube(
  name: string,
  ip: string | null,
  netvm: string | null,
  providesNetwork = false,
): QubeInfo {
  return { name, klass: 'AppVM', running: true, ip, netvm, providesNetwork };
}

function inventory(withVpn: boolean): InventorySnapshot {
  const qubes = [
    qube('sys-net', '10.137.0.5', null, true),
    qube('sys-firewall', '10.138.0.2', 'sys-net', true),
    qube('sys-vpn', '10.137.0.40', 'sys-firewall', true),
    qube('work', '10.137.0.20', withVpn ? 'sys-vpn' : 'sys-firewall'),
    qube('personal', '10.137.0.21', 'sys-firewall'),
    qube('offline', '10.137.0.22', null),
  ];
  return new InventorySnapshot(new Map(qubes.map((info) => [info.name, info])));
}

const NOW = 1_764_870_000;

function forward(overrides: Partial<ForwardRule> = {}): ForwardRule {
  return {
    id: 'f-000000000001',
    qube: 'work',
    protocol: 'tcp',
    ports: { first: 8443, last: 8443 },
    targetPorts: { first: 443, last: 443 },
    sourceCidr: '0.0.0.0/0',
    expiresAtUnixSeconds: NOW + 3600,
    comment: 'web',
    createdAtUnixSeconds: NOW,
    ...overrides,
  };
}

describe('planAgentStates', () => {
  it('plans DNAT on every netvm and an accept in the qube', () => {
    const states = planAgentStates([forward()], inventory(false), {
      nowUnixSeconds: NOW,
      issuedAtUnixMs: NOW * 1000,
      vms: [],
    });

    expect([...states.keys()].sort()).toEqual(['sys-firewall', 'sys-net', 'work']);
    expect(states.get('sys-net')?.dnat).toEqual([
      expect.objectContaining({
        ports: { first: 8443, last: 8443 },
        targetAddress: '10.138.0.2',
        targetPorts: { first: 8443, last: 8443 },
      }),
    ]);
    expect(states.get('sys-firewall')?.dnat).toEqual([
      expect.objectContaining({
        ports: { first: 8443, last: 8443 },
        targetAddress: '10.137.0.20',
        targetPorts: { first: 443, last: 443 },
      }),
    ]);
    expect(states.get('work')?.inputAccept).toEqual([
      expect.objectContaining({ ports: { first: 443, last: 443 }, sourceCidr: '0.0.0.0/0' }),
    ]);
    for (const state of states.values()) {
      expect(agentStateSchema.safeParse(state).success).toBe(true);
    }
  });

  it('follows a longer chain through a proxy qube', () => {
    const states = planAgentStates([forward()], inventory(true), {
      nowUnixSeconds: NOW,
      issuedAtUnixMs: NOW * 1000,
      vms: [],
    });

    expect(states.get('sys-firewall')?.dnat[0]?.targetAddress).toBe('10.137.0.40');
    expect(states.get('sys-vpn')?.dnat[0]?.targetAddress).toBe('10.137.0.20');
    expect(states.get('sys-vpn')?.dnat[0]?.targetPorts).toEqual({ first: 443, last: 443 });
    expect(vmsOfForward(forward(), inventory(true))).toEqual([
      'work',
      'sys-vpn',
      'sys-firewall',
      'sys-net',
    ]);
  });

  it('skips expired forwards but still plans the requested VMs', () => {
    const states = planAgentStates([forward({ expiresAtUnixSeconds: NOW })], inventory(false), {
      nowUnixSeconds: NOW,
      issuedAtUnixMs: 1,
      vms: ['sys-net'],
    });
    expect([...states.keys()]).toEqual(['sys-net']);
    expect(states.get('sys-net')?.dnat).toEqual([]);
  });

  it('keeps the source restriction on every hop', () => {
    const states = planAgentStates([forward({ sourceCidr: '192.168.77.0/24' })], inventory(false), {
      nowUnixSeconds: NOW,
      issuedAtUnixMs: 1,
      vms: [],
    });
    expect(states.get('sys-net')?.dnat[0]?.sourceCidr).toBe('192.168.77.0/24');
    expect(states.get('sys-firewall')?.dnat[0]?.sourceCidr).toBe('192.168.77.0/24');
    expect(states.get('work')?.inputAccept[0]?.sourceCidr).toBe('192.168.77.0/24');
  });

  it('rejects a qube without netvm', () => {
    expect(() =>
      planAgentStates([forward({ qube: 'offline' })], inventory(false), {
        nowUnixSeconds: NOW,
        issuedAtUnixMs: 1,
        vms: [],
      }),
    ).toThrow('has no netvm');
  });

  it('detects a netvm loop', () => {
    const looped = new InventorySnapshot(
      new Map([
        ['a', qube('a', '10.0.0.1', 'b', true)],
        ['b', qube('b', '10.0.0.2', 'a', true)],
      ]),
    );
    expect(() => looped.networkChain('a')).toThrow('loops');
  });
});

describe('mergeInputAccepts', () => {
  const accept = (
    forwardId: string,
    sourceCidr: string,
    first: number,
    last: number,
    expires: number | null,
  ) => ({
    forwardId,
    protocol: 'tcp' as const,
    sourceCidr,
    ports: { first, last },
    expiresAtUnixSeconds: expires,
  });

  it('merges two forwards to one qube port', () => {
    const states = planAgentStates(
      [
        forward(),
        forward({
          id: 'f-000000000002',
          ports: { first: 9443, last: 9443 },
          expiresAtUnixSeconds: null,
        }),
      ],
      inventory(false),
      { nowUnixSeconds: NOW, issuedAtUnixMs: 1, vms: [] },
    );
    expect(states.get('work')?.inputAccept).toEqual([
      accept('f-000000000001', '0.0.0.0/0', 443, 443, null),
    ]);
    expect(states.get('sys-firewall')?.dnat).toHaveLength(2);
  });

  it('keeps disjoint sources and ports apart', () => {
    const entries = [
      accept('f-a', '192.168.77.0/24', 443, 443, 10),
      accept('f-b', '10.0.0.0/8', 443, 443, 10),
      accept('f-c', '0.0.0.0/0', 444, 444, 10),
    ];
    expect(mergeInputAccepts(entries)).toEqual(entries);
  });

  it('takes the broader prefix, the port union and the later expiry', () => {
    expect(
      mergeInputAccepts([
        accept('f-b', '192.168.77.0/24', 440, 445, 20),
        accept('f-a', '192.168.0.0/16', 443, 450, 30),
      ]),
    ).toEqual([accept('f-a', '192.168.0.0/16', 440, 450, 30)]);
  });
});
