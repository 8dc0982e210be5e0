// DOM helpers of the dashboard. Every text from the server goes through
// textContent, never innerHTML, so names and comments cannot inject markup.

/** Creates an element: `attributes` are set as attributes, `on` as listeners. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === 'text') {
      node.textContent = String(value);
    } else if (name === 'dataset') {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Replaces a container's children. When focus was on an element with a
 * `data-focus-key` inside it, the new element with the same key gets focus,
 * so a live update does not throw a keyboard user back to the page start.
 */
export function replaceKeepingFocus(container, ...nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : undefined;
  container.replaceChildren(...nodes);
  if (key !== undefined) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    (again ?? container.closest('section') ?? container).focus?.();
  }
}

/** Builds a table with a caption; `rows` are arrays of cells (strings or nodes). */
export function table(caption, headers, rows, emptyText) {
  const body =
    rows.length === 0
      ? [el('tr', {}, el('td', { colspan: headers.length, class: 'empty', text: emptyText }))]
      : rows.map((cells) =>
          el(
            'tr',
            {},
            cells.map((cell) => el('td', {}, cell)),
          ),
        );
  return el(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    el(
      'table',
      {},
      el('caption', { text: caption }),
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          headers.map((header) => el('th', { scope: 'col', text: header })),
        ),
      ),
      el('tbody', {}, body),
    ),
  );
}

/** Formats an expiry relative to now as `qvm-forward` lists it: `in 59m 58s`, or `never`. */
export function formatExpiry(expiresAtUnixSeconds, nowUnixSeconds) {
  if (expiresAtUnixSeconds === null || expiresAtUnixSeconds === undefined) return 'never';
  let remaining = Math.max(0, expiresAtUnixSeconds - nowUnixSeconds);
  const parts = [];
  for (const [unit, suffix] of [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
  ]) {
    if (remaining >= unit) {
      parts.push(`${Math.floor(remaining / unit)}${suffix}`);
      remaining %= unit;
    }
  }
  if (remaining > 0 || parts.length === 0) parts.push(`${remaining}s`);
  return `in ${parts.slice(0, 2).join(' ')}`;
}

/** Creates a cell whose text counts down every second (see `tickCountdowns`). */
export function countdown(expiresAtUnixSeconds, nowUnixSeconds) {
  const node = el('span', {
    class: 'countdown',
    text: formatExpiry(expiresAtUnixSeconds, nowUnixSeconds),
  });
  if (expiresAtUnixSeconds !== null && expiresAtUnixSeconds !== undefined) {
    node.dataset.expiresAt = String(expiresAtUnixSeconds);
    node.title = new Date(expiresAtUnixSeconds * 1000).toLocaleString();
  }
  return node;
}

export function tickCountdowns(nowUnixSeconds) {
  for (const node of document.querySelectorAll('.countdown[data-expires-at]')) {
    node.textContent = formatExpiry(Number(node.dataset.expiresAt), nowUnixSeconds);
  }
}

export function formatPorts(range) {
  return range.first === range.last ? String(range.first) : `${range.first}-${range.last}`;
}

/** Creates a labelled form field with a slot for its errors, tied together with aria-describedby. */
export function field(id, label, input, hint) {
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  input.id = id;
  input.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  return el(
    'div',
    { class: 'field' },
    el('label', { for: id, text: label }),
    input,
    hint ? el('p', { class: 'hint', id: hintId, text: hint }) : null,
    el('p', { class: 'field-error', id: errorId, 'data-error-for': id }),
  );
}

/** Shows server-side form errors next to their fields; returns the first field with an error. */
export function showFormErrors(form, fieldIds, body) {
  clearFormErrors(form);
  const formMessages = [...(body.formErrors ?? [])];
  let first = null;
  for (const [name, messages] of Object.entries(body.fieldErrors ?? {})) {
    const id = fieldIds[name];
    const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
    const slot = id ? form.querySelector(`[data-error-for="${CSS.escape(id)}"]`) : null;
    if (input && slot) {
      slot.textContent = messages.join('\n');
      input.setAttribute('aria-invalid', 'true');
      first ??= input;
    } else {
      formMessages.push(...messages);
    }
  }
  const formSlot = form.querySelector('.form-error');
  if (formMessages.length > 0) {
    formSlot.textContent = formMessages.join('\n');
  } else if (first === null) {
    formSlot.textContent = body.error ?? '';
  }
  return first ?? (formSlot.textContent !== '' ? formSlot : null);
}

export function clearFormErrors(form) {
  for (const slot of form.querySelectorAll('.field-error, .form-error')) slot.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]'))
    input.removeAttribute('aria-invalid');
}
