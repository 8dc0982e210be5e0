import { describe, expect, it } from 'vitest';
import {
  parseStockTableListing,
  planCustomChainEdits,
  type StockTableListing,
} from '../agent-hooks/custom-chain-rule.js';
import {
  formatElementTimeout,
  MAX_ELEMENT_TIMEOUT_MS,
  renderRuleset,
} from '../agent-hooks/render-ruleset.js';
import { type AgentState, emptyAgentState } from '../rpc/agent-state.js';

const NOW_MS = 1_700_000_000_000;
const NOW_SECONDS = NOW_MS / 1000;

function netvmState(): AgentState {
  return {
    version: 1,
    vm: 'sys-net',
    issuedAtUnixMs: NOW_MS,
    dnat: [
      {
        forwardId: 'web',
        protocol: 'tcp',
        sourceCidr: '0.0.0.0/0',
        ports: { first: 8443, last: 8443 },
        targetAddress: '10.138.0.2',
        targetPorts: { first: 443, last: 443 },
        expiresAtUnixSeconds: NOW_SECONDS + 90,
      },
      {
        forwardId: 'game',
        protocol: 'udp',
        sourceCidr: '192.168.77.0/24',
        ports: { first: 27000, last: 27010 },
        targetAddress: '10.138.0.2',
        targetPorts: { first: 27000, last: 27010 },
        expiresAtUnixSeconds: null,
      },
      {
        forwardId: 'old',
        protocol: 'tcp',
        sourceCidr: '0.0.0.0/0',
        ports: { first: 22, last: 22 },
        targetAddress: '10.138.0.2',
        targetPorts: { first: 22, last: 22 },
        expiresAtUnixSeconds: NOW_SECONDS - 1,
      },
    ],
    inputAccept: [
      {
        forwardId: 'web',
        protocol: 'tcp',
        sourceCidr: '10.0.0.0/8',
        ports: { first: 443, last: 443 },
        expiresAtUnixSeconds: NOW_SECONDS + 2,
      },
    ],
    natTraversalRedirects: [],
    ssdpReplySources: [],
  };
}

describe('renderRuleset', () => {
  it('replaces the whole table in one script', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);
    const lines = script.split('\n');

    expect(lines[0]).toBe('table ip qubes-nat-broker');
    expect(lines[1]).toBe('delete table ip qubes-nat-broker');
    expect(lines[2]).toBe('table ip qubes-nat-broker {');
  });

  it('writes single ports to the port map with remapped target', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);

    expect(script).toContain('0.0.0.0/0 . tcp . 8443 timeout 1m30s : 10.138.0.2 . 443');
  });

  it('writes ranges to the range map without timeout when no expiry', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);

    expect(script).toContain('192.168.77.0/24 . udp . 27000-27010 : 10.138.0.2\n');
    expect(script).toContain('\t\t\t192.168.77.0/24 . udp . 27000-27010\n');
  });

  it('leaves out expired entries and counts them', () => {
    const rendered = renderRuleset(netvmState(), NOW_MS);

    expect(rendered.script).not.toContain('. 22');
    expect(rendered.dnatCount).toBe(2);
    expect(rendered.inputAcceptCount).toBe(1);
    expect(rendered.expiredCount).toBe(1);
  });

  it('renders the input accept set element', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);

    expect(script).toContain('10.0.0.0/8 . tcp . 443 timeout 2s\n');
  });

  it('declares sets and maps with interval and timeout flags', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);

    expect(script).toContain(
      'map forward-dnat-port {\n\t\ttype ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service\n\t\tflags interval, timeout\n',
    );
    expect(script).toContain(
      'map forward-dnat-range {\n\t\ttype ipv4_addr . inet_proto . inet_service : ipv4_addr\n\t\tflags interval, timeout\n',
    );
    expect(script).toContain(
      'set input-accept {\n\t\ttype ipv4_addr . inet_proto . inet_service\n',
    );
    expect(script).not.toMatch(/\bfwd\b/);
  });

  it('DNATs only upstream traffic addressed to this VM', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS);

    expect(script).toContain('type nat hook prerouting priority dstnat - 10; policy accept;');
    expect(script).toContain(
      'iifgroup != 2 fib daddr type local meta l4proto { tcp, udp } ip saddr . meta l4proto . th dport @forward-keys ct mark set ct mark or 0x00100000 dnat ip to ip saddr . meta l4proto . th dport map @forward-dnat-port',
    );
    expect(script).toContain(
      'dnat ip to ip saddr . meta l4proto . th dport map @forward-dnat-range',
    );
  });

  it('renders an empty state without elements', () => {
    const { script, dnatCount } = renderRuleset(emptyAgentState('work', 0), NOW_MS);

    expect(script).not.toContain('elements');
    expect(dnatCount).toBe(0);
  });

  it('appends custom chain edits after the table', () => {
    const { script } = renderRuleset(netvmState(), NOW_MS, [
      { kind: 'delete-rule', chain: 'custom-input', handle: 7 },
      { kind: 'add-rule', chain: 'custom-forward', rule: 'mark-accept' },
    ]);
    const lines = script.trimEnd().split('\n');

    expect(lines.at(-2)).toBe('delete rule ip qubes custom-input handle 7');
    expect(lines.at(-1)).toBe(
      'add rule ip qubes custom-forward ct mark and 0x00100000 == 0x00100000 accept comment "qubes-nat-broker"',
    );
  });
});

