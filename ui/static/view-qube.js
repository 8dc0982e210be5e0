// One qube: its stock firewall rules (read-only), its port forwards (add,
// edit, delete) and its NAT traversal settings. Forms send the qvm-forward
// rule keys, and the server validates them with the CLI's parser.
import {
  clearFormErrors,
  countdown,
  el,
  field,
  formatPorts,
  replaceKeepingFocus,
  showFormErrors,
  table,
} from './dom.js';
import { firewallTable } from './firewall-rules.js';

const FORWARD_FIELDS = {
  proto: 'fw-proto',
  port: 'fw-port',
  'to-port': 'fw-to-port',
  src: 'fw-src',
  expire: 'fw-expire',
  upstream: 'fw-upstream',
  comment: 'fw-comment',
};
const NAT_FIELDS = {
  ports: 'nat-ports',
  protocols: 'nat-protocols',
  maxLeaseSeconds: 'nat-max-lease',
};
const ANY_SOURCE = '0.0.0.0/0';

let view = null;

export const qubeView = {
  mount(root, { name }, app) {
    view = { name, app, editingId: null, forwardsKey: '', natDirty: false, nodes: {} };
    const nodes = view.nodes;
    nodes.chain = el('p', { class: 'chain' });
    nodes.firewall = el('div', {}, el('p', { text: 'Loading…' }));
    nodes.forwards = el('div');
    nodes.forwardStatus = el('p', { class: 'status', role: 'status' });
    nodes.natState = el('p', { class: 'nat-state' });
    nodes.natStatus = el('p', { class: 'status', role: 'status' });

    root.append(
      el('p', { class: 'breadcrumb' }, el('a', { href: '#/qubes', text: '← All qubes' })),
      el('h2', { text: `Qube ${name}` }),
      nodes.chain,
      el(
        'section',
        { 'aria-labelledby': 'firewall-heading', tabindex: '-1' },
        el('h3', { id: 'firewall-heading', text: 'Firewall rules' }),
        el('p', {
          class: 'hint',
          text: 'Read-only: the stock Qubes firewall (admin.vm.firewall.Get). Change it with qvm-firewall.',
        }),
        nodes.firewall,
      ),
      el(
        'section',
        { 'aria-labelledby': 'forwards-heading', tabindex: '-1' },
        el('h3', { id: 'forwards-heading', text: 'Port forwards' }),
        nodes.forwards,
        nodes.forwardStatus,
        buildForwardForm(),
      ),
      el(
        'section',
        { 'aria-labelledby': 'nat-heading', tabindex: '-1' },
        el('h3', { id: 'nat-heading', text: 'NAT traversal' }),
        nodes.natState,
        buildNatForm(),
        nodes.natStatus,
      ),
    );
    void loadFirewall(app, name);
  },

  update(app) {
    const qube = app.overview.qubes.find((candidate) => candidate.name === view.name);
    if (qube === undefined) {
      view.nodes.chain.textContent = `dom0 has no qube named ${view.name}.`;
      return;
    }
    view.nodes.chain.textContent =
      qube.chainProblem ??
      `Network chain: ${[qube.name, ...qube.chain].join(' → ')}${qube.ip ? ` · IP ${qube.ip}` : ''}`;
    renderForwards(
      app,
      app.overview.forwards.filter((forward) => forward.qube === view.name),
    );
    renderNat(qube);
  },

  leave() {
    view = null;
  },
};

async function loadFirewall(app, name) {
  const result = await app.api('GET', `qubes/${encodeURIComponent(name)}`);
  if (view === null || view.name !== name) return;
  if (!result.ok) {
    view.nodes.firewall.replaceChildren(el('p', { class: 'bad', text: result.body.error }));
    return;
  }
  const { rules, problem } = result.body.firewall;
  view.nodes.firewall.replaceChildren(problem ? el('p', { text: problem }) : firewallTable(rules));
}

/** Returns the router's address and port of a forward, as `qvm-forward` lists it in EXTERNAL. */
function externalOf(forward) {
  const mapping = forward.natTraversal?.upstream ?? forward.routerMapping?.mapping ?? null;
  if (mapping !== null) return `${mapping.externalAddress}:${mapping.externalPort}`;
  return forward.routerMapping != null ? 'pending' : '-';
}

