import { isIPv4 } from 'node:net';
import type { PortRange, TransportProtocol } from '../../rpc/wire-types.js';
import { formatPortRange, isCanonicalIpv4Cidr } from '../../rpc/wire-types.js';
import { ANY_SOURCE_CIDR, type ForwardRuleFields } from './forward-rule.js';

/**
 * Parser of forward rules written as `key=value` words, in the style of
 * `qvm-firewall`: `proto=tcp port=8443 to-port=443 src=192.168.77.0/24
 * expire=+3600 comment=web server`. `comment=` comes last and takes the rest
 * of the line, spaces included.
 */

export const RULE_KEYS = [
  'proto',
  'port',
  'to-port',
  'src',
  'expire',
  'upstream',
  'comment',
] as const;
export type RuleKey = (typeof RULE_KEYS)[number];

/** Maximum relative expiry: about 68 years, the signed 32-bit range of nft timeouts in seconds. */
export const MAX_RELATIVE_EXPIRE_SECONDS = 2 ** 31 - 1;
export const MAX_COMMENT_LENGTH = 512;

export interface RuleProblem {
  key: RuleKey | null;
  value: string;
  message: string;
}

export type RuleWordsResult =
  | { ok: true; fields: ForwardRuleFields }
  | { ok: false; problems: RuleProblem[] };

export function formatRuleProblems(problems: readonly RuleProblem[]): string {
  return problems
    .map((problem) => {
      if (problem.key !== null && problem.value === '' && problem.message.startsWith('missing')) {
        return `${problem.key}= is ${problem.message}`;
      }
      const shown = problem.key === null ? problem.value : `${problem.key}=${problem.value}`;
      return `invalid ${JSON.stringify(shown)}: ${problem.message}`;
    })
    .join('\n');
}

/**
 * Parses the words of one rule. Every problem is reported at once, each with
 * the value and the fix. `nowUnixSeconds` resolves `expire=+N`.
 */
export function parseRuleWords(words: readonly string[], nowUnixSeconds: number): RuleWordsResult {
  const problems: RuleProblem[] = [];
  const values = splitWords(words, problems);

  const protocol = parseProtocol(values.get('proto'), problems);
  const ports = parsePortRange('port', values.get('port'), problems);
  const targetPorts = parseTargetPorts(values.get('to-port'), ports, problems);
  const sourceCidr = parseSource(values.get('src'), problems);
  const expiresAtUnixSeconds = parseExpire(values.get('expire'), nowUnixSeconds, problems);
  const comment = parseComment(values.get('comment'), problems);
  const upstream = parseUpstream(values.get('upstream'), problems);

  if (problems.length > 0 || protocol === null || ports === null || targetPorts === null) {
    return { ok: false, problems };
  }
  return {
    ok: true,
    fields: {
      protocol,
      ports,
      targetPorts,
      sourceCidr: sourceCidr ?? ANY_SOURCE_CIDR,
      expiresAtUnixSeconds,
      comment,
      ...(upstream ? { upstream } : {}),
    },
  };
}

/** Formats rule fields back into words that `parseRuleWords` accepts (the `--raw` form). */
export function formatRuleWords(fields: ForwardRuleFields): string {
  const words = [`proto=${fields.protocol}`, `port=${formatPortRange(fields.ports)}`];
  if (!sameRange(fields.ports, fields.targetPorts)) {
    words.push(`to-port=${formatPortRange(fields.targetPorts)}`);
  }
  if (fields.sourceCidr !== ANY_SOURCE_CIDR) {
    words.push(`src=${fields.sourceCidr}`);
  }
  if (fields.expiresAtUnixSeconds !== null) {
    words.push(`expire=${fields.expiresAtUnixSeconds}`);
  }
  if (fields.upstream === true) {
    words.push('upstream=yes');
  }
  if (fields.comment !== null) {
    words.push(`comment=${fields.comment}`);
  }
  return words.join(' ');
}

function splitWords(words: readonly string[], problems: RuleProblem[]): Map<RuleKey, string> {
  const values = new Map<RuleKey, string>();

  for (let index = 0; index < words.length; index++) {
    const word = words[index] ?? '';
    const separator = word.indexOf('=');
    if (separator <= 0) {
      problems.push({
        key: null,
        value: word,
        message: `expected key=value, with a key from: ${RULE_KEYS.join(', ')}`,
      });
      continue;
    }

    const key = word.slice(0, separator);
    if (!isRuleKey(key)) {
      problems.push({
        key: null,
        value: word,
        message: `unknown key "${key}"; valid keys: ${RULE_KEYS.join(', ')}`,
      });
      continue;
    }
    if (values.has(key)) {
      problems.push({ key, value: word.slice(separator + 1), message: `${key}= is given twice` });
      continue;
    }

    if (key === 'comment') {
      // The comment takes the rest of the line, as in qvm-firewall.
      values.set(key, [word.slice(separator + 1), ...words.slice(index + 1)].join(' '));
      break;
    }
    values.set(key, word.slice(separator + 1));
  }
  return values;
}

