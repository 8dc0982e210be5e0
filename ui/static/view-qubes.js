// Qubes view: every qube with its network chain, NAT traversal state and limits.
import { el, formatPorts, replaceKeepingFocus, table } from './dom.js';

let container = null;

export const qubesView = {
  mount(root) {
    container = el('div', { class: 'qubes-table' }, el('p', { text: 'Loading…' }));
    root.append(
      el('h2', { text: 'Qubes' }),
      el('p', {
        class: 'intro',
        text: 'Pick a qube to see its firewall rules, forwards and NAT traversal settings.',
      }),
      container,
    );
  },

  update(app) {
    const { qubes, forwards } = app.overview;
    const rows = qubes.map((qube) => {
      const own = forwards.filter((forward) => forward.qube === qube.name);
      const leases = own.filter((forward) => forward.natTraversal != null).length;
      const nat = qube.natTraversal;
      return [
        el('a', {
          href: `#/qubes/${encodeURIComponent(qube.name)}`,
          text: qube.name,
          dataset: { focusKey: `qube-${qube.name}` },
        }),
        qube.klass,
        qube.running ? 'running' : 'halted',
        qube.ip ?? '–',
        qube.chainProblem ?? (qube.chain.length > 0 ? [qube.name, ...qube.chain].join(' → ') : '–'),
        natState(nat),
        nat?.enabled ? nat.allowedPorts.map(formatPorts).join(', ') : '–',
        nat?.enabled ? nat.allowedProtocols.join(', ') : '–',
        nat?.enabled ? `${nat.maxLeaseSeconds} s` : '–',
        String(own.length - leases),
        String(leases),
      ];
    });
    replaceKeepingFocus(
      container,
      table(
        'Qubes known to dom0',
        [
          'Qube',
          'Class',
          'State',
          'IP',
          'Network chain',
          'NAT traversal',
          'Allowed ports',
          'Protocols',
          'Max lease',
          'Forwards',
          'Mappings',
        ],
        rows,
        'dom0 knows no qubes.',
      ),
    );
  },
};

function natState(nat) {
  if (nat === null) return '–';
  if (nat.problem !== null) return el('span', { class: 'bad', text: `off: ${nat.problem}` });
  return nat.enabled ? el('span', { class: 'good', text: 'on' }) : 'off';
}
