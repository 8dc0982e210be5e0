import { formatPortRange } from '../../rpc/wire-types.js';
import { ANY_SOURCE_CIDR, type ForwardRule } from '../forwards/forward-rule.js';
import { formatRuleWords } from '../forwards/rule-words.js';

/** Table and raw views of forwards, laid out like `qvm-firewall` lists rules. */

const COLUMNS = [
  'NO',
  'PROTO',
  'PORT(S)',
  'TO-PORT',
  'SOURCE',
  'EXPIRE',
  'EXTERNAL',
  'COMMENT',
] as const;

export function formatForwardTable(forwards: readonly ForwardRule[], nowUnixSeconds: number) {
  const rows = forwards.map((forward, index) => [
    String(index),
    forward.protocol,
    formatPortRange(forward.ports),
    formatPortRange(forward.targetPorts),
    forward.sourceCidr === ANY_SOURCE_CIDR ? '-' : forward.sourceCidr,
    formatExpiry(forward.expiresAtUnixSeconds, nowUnixSeconds),
    formatExternal(forward),
    forward.comment ?? '-',
  ]);

  const widths = COLUMNS.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const formatRow = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();

  return [formatRow(COLUMNS), ...rows.map(formatRow)].join('\n');
}

/** Returns the router's address and port of a NAT traversal lease, or `-`. */
function formatExternal(forward: ForwardRule): string {
  const upstream = forward.natTraversal?.upstream ?? forward.routerMapping?.mapping;
  if (upstream == null) {
    return forward.routerMapping != null ? 'pending' : '-';
  }
  return `${upstream.externalAddress}:${upstream.externalPort}`;
}

/** One rule per line in the `key=value` form that `qvm-forward VM add` takes. */
export function formatForwardRaw(forwards: readonly ForwardRule[]): string {
  return forwards
    .map((forward) => formatRuleWords({ ...forward, upstream: forward.routerMapping != null }))
    .join('\n');
}

/** Formats an expiry relative to now, e.g. `in 59m 58s`, or `-` for none. */
export function formatExpiry(expiresAtUnixSeconds: number | null, nowUnixSeconds: number): string {
  if (expiresAtUnixSeconds === null) {
    return '-';
  }

  let remainingSeconds = Math.max(0, expiresAtUnixSeconds - nowUnixSeconds);
  const parts: string[] = [];
  for (const [unitSeconds, suffix] of [
    [86_400, 'd'],
    [3_600, 'h'],
    [60, 'm'],
  ] as const) {
    if (remainingSeconds >= unitSeconds) {
      parts.push(`${Math.floor(remainingSeconds / unitSeconds)}${suffix}`);
      remainingSeconds %= unitSeconds;
    }
  }
  if (remainingSeconds > 0 || parts.length === 0) {
    parts.push(`${remainingSeconds}s`);
  }
  return `in ${parts.slice(0, 2).join(' ')}`;
}