function isRuleKey(key: string): key is RuleKey {
  return (RULE_KEYS as readonly string[]).includes(key);
}

function parseProtocol(
  value: string | undefined,
  problems: RuleProblem[],
): TransportProtocol | null {
  if (value === undefined) {
    problems.push({ key: 'proto', value: '', message: 'missing; add proto=tcp or proto=udp' });
    return null;
  }
  const lower = value.toLowerCase();
  if (lower !== 'tcp' && lower !== 'udp') {
    problems.push({ key: 'proto', value, message: 'use proto=tcp or proto=udp' });
    return null;
  }
  return lower;
}

function parsePortRange(
  key: 'port' | 'to-port',
  value: string | undefined,
  problems: RuleProblem[],
): PortRange | null {
  if (value === undefined) {
    if (key === 'port') {
      problems.push({ key, value: '', message: 'missing; add port=N or port=FIRST-LAST' });
    }
    return null;
  }

  const usage = key === 'port' ? `use ${key}=N or ${key}=FIRST-LAST` : `use ${key}=N`;
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value);
  if (match === null) {
    problems.push({ key, value, message: `not a port number; ${usage} with ports 1-65535` });
    return null;
  }
  const first = Number(match[1]);
  const last = match[2] === undefined ? first : Number(match[2]);
  if (!isPort(first) || !isPort(last)) {
    problems.push({ key, value, message: `ports are 1-65535; ${usage}` });
    return null;
  }
  if (first > last) {
    problems.push({ key, value, message: `the range is reversed; use ${key}=${last}-${first}` });
    return null;
  }
  return { first, last };
}

function parseTargetPorts(
  value: string | undefined,
  ports: PortRange | null,
  problems: RuleProblem[],
): PortRange | null {
  if (value === undefined) {
    return ports;
  }
  const targetPorts = parsePortRange('to-port', value, problems);
  if (targetPorts === null || ports === null) {
    return null;
  }

  if (ports.first !== ports.last && !sameRange(ports, targetPorts)) {
    problems.push({
      key: 'to-port',
      value,
      message: 'a port range keeps its port numbers; remove to-port or forward single ports',
    });
    return null;
  }
  if (ports.first === ports.last && targetPorts.first !== targetPorts.last) {
    problems.push({
      key: 'to-port',
      value,
      message: 'a single port maps to a single port; use to-port=N',
    });
    return null;
  }
  return targetPorts;
}

function parseSource(value: string | undefined, problems: RuleProblem[]): string | null {
  if (value === undefined) {
    return null;
  }
  if (isIPv4(value)) {
    return `${value}/32`;
  }
  if (!isCanonicalIpv4Cidr(value)) {
    problems.push({
      key: 'src',
      value,
      message: 'use an IPv4 address or prefix with zero host bits, e.g. src=192.168.77.0/24',
    });
    return null;
  }
  return value;
}

function parseExpire(
  value: string | undefined,
  nowUnixSeconds: number,
  problems: RuleProblem[],
): number | null {
  if (value === undefined) {
    return null;
  }

  const relative = value.startsWith('+');
  const digits = relative ? value.slice(1) : value;
  const number = /^\d{1,12}$/.test(digits) ? Number(digits) : Number.NaN;
  if (relative) {
    if (!(number >= 1 && number <= MAX_RELATIVE_EXPIRE_SECONDS)) {
      problems.push({
        key: 'expire',
        value,
        message: `use expire=+SECONDS with 1 to ${MAX_RELATIVE_EXPIRE_SECONDS} seconds`,
      });
      return null;
    }
    return nowUnixSeconds + number;
  }

  if (!(number > nowUnixSeconds && number - nowUnixSeconds <= MAX_RELATIVE_EXPIRE_SECONDS)) {
    problems.push({
      key: 'expire',
      value,
      message: `use a UNIX time in the future (now is ${nowUnixSeconds}) or expire=+SECONDS`,
    });
    return null;
  }
  return number;
}

function parseComment(value: string | undefined, problems: RuleProblem[]): string | null {
  if (value === undefined) {
    return null;
  }
  // Control characters would break the one-rule-per-line --raw output.
  if ([...value].some(isControlCharacter)) {
    problems.push({ key: 'comment', value, message: 'remove control characters (newlines, tabs)' });
    return null;
  }
  if (value.length > MAX_COMMENT_LENGTH) {
    problems.push({
      key: 'comment',
      value: `${value.slice(0, 20)}...`,
      message: `shorten the comment to ${MAX_COMMENT_LENGTH} characters`,
    });
    return null;
  }
  return value;
}

function parseUpstream(value: string | undefined, problems: RuleProblem[]): boolean {
  if (value === undefined || value === 'no') {
    return false;
  }
  if (value === 'yes') {
    return true;
  }
  problems.push({ key: 'upstream', value, message: 'use upstream=yes or upstream=no' });
  return false;
}

function isControlCharacter(character: string): boolean {
  const code = character.charCodeAt(0);
  return code < 0x20 || code === 0x7f;
}

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

function sameRange(a: PortRange, b: PortRange): boolean {
  return a.first === b.first && a.last === b.last;
}
