// @ts-check
/**
 * Admin: EAB keys (the HMAC key is shown once, at creation), API tokens (the secret is shown
 * once), and the audit log with a check of its hash chain.
 */
import { ApiError, call } from './api.js';
import { confirmDialog, copyButton, fmtTime, h, loading, replace, section, table, uid } from './dom.js';
import { pagedTable } from './pager.js';

/**
 * A form that creates a secret shown once (an EAB key, a token): on submit `create` makes it and
 * returns the box that shows it, which replaces `result` and takes the focus; then the list is
 * loaded again. The button is disabled meanwhile; an error goes to the banner.
 * @param {import('./app.js').Ctx} ctx
 * @param {HTMLFormElement} form
 * @param {HTMLButtonElement} submit
 * @param {HTMLElement} result
 * @param {() => Promise<void>} load
 * @param {() => Promise<HTMLElement>} create
 */
function createsSecret(ctx, form, submit, result, load, create) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const box = await create();
      replace(result, box);
      box.focus();
      await load();
    } catch (e) {
      ctx.error(e);
    } finally {
      submit.disabled = false;
    }
  });
}

/** @param {import('./app.js').Ctx} ctx */
export async function render(ctx) {
  const { root } = ctx;
  root.append(h('h1', {}, 'Admin'));
  if (ctx.me.role !== 'admin') {
    root.append(h('p', { class: 'info' }, `This page needs the admin role; the token "${ctx.me.name}" has the ${ctx.me.role} role.`));
    return;
  }
  const parts = [];
  /** @type {Promise<void>[]} */
  const loads = [];
  if (ctx.me.ca) {
    const eab = eabSection(ctx);
    parts.push(eab.el);
    loads.push(eab.load());
  }
  const tokens = tokenSection(ctx);
  const audit = auditSection(ctx);
  parts.push(tokens.el, audit.el);
  loads.push(tokens.load(), audit.load());
  root.append(...parts);
  await Promise.all(loads);
}

/**
 * A secret shown once, with copy buttons.
 * @param {string} title
 * @param {string} warning
 * @param {Array<[string, string]>} rows label and value
 */
function secretBox(title, warning, rows) {
  return h(
    'div',
    { class: 'secret', role: 'status', tabindex: '-1' },
    h('h3', {}, title),
    h('p', { class: 'warn' }, warning),
    h(
      'dl',
      { class: 'secret-list' },
      rows.map(([label, value]) => {
        const code = h('code', { class: 'secret-value' }, value);
        return h('div', { class: 'secret-row' }, h('dt', {}, label), h('dd', {}, code, ' ', copyButton(() => value, code)));
      }),
    ),
  );
}

/** @param {string} id @param {string} label @param {HTMLElement} input @param {string} [help] */
function field(id, label, input, help) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, help ? h('span', { class: 'help' }, help) : null);
}