function renderForwards(app, forwards) {
  const key = JSON.stringify(forwards);
  if (key === view.forwardsKey) return;
  view.forwardsKey = key;
  const now = app.nowUnixSeconds();
  const rows = forwards.map((forward) => {
    const label = `${forward.number} (${forward.protocol} ${formatPorts(forward.ports)})`;
    const lease = forward.natTraversal != null;
    return [
      String(forward.number),
      forward.protocol,
      formatPorts(forward.ports),
      formatPorts(forward.targetPorts),
      forward.sourceCidr === ANY_SOURCE ? 'any' : forward.sourceCidr,
      countdown(forward.expiresAtUnixSeconds, now),
      externalOf(forward),
      lease ? `NAT traversal lease · ${forward.comment ?? ''}` : (forward.comment ?? ''),
      el(
        'span',
        { class: 'actions' },
        lease
          ? null
          : el('button', {
              type: 'button',
              text: 'Edit',
              'aria-label': `Edit forward ${label}`,
              dataset: { focusKey: `edit-${forward.id}` },
              on: { click: () => startEdit(forward) },
            }),
        el('button', {
          type: 'button',
          class: 'danger',
          text: lease ? 'Revoke' : 'Delete',
          'aria-label': `${lease ? 'Revoke mapping' : 'Delete forward'} ${label}`,
          dataset: { focusKey: `delete-${forward.id}` },
          on: { click: () => deleteForward(app, forward) },
        }),
      ),
    ];
  });
  replaceKeepingFocus(
    view.nodes.forwards,
    table(
      `Forwards of ${view.name}`,
      ['No', 'Proto', 'Port(s)', 'To port', 'Source', 'Expires', 'External', 'Comment', 'Actions'],
      rows,
      `${view.name} has no forwards.`,
    ),
  );
}

function buildForwardForm() {
  const nodes = view.nodes;
  const protocol = el(
    'select',
    {},
    el('option', { value: 'tcp', text: 'TCP' }),
    el('option', { value: 'udp', text: 'UDP' }),
  );
  const preset = el(
    'select',
    {
      on: {
        change: () => {
          if (preset.value !== '') nodes.formFields.expire.value = preset.value;
        },
      },
    },
    el('option', { value: '', text: 'Choose…' }),
    el('option', { value: '+3600', text: 'in 1 hour' }),
    el('option', { value: '+86400', text: 'in 1 day' }),
    el('option', { value: '+604800', text: 'in 1 week' }),
  );
  nodes.formFields = {
    proto: protocol,
    port: el('input', {
      type: 'text',
      inputmode: 'numeric',
      autocomplete: 'off',
      placeholder: '8443 or 6881-6889',
      required: true,
    }),
    'to-port': el('input', {
      type: 'text',
      inputmode: 'numeric',
      autocomplete: 'off',
      placeholder: 'same as port',
    }),
    src: el('input', { type: 'text', autocomplete: 'off', placeholder: 'any' }),
    expire: el('input', { type: 'text', autocomplete: 'off', placeholder: 'never' }),
    upstream: el(
      'select',
      {},
      el('option', { value: 'no', text: 'no' }),
      el('option', { value: 'yes', text: 'yes, through the broker' }),
    ),
    comment: el('input', { type: 'text', autocomplete: 'off', maxlength: '1024' }),
  };
  const f = nodes.formFields;
  nodes.formHeading = el('h4', { id: 'forward-form-heading', text: 'Add a forward' });
  nodes.submit = el('button', { type: 'submit', class: 'primary', text: 'Add forward' });
  nodes.cancel = el('button', {
    type: 'button',
    text: 'Cancel edit',
    hidden: true,
    on: { click: stopEdit },
  });
  nodes.form = el(
    'form',
    {
      class: 'forward-form',
      'aria-labelledby': 'forward-form-heading',
      novalidate: true,
      on: { submit: submitForward },
    },
    nodes.formHeading,
    el(
      'div',
      { class: 'grid' },
      field('fw-proto', 'Protocol', f.proto),
      field(
        'fw-port',
        'External port(s)',
        f.port,
        'On the uplink, the same on every hop: N or FIRST-LAST.',
      ),
      field(
        'fw-to-port',
        'Port in the qube',
        f['to-port'],
        'Only for a single port; empty keeps the port.',
      ),
      field(
        'fw-src',
        'Allowed source',
        f.src,
        'IPv4 address or prefix, e.g. 192.168.77.0/24; empty for any.',
      ),
      field('fw-expire', 'Expires', f.expire, '+SECONDS from now or a UNIX time; empty for never.'),
      field('fw-expire-preset', 'Quick expiry', preset),
      field(
        'fw-upstream',
        'Map on the home router',
        f.upstream,
        'Also asks the home router for the same port (qvm-forward upstream=yes).',
      ),
      field('fw-comment', 'Comment', f.comment),
    ),
    el('p', { class: 'form-error', role: 'alert' }),
    el('div', { class: 'buttons' }, nodes.submit, nodes.cancel),
  );
  return nodes.form;
}

