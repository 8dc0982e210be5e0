import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatRuleProblems,
  formatRuleWords,
  parseRuleWords,
} from '../policy/forwards/rule-words.js';

const NOW = 1_764_870_000;

function problemsOf(words: string[]) {
  const result = parseRuleWords(words, NOW);
  if (result.ok) {
    throw new Error(`expected problems for ${words.join(' ')}`);
  }
  return result.problems;
}

describe('parseRuleWords', () => {
  it('parses the full qvm-firewall style rule', () => {
    const result = parseRuleWords(
      [
        'proto=tcp',
        'port=8443',
        'to-port=443',
        'src=192.168.77.0/24',
        'expire=+3600',
        'comment=web',
        'server',
      ],
      NOW,
    );
    expect(result).toEqual({
      ok: true,
      fields: {
        protocol: 'tcp',
        ports: { first: 8443, last: 8443 },
        targetPorts: { first: 443, last: 443 },
        sourceCidr: '192.168.77.0/24',
        expiresAtUnixSeconds: NOW + 3600,
        comment: 'web server',
      },
    });
  });

  it('fills defaults for optional keys', () => {
    const result = parseRuleWords(['proto=UDP', 'port=9000-9010'], NOW);
    expect(result).toEqual({
      ok: true,
      fields: {
        protocol: 'udp',
        ports: { first: 9000, last: 9010 },
        targetPorts: { first: 9000, last: 9010 },
        sourceCidr: '0.0.0.0/0',
        expiresAtUnixSeconds: null,
        comment: null,
      },
    });
  });

  it('turns a single source address into a /32', () => {
    const result = parseRuleWords(['proto=tcp', 'port=22', 'src=192.168.77.50'], NOW);
    expect(result.ok && result.fields.sourceCidr).toBe('192.168.77.50/32');
  });

  it('accepts an absolute expiry in the future', () => {
    const result = parseRuleWords(['proto=tcp', 'port=22', `expire=${NOW + 10}`], NOW);
    expect(result.ok && result.fields.expiresAtUnixSeconds).toBe(NOW + 10);
  });

  it.each([
    [['proto=tcp', 'port=70000'], 'port', 'ports are 1-65535'],
    [['proto=tcp', 'port=0'], 'port', 'ports are 1-65535'],
    [['proto=tcp', 'port=abc'], 'port', 'not a port number'],
    [['proto=tcp', 'port=1', 'to-port=0'], 'to-port', 'use to-port=N'],
    [['proto=tcp', 'port=90-80'], 'port', 'use port=80-90'],
    [['proto=icmp', 'port=80'], 'proto', 'proto=tcp or proto=udp'],
    [['port=80'], 'proto', 'missing'],
    [['proto=tcp'], 'port', 'missing'],
    [['proto=tcp', 'port=80-90', 'to-port=81-91'], 'to-port', 'keeps its port numbers'],
    [['proto=tcp', 'port=80', 'to-port=81-91'], 'to-port', 'single port'],
    [['proto=tcp', 'port=80', 'src=192.168.77.5/24'], 'src', 'zero host bits'],
    [['proto=tcp', 'port=80', 'src=999.1.1.1'], 'src', 'IPv4'],
    [['proto=tcp', 'port=80', 'expire=+0'], 'expire', 'expire=+SECONDS'],
    [['proto=tcp', 'port=80', 'expire=+x'], 'expire', 'expire=+SECONDS'],
    [['proto=tcp', 'port=80', `expire=${NOW - 1}`], 'expire', 'in the future'],
    [['proto=tcp', 'port=80', 'comment=a\nb'], 'comment', 'control characters'],
    [['proto=tcp', 'port=80', 'port=81'], 'port', 'given twice'],
  ])('rejects %j', (words, key, fragment) => {
    const problems = problemsOf(words);
    expect(problems.map((problem) => problem.key)).toContain(key);
    expect(formatRuleProblems(problems)).toContain(fragment);
  });

  it('rejects unknown keys and bare words with the list of keys', () => {
    const problems = problemsOf(['proto=tcp', 'port=80', 'action=forward', 'oops']);
    const message = formatRuleProblems(problems);
    expect(message).toContain('unknown key "action"');
    expect(message).toContain('expected key=value');
    expect(message).toContain('proto, port, to-port, src, expire, upstream, comment');
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(['proto=sctp', 'port=70000', 'src=x']);
    expect(problems).toHaveLength(3);
  });

  it('names the value in the message', () => {
    expect(formatRuleProblems(problemsOf(['proto=tcp', 'port=70000']))).toBe(
      'invalid "port=70000": ports are 1-65535; use port=N or port=FIRST-LAST',
    );
  });

  it('round-trips through the raw form', () => {
    const words = [
      'proto=udp',
      'port=5000',
      'to-port=6000',
      'src=10.0.0.0/8',
      `expire=${NOW + 5}`,
      'comment=x y',
    ];
    const first = parseRuleWords(words, NOW);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    const again = parseRuleWords(formatRuleWords(first.fields).split(' '), NOW);
    expect(again).toEqual(first);
  });

  it('never throws and always returns a typed result for arbitrary words', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 8 }), (words) => {
        const result = parseRuleWords(words, NOW);
        if (result.ok) {
          expect(result.fields.ports.first).toBeGreaterThanOrEqual(1);
          expect(result.fields.ports.last).toBeLessThanOrEqual(65535);
        } else {
          expect(result.problems.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts every valid generated rule and round-trips it', () => {
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(
      fc.property(
        fc.constantFrom('tcp', 'udp'),
        port,
        port,
        fc.integer({ min: 1, max: 10_000_000 }),
        (protocol, externalPort, targetPort, expireSeconds) => {
          const words = [
            `proto=${protocol}`,
            `port=${externalPort}`,
            `to-port=${targetPort}`,
            `expire=+${expireSeconds}`,
          ];
          const result = parseRuleWords(words, NOW);
          expect(result.ok).toBe(true);
          if (!result.ok) return;
          expect(parseRuleWords(formatRuleWords(result.fields).split(' '), NOW)).toEqual(result);
        },
      ),
    );
  });
});
