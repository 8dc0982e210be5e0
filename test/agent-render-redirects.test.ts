import { describe, expect, it } from 'vitest';
import { findRemovedEntries } from '../agent-hooks/conntrack-cleaner.js';
import {
  parseStockTableListing,
  planCustomChainEdits,
  type StockTableListing,
} from '../agent-hooks/custom-chain-rule.js';
import {
  conntrackFiltersOf,
  findRemovedRedirectFlows,
  listRedirectFlows,
} from '../agent-hooks/redirect-flows.js';
import { renderRedirects } from '../agent-hooks/render-redirects.js';
import { renderRuleset } from '../agent-hooks/render-ruleset.js';
import {
  renderCustomChainRule,
  SSDP_UNTRACKED_ACCEPT_RULE,
} from '../agent-hooks/stock-chain-rules.js';
import { type AgentState, emptyAgentState, type NatTraversalRedirect } from '../rpc/agent-state.js';

const NOW_MS = 1_700_000_000_000;

const WORK: NatTraversalRedirect = {
  clientAddress: '10.137.0.20',
  gatewayAddress: '10.137.0.1',
  brokerAddress: '10.137.0.30',
  igdHttpPort: 49152,
  stunPorts: [3478, 19302, 3478],
};
const PERSONAL: NatTraversalRedirect = {
  ...WORK,
  clientAddress: '10.137.0.21',
  stunPorts: [],
};

function netvmState(redirects: NatTraversalRedirect[]): AgentState {
  return { ...emptyAgentState('sys-firewall', NOW_MS), natTraversalRedirects: redirects };
}

describe('renderRedirects', () => {
  it('maps gateway requests to the broker', () => {
    const { declarations } = renderRedirects(netvmState([WORK]));

    expect(declarations).toContain(
      'map redirect-dnat {\n\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr\n',
    );
    expect(declarations).toContain('10.137.0.20 . 10.137.0.1 . udp . 5351 : 10.137.0.30');
    expect(declarations).toContain('10.137.0.20 . 10.137.0.1 . tcp . 49152 : 10.137.0.30');
    expect(declarations).toContain('10.137.0.20 . 10.137.0.1 . udp . 1900 : 10.137.0.30');
  });

  it('writes each STUN port once', () => {
    const { declarations } = renderRedirects(netvmState([WORK]));

    expect(declarations.match(/10\.137\.0\.20 \. 3478 : 10\.137\.0\.30/g)).toHaveLength(1);
    expect(declarations).toContain('10.137.0.20 . 19302 : 10.137.0.30');
  });

  it('skips STUN for an empty port list', () => {
    const { declarations } = renderRedirects(netvmState([PERSONAL]));

    expect(declarations).not.toContain('10.137.0.21 . 3478');
    expect(declarations).toContain('10.137.0.21 : 10.137.0.30');
    expect(declarations).toContain('10.137.0.30 . 10.137.0.21');
  });

  it('DNATs only requests from downstream vifs', () => {
    const { preroutingRules } = renderRedirects(netvmState([WORK]));

    expect(preroutingRules).toEqual([
      'iifgroup 2 meta l4proto { tcp, udp } ip saddr . ip daddr . meta l4proto . th dport @redirect-dnat ct mark set ct mark or 0x00100000 dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @redirect-dnat',
      'iifgroup 2 ip saddr . udp dport @stun-dnat ct mark set ct mark or 0x00100000 dnat ip to ip saddr . udp dport map @stun-dnat',
    ]);
  });

  it('rewrites SSDP multicast before conntrack', () => {
    const { chains } = renderRedirects(netvmState([WORK]));

    expect(chains).toContain('type filter hook prerouting priority raw; policy accept;');
    expect(chains).toContain(
      'iifgroup 2 ip daddr 239.255.255.250 udp dport 1900 ip saddr @ssdp-multicast-broker notrack meta pkttype set host ip ttl set 2 ip daddr set ip saddr map @ssdp-multicast-broker',
    );
  });

  it('marks the broker reply after conntrack', () => {
    const { chains } = renderRedirects(netvmState([WORK]));

    expect(chains).toContain('type filter hook prerouting priority mangle; policy accept;');
    expect(chains).toContain(
      'iifgroup 2 ct state new udp sport 1900 ip saddr . ip daddr @ssdp-broker-replies ct mark set ct mark or 0x00100000',
    );
  });

  it('accepts SSDP replies from listed sources', () => {
    const state = {
      ...emptyAgentState('work', NOW_MS),
      ssdpReplySources: ['10.137.0.30', '10.137.0.1', '10.137.0.30'],
    };

    const rendered = renderRedirects(state);

    expect(rendered.inputRules).toEqual([
      'udp sport 1900 ip saddr @ssdp-reply-sources ct mark set ct mark or 0x00100000',
    ]);
    expect(rendered.declarations).toContain('\t\t\t10.137.0.30,\n\t\t\t10.137.0.1\n');
    expect(rendered.ssdpReplySourceCount).toBe(2);
  });

  it('declares empty sets without elements', () => {
    const { declarations, redirectCount } = renderRedirects(emptyAgentState('work', NOW_MS));

    expect(declarations).not.toContain('elements');
    expect(declarations).not.toContain('flags');
    expect(redirectCount).toBe(0);
  });

  it('fits into the full ruleset', () => {
    const rendered = renderRuleset(netvmState([WORK, PERSONAL]), NOW_MS);

    expect(rendered.natTraversalRedirectCount).toBe(2);
    expect(rendered.script).toContain('\tchain ssdp-rewrite {\n');
    expect(rendered.script).toContain('\t\tiifgroup 2 ip saddr . udp dport @stun-dnat');
    expect(rendered.script).not.toMatch(/\bfwd\b/);
    expect(rendered.script.trimEnd().endsWith('}')).toBe(true);
  });
});

