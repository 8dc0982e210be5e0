// The stock Qubes firewall rules of a qube, as qvm-firewall lists them.
import { el, table } from './dom.js';

const COLUMNS = [
  ['action', 'Action'],
  ['dsthost', 'Host'],
  ['proto', 'Protocol'],
  ['dstports', 'Port(s)'],
  ['specialtarget', 'Special target'],
  ['icmptype', 'ICMP type'],
  ['expire', 'Expire'],
  ['comment', 'Comment'],
];

/** Splits one Admin API rule line (`key=value` words, `comment=` last) into its fields. */
export function parseFirewallRule(line) {
  const fields = {};
  const words = line.split(' ');
  for (let index = 0; index < words.length; index++) {
    const separator = words[index].indexOf('=');
    if (separator <= 0) continue;
    const key = words[index].slice(0, separator);
    if (key === 'comment') {
      fields.comment = [words[index].slice(separator + 1), ...words.slice(index + 1)].join(' ');
      break;
    }
    fields[key] = words[index].slice(separator + 1);
  }
  return fields;
}

export function firewallTable(rules) {
  const rows = rules.map((line, number) => {
    const fields = parseFirewallRule(line);
    return [String(number), ...COLUMNS.map(([key]) => fields[key] ?? '-')];
  });
  return el(
    'div',
    { class: 'firewall' },
    table(
      'Firewall rules',
      ['No', ...COLUMNS.map(([, title]) => title)],
      rows,
      'No rules: the qube has no network access.',
    ),
  );
}
