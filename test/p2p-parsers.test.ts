import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderSnat } from '../agent-hooks/render-snat.js';
import { parseStunPorts } from '../policy/nat-traversal/nat-settings.js';
import { parseP2pPolicy, renderP2pPolicy } from '../policy/nat-traversal/p2p-policy-file.js';
import { emptyAgentState } from '../rpc/agent-state.js';
import { formatMappingArgument, parseMappingArgument } from '../rpc/nat-traversal-messages.js';

const qubeName = fc.stringMatching(/^[a-z][a-z0-9_-]{0,20}$/);

describe('STUN grant argument', () => {
  it('round-trips QUBE+udp+stun and QUBE+PROTO+PORT', () => {
    fc.assert(
      fc.property(
        qubeName,
        fc.constantFrom('tcp', 'udp'),
        fc.integer({ min: 1, max: 65535 }),
        (qube, protocol, port) => {
          const text = formatMappingArgument({ qube, protocol, internalPort: port });
          expect(parseMappingArgument(text)).toEqual({
            qube,
            protocol,
            internalPort: port,
            requestClass: 'port',
          });
          expect(
            formatMappingArgument({
              qube,
              protocol: 'udp',
              internalPort: port,
              requestClass: 'stun',
            }),
          ).toBe(`${qube}+udp+stun`);
          expect(parseMappingArgument(`${qube}+udp+stun`)).toEqual({
            qube,
            protocol: 'udp',
            internalPort: null,
            requestClass: 'stun',
          });
        },
      ),
    );
  });

  it('rejects hostile and malformed arguments', () => {
    for (const text of [
      'work+tcp+stun',
      'work+udp+STUN',
      'work+udp+stun+1',
      '+udp+stun',
      'work+udp+0',
      'work+udp+65536',
      'work+udp+',
    ]) {
      expect(parseMappingArgument(text)).toBeNull();
    }
    fc.assert(
      fc.property(fc.string(), (text) => {
        parseMappingArgument(text);
      }),
    );
  });
});

describe('p2p policy file', () => {
  it('round-trips its own lines', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(qubeName, { maxLength: 5 }),
        fc.constantFrom('allow', 'deny'),
        (qubes, decision) => {
          const lines = qubes.map((qube) => ({ qube, broker: 'sys-nat', decision }) as const);
          expect(parseP2pPolicy(renderP2pPolicy(lines))).toEqual(lines);
        },
      ),
    );
  });

  it('refuses a line it did not write, naming it', () => {
    expect(() => parseP2pPolicy('qubes.NatTraversal * @anyvm @adminvm allow\n')).toThrow(/line 1/);
    expect(() =>
      parseP2pPolicy('qubes.NatTraversal +work+udp+stun sys-nat @adminvm ask\n'),
    ).toThrow();
  });
});

describe('STUN port feature', () => {
  it('accepts single ports and rejects ranges, zero and too many', () => {
    expect(parseStunPorts('3478, 19302')).toEqual({ ports: [3478, 19302] });
    for (const text of ['3478-3480', '0', '', '1,2,3,4,5,6,7,8,9', 'stun']) {
      expect('problem' in parseStunPorts(text)).toBe(true);
    }
    fc.assert(
      fc.property(fc.string(), (text) => {
        parseStunPorts(text);
      }),
    );
  });
});

describe('static SNAT rendering', () => {
  it('renders one element per source with its timeout and leaves expired ones out', () => {
    const state = {
      ...emptyAgentState('sys-net', 0),
      snat: [
        {
          forwardId: 'f-1',
          protocol: 'udp' as const,
          sourceAddress: '10.138.0.2',
          sourcePort: 40000,
          toPort: 40000,
          expiresAtUnixSeconds: 100,
        },
        {
          forwardId: 'f-2',
          protocol: 'udp' as const,
          sourceAddress: '10.138.0.2',
          sourcePort: 40001,
          toPort: 40001,
          expiresAtUnixSeconds: 1,
        },
      ],
    };
    const rendered = renderSnat(state, (expires) => (expires === 1 ? null : ' timeout 5m'));
    expect(rendered.snatCount).toBe(1);
    expect(rendered.expiredCount).toBe(1);
    expect(rendered.declarations).toContain('10.138.0.2 . 40000 timeout 5m : 40000');
    expect(rendered.chains).toContain('masquerade to : ip saddr . udp sport map @snat-port');
  });
});
