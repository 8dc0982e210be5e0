// Mappings view: the live NAT traversal leases (forwards the broker requested
// for a qube), with their router mapping and expiry; each can be revoked.
import { countdown, el, formatPorts, replaceKeepingFocus, table } from './dom.js';

let nodes = null;

export const mappingsView = {
  mount(root, _params, app) {
    nodes = {
      app,
      list: el('div', {}, el('p', { text: 'Loading…' })),
      status: el('p', { class: 'status', role: 'status' }),
      key: '',
    };
    root.append(
      el('h2', { text: 'NAT traversal mappings' }),
      el('p', {
        class: 'intro',
        text: 'Mappings that qubes requested through the broker. Revoking one removes it from every hop; the broker then drops its router mapping.',
      }),
      nodes.list,
      nodes.status,
    );
  },

  update(app) {
    const leases = app.overview.forwards.filter((forward) => forward.natTraversal != null);
    const key = JSON.stringify(leases);
    if (key === nodes.key) return;
    nodes.key = key;
    const now = app.nowUnixSeconds();
    const rows = leases.map((lease) => {
      const upstream = lease.natTraversal.upstream;
      const label = `${lease.qube} ${lease.protocol} ${lease.natTraversal.internalPort}`;
      return [
        el('a', { href: `#/qubes/${encodeURIComponent(lease.qube)}`, text: lease.qube }),
        lease.protocol,
        upstream ? `${upstream.externalAddress}:${upstream.externalPort}` : 'none yet',
        formatPorts(lease.ports),
        String(lease.natTraversal.internalPort),
        lease.natTraversal.via,
        upstream
          ? el('span', { class: 'good', text: `mapped on the router (${upstream.via})` })
          : el('span', { class: 'warn', text: 'no router mapping' }),
        countdown(lease.expiresAtUnixSeconds, now),
        lease.comment ?? '',
        el('button', {
          type: 'button',
          class: 'danger',
          text: 'Revoke',
          'aria-label': `Revoke mapping ${label}`,
          dataset: { focusKey: `revoke-${lease.id}` },
          on: { click: () => revoke(lease, label) },
        }),
      ];
    });
    replaceKeepingFocus(
      nodes.list,
      table(
        'Live mappings',
        [
          'Qube',
          'Proto',
          'External address',
          'Uplink port',
          'Port in qube',
          'Via',
          'Upstream',
          'Expires',
          'Description',
          'Actions',
        ],
        rows,
        'No live mappings.',
      ),
    );
  },

  leave() {
    nodes = null;
  },
};

async function revoke(lease, label) {
  const { app } = nodes;
  const result = await app.api('DELETE', `mappings/${lease.id}`);
  if (nodes === null) return;
  nodes.status.textContent = result.ok
    ? `Revoked ${label}. Same as: ${result.body.cli}`
    : `Not revoked: ${result.body.error}`;
  app.announce(nodes.status.textContent);
  nodes.list.closest('main')?.querySelector('h2')?.focus();
}
