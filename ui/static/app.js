// The dashboard page: a hash router over five views, fed by the live
// stream (/api/events) and the JSON API. No framework: each view has
// mount(root, params, app), update(app) on new data, and leave().
import { tickCountdowns } from './dom.js';
import { auditView } from './view-audit.js';
import { mappingsView } from './view-mappings.js';
import { promptsView } from './view-prompts.js';
import { qubeView } from './view-qube.js';
import { qubesView } from './view-qubes.js';

const app = {
  overview: null,
  prompts: [],
  /** Server clock minus page clock, so countdowns follow dom0's time. */
  clockOffsetMs: 0,
  auditListeners: new Set(),

  nowUnixSeconds() {
    return Math.floor((Date.now() + this.clockOffsetMs) / 1000);
  },

  /** Calls the API; returns { ok, status, body } and never throws for HTTP errors. */
  async api(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      const response = await fetch(`/api/${path}`, init);
      const json = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      return { ok: response.ok, status: response.status, body: json };
    } catch (error) {
      return {
        ok: false,
        status: 0,
        body: { error: `cannot reach the dashboard: ${error.message}` },
      };
    }
  },

  /** Reads a message to screen readers and shows it in the status line of the view. */
  announce(message) {
    document.getElementById('announcer').textContent = message;
  },

  navigate(hash) {
    if (location.hash === hash) route(true);
    else location.hash = hash;
  },
};

let current = null;

function route(moveFocus = true) {
  const parts = location.hash
    .replace(/^#\/?/, '')
    .split('/')
    .filter(Boolean)
    .map(decodeURIComponent);
  const [name = 'qubes', parameter] = parts;
  const view =
    name === 'qubes' && parameter !== undefined
      ? qubeView
      : name === 'mappings'
        ? mappingsView
        : name === 'prompts'
          ? promptsView
          : name === 'audit'
            ? auditView
            : qubesView;

  current?.view.leave?.(app);
  const main = document.getElementById('main');
  main.replaceChildren();
  current = { view, parameter };
  view.mount(main, { name: parameter }, app);
  if (app.overview !== null) view.update?.(app);

  for (const link of document.querySelectorAll('nav a')) {
    const active = link.dataset.view === (view === qubeView ? 'qubes' : name);
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const heading = main.querySelector('h2');
  if (heading !== null) {
    heading.tabIndex = -1;
    if (moveFocus) heading.focus();
    document.title = `${heading.textContent} – Qubes NAT broker`;
  }
}

function updateBadges() {
  const mappings =
    app.overview?.forwards.filter((forward) => forward.natTraversal != null).length ?? 0;
  document.getElementById('mapping-count').textContent = mappings > 0 ? String(mappings) : '';
  document.getElementById('prompt-count').textContent =
    app.prompts.length > 0 ? String(app.prompts.length) : '';
}

function connect() {
  const liveState = document.getElementById('live-state');
  const events = new EventSource('/api/events');
  events.addEventListener('open', () => {
    liveState.textContent = 'Live';
    liveState.dataset.state = 'live';
  });
  events.addEventListener('error', () => {
    liveState.textContent = 'Reconnecting…';
    liveState.dataset.state = 'down';
  });
  events.addEventListener('overview', (event) => {
    app.overview = JSON.parse(event.data);
    app.clockOffsetMs = app.overview.nowUnixMs - Date.now();
    updateBadges();
    current?.view.update?.(app);
  });
  events.addEventListener('prompts', (event) => {
    const before = new Set(app.prompts.map((prompt) => prompt.id));
    app.prompts = JSON.parse(event.data);
    const added = app.prompts.filter((prompt) => !before.has(prompt.id));
    if (added.length > 0)
      app.announce(
        `New prompt: ${added[0].source} asks for ${added[0].service}+${added[0].argument}`,
      );
    updateBadges();
    current?.view.update?.(app);
  });
  events.addEventListener('audit', () => {
    for (const listener of app.auditListeners) listener();
  });
  events.addEventListener('problem', (event) => {
    const { problem } = JSON.parse(event.data);
    const banner = document.getElementById('problem');
    banner.hidden = problem === null;
    banner.textContent = problem ?? '';
  });
}

window.addEventListener('hashchange', () => route(true));
setInterval(() => tickCountdowns(app.nowUnixSeconds()), 1000);
connect();
route(false);
