import type { VmToken, VmTokenKind } from './policy-types.js';

/**
 * Parsing and printing of the VM columns of a qrexec policy line. Which
 * tokens each column accepts follows the table in qubes-core-qrexec
 * `doc/multifile-policy.markdown`.
 */

/** Qube names: a letter first, then letters, digits and `_.-`, at most 31 characters. */
export const VM_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** Tag and type values: the characters Qubes accepts in tag names. */
const TOKEN_VALUE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export type TokenContext = 'source' | 'target' | 'redirect';

const ALLOWED_KINDS: Record<TokenContext, ReadonlySet<VmTokenKind>> = {
  source: new Set(['name', 'adminvm', 'anyvm', 'dispvmTemplate', 'dispvmTag', 'tag', 'type']),
  target: new Set([
    'name',
    'adminvm',
    'anyvm',
    'default',
    'dispvm',
    'dispvmTemplate',
    'dispvmTag',
    'tag',
    'type',
  ]),
  redirect: new Set(['name', 'adminvm', 'dispvm', 'dispvmTemplate']),
};

export type ParseTokenResult =
  | { ok: true; token: VmToken }
  | { ok: false; code: 'invalid-token' | 'token-not-allowed-here'; message: string };

/** Parses one VM column; `dom0` is an alias of `@adminvm`, as in qrexec. */
export function parseVmToken(text: string, context: TokenContext): ParseTokenResult {
  const token = parseAnyToken(text);
  if (token === null) {
    return {
      ok: false,
      code: 'invalid-token',
      message: `invalid ${context} token ${JSON.stringify(text)}: expected a qube name or one of @anyvm, @adminvm, @default, @dispvm, @dispvm:NAME, @dispvm:@tag:TAG, @tag:TAG, @type:TYPE`,
    };
  }

  if (!ALLOWED_KINDS[context].has(token.kind)) {
    return {
      ok: false,
      code: 'token-not-allowed-here',
      message: `token ${JSON.stringify(text)} is not allowed as ${describeContext(context)}`,
    };
  }

  return { ok: true, token };
}

function describeContext(context: TokenContext): string {
  if (context === 'redirect') {
    return 'target= or default_target= (use a qube name, @adminvm, @dispvm or @dispvm:NAME)';
  }
  return `${context} column`;
}

function parseAnyToken(text: string): VmToken | null {
  if (text === 'dom0' || text === '@adminvm') {
    return { kind: 'adminvm' };
  }

  if (!text.startsWith('@')) {
    return VM_NAME_PATTERN.test(text) ? { kind: 'name', name: text } : null;
  }

  switch (text) {
    case '@anyvm':
      return { kind: 'anyvm' };
    case '@default':
      return { kind: 'default' };
    case '@dispvm':
      return { kind: 'dispvm' };
  }

  const dispvmTag = valueAfter(text, '@dispvm:@tag:');
  if (dispvmTag !== null) {
    return TOKEN_VALUE_PATTERN.test(dispvmTag) ? { kind: 'dispvmTag', tag: dispvmTag } : null;
  }

  const template = valueAfter(text, '@dispvm:');
  if (template !== null) {
    return VM_NAME_PATTERN.test(template) ? { kind: 'dispvmTemplate', template } : null;
  }

  const tag = valueAfter(text, '@tag:');
  if (tag !== null) {
    return TOKEN_VALUE_PATTERN.test(tag) ? { kind: 'tag', tag } : null;
  }

  const vmType = valueAfter(text, '@type:');
  if (vmType !== null) {
    return TOKEN_VALUE_PATTERN.test(vmType) ? { kind: 'type', vmType } : null;
  }

  return null;
}

function valueAfter(text: string, prefix: string): string | null {
  return text.startsWith(prefix) ? text.slice(prefix.length) : null;
}

/** Prints a token the way policy files and qrexec write it (`@adminvm`, never `dom0`). */
export function formatVmToken(token: VmToken): string {
  switch (token.kind) {
    case 'name':
      return token.name;
    case 'adminvm':
      return '@adminvm';
    case 'anyvm':
      return '@anyvm';
    case 'default':
      return '@default';
    case 'dispvm':
      return '@dispvm';
    case 'dispvmTemplate':
      return `@dispvm:${token.template}`;
    case 'dispvmTag':
      return `@dispvm:@tag:${token.tag}`;
    case 'tag':
      return `@tag:${token.tag}`;
    case 'type':
      return `@type:${token.vmType}`;
  }
}