describe('formatElementTimeout', () => {
  it('splits into units', () => {
    expect(formatElementTimeout(90_061_001)).toBe('1d1h1m1s1ms');
  });

  it('caps far expiries', () => {
    expect(formatElementTimeout(2 ** 40 * 1000)).toBe(formatElementTimeout(MAX_ELEMENT_TIMEOUT_MS));
    expect(formatElementTimeout(MAX_ELEMENT_TIMEOUT_MS)).toBe('10000d');
  });

  it('rounds sub-millisecond remainders up', () => {
    expect(formatElementTimeout(0.2)).toBe('1ms');
  });
});

describe('planCustomChainEdits', () => {
  function listingOf(text: string): StockTableListing {
    const parsed = parseStockTableListing(text);
    if (parsed === null) throw new Error(`not a listing: ${text}`);
    return parsed;
  }

  const accept = {
    match: {
      op: '==',
      left: { '&': [{ ct: { key: 'mark' } }, 1048576] },
      right: 1048576,
    },
  };

  function listing(rules: unknown[]): string {
    return JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { chain: { family: 'ip', table: 'qubes', name: 'custom-forward', handle: 1 } },
        { chain: { family: 'ip', table: 'qubes', name: 'custom-input', handle: 2 } },
        ...rules,
      ],
    });
  }

  function rule(chain: string, handle: number, comment: string | undefined, expr: unknown[]) {
    return { rule: { family: 'ip', table: 'qubes', chain, handle, comment, expr } };
  }

  it('adds the rule to both chains when missing', () => {
    const parsed = listingOf(listing([]));

    const edits = planCustomChainEdits(parsed, {
      forward: true,
      input: true,
      ssdpUntracked: false,
    });

    expect(edits).toEqual([
      { kind: 'add-rule', chain: 'custom-forward', rule: 'mark-accept' },
      { kind: 'add-rule', chain: 'custom-input', rule: 'mark-accept' },
    ]);
  });

  it('keeps one current rule and deletes duplicates', () => {
    const parsed = listingOf(
      listing([
        rule('custom-forward', 5, 'qubes-nat-broker', [accept, { accept: null }]),
        rule('custom-forward', 6, 'qubes-nat-broker', [accept, { accept: null }]),
        rule('custom-forward', 7, undefined, [{ drop: null }]),
        rule('custom-input', 8, 'qubes-nat-broker', [accept, { accept: null }]),
      ]),
    );

    const edits = planCustomChainEdits(parsed, {
      forward: true,
      input: false,
      ssdpUntracked: false,
    });

    expect(edits).toEqual([{ kind: 'delete-rule', chain: 'custom-forward', handle: 6 }]);
  });

  it('replaces an outdated rule with our comment', () => {
    const parsed = listingOf(
      listing([rule('custom-input', 9, 'qubes-nat-broker', [{ accept: null }])]),
    );

    const edits = planCustomChainEdits(parsed, {
      forward: false,
      input: true,
      ssdpUntracked: false,
    });

    expect(edits).toContainEqual({ kind: 'delete-rule', chain: 'custom-input', handle: 9 });
    expect(edits).toContainEqual({ kind: 'add-rule', chain: 'custom-input', rule: 'mark-accept' });
  });

  it('rejects a needed chain that is missing', () => {
    const parsed = listingOf(JSON.stringify({ nftables: [] }));

    expect(() =>
      planCustomChainEdits(parsed, { forward: true, input: false, ssdpUntracked: false }),
    ).toThrow(/custom-forward is missing/);
    expect(
      planCustomChainEdits(parsed, { forward: false, input: false, ssdpUntracked: false }),
    ).toEqual([]);
  });

  it('returns null for text that is no listing', () => {
    expect(parseStockTableListing('not json')).toBeNull();
    expect(parseStockTableListing('{"tables":[]}')).toBeNull();
  });
});