function startEdit(forward) {
  const f = view.nodes.formFields;
  view.editingId = forward.id;
  f.proto.value = forward.protocol;
  f.port.value = formatPorts(forward.ports);
  f['to-port'].value =
    formatPorts(forward.targetPorts) === formatPorts(forward.ports)
      ? ''
      : formatPorts(forward.targetPorts);
  f.src.value = forward.sourceCidr === ANY_SOURCE ? '' : forward.sourceCidr;
  f.expire.value =
    forward.expiresAtUnixSeconds === null ? '' : String(forward.expiresAtUnixSeconds);
  f.comment.value = forward.comment ?? '';
  view.nodes.formHeading.textContent = `Edit forward ${forward.number} (${forward.protocol} ${formatPorts(forward.ports)})`;
  view.nodes.submit.textContent = 'Save changes';
  view.nodes.cancel.hidden = false;
  clearFormErrors(view.nodes.form);
  f.port.focus();
}

function stopEdit() {
  view.editingId = null;
  view.nodes.form.reset();
  view.nodes.formHeading.textContent = 'Add a forward';
  view.nodes.submit.textContent = 'Add forward';
  view.nodes.cancel.hidden = true;
  clearFormErrors(view.nodes.form);
}

async function submitForward(event) {
  event.preventDefault();
  const { app, name, nodes } = view;
  const body = Object.fromEntries(
    Object.entries(nodes.formFields).map(([key, input]) => [key, input.value]),
  );
  const editing = view.editingId;
  const path = `qubes/${encodeURIComponent(name)}/forwards${editing ? `/${editing}` : ''}`;
  nodes.submit.disabled = true;
  const result = await app.api(editing ? 'PUT' : 'POST', path, body);
  if (view === null) return;
  nodes.submit.disabled = false;
  if (!result.ok) {
    const target = showFormErrors(nodes.form, FORWARD_FIELDS, result.body);
    target?.focus?.();
    app.announce(`Not saved: ${result.body.error}`);
    return;
  }
  stopEdit();
  nodes.forwardStatus.textContent = `${editing ? 'Saved' : 'Added'}. Same as: ${result.body.cli}`;
  app.announce(nodes.forwardStatus.textContent);
}

async function deleteForward(app, forward) {
  const path =
    forward.natTraversal != null
      ? `mappings/${forward.id}`
      : `qubes/${encodeURIComponent(view.name)}/forwards/${forward.id}`;
  const result = await app.api('DELETE', path);
  if (view === null) return;
  view.nodes.forwardStatus.textContent = result.ok
    ? `Deleted. Same as: ${result.body.cli}`
    : `Not deleted: ${result.body.error}`;
  if (view.editingId === forward.id) stopEdit();
  app.announce(view.nodes.forwardStatus.textContent);
  view.nodes.forwards.closest('section')?.focus();
}

