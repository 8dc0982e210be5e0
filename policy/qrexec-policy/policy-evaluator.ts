import type {
  PolicyDecision,
  PolicyRequest,
  PolicyRule,
  QrexecPolicy,
  QrexecSystemInfo,
  VmToken,
} from './policy-types.js';
import { formatVmToken, parseVmToken } from './vm-tokens.js';

/**
 * Evaluator of a qrexec policy: the first rule whose service, argument,
 * source and target match decides, and no match means deny. Token matching,
 * redirects and the list of targets offered by `ask` follow qubes-core-qrexec
 * `qrexec/policy/parser.py`.
 */

const ADMINVM = '@adminvm';

export function evaluatePolicy(
  policy: QrexecPolicy,
  request: PolicyRequest,
  systemInfo: QrexecSystemInfo,
): PolicyDecision {
  if (policy.errors.length > 0) {
    return { action: 'deny', reason: `policy failed to load: ${policy.errors[0]?.message}` };
  }

  const intended = resolveIntendedTarget(request.target, systemInfo);
  if (intended === null) {
    return { action: 'deny', reason: `invalid target ${JSON.stringify(request.target)}` };
  }

  const source = request.source === 'dom0' ? ADMINVM : request.source;
  const argument = `+${request.argument ?? ''}`;
  const normalized = { service: request.service, argument, source, target: intended };

  const rule = policy.rules.find((candidate) => matchesRule(candidate, normalized, systemInfo));
  if (rule === undefined) {
    return { action: 'deny', reason: 'no matching rule' };
  }

  return applyAction(rule, normalized, policy.rules, systemInfo);
}

export interface NormalizedRequest {
  service: string;
  argument: string;
  source: string;
  target: string;
}

/** Returns the intended target in canonical form, or null when it names nothing valid. */
function resolveIntendedTarget(target: string, systemInfo: QrexecSystemInfo): string | null {
  if (target === '' || target === '@default') {
    return '@default';
  }

  const parsed = parseVmToken(target, 'target');
  if (!parsed.ok) {
    return null;
  }

  const token = parsed.token;
  switch (token.kind) {
    case 'adminvm':
    case 'dispvm':
      return formatVmToken(token);
    case 'name':
      return token.name in systemInfo.domains ? token.name : null;
    case 'dispvmTemplate':
      return systemInfo.domains[token.template]?.templateForDispvms === true
        ? formatVmToken(token)
        : null;
    default:
      return null;
  }
}

function matchesRule(
  rule: PolicyRule,
  request: NormalizedRequest,
  systemInfo: QrexecSystemInfo,
): boolean {
  return (
    matchesButTarget(rule, request, systemInfo) &&
    matchesTarget(rule.target, request.target, request.source, systemInfo)
  );
}

function matchesButTarget(
  rule: PolicyRule,
  request: NormalizedRequest,
  systemInfo: QrexecSystemInfo,
): boolean {
  return (
    (rule.service === null || rule.service === request.service) &&
    (rule.argument === null || rule.argument === request.argument) &&
    matchesSource(rule.source, request.source, systemInfo)
  );
}

function matchesSource(token: VmToken, source: string, systemInfo: QrexecSystemInfo): boolean {
  const domain = systemInfo.domains[source];
  switch (token.kind) {
    case 'dispvmTemplate':
      // NOTE: a source `@dispvm:NAME` matches disposables started from NAME, read from
      // `dispvmTemplate` in the system info.
      return domain?.type === 'DispVM' && domain.dispvmTemplate === token.template;
    case 'dispvmTag': {
      const template = domain?.type === 'DispVM' ? domain.dispvmTemplate : null;
      const templateInfo = template ? systemInfo.domains[template] : undefined;
      return templateInfo?.tags.includes(token.tag) === true;
    }
    default:
      return matchesCommon(token, source, systemInfo);
  }
}

function matchesTarget(
  token: VmToken,
  target: string,
  source: string,
  systemInfo: QrexecSystemInfo,
): boolean {
  switch (token.kind) {
    case 'dispvmTemplate':
      if (target === '@dispvm') {
        return defaultDispvmTemplate(source, systemInfo) === formatVmToken(token);
      }
      return target === formatVmToken(token);
    case 'dispvmTag': {
      const template = target === '@dispvm' ? defaultDispvmTemplate(source, systemInfo) : target;
      if (template === null || !template.startsWith('@dispvm:')) {
        return false;
      }
      const info = systemInfo.domains[template.slice('@dispvm:'.length)];
      return info?.templateForDispvms === true && info.tags.includes(token.tag);
    }
    default:
      return matchesCommon(token, target, systemInfo);
  }
}

function matchesCommon(token: VmToken, value: string, systemInfo: QrexecSystemInfo): boolean {
  switch (token.kind) {
    case 'anyvm':
      return value !== ADMINVM;
    case 'type':
      return systemInfo.domains[value]?.type === token.vmType;
    case 'tag':
      return systemInfo.domains[value]?.tags.includes(token.tag) === true;
    default:
      return formatVmToken(token) === value;
  }
}

