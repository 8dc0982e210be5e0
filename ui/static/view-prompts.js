// Pending prompts: the dom0 questions of the lab's qrexec policy (`ask`),
// answered here or in the terminal of `npm run lab`; the first answer wins.
import { countdown, el, replaceKeepingFocus } from './dom.js';

let nodes = null;

export const promptsView = {
  mount(root, _params, app) {
    nodes = {
      app,
      list: el('div', { class: 'prompts' }),
      status: el('p', { class: 'status', role: 'status' }),
    };
    root.append(
      el('h2', { text: 'Pending prompts' }),
      el('p', {
        class: 'intro',
        text: 'Requests that the qrexec policy asks the dom0 user about. Unanswered prompts are denied after their timeout.',
      }),
      nodes.list,
      nodes.status,
    );
    this.update(app);
  },

  update(app) {
    if (nodes === null) return;
    const now = app.nowUnixSeconds();
    const cards = app.prompts.map((prompt) => {
      const [qube, protocol, port] = prompt.argument.split('+');
      const summary =
        prompt.service === 'qubes.NatTraversal' && port !== undefined
          ? `${prompt.source} asks to map ${protocol?.toUpperCase()} port ${port} of ${qube}`
          : `${prompt.source} asks to call ${prompt.service}`;
      const headingId = `prompt-${prompt.id}`;
      return el(
        'article',
        { class: 'prompt', 'aria-labelledby': headingId },
        el('h3', { id: headingId, text: summary }),
        el(
          'dl',
          {},
          el('dt', { text: 'Source' }),
          el('dd', { text: prompt.source }),
          el('dt', { text: 'Service' }),
          el('dd', { text: `${prompt.service}+${prompt.argument}` }),
          el('dt', { text: 'Target' }),
          el('dd', { text: prompt.target }),
          el('dt', { text: 'Denied automatically' }),
          el('dd', {}, countdown(Math.floor(prompt.expiresAtUnixMs / 1000), now)),
        ),
        el(
          'div',
          { class: 'buttons' },
          el('button', {
            type: 'button',
            class: 'primary',
            text: 'Allow',
            'aria-label': `Allow: ${summary}`,
            dataset: { focusKey: `allow-${prompt.id}` },
            on: { click: () => answer(prompt, true, summary) },
          }),
          el('button', {
            type: 'button',
            class: 'danger',
            text: 'Deny',
            'aria-label': `Deny: ${summary}`,
            dataset: { focusKey: `deny-${prompt.id}` },
            on: { click: () => answer(prompt, false, summary) },
          }),
        ),
      );
    });
    replaceKeepingFocus(
      nodes.list,
      ...(cards.length > 0 ? cards : [el('p', { class: 'empty', text: 'No pending prompts.' })]),
    );
  },

  leave() {
    nodes = null;
  },
};

async function answer(prompt, allowed, summary) {
  const { app } = nodes;
  const result = await app.api('POST', `prompts/${encodeURIComponent(prompt.id)}`, { allowed });
  if (nodes === null) return;
  nodes.status.textContent = result.ok
    ? `${allowed ? 'Allowed' : 'Denied'}: ${summary}`
    : `Not answered: ${result.body.error}`;
  app.announce(nodes.status.textContent);
}