function buildNatForm() {
  const nodes = view.nodes;
  const markDirty = () => {
    view.natDirty = true;
  };
  nodes.natFields = {
    enabled: el('input', { type: 'checkbox', id: 'nat-enabled', on: { change: markDirty } }),
    ports: el('input', {
      type: 'text',
      autocomplete: 'off',
      placeholder: '1024-65535',
      on: { input: markDirty },
    }),
    protocols: el('input', {
      type: 'text',
      autocomplete: 'off',
      placeholder: 'tcp,udp',
      on: { input: markDirty },
    }),
    maxLeaseSeconds: el('input', {
      type: 'text',
      inputmode: 'numeric',
      autocomplete: 'off',
      placeholder: '3600',
      on: { input: markDirty },
    }),
  };
  const f = nodes.natFields;
  nodes.natSubmit = el('button', {
    type: 'submit',
    class: 'primary',
    text: 'Save NAT traversal settings',
  });
  nodes.natForm = el(
    'form',
    {
      class: 'nat-form',
      'aria-label': 'NAT traversal settings',
      novalidate: true,
      on: { submit: submitNat },
    },
    el(
      'div',
      { class: 'checkbox' },
      f.enabled,
      el('label', {
        for: 'nat-enabled',
        text: 'Allow this qube to request port mappings (UPnP, NAT-PMP, PCP), each after a dom0 prompt',
      }),
    ),
    el(
      'div',
      { class: 'grid' },
      field(
        'nat-ports',
        'Allowed ports',
        f.ports,
        'N or N-M, comma-separated; empty for 1024-65535.',
      ),
      field(
        'nat-protocols',
        'Allowed protocols',
        f.protocols,
        'tcp, udp or tcp,udp; empty for both.',
      ),
      field(
        'nat-max-lease',
        'Longest lease (seconds)',
        f.maxLeaseSeconds,
        '1 to 604800; empty for 3600.',
      ),
    ),
    el('p', { class: 'form-error', role: 'alert' }),
    el('div', { class: 'buttons' }, nodes.natSubmit),
  );
  return nodes.natForm;
}

function renderNat(qube) {
  const nodes = view.nodes;
  const nat = qube.natTraversal;
  if (nat === null) {
    nodes.natState.textContent = 'dom0 has no network; NAT traversal does not apply.';
    nodes.natForm.hidden = true;
    return;
  }
  nodes.natState.textContent =
    nat.problem !== null
      ? `Off: ${nat.problem}`
      : nat.enabled
        ? `On: ${nat.allowedProtocols.join(', ')} on ports ${nat.allowedPorts.map(formatPorts).join(', ')}, leases up to ${nat.maxLeaseSeconds} s.`
        : 'Off: requests from this qube are not redirected to the broker.';
  if (view.natDirty) return;
  const features = nat.features;
  nodes.natFields.enabled.checked = ['1', 'True', 'true'].includes(features['nat-traversal']);
  nodes.natFields.ports.value = features['nat-traversal-ports'] ?? '';
  nodes.natFields.protocols.value = features['nat-traversal-protocols'] ?? '';
  nodes.natFields.maxLeaseSeconds.value = features['nat-traversal-max-lease'] ?? '';
}

async function submitNat(event) {
  event.preventDefault();
  const { app, name, nodes } = view;
  const f = nodes.natFields;
  const body = {
    enabled: f.enabled.checked,
    ports: f.ports.value,
    protocols: f.protocols.value,
    maxLeaseSeconds: f.maxLeaseSeconds.value,
  };
  nodes.natSubmit.disabled = true;
  const result = await app.api('PUT', `qubes/${encodeURIComponent(name)}/nat-traversal`, body);
  if (view === null) return;
  nodes.natSubmit.disabled = false;
  if (!result.ok) {
    showFormErrors(nodes.natForm, NAT_FIELDS, result.body)?.focus?.();
    nodes.natStatus.textContent = '';
    app.announce(`Not saved: ${result.body.error}`);
    return;
  }
  clearFormErrors(nodes.natForm);
  view.natDirty = false;
  nodes.natStatus.textContent = `Saved. Same as: ${result.body.cli}`;
  app.announce(nodes.natStatus.textContent);
}
