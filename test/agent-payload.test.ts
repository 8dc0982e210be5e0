import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AgentError } from '../agent-hooks/agent-errors.js';
import { MAX_PAYLOAD_BYTES, parseAgentPayload } from '../agent-hooks/agent-payload.js';
import { entriesOverlap } from '../agent-hooks/entry-conflicts.js';
import type { AgentState } from '../rpc/agent-state.js';

function validState(): AgentState {
  return {
    version: 1,
    vm: 'sys-firewall',
    issuedAtUnixMs: 1_700_000_000_000,
    dnat: [
      {
        forwardId: 'web-1',
        protocol: 'tcp',
        sourceCidr: '0.0.0.0/0',
        ports: { first: 8080, last: 8080 },
        targetAddress: '10.137.0.20',
        targetPorts: { first: 80, last: 80 },
        expiresAtUnixSeconds: null,
      },
    ],
    inputAccept: [],
    natTraversalRedirects: [],
    ssdpReplySources: [],
  };
}

function errorOf(payload: string): AgentError {
  const result = parseAgentPayload(payload);
  if (result.ok) {
    throw new Error(`payload was accepted: ${payload.slice(0, 200)}`);
  }
  return result.error;
}

describe('parseAgentPayload', () => {
  it('accepts a valid state', () => {
    const result = parseAgentPayload(JSON.stringify(validState()));

    expect(result.ok).toBe(true);
  });

  it('rejects text that is not JSON', () => {
    expect(errorOf('{"version":').code).toBe('invalid-json');
    expect(errorOf('').code).toBe('invalid-json');
  });

  it('rejects a payload over the size limit', () => {
    const error = errorOf(' '.repeat(MAX_PAYLOAD_BYTES + 1));

    expect(error.code).toBe('payload-too-large');
  });

  it('reports every violation at once', () => {
    const state = validState() as unknown as Record<string, unknown>;
    state.version = 2;
    state.vm = 'bad name';
    state.extra = true;

    const error = errorOf(JSON.stringify(state));
    const paths = error.violations.map((violation) => violation.path);

    expect(error.code).toBe('invalid-payload');
    expect(paths).toContain('version');
    expect(paths).toContain('vm');
    expect(error.violations.find((violation) => violation.path === 'vm')?.value).toBe('bad name');
    expect(error.violations.some((violation) => violation.message.includes('extra'))).toBe(true);
  });

  it('names the path of a bad nested field', () => {
    const state = validState();
    const payload = JSON.stringify(state).replace(
      '"targetAddress":"10.137.0.20"',
      '"targetAddress":"10.137.0.256"',
    );

    const error = errorOf(payload);

    expect(error.violations[0]?.path).toBe('dnat[0].targetAddress');
    expect(error.violations[0]?.value).toBe('10.137.0.256');
  });

  it('rejects a remapped port range', () => {
    const state = validState();
    const entry = state.dnat[0];
    if (entry === undefined) throw new Error('fixture has no entry');
    entry.ports = { first: 8000, last: 8010 };
    entry.targetPorts = { first: 9000, last: 9010 };

    expect(errorOf(JSON.stringify(state)).code).toBe('invalid-payload');
  });

  it('rejects host bits in a source CIDR', () => {
    const payload = JSON.stringify(validState()).replace('0.0.0.0/0', '10.0.0.1/8');

    expect(errorOf(payload).violations[0]?.path).toBe('dnat[0].sourceCidr');
  });

  it('rejects overlapping DNAT entries', () => {
    const state = validState();
    const first = state.dnat[0];
    if (first === undefined) throw new Error('fixture has no entry');
    state.dnat.push({ ...first, forwardId: 'web-2', sourceCidr: '10.0.0.0/8' });

    const error = errorOf(JSON.stringify(state));

    expect(error.code).toBe('overlapping-entries');
    expect(error.violations[0]?.path).toBe('dnat[1]');
    expect(error.violations[0]?.message).toContain('web-1');
  });

  it('quotes long hostile strings briefly', () => {
    const payload = JSON.stringify({ ...validState(), vm: 'x'.repeat(10_000) });

    const violation = errorOf(payload).violations[0];

    expect(String(violation?.value).length).toBeLessThan(100);
  });

  it('rejects prototype pollution keys', () => {
    const payload =
      '{"__proto__":{"polluted":1},"version":1,"vm":"work","issuedAtUnixMs":1,"dnat":[],"inputAccept":[]}';

    const result = parseAgentPayload(payload);

    expect(result.ok).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('rejects too many entries', () => {
    const state = validState();
    const entry = state.dnat[0];
    if (entry === undefined) throw new Error('fixture has no entry');
    state.dnat = Array.from({ length: 4097 }, (_, index) => ({
      ...entry,
      forwardId: `f${index}`,
      ports: { first: index + 1, last: index + 1 },
      targetPorts: { first: index + 1, last: index + 1 },
    }));

    expect(errorOf(JSON.stringify(state)).violations[0]?.path).toBe('dnat');
  });

  it('never throws on random JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = parseAgentPayload(JSON.stringify(value) ?? 'null');
        if (!result.ok) {
          expect(result.error).toBeInstanceOf(AgentError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        const result = parseAgentPayload(bytes);
        expect(result.ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on mutated valid states', () => {
    const base = JSON.stringify(validState());
    fc.assert(
      fc.property(fc.nat(base.length - 1), fc.string({ maxLength: 4 }), (index, insert) => {
        const result = parseAgentPayload(
          `${base.slice(0, index)}${insert}${base.slice(index + 1)}`,
        );
        if (!result.ok) {
          expect(result.error).toBeInstanceOf(AgentError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseAgentPayload NAT traversal fields', () => {
  const redirect = {
    clientAddress: '10.137.0.20',
    gatewayAddress: '10.137.0.1',
    brokerAddress: '10.137.0.30',
    igdHttpPort: 49152,
    stunPorts: [3478, 19302],
  };

  function withFields(fields: Record<string, unknown>): string {
    return JSON.stringify({ ...validState(), ...fields });
  }

  it('defaults missing fields to empty lists', () => {
    const { natTraversalRedirects: _r, ssdpReplySources: _s, ...older } = validState();

    const result = parseAgentPayload(JSON.stringify(older));
    if (!result.ok) throw result.error;

    expect(result.state.natTraversalRedirects).toEqual([]);
    expect(result.state.ssdpReplySources).toEqual([]);
  });

  it('accepts redirects and reply sources', () => {
    const result = parseAgentPayload(
      withFields({ natTraversalRedirects: [redirect], ssdpReplySources: ['10.137.0.30'] }),
    );
    if (!result.ok) throw result.error;

    expect(result.state.natTraversalRedirects).toEqual([redirect]);
    expect(result.state.ssdpReplySources).toEqual(['10.137.0.30']);
  });

  it('names each bad redirect field', () => {
    const bad = {
      ...redirect,
      brokerAddress: '10.137.0',
      igdHttpPort: 0,
      stunPorts: [70000],
      extra: 1,
    };

    const error = errorOf(withFields({ natTraversalRedirects: [bad] }));
    const paths = error.violations.map((violation) => violation.path);

    expect(error.code).toBe('invalid-payload');
    expect(paths).toContain('natTraversalRedirects[0].brokerAddress');
    expect(paths).toContain('natTraversalRedirects[0].igdHttpPort');
    expect(paths).toContain('natTraversalRedirects[0].stunPorts[0]');
    expect(error.violations.some((violation) => violation.message.includes('extra'))).toBe(true);
  });

  it('rejects too many STUN ports and reply sources', () => {
    const manyPorts = { ...redirect, stunPorts: Array.from({ length: 9 }, (_, i) => 3478 + i) };
    const manySources = Array.from({ length: 17 }, (_, i) => `10.137.0.${i + 1}`);

    const error = errorOf(
      withFields({ natTraversalRedirects: [manyPorts], ssdpReplySources: manySources }),
    );
    const paths = error.violations.map((violation) => violation.path);

    expect(paths).toContain('natTraversalRedirects[0].stunPorts');
    expect(paths).toContain('ssdpReplySources');
  });

  it('rejects a non-address reply source', () => {
    const error = errorOf(withFields({ ssdpReplySources: ['sys-nat'] }));

    expect(error.violations[0]?.path).toBe('ssdpReplySources[0]');
    expect(error.violations[0]?.value).toBe('sys-nat');
  });

  it('rejects two redirects for one client', () => {
    const second = { ...redirect, brokerAddress: '10.137.0.31' };

    const error = errorOf(withFields({ natTraversalRedirects: [redirect, second] }));

    expect(error.code).toBe('overlapping-entries');
    expect(error.violations[0]?.path).toBe('natTraversalRedirects[1].clientAddress');
    expect(error.violations[0]?.message).toContain('natTraversalRedirects[0]');
  });

  it('never throws on random redirect lists', () => {
    const field = fc.oneof(
      fc.ipV4(),
      fc.integer({ min: -1, max: 70_000 }),
      fc.string({ maxLength: 20 }),
      fc.constant(null),
    );
    const redirectArbitrary = fc.record({
      clientAddress: field,
      gatewayAddress: field,
      brokerAddress: field,
      igdHttpPort: field,
      stunPorts: fc.array(field, { maxLength: 10 }),
    });
    fc.assert(
      fc.property(
        fc.array(redirectArbitrary, { maxLength: 6 }),
        fc.array(field, { maxLength: 20 }),
        (redirects, sources) => {
          const result = parseAgentPayload(
            withFields({ natTraversalRedirects: redirects, ssdpReplySources: sources }),
          );
          if (!result.ok) {
            expect(result.error).toBeInstanceOf(AgentError);
            expect(result.error.violations.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('accepts every well-formed redirect list with distinct clients', () => {
    const redirectArbitrary = fc.record({
      clientAddress: fc.ipV4(),
      gatewayAddress: fc.ipV4(),
      brokerAddress: fc.ipV4(),
      igdHttpPort: fc.integer({ min: 1, max: 65_535 }),
      stunPorts: fc.array(fc.integer({ min: 1, max: 65_535 }), { maxLength: 8 }),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(redirectArbitrary, {
          maxLength: 20,
          selector: (entry) => entry.clientAddress,
        }),
        fc.array(fc.ipV4(), { maxLength: 16 }),
        (redirects, sources) => {
          const result = parseAgentPayload(
            withFields({ natTraversalRedirects: redirects, ssdpReplySources: sources }),
          );
          expect(result.ok).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('entriesOverlap', () => {
  const entryArbitrary: fc.Arbitrary<RawEntry> = fc.record({
    forwardId: fc.constant('x'),
    protocol: fc.constantFrom('tcp' as const, 'udp' as const),
    prefixLength: fc.integer({ min: 0, max: 32 }),
    address: fc.nat(2 ** 32 - 1),
    first: fc.integer({ min: 1, max: 200 }),
    length: fc.integer({ min: 0, max: 20 }),
  });

  interface RawEntry {
    forwardId: string;
    protocol: 'tcp' | 'udp';
    prefixLength: number;
    address: number;
    first: number;
    length: number;
  }

  function toEntry(raw: RawEntry) {
    const mask = raw.prefixLength === 0 ? 0 : (0xffffffff << (32 - raw.prefixLength)) >>> 0;
    const network = (raw.address & mask) >>> 0;
    const octets = [24, 16, 8, 0].map((shift) => (network >>> shift) & 255).join('.');
    return {
      forwardId: raw.forwardId,
      protocol: raw.protocol,
      sourceCidr: `${octets}/${raw.prefixLength}`,
      ports: { first: raw.first, last: raw.first + raw.length },
      expiresAtUnixSeconds: null,
    };
  }

  it('is symmetric and reflexive', () => {
    fc.assert(
      fc.property(entryArbitrary, entryArbitrary, (rawA, rawB) => {
        const a = toEntry(rawA);
        const b = toEntry(rawB);
        expect(entriesOverlap(a, b)).toBe(entriesOverlap(b, a));
        expect(entriesOverlap(a, a)).toBe(true);
      }),
    );
  });

  it('separates protocols and disjoint ports', () => {
    const a = toEntry({
      forwardId: 'a',
      protocol: 'tcp',
      prefixLength: 0,
      address: 0,
      first: 10,
      length: 5,
    });

    expect(entriesOverlap(a, { ...a, protocol: 'udp' })).toBe(false);
    expect(entriesOverlap(a, { ...a, ports: { first: 16, last: 20 } })).toBe(false);
    expect(entriesOverlap(a, { ...a, ports: { first: 15, last: 20 } })).toBe(true);
  });
});
