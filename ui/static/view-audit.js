// Audit log: the dom0 log (every change dom0 made), newest first, filtered
// on the server; it reloads when the log grows.
import { el, field, replaceKeepingFocus, table } from './dom.js';

let nodes = null;

export const auditView = {
  mount(root, _params, app) {
    const reload = () => void load();
    nodes = {
      app,
      reload,
      results: el('div', {}, el('p', { text: 'Loading…' })),
      level: el(
        'select',
        { on: { change: reload } },
        ['debug', 'info', 'warn', 'error'].map((level) =>
          el('option', { value: level, text: level, selected: level === 'info' }),
        ),
      ),
      qube: el(
        'select',
        { on: { change: reload } },
        el('option', { value: '', text: 'all qubes' }),
      ),
      text: el('input', { type: 'search', autocomplete: 'off', maxlength: '100' }),
      since: el(
        'select',
        { on: { change: reload } },
        el('option', { value: '', text: 'any time' }),
        el('option', { value: '3600', text: 'last hour' }),
        el('option', { value: '86400', text: 'last day' }),
      ),
    };
    const form = el(
      'form',
      {
        class: 'filters',
        'aria-label': 'Audit log filters',
        on: {
          submit: (event) => {
            event.preventDefault();
            reload();
          },
        },
      },
      el(
        'div',
        { class: 'grid' },
        field('audit-level', 'Lowest level', nodes.level),
        field('audit-qube', 'Qube', nodes.qube),
        field('audit-text', 'Text', nodes.text),
        field('audit-since', 'Since', nodes.since),
      ),
      el('p', { class: 'form-error', role: 'alert' }),
      el(
        'div',
        { class: 'buttons' },
        el('button', { type: 'submit', class: 'primary', text: 'Apply filters' }),
      ),
    );
    root.append(
      el('h2', { text: 'Audit log' }),
      el('p', {
        class: 'intro',
        text: 'Every change dom0 made, from qvm-forward, the dashboard, the broker and the dom0 service.',
      }),
      form,
      nodes.results,
    );
    app.auditListeners.add(reload);
    reload();
  },

  update(app) {
    const names = app.overview.qubes.map((qube) => qube.name);
    const present = [...nodes.qube.options].map((option) => option.value).filter(Boolean);
    if (JSON.stringify(names) !== JSON.stringify(present)) {
      const selected = nodes.qube.value;
      nodes.qube.replaceChildren(
        el('option', { value: '', text: 'all qubes' }),
        ...names.map((name) =>
          el('option', { value: name, text: name, selected: name === selected }),
        ),
      );
    }
  },

  leave(app) {
    app.auditListeners.delete(nodes.reload);
    nodes = null;
  },
};

async function load() {
  const { app } = nodes;
  const query = new URLSearchParams({ level: nodes.level.value, limit: '200' });
  if (nodes.qube.value !== '') query.set('qube', nodes.qube.value);
  if (nodes.text.value.trim() !== '') query.set('text', nodes.text.value.trim());
  if (nodes.since.value !== '')
    query.set(
      'sinceUnixMs',
      String(Date.now() + app.clockOffsetMs - Number(nodes.since.value) * 1000),
    );
  const result = await app.api('GET', `audit?${query}`);
  if (nodes === null) return;
  if (!result.ok) {
    nodes.results.replaceChildren(el('p', { class: 'bad', text: result.body.error }));
    return;
  }
  const rows = result.body.entries.map((entry) => [
    el('time', {
      datetime: new Date(entry.timeUnixMs).toISOString(),
      text: new Date(entry.timeUnixMs).toLocaleString(),
    }),
    el('span', { class: `level-${entry.level}`, text: entry.level }),
    entry.component,
    entry.message,
    el('code', { text: JSON.stringify(entry.details) }),
  ]);
  replaceKeepingFocus(
    nodes.results,
    table(
      'dom0 log entries, newest first',
      ['Time', 'Level', 'Component', 'Message', 'Details'],
      rows,
      'No entries match.',
    ),
    result.body.truncated
      ? el('p', { class: 'hint', text: 'Older entries are not shown; narrow the filters.' })
      : null,
  );
}
