import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  evaluatePolicy,
  loadPolicyDirectory,
  type ParsePolicyResult,
  type PolicyErrorCode,
  type PolicyRule,
  parsePolicyText,
  type QrexecPolicy,
  type QrexecSystemInfo,
} from '../policy/qrexec-policy/index.js';

const systemInfo: QrexecSystemInfo = {
  domains: {
    dom0: { type: 'AdminVM', tags: [] },
    work: { type: 'AppVM', tags: ['trusted'], defaultDispvm: 'default-dvm' },
    personal: { type: 'AppVM', tags: [] },
    'sys-nat': { type: 'AppVM', tags: ['nat-broker'], defaultDispvm: null },
    'sys-net': { type: 'StandaloneVM', tags: ['net'] },
    'default-dvm': { type: 'AppVM', tags: ['dvm'], templateForDispvms: true },
    disp123: { type: 'DispVM', tags: [], dispvmTemplate: 'default-dvm' },
  },
};

function rulesOf(text: string): PolicyRule[] {
  const result = parsePolicyText(text, '50-test.policy');
  if (!result.ok) {
    throw new Error(result.errors.map((error) => error.message).join('\n'));
  }
  return result.rules;
}

function policyOf(text: string): QrexecPolicy {
  return { rules: rulesOf(text), errors: [] };
}

function errorCodes(result: ParsePolicyResult): PolicyErrorCode[] {
  return result.ok ? [] : result.errors.map((error) => error.code);
}

function decide(
  text: string,
  source: string,
  target: string,
  service = 'qubes.Test',
  argument = '',
) {
  return evaluatePolicy(policyOf(text), { service, argument, source, target }, systemInfo);
}