/** @param {import('./app.js').Ctx} ctx */
function eabSection(ctx) {
  const list = h('div', { id: 'eab-list' }, loading());
  const result = h('div', { class: 'result' });
  const uses = h('input', { type: 'number', min: '1', max: '1000000', value: '1', required: true });
  const days = h('input', { type: 'number', min: '1', max: '3650', placeholder: 'never' });
  const comment = h('input', { type: 'text', maxlength: '200', placeholder: 'who it is for' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create EAB key');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create an EAB key' }, field('eab-uses', 'Uses', uses), field('eab-days', 'Expires after (days)', days), field('eab-comment', 'Comment', comment), h('div', { class: 'field' }, submit));

  async function load() {
    try {
      const r = await call('/ca/eab-keys');
      if (!ctx.alive()) return;
      replace(
        list,
        table({
          caption: 'EAB keys',
          captionHidden: true,
          rows: r.items,
          empty: 'No EAB keys.',
          columns: [
            { label: 'Key ID', cell: (/** @type {any} */ k) => h('code', {}, k.kid) },
            { label: 'Used', cell: (/** @type {any} */ k) => `${k.uses} of ${k.maxUses}`, className: 'num' },
            { label: 'Comment', cell: (/** @type {any} */ k) => k.comment ?? '—' },
            { label: 'Created', cell: (/** @type {any} */ k) => fmtTime(k.createdAt) },
            { label: 'Expires', cell: (/** @type {any} */ k) => (k.expiresAt ? fmtTime(k.expiresAt) : 'never') },
            { label: 'Status', cell: (/** @type {any} */ k) => h('span', { class: `badge status-${k.active ? 'present' : 'missing'}` }, k.active ? 'active' : 'used up or disabled') },
            {
              label: 'Actions',
              cell: (/** @type {any} */ k) => {
                if (!k.active) return '—';
                const b = h('button', { type: 'button', class: 'danger small', 'aria-label': `Disable the EAB key ${k.kid}` }, 'Disable');
                b.addEventListener('click', async () => {
                  if (!(await confirmDialog({ title: 'Disable this EAB key?', body: h('p', {}, 'No new account can be bound with ', h('code', {}, k.kid), '. Accounts bound with it already keep working.'), confirm: 'Disable', danger: true }))) return;
                  try {
                    await call(`/ca/eab-keys/${encodeURIComponent(k.kid)}`, { method: 'DELETE' });
                    ctx.notice(`Disabled the EAB key ${k.kid}.`);
                    await load();
                  } catch (e) {
                    ctx.error(e);
                  }
                });
                return b;
              },
            },
          ],
        }),
      );
    } catch (e) {
      replace(list, h('p', { class: 'form-error' }, 'The EAB keys could not be loaded.'));
      ctx.error(e);
    }
  }

  createsSecret(ctx, form, submit, result, load, async () => {
    /** @type {{ uses: number, expiresDays?: number, comment?: string }} */
    const body = { uses: Number(uses.value || '1') };
    if (days.value) body.expiresDays = Number(days.value);
    if (comment.value.trim()) body.comment = comment.value.trim();
    const k = await call('/ca/eab-keys', { method: 'POST', body });
    const dir = `${location.origin}/directory`;
    const box = secretBox(`EAB key ${k.kid}`, 'Shown once: copy the HMAC key now and hand it to the client’s operator over a secure channel. This page will not show it again.', [
      ['Key ID', k.kid],
      ['HMAC key', k.hmacKey],
      ['certbot', `certbot register --server ${dir} --eab-kid ${k.kid} --eab-hmac-key ${k.hmacKey}`],
      ['lego', `lego --server ${dir} --eab --kid ${k.kid} --hmac ${k.hmacKey} --email you@example.com --domains example.com run`],
      ['anvil', `anvil issue --server ${dir} --eab-kid ${k.kid} --eab-hmac-key ${k.hmacKey} -d example.com`],
    ]);
    box.id = 'eab-secret';
    comment.value = '';
    return box;
  });

  const el = section('EAB keys', h('p', { class: 'help' }, 'External Account Binding keys (RFC 8555 §7.3.4) let an ACME client create an account when the CA requires it.'), form, result, list);
  return { el, load };
}

/** @param {import('./app.js').Ctx} ctx */
function tokenSection(ctx) {
  const list = h('div', { id: 'token-list' }, loading());
  const result = h('div', { class: 'result' });
  const name = h('input', { type: 'text', required: true, maxlength: '64', pattern: '[A-Za-z0-9][A-Za-z0-9._@\\-]{0,63}', placeholder: 'e.g. grafana or alice' });
  const role = h('select', {}, ['viewer', 'operator', 'admin'].map((r) => h('option', { value: r }, r)));
  const days = h('input', { type: 'number', min: '1', max: '3650', placeholder: 'never' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create token');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create an API token' }, field('token-name', 'Name', name), field('token-role', 'Role', role), field('token-days', 'Expires after (days)', days), h('div', { class: 'field' }, submit));

  async function load() {
    try {
      const r = await call('/tokens');
      if (!ctx.alive()) return;
      replace(
        list,
        table({
          caption: 'API tokens',
          captionHidden: true,
          rows: r.items,
          empty: 'No tokens.',
          columns: [
            { label: 'Name', cell: (/** @type {any} */ t) => [t.name, t.name === ctx.me.name ? h('span', { class: 'sub' }, ' (you)') : null] },
            { label: 'Role', cell: (/** @type {any} */ t) => h('span', { class: `role-badge role-${/^[a-z]+$/.test(t.role) ? t.role : 'other'}` }, t.role) },
            { label: 'Created', cell: (/** @type {any} */ t) => [fmtTime(t.createdAt), h('span', { class: 'sub' }, ` by ${t.createdBy}`)] },
            { label: 'Expires', cell: (/** @type {any} */ t) => (t.expiresAt ? fmtTime(t.expiresAt) : 'never') },
            { label: 'Last used', cell: (/** @type {any} */ t) => fmtTime(t.lastUsedAt) },
            { label: 'Status', cell: (/** @type {any} */ t) => h('span', { class: `badge status-${t.revokedAt ? 'missing' : 'present'}` }, t.revokedAt ? `revoked ${fmtTime(t.revokedAt)}` : 'active') },
            {
              label: 'Actions',
              cell: (/** @type {any} */ t) => {
                if (t.revokedAt) return '—';
                const b = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke the token ${t.name}` }, 'Revoke');
                b.addEventListener('click', async () => {
                  const self = t.name === ctx.me.name;
                  if (!(await confirmDialog({ title: `Revoke the token ${t.name}?`, body: h('p', {}, self ? 'This is the token you are logged in with: you will be logged out.' : 'Whoever holds it loses access at once.'), confirm: 'Revoke token', danger: true }))) return;
                  try {
                    await call(`/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
                    ctx.notice(`Revoked the token ${t.name}.`);
                    await load();
                  } catch (e) {
                    ctx.error(e);
                  }
                });
                return b;
              },
            },
          ],
        }),
      );
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) replace(list, h('p', { class: 'form-error' }, 'The tokens could not be loaded.'));
      ctx.error(e);
    }
  }

  createsSecret(ctx, form, submit, result, load, async () => {
    /** @type {{ name: string, role: string, expiresDays?: number }} */
    const body = { name: name.value.trim(), role: role.value };
    if (days.value) body.expiresDays = Number(days.value);
    const t = await call('/tokens', { method: 'POST', body });
    const box = secretBox(`Token ${t.name} (${t.role})`, 'Shown once: copy the token now. Anvil keeps only its hash and cannot show it again.', [
      ['Token', t.token],
      ['curl', `curl -H 'Authorization: Bearer ${t.token}' ${location.origin}/api/v1/summary`],
    ]);
    box.id = 'token-secret';
    name.value = '';
    return box;
  });

  const el = section('API tokens', h('p', { class: 'help' }, 'viewer: reads everything but the admin page; operator: also revokes certificates; admin: also manages EAB keys and tokens and reads the audit log.'), form, result, list);
  return { el, load };
}