describe('redirect flows', () => {
  it('lists one flow per redirected port', () => {
    const kinds = listRedirectFlows(WORK).map((flow) => flow.kind);

    expect(kinds).toEqual(['gateway', 'gateway', 'gateway', 'stun', 'stun', 'ssdp-broker-reply']);
  });

  it('removes only flows the new state lacks', () => {
    const previous = netvmState([WORK, PERSONAL]);
    const next = netvmState([{ ...WORK, stunPorts: [3478] }, PERSONAL]);

    const removed = findRemovedRedirectFlows(previous, next);

    expect(removed).toEqual([
      { kind: 'stun', clientAddress: '10.137.0.20', port: 19302, brokerAddress: '10.137.0.30' },
    ]);
  });

  it('removes every flow of a removed redirect', () => {
    const removed = findRemovedEntries(netvmState([WORK]), netvmState([])).redirectFlows;

    expect(removed).toHaveLength(6);
  });

  it('removes the flows of a dropped reply source', () => {
    const previous = { ...emptyAgentState('work', NOW_MS), ssdpReplySources: ['10.137.0.30'] };

    const removed = findRemovedRedirectFlows(previous, emptyAgentState('work', NOW_MS + 1));

    expect(removed).toEqual([{ kind: 'ssdp-reply-source', sourceAddress: '10.137.0.30' }]);
  });

  it('selects a DNATed flow by client, gateway, port, broker and mark', () => {
    const [natPmp] = listRedirectFlows(WORK);
    if (natPmp === undefined) throw new Error('no flow listed');

    expect(conntrackFiltersOf(natPmp)).toEqual([
      '-p',
      'udp',
      '-s',
      '10.137.0.20',
      '-d',
      '10.137.0.1',
      '--orig-port-dst',
      '5351',
      '--reply-src',
      '10.137.0.30',
      '--mark',
      '0x00100000/0x00100000',
    ]);
  });

  it('selects the broker reply by its source port', () => {
    const reply = listRedirectFlows(WORK).at(-1);
    if (reply === undefined) throw new Error('no flow listed');

    expect(conntrackFiltersOf(reply)).toContain('--orig-port-src');
    expect(conntrackFiltersOf(reply).slice(0, 6)).toEqual([
      '-p',
      'udp',
      '-s',
      '10.137.0.30',
      '-d',
      '10.137.0.20',
    ]);
  });
});