describe('parsePolicyText', () => {
  it('parses a rule with parameters', () => {
    const rules = rulesOf(
      'qubes.NatTraversal +work+tcp+8080 sys-nat @adminvm ask default_target=@adminvm notify=yes',
    );
    expect(rules).toHaveLength(1);
    expect(rules[0]).toEqual({
      service: 'qubes.NatTraversal',
      argument: '+work+tcp+8080',
      source: { kind: 'name', name: 'sys-nat' },
      target: { kind: 'adminvm' },
      action: { kind: 'ask', defaultTarget: { kind: 'adminvm' }, notify: 'yes' },
      origin: {
        file: '50-test.policy',
        line: 1,
        text: 'qubes.NatTraversal +work+tcp+8080 sys-nat @adminvm ask default_target=@adminvm notify=yes',
      },
    });
  });

  it('skips comments and blank lines, keeps line numbers', () => {
    const rules = rulesOf('# comment\n\n   # indented comment\n* * @anyvm @anyvm deny\r\n');
    expect(rules).toHaveLength(1);
    expect(rules[0]?.origin.line).toBe(4);
    expect(rules[0]?.service).toBeNull();
    expect(rules[0]?.argument).toBeNull();
  });

  it('parses every token kind', () => {
    const rules = rulesOf(
      [
        's + @anyvm @anyvm allow',
        's + @adminvm @adminvm allow',
        's + dom0 dom0 allow',
        's + @tag:trusted @tag:net allow',
        's + @type:AppVM @type:StandaloneVM allow',
        's + @dispvm:default-dvm @dispvm allow',
        's + @dispvm:@tag:dvm @dispvm:@tag:dvm allow',
        's + work @default allow target=personal',
        's + work @dispvm:default-dvm allow',
      ].join('\n'),
    );
    expect(rules.map((rule) => [rule.source.kind, rule.target.kind])).toEqual([
      ['anyvm', 'anyvm'],
      ['adminvm', 'adminvm'],
      ['adminvm', 'adminvm'],
      ['tag', 'tag'],
      ['type', 'type'],
      ['dispvmTemplate', 'dispvm'],
      ['dispvmTag', 'dispvmTag'],
      ['name', 'default'],
      ['name', 'dispvmTemplate'],
    ]);
  });

  it('parses action parameters', () => {
    const [allow, deny, ask] = rulesOf(
      [
        's + work personal allow target=sys-net user=root autostart=no',
        's + work personal deny notify=no',
        's + work @anyvm ask target=personal default_target=personal user=user',
      ].join('\n'),
    );
    expect(allow?.action).toEqual({
      kind: 'allow',
      target: { kind: 'name', name: 'sys-net' },
      user: 'root',
      autostart: 'no',
    });
    expect(deny?.action).toEqual({ kind: 'deny', notify: 'no' });
    expect(ask?.action).toEqual({
      kind: 'ask',
      target: { kind: 'name', name: 'personal' },
      defaultTarget: { kind: 'name', name: 'personal' },
      user: 'user',
    });
  });

  const malformed: Array<[string, string, PolicyErrorCode]> = [
    ['too few fields', 'qubes.Test + work personal', 'wrong-field-count'],
    ['invalid service', 'qubes/Test + work personal allow', 'invalid-service'],
    ['service with plus', 'qubes.Test+x + work personal allow', 'invalid-service'],
    ['invalid argument', 'qubes.Test +a:b work personal allow', 'invalid-argument'],
    ['argument without plus', 'qubes.Test arg work personal allow', 'argument-without-plus'],
    ['argument for any service', '* +arg work personal allow', 'argument-for-any-service'],
    ['unknown token', 'qubes.Test + @something personal allow', 'invalid-token'],
    ['empty tag', 'qubes.Test + @tag: personal allow', 'invalid-token'],
    ['invalid name', 'qubes.Test + 9work personal allow', 'invalid-token'],
    ['@default as source', 'qubes.Test + @default personal allow', 'token-not-allowed-here'],
    ['@dispvm as source', 'qubes.Test + @dispvm personal allow', 'token-not-allowed-here'],
    ['invalid action', 'qubes.Test + work personal permit', 'invalid-action'],
    [
      'parameter without value',
      'qubes.Test + work personal allow target',
      'invalid-parameter-syntax',
    ],
    [
      'duplicate parameter',
      'qubes.Test + work personal allow user=a user=b',
      'duplicate-parameter',
    ],
    ['unknown parameter', 'qubes.Test + work personal allow color=red', 'unknown-parameter'],
    [
      'default_target on allow',
      'qubes.Test + work personal allow default_target=work',
      'unknown-parameter',
    ],
    ['target on deny', 'qubes.Test + work personal deny target=work', 'unknown-parameter'],
    [
      '@anyvm redirect',
      'qubes.Test + work personal allow target=@anyvm',
      'invalid-parameter-value',
    ],
    ['bad notify', 'qubes.Test + work personal deny notify=maybe', 'invalid-parameter-value'],
    ['bad user', 'qubes.Test + work personal allow user=Root!', 'invalid-parameter-value'],
    [
      'allow @default without target',
      'qubes.Test + work @default allow',
      'allow-default-without-target',
    ],
    ['include', '!include other.policy', 'include-not-supported'],
    ['include-dir', '!include-dir include/', 'include-not-supported'],
    ['unknown directive', '!compat-4.0', 'invalid-directive'],
  ];

  for (const [name, line, code] of malformed) {
    it(`rejects ${name}`, () => {
      const result = parsePolicyText(`# header\n${line}\n`, '30-user.policy');
      expect(errorCodes(result)).toEqual([code]);
      expect(result.ok ? '' : result.errors[0]?.message).toMatch(/^30-user\.policy:2: /);
    });
  }

  it('reports every malformed line at once', () => {
    const result = parsePolicyText('a + b c permit\nok + work personal allow\nx y z\n', 'f.policy');
    expect(result.ok ? [] : result.errors.map((error) => error.line)).toEqual([1, 3]);
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const result = parsePolicyText(text, 'fuzz.policy');
        expect(typeof result.ok).toBe('boolean');
        if (!result.ok) {
          expect(result.errors.length).toBeGreaterThan(0);
          for (const error of result.errors) {
            expect(error.message).toContain('fuzz.policy:');
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on policy-like lines', () => {
    const word = fc.constantFrom(
      '*',
      '+',
      '+arg',
      'arg',
      '@anyvm',
      '@adminvm',
      'dom0',
      '@tag:',
      '@tag:x',
      '@type:AppVM',
      '@dispvm',
      '@dispvm:',
      '@dispvm:@tag:',
      '@dispvm:work',
      '@default',
      'work',
      'allow',
      'deny',
      'ask',
      'target=',
      'target=@dispvm',
      'default_target=work',
      'user=root',
      'notify=yes',
      'autostart=x',
      '=',
      '!include',
      '#',
    );
    const line = fc.array(word, { maxLength: 8 }).map((words) => words.join(' '));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), (lines) => {
        const result = parsePolicyText(lines.join('\n'), 'fuzz.policy');
        if (result.ok) {
          for (const rule of result.rules) {
            expect(['allow', 'deny', 'ask']).toContain(rule.action.kind);
          }
        } else {
          expect(result.errors.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('evaluatePolicy tokens', () => {
  it('matches a plain name', () => {
    expect(decide('qubes.Test + work personal allow', 'work', 'personal').action).toBe('allow');
    expect(decide('qubes.Test + work personal allow', 'personal', 'work').action).toBe('deny');
  });

  it('@anyvm excludes the admin VM', () => {
    const policy = 'qubes.Test + @anyvm @anyvm allow';
    expect(decide(policy, 'work', 'personal')).toMatchObject({
      action: 'allow',
      target: 'personal',
    });
    expect(decide(policy, 'work', 'dom0')).toMatchObject({
      action: 'deny',
      reason: 'no matching rule',
    });
    expect(decide(policy, 'dom0', 'work')).toMatchObject({
      action: 'deny',
      reason: 'no matching rule',
    });
  });

  it('@adminvm and dom0 are the same', () => {
    expect(decide('qubes.Test + work dom0 allow', 'work', '@adminvm')).toMatchObject({
      action: 'allow',
      target: '@adminvm',
    });
    expect(decide('qubes.Test + work @adminvm allow', 'work', 'dom0')).toMatchObject({
      action: 'allow',
      target: '@adminvm',
    });
  });

  it('@tag and @type read system info', () => {
    expect(
      decide('qubes.Test + @tag:trusted @type:StandaloneVM allow', 'work', 'sys-net').action,
    ).toBe('allow');
    expect(
      decide('qubes.Test + @tag:trusted @type:StandaloneVM allow', 'personal', 'sys-net').action,
    ).toBe('deny');
    expect(decide('qubes.Test + @type:AppVM @tag:net allow', 'personal', 'sys-net').action).toBe(
      'allow',
    );
  });

  it('@default needs a target= redirect', () => {
    expect(decide('qubes.Test + work @default allow target=sys-net', 'work', '')).toMatchObject({
      action: 'allow',
      target: 'sys-net',
    });
    expect(
      decide('qubes.Test + work @default allow target=sys-net', 'work', '@default').action,
    ).toBe('allow');
    expect(decide('qubes.Test + work @anyvm allow', 'work', '')).toMatchObject({ action: 'deny' });
  });

  it('@dispvm resolves to the default disposable template', () => {
    expect(decide('qubes.Test + work @dispvm allow', 'work', '@dispvm')).toMatchObject({
      action: 'allow',
      target: '@dispvm:default-dvm',
    });
    expect(decide('qubes.Test + sys-nat @dispvm allow', 'sys-nat', '@dispvm').action).toBe('deny');
  });

  it('@dispvm:NAME matches the default disposable', () => {
    expect(decide('qubes.Test + work @dispvm:default-dvm allow', 'work', '@dispvm').action).toBe(
      'allow',
    );
    expect(
      decide('qubes.Test + work @dispvm:default-dvm allow', 'work', '@dispvm:default-dvm').action,
    ).toBe('allow');
    expect(decide('qubes.Test + work @dispvm:@tag:dvm allow', 'work', '@dispvm').action).toBe(
      'allow',
    );
    expect(decide('qubes.Test + work @dispvm:@tag:other allow', 'work', '@dispvm').action).toBe(
      'deny',
    );
  });

  it('@dispvm:NAME as source matches its disposables', () => {
    expect(decide('qubes.Test + @dispvm:default-dvm work allow', 'disp123', 'work').action).toBe(
      'allow',
    );
    expect(decide('qubes.Test + @dispvm:@tag:dvm work allow', 'disp123', 'work').action).toBe(
      'allow',
    );
    expect(decide('qubes.Test + @dispvm:default-dvm work allow', 'personal', 'work').action).toBe(
      'deny',
    );
  });

  it('rejects an unknown intended target', () => {
    expect(decide('qubes.Test + @anyvm @anyvm allow', 'work', 'nonexistent')).toMatchObject({
      action: 'deny',
      reason: 'invalid target "nonexistent"',
    });
  });

  it('matches service and argument', () => {
    const policy =
      'qubes.Test +a work personal allow\nqubes.Test * work personal ask\n* * @anyvm @anyvm deny';
    expect(decide(policy, 'work', 'personal', 'qubes.Test', 'a').action).toBe('allow');
    expect(decide(policy, 'work', 'personal', 'qubes.Test', 'b').action).toBe('ask');
    expect(decide(policy, 'work', 'personal', 'qubes.Test', '').action).toBe('ask');
    expect(decide(policy, 'work', 'personal', 'qubes.Other', 'a').action).toBe('deny');
    expect(
      decide('qubes.Test + work personal allow', 'work', 'personal', 'qubes.Test', 'a').action,
    ).toBe('deny');
  });
});

describe('evaluatePolicy actions', () => {
  it('allow redirects with target=', () => {
    expect(
      decide('qubes.Test + work personal allow target=sys-net user=root', 'work', 'personal'),
    ).toMatchObject({
      action: 'allow',
      target: 'sys-net',
      user: 'root',
      rule: { file: '50-test.policy', line: 1 },
    });
  });

  it('deny names the deciding rule', () => {
    expect(decide('# x\nqubes.Test + work personal deny', 'work', 'personal')).toEqual({
      action: 'deny',
      reason: 'denied by policy 50-test.policy:2',
      rule: { file: '50-test.policy', line: 2, text: 'qubes.Test + work personal deny' },
    });
  });

  it('ask lists targets and the default', () => {
    const policy = [
      'qubes.Test + work sys-net deny',
      'qubes.Test + work @anyvm ask default_target=personal',
      'qubes.Test + work @adminvm ask',
    ].join('\n');
    expect(decide(policy, 'work', 'personal')).toMatchObject({
      action: 'ask',
      target: 'personal',
      defaultTarget: 'personal',
      targets: [
        '@dispvm:default-dvm',
        'default-dvm',
        'disp123',
        'dom0',
        'personal',
        'sys-nat',
        'work',
      ],
    });
  });

  it('ask with target= offers only that target', () => {
    expect(decide('qubes.Test + work @default ask target=@adminvm', 'work', '')).toMatchObject({
      action: 'ask',
      target: '@default',
      targets: ['@adminvm'],
    });
  });

  it('denies when no rule matches', () => {
    expect(decide('qubes.Other + work personal allow', 'work', 'personal')).toEqual({
      action: 'deny',
      reason: 'no matching rule',
    });
  });

  it('denies everything for a broken policy', () => {
    const policy: QrexecPolicy = {
      rules: rulesOf('* * @anyvm @anyvm allow'),
      errors: [
        {
          code: 'invalid-action',
          file: 'x.policy',
          line: 1,
          message: 'x.policy:1: invalid action',
        },
      ],
    };
    const decision = evaluatePolicy(
      policy,
      { service: 's', source: 'work', target: 'personal' },
      systemInfo,
    );
    expect(decision.action).toBe('deny');
  });
});

describe('loadPolicyDirectory', () => {
  let dir = '';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hq1-qrexec-policy-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads files in sorted order, first match wins', async () => {
    await writeFile(join(dir, '90-default.policy'), 'qubes.Test + @anyvm @anyvm deny\n');
    await writeFile(join(dir, '30-user.policy'), 'qubes.Test + work personal allow\n');
    await writeFile(join(dir, '50-mid.policy'), 'qubes.Test + work @anyvm ask\n');
    const policy = await loadPolicyDirectory(dir);
    expect(policy.errors).toEqual([]);
    expect(policy.rules.map((rule) => rule.origin.file)).toEqual([
      join(dir, '30-user.policy'),
      join(dir, '50-mid.policy'),
      join(dir, '90-default.policy'),
    ]);
    const decision = evaluatePolicy(
      policy,
      { service: 'qubes.Test', source: 'work', target: 'personal' },
      systemInfo,
    );
    expect(decision).toMatchObject({
      action: 'allow',
      rule: { file: join(dir, '30-user.policy'), line: 1 },
    });
  });

  it('ignores dot files and other suffixes', async () => {
    await writeFile(join(dir, '.30-user.policy.swp'), 'garbage');
    await writeFile(join(dir, 'README'), 'garbage');
    await writeFile(join(dir, '30-user.policy~'), 'garbage');
    await writeFile(join(dir, '40-ok.policy'), '* * @anyvm @anyvm deny\n');
    const policy = await loadPolicyDirectory(dir);
    expect(policy.errors).toEqual([]);
    expect(policy.rules).toHaveLength(1);
  });

  it('fails closed on a malformed file', async () => {
    await writeFile(join(dir, '30-user.policy'), 'qubes.Test + work personal allow\n');
    await writeFile(join(dir, '50-bad.policy'), 'qubes.Test + work personal permit\n');
    const policy = await loadPolicyDirectory(dir);
    expect(policy.rules).toEqual([]);
    expect(policy.errors.map((error) => error.code)).toEqual(['invalid-action']);
    const decision = evaluatePolicy(
      policy,
      { service: 'qubes.Test', source: 'work', target: 'personal' },
      systemInfo,
    );
    expect(decision.action).toBe('deny');
  });

  it('fails closed on an invalid file name', async () => {
    await writeFile(join(dir, '30-User.policy'), 'qubes.Test + work personal allow\n');
    const policy = await loadPolicyDirectory(dir);
    expect(policy.errors.map((error) => error.code)).toEqual(['invalid-file-name']);
  });

  it('fails closed on a missing directory', async () => {
    const policy = await loadPolicyDirectory(join(dir, 'missing'));
    expect(policy.errors.map((error) => error.code)).toEqual(['read-failed']);
  });
});