/** @param {import('./app.js').Ctx} ctx */
function auditSection(ctx) {
  const verifyOut = h('div', { id: 'audit-verify', class: 'result', 'aria-live': 'polite' });
  const verify = h('button', { type: 'button', class: 'secondary', id: 'audit-verify-button' }, 'Verify the chain');
  const paged = pagedTable({
    id: 'audit-log',
    path: '/audit',
    caption: 'Audit log',
    limit: 25,
    alive: ctx.alive,
    error: ctx.error,
    empty: 'No changes recorded yet.',
    columns: [
      { label: '#', cell: (/** @type {any} */ e) => String(e.seq), className: 'num' },
      { label: 'When', cell: (/** @type {any} */ e) => fmtTime(e.at) },
      { label: 'Who', cell: (/** @type {any} */ e) => e.actor },
      { label: 'Action', cell: (/** @type {any} */ e) => h('span', { class: 'action' }, e.action) },
      { label: 'Target', cell: (/** @type {any} */ e) => h('code', {}, e.target) },
      { label: 'Detail', cell: (/** @type {any} */ e) => h('code', { class: 'detail' }, JSON.stringify(e.detail)) },
    ],
  });
  verify.addEventListener('click', async () => {
    verify.disabled = true;
    replace(verifyOut, loading('Verifying…'));
    try {
      const r = await call('/audit/verify');
      const headText = r.head ? `head ${r.head.seq}:${r.head.hash}` : 'empty';
      const headId = uid('head');
      replace(
        verifyOut,
        r.ok
          ? h('div', { class: 'verify ok', 'data-ok': 'true' }, h('strong', {}, 'The chain is intact.'), ` ${r.entries} entries; `, h('code', { id: headId }, headText), '. Record the head elsewhere and check later with ', h('code', {}, 'anvil audit verify --expect-head SEQ:HASH'), '.')
          : h(
              'div',
              { class: 'verify bad', 'data-ok': 'false' },
              h('strong', {}, 'The chain is broken.'),
              ` ${r.entries} entries.`,
              h('ul', {}, r.problems.map((/** @type {any} */ p) => h('li', {}, `entry ${p.seq}: ${p.problem}`))),
            ),
      );
    } catch (e) {
      replace(verifyOut);
      ctx.error(e);
    } finally {
      verify.disabled = false;
    }
  });
  const refresh = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
  refresh.addEventListener('click', () => void paged.reload());
  const el = section('Audit log', h('p', { class: 'help' }, 'Every change made through this API or the management commands, hash-chained: a change, removal or insertion breaks the chain.'), h('div', { class: 'actions' }, verify, refresh), verifyOut, paged.el);
  return { el, load: paged.load };
}
