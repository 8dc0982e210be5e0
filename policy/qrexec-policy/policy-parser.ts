import type {
  ParsePolicyResult,
  PolicyAction,
  PolicyError,
  PolicyErrorCode,
  PolicyRule,
  VmToken,
  YesNo,
} from './policy-types.js';
import { parseVmToken, type TokenContext } from './vm-tokens.js';

/**
 * Parser of one qrexec policy v5 file. A rule line is
 * `SERVICE +ARGUMENT SOURCE TARGET ACTION [PARAM=VALUE ...]`, fields split on
 * whitespace, `#` starts a comment line (inline comments are not allowed).
 * The checks follow qubes-core-qrexec `qrexec/policy/parser.py`.
 *
 * NOTE: `!include`, `!include-dir` and `!include-service` are rejected with
 * the error code `include-not-supported`: put every rule into a file of the
 * policy directory instead.
 */

/** Service names in policy: letters, digits and `-._` (no `+`, which starts the argument). */
const SERVICE_PATTERN = /^[A-Za-z0-9._-]+$/;

/** Argument charset of qrexec calls, including the leading `+`. */
const ARGUMENT_CHARSET = /^[A-Za-z0-9+._-]*$/;

/** Unix user names, for `user=`. */
const USER_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

const ALLOWED_PARAMETERS: Record<PolicyAction['kind'], ReadonlySet<string>> = {
  allow: new Set(['target', 'user', 'notify', 'autostart']),
  deny: new Set(['notify']),
  ask: new Set(['target', 'default_target', 'user', 'notify', 'autostart']),
};

class LineError extends Error {
  constructor(
    readonly code: PolicyErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Parses a whole policy file; returns every rule, or every error found with file and line. */
export function parsePolicyText(text: string, fileName: string): ParsePolicyResult {
  const rules: PolicyRule[] = [];
  const errors: PolicyError[] = [];
  const lines = text.split('\n');

  for (const [index, rawLine] of lines.entries()) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) {
      continue;
    }

    const origin = { file: fileName, line: index + 1, text: line };
    try {
      rules.push(parseRuleLine(line, origin));
    } catch (error) {
      if (!(error instanceof LineError)) {
        throw error;
      }
      errors.push({
        code: error.code,
        file: fileName,
        line: index + 1,
        message: `${fileName}:${index + 1}: ${error.message}`,
      });
    }
  }

  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules };
}

function parseRuleLine(line: string, origin: PolicyRule['origin']): PolicyRule {
  const fields = line.split(/\s+/);

  if (line.startsWith('!')) {
    rejectDirective(fields[0] ?? line);
  }

  const [service, argument, source, target, action, ...params] = fields;
  if (
    service === undefined ||
    argument === undefined ||
    source === undefined ||
    target === undefined ||
    action === undefined
  ) {
    throw new LineError(
      'wrong-field-count',
      `expected at least 5 fields (SERVICE +ARGUMENT SOURCE TARGET ACTION), found ${fields.length}`,
    );
  }

  const parsedService = parseService(service);
  const parsedArgument = parseArgument(argument, parsedService);
  const sourceToken = parseToken(source, 'source');
  const targetToken = parseToken(target, 'target');
  const parsedAction = parseAction(action, params);

  if (targetToken.kind === 'default' && parsedAction.kind === 'allow' && !parsedAction.target) {
    throw new LineError(
      'allow-default-without-target',
      'allow action for @default target must give target= (the caller named no target)',
    );
  }

  return {
    service: parsedService,
    argument: parsedArgument,
    source: sourceToken,
    target: targetToken,
    action: parsedAction,
    origin,
  };
}

function rejectDirective(directive: string): never {
  if (
    directive === '!include' ||
    directive === '!include-dir' ||
    directive === '!include-service'
  ) {
    throw new LineError(
      'include-not-supported',
      `${directive} is not supported by this policy reader: put the rules into a file of the policy directory`,
    );
  }
  throw new LineError('invalid-directive', `invalid directive ${JSON.stringify(directive)}`);
}