/** Returns `@dispvm:TEMPLATE` for the source's `default_dispvm`, or null when it has none. */
function defaultDispvmTemplate(source: string, systemInfo: QrexecSystemInfo): string | null {
  const template = systemInfo.domains[source]?.defaultDispvm;
  return template ? `@dispvm:${template}` : null;
}

function applyAction(
  rule: PolicyRule,
  request: NormalizedRequest,
  rules: PolicyRule[],
  systemInfo: QrexecSystemInfo,
): PolicyDecision {
  const origin = rule.origin;
  const where = `${origin.file}:${origin.line}`;
  const action = rule.action;

  if (action.kind === 'deny') {
    return { action: 'deny', reason: `denied by policy ${where}`, rule: origin };
  }

  if (action.kind === 'allow') {
    const redirect = action.target ? formatVmToken(action.target) : request.target;
    const target = resolveAllowTarget(redirect, request.source, systemInfo);
    if (typeof target !== 'string') {
      return { action: 'deny', reason: `${target.reason} (rule ${where})`, rule: origin };
    }
    return withUser({ action: 'allow', target, rule: origin }, action.user);
  }

  const targets = action.target
    ? [formatVmToken(action.target)]
    : collectTargetsForAsk(request, rules, systemInfo);
  if (targets.length === 0) {
    return {
      action: 'deny',
      reason: `ask action at ${where} has no target to choose from`,
      rule: origin,
    };
  }

  const decision: PolicyDecision = { action: 'ask', target: request.target, targets, rule: origin };
  if (action.defaultTarget) {
    decision.defaultTarget = formatVmToken(action.defaultTarget);
  }
  return withUser(decision, action.user);
}

function resolveAllowTarget(
  target: string,
  source: string,
  systemInfo: QrexecSystemInfo,
): string | { reason: string } {
  if (target === '@default') {
    return { reason: 'allow action but neither the caller nor the policy names a target' };
  }
  if (target === '@dispvm') {
    return (
      defaultDispvmTemplate(source, systemInfo) ?? {
        reason: `allow action to @dispvm but ${source} has no default_dispvm`,
      }
    );
  }
  if (resolveIntendedTarget(target, systemInfo) === null) {
    return { reason: `target ${target} does not exist` };
  }
  return target;
}

function withUser<T extends PolicyDecision & { user?: string }>(decision: T, user?: string): T {
  if (user !== undefined) {
    decision.user = user;
  }
  return decision;
}

/**
 * Lists the targets an `ask` prompt offers: every rule that matches except
 * for its target adds its target's expansion, and deny rules earlier in the
 * policy remove theirs. `@dispvm` becomes the source's default disposable
 * template and `@adminvm` is shown as `dom0`.
 */
export function collectTargetsForAsk(
  request: NormalizedRequest,
  rules: PolicyRule[],
  systemInfo: QrexecSystemInfo,
): string[] {
  const targets = new Set<string>();

  for (const rule of [...rules].reverse()) {
    if (!matchesButTarget(rule, request, systemInfo)) {
      continue;
    }
    const token =
      rule.action.kind !== 'deny' && rule.action.target ? rule.action.target : rule.target;
    const expansion = expandToken(token, systemInfo);
    for (const name of expansion) {
      if (rule.action.kind === 'deny') {
        targets.delete(name);
      } else {
        targets.add(name);
      }
    }
  }

  if (targets.delete('@dispvm')) {
    const template = defaultDispvmTemplate(request.source, systemInfo);
    if (template !== null) {
      targets.add(template);
    }
  }
  if (targets.delete(ADMINVM)) {
    targets.add('dom0');
  }

  return [...targets].sort();
}

function expandToken(token: VmToken, systemInfo: QrexecSystemInfo): string[] {
  const domains = Object.entries(systemInfo.domains);
  switch (token.kind) {
    case 'name':
      return token.name in systemInfo.domains ? [token.name] : [];
    case 'adminvm':
      return [ADMINVM];
    case 'dispvm':
      return ['@dispvm'];
    case 'default':
      return [];
    case 'anyvm': {
      const names = domains.filter(([, info]) => info.type !== 'AdminVM').map(([name]) => name);
      const templates = domains
        .filter(([, info]) => info.templateForDispvms === true)
        .map(([name]) => `@dispvm:${name}`);
      return [...names, ...templates, '@dispvm'];
    }
    case 'type':
      return domains.filter(([, info]) => info.type === token.vmType).map(([name]) => name);
    case 'tag':
      return domains.filter(([, info]) => info.tags.includes(token.tag)).map(([name]) => name);
    case 'dispvmTemplate':
      return systemInfo.domains[token.template]?.templateForDispvms === true
        ? [formatVmToken(token)]
        : [];
    case 'dispvmTag':
      return domains
        .filter(([, info]) => info.templateForDispvms === true && info.tags.includes(token.tag))
        .map(([name]) => `@dispvm:${name}`);
  }
}