describe('SSDP untracked accept rule', () => {
  function listingWith(rules: unknown[]): StockTableListing {
    const parsed = parseStockTableListing(
      JSON.stringify({
        nftables: [
          { chain: { family: 'ip', table: 'qubes', name: 'custom-forward', handle: 1 } },
          { chain: { family: 'ip', table: 'qubes', name: 'custom-input', handle: 2 } },
          ...rules,
        ],
      }),
    );
    if (parsed === null) throw new Error('listing did not parse');
    return parsed;
  }

  const markAccept = {
    rule: {
      family: 'ip',
      table: 'qubes',
      chain: 'custom-forward',
      handle: 5,
      comment: 'qubes-nat-broker',
      expr: [
        {
          match: {
            op: '==',
            left: { '&': [{ ct: { key: 'mark' } }, 1048576] },
            right: 1048576,
          },
        },
        { accept: null },
      ],
    },
  };

  function ssdpRule(handle: number) {
    return {
      rule: {
        family: 'ip',
        table: 'qubes',
        chain: 'custom-forward',
        handle,
        comment: 'qubes-nat-broker',
        expr: SSDP_UNTRACKED_ACCEPT_RULE.expression,
      },
    };
  }

  it('renders a narrow rule with our comment', () => {
    expect(renderCustomChainRule('custom-forward', 'ssdp-untracked-accept')).toBe(
      'add rule ip qubes custom-forward ct state untracked iifgroup 2 oifgroup 2 udp dport 1900 accept comment "qubes-nat-broker"',
    );
  });

  it('is added when redirects exist', () => {
    const edits = planCustomChainEdits(listingWith([markAccept]), {
      forward: true,
      input: false,
      ssdpUntracked: true,
    });

    expect(edits).toEqual([
      { kind: 'add-rule', chain: 'custom-forward', rule: 'ssdp-untracked-accept' },
      { kind: 'add-rule', chain: 'custom-input', rule: 'mark-accept' },
    ]);
  });

  it('is kept once and duplicates deleted', () => {
    const edits = planCustomChainEdits(listingWith([markAccept, ssdpRule(6), ssdpRule(7)]), {
      forward: true,
      input: false,
      ssdpUntracked: true,
    });

    expect(edits).toContainEqual({ kind: 'delete-rule', chain: 'custom-forward', handle: 7 });
    expect(edits).not.toContainEqual({ kind: 'delete-rule', chain: 'custom-forward', handle: 6 });
    expect(edits).not.toContainEqual({
      kind: 'add-rule',
      chain: 'custom-forward',
      rule: 'ssdp-untracked-accept',
    });
  });

  it('is deleted when no redirect is left', () => {
    const edits = planCustomChainEdits(listingWith([markAccept, ssdpRule(6)]), {
      forward: false,
      input: false,
      ssdpUntracked: false,
    });

    expect(edits).toContainEqual({ kind: 'delete-rule', chain: 'custom-forward', handle: 6 });
    expect(edits).not.toContainEqual({ kind: 'delete-rule', chain: 'custom-forward', handle: 5 });
  });

  it('needs custom-forward', () => {
    const parsed = parseStockTableListing(JSON.stringify({ nftables: [] }));
    if (parsed === null) throw new Error('listing did not parse');

    expect(() =>
      planCustomChainEdits(parsed, { forward: false, input: false, ssdpUntracked: true }),
    ).toThrow(/custom-forward is missing/);
  });
});