function parseService(service: string): string | null {
  if (service === '*') {
    return null;
  }
  if (!SERVICE_PATTERN.test(service)) {
    throw new LineError(
      'invalid-service',
      `service ${JSON.stringify(service)} contains invalid characters: use letters, digits and -._ or *`,
    );
  }
  return service;
}

function parseArgument(argument: string, service: string | null): string | null {
  if (argument === '*') {
    return null;
  }
  if (!ARGUMENT_CHARSET.test(argument)) {
    throw new LineError(
      'invalid-argument',
      `argument ${JSON.stringify(argument)} contains invalid characters: use letters, digits and +-._`,
    );
  }
  if (!argument.startsWith('+')) {
    throw new LineError(
      'argument-without-plus',
      `argument ${JSON.stringify(argument)} does not start with +: write +${argument}, + for the empty argument, or *`,
    );
  }
  if (service === null) {
    throw new LineError('argument-for-any-service', 'only the * argument is allowed for * service');
  }
  return argument;
}

function parseToken(text: string, context: TokenContext): VmToken {
  const result = parseVmToken(text, context);
  if (!result.ok) {
    throw new LineError(result.code, result.message);
  }
  return result.token;
}

function parseAction(action: string, params: string[]): PolicyAction {
  if (action !== 'allow' && action !== 'deny' && action !== 'ask') {
    throw new LineError(
      'invalid-action',
      `invalid action ${JSON.stringify(action)}: expected allow, deny or ask`,
    );
  }

  const values = new Map<string, string>();
  for (const param of params) {
    const equals = param.indexOf('=');
    if (equals <= 0) {
      throw new LineError(
        'invalid-parameter-syntax',
        `invalid action parameter ${JSON.stringify(param)}: expected KEY=VALUE`,
      );
    }

    const key = param.slice(0, equals);
    if (values.has(key)) {
      throw new LineError('duplicate-parameter', `parameter ${JSON.stringify(key)} given twice`);
    }
    if (!ALLOWED_PARAMETERS[action].has(key)) {
      const allowed = [...ALLOWED_PARAMETERS[action]].join(', ');
      throw new LineError(
        'unknown-parameter',
        `parameter ${JSON.stringify(key)} is not valid for ${action}: valid parameters are ${allowed}`,
      );
    }
    values.set(key, param.slice(equals + 1));
  }

  if (action === 'deny') {
    return withDefined({ kind: 'deny' as const, notify: readYesNo(values, 'notify') });
  }

  const common = {
    target: readRedirect(values, 'target'),
    user: readUser(values),
    notify: readYesNo(values, 'notify'),
    autostart: readYesNo(values, 'autostart'),
  };
  if (action === 'allow') {
    return withDefined({ kind: 'allow' as const, ...common });
  }
  return withDefined({
    kind: 'ask' as const,
    ...common,
    defaultTarget: readRedirect(values, 'default_target'),
  });
}

function readRedirect(values: Map<string, string>, key: string): VmToken | undefined {
  const value = values.get(key);
  if (value === undefined) {
    return undefined;
  }
  const result = parseVmToken(value, 'redirect');
  if (!result.ok) {
    throw new LineError('invalid-parameter-value', `${key}=: ${result.message}`);
  }
  return result.token;
}

function readUser(values: Map<string, string>): string | undefined {
  const value = values.get('user');
  if (value !== undefined && !USER_PATTERN.test(value)) {
    throw new LineError(
      'invalid-parameter-value',
      `user=${JSON.stringify(value)} is not a valid user name`,
    );
  }
  return value;
}

function readYesNo(values: Map<string, string>, key: string): YesNo | undefined {
  const value = values.get(key);
  if (value === undefined || value === 'yes' || value === 'no') {
    return value;
  }
  throw new LineError(
    'invalid-parameter-value',
    `${key}=${JSON.stringify(value)} is invalid: expected yes or no`,
  );
}

/** Drops keys whose value is undefined, so parsed actions compare cleanly. */
function withDefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as T;
}
