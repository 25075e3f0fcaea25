// @ts-check
/**
 * The certificate list: a search box and filters, a page of the table, and paging. The whole view
 * (filters and offset) lives in the hash, so a reload or a shared link shows the same page.
 */
import { call, qs } from './api.js';
import { fmtDay, h, healthBadge, loading, replace, table, timeLeft } from './dom.js';

const DEFAULT_LIMIT = 50;
const FILTERS = /** @type {const} */ (['q', 'health', 'source', 'check', 'expiring', 'sort', 'all', 'cursor', 'limit']);

/** What a row calls a certificate: its names, else its subject. @param {{ names: string[], subject: string }} c */
export function certificateLabel(c) {
  if (!c.names.length) return c.subject || '(no subject)';
  return c.names.length > 3 ? `${c.names.slice(0, 3).join(', ')} +${c.names.length - 3} more` : c.names.join(', ');
}

/**
 * @param {string} id
 * @param {string} label
 * @param {Array<[string, string]>} options
 * @param {string} value
 */
function select(id, label, options, value) {
  const sel = h('select', { id, name: id }, options.map(([v, t]) => h('option', { value: v }, t)));
  if (value && !options.some(([v]) => v === value)) sel.append(h('option', { value }, value));
  sel.value = value;
  return { sel, field: h('div', { class: 'field' }, h('label', { for: id }, label), sel) };
}

/** @param {import('./app.js').Ctx} ctx */
export async function render(ctx) {
  const { root, query } = ctx;
  /** @type {Record<string, string>} */
  const state = {};
  for (const k of FILTERS) {
    const v = query.get(k);
    if (v) state[k] = v;
  }

  const search = h('input', { id: 'cert-search', name: 'q', type: 'search', autocomplete: 'off', placeholder: 'name, issuer, serial…', title: 'A part of a name, the subject, the issuer, the serial or the fingerprint', value: state.q ?? '' });
  const health = select('f-health', 'Health', [['', 'any'], ['fair', 'fair or worse'], ['poor', 'poor or worse'], ['critical', 'critical']], state.health ?? '');
  const source = select('f-source', 'Source', [['', 'any'], ['ca', 'ca (issued here)'], ['lineage', 'lineage (client)'], ['network', 'network (scan)'], ['file', 'file'], ['import', 'import']], state.source ?? '');
  const expiring = select('f-expiring', 'Expires', [['', 'any time'], ['0', 'expired'], ['7', 'within 7 days'], ['30', 'within 30 days'], ['90', 'within 90 days'], ['365', 'within a year']], state.expiring ?? '');
  const sort = select('f-sort', 'Sort', [['', 'soonest expiry first'], ['-notAfter', 'latest expiry first'], ['health', 'worst health first'], ['subject', 'name']], state.sort ?? '');
  const limit = select('f-limit', 'Per page', [['10', '10'], ['25', '25'], ['50', '50'], ['100', '100']], state.limit ?? String(DEFAULT_LIMIT));
  const all = h('input', { id: 'f-all', type: 'checkbox', checked: state.all === 'true' });
  const checkChip = h('div', { class: 'chips' });

  const status = h('p', { class: 'list-status', id: 'list-status', role: 'status', 'aria-live': 'polite' });
  const results = h('div', { class: 'results' }, loading());
  const prev = h('button', { type: 'button', class: 'secondary', 'aria-controls': 'cert-results', disabled: true }, '← Previous');
  const next = h('button', { type: 'button', class: 'secondary', 'aria-controls': 'cert-results', disabled: true }, 'Next →');
  results.id = 'cert-results';

  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter certificates' },
    h('div', { class: 'field grow' }, h('label', { for: 'cert-search' }, 'Search'), search),
    health.field,
    source.field,
    expiring.field,
    sort.field,
    limit.field,
    h('div', { class: 'field checkbox' }, all, h('label', { for: 'f-all' }, 'Include CA certificates')),
  );
  root.append(h('h1', {}, 'Certificates'), form, checkChip, status, results, h('div', { class: 'pager' }, prev, next));

  let seq = 0;
  /** Writes the state into the hash without a new history entry or a re-render. */
  function writeHash() {
    const hash = `#/certificates${qs(state)}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  function renderChips() {
    replace(checkChip);
    if (state.check) {
      const remove = h('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove the filter on the check ${state.check}` }, '×');
      remove.addEventListener('click', () => {
        delete state.check;
        delete state.cursor;
        void load();
      });
      checkChip.append(h('span', { class: 'chip' }, 'check: ', state.check, ' ', remove));
    }
  }

  async function load() {
    const mine = ++seq;
    writeHash();
    renderChips();
    results.setAttribute('aria-busy', 'true');
    prev.disabled = true;
    next.disabled = true;
    const lim = Number(state.limit ?? DEFAULT_LIMIT);
    try {
      const page = await call(`/certificates${qs({ ...state, limit: lim })}`);
      if (mine !== seq || !ctx.alive()) return;
      const offset = Number(state.cursor ?? 0);
      const now = new Date(page.at).getTime();
      status.textContent = page.total === 0 ? 'No certificates match.' : `Showing ${offset + 1}–${offset + page.items.length} of ${page.total} certificate(s)`;
      status.setAttribute('data-total', String(page.total));
      replace(
        results,
        table({
          caption: 'Certificates',
          captionHidden: true,
          rows: page.items,
          empty: 'No certificates match these filters.',
          columns: [
            {
              label: 'Names / subject',
              cell: (/** @type {any} */ c) => [
                h('a', { href: `#/certificate/${c.fingerprint}`, class: 'cert-link' }, certificateLabel(c)),
                c.revoked ? h('span', { class: 'badge revoked' }, 'revoked') : null,
                c.isCa ? h('span', { class: 'badge ca' }, 'CA') : null,
                c.renewedBy ? h('span', { class: 'badge renewed' }, 'renewed') : null,
              ],
            },
            { label: 'Health', cell: (/** @type {any} */ c) => healthBadge(c.health.level, c.health.score) },
            {
              label: 'Expires',
              cell: (/** @type {any} */ c) => {
                const left = timeLeft(c.notAfter, now);
                return [h('span', { class: 'date' }, fmtDay(c.notAfter)), h('span', { class: `left${left.expired ? ' expired' : left.days < 30 ? ' soon' : ''}` }, left.text)];
              },
            },
            { label: 'Issuer', cell: (/** @type {any} */ c) => h('span', { class: 'issuer' }, c.issuer) },
            { label: 'Source', cell: (/** @type {any} */ c) => c.source },
            { label: 'Deployed', cell: (/** @type {any} */ c) => String(c.deployed), className: 'num' },
          ],
        }),
      );
      prev.disabled = offset <= 0;
      next.disabled = page.next === null;
      next.dataset.cursor = page.next ?? '';
      prev.dataset.cursor = String(Math.max(0, offset - lim));
    } catch (e) {
      if (mine !== seq) return;
      replace(results, h('p', { class: 'form-error' }, 'The certificates could not be loaded.'));
      status.textContent = '';
      status.removeAttribute('data-total');
      prev.disabled = !state.cursor;
      ctx.error(e);
    } finally {
      if (mine === seq) results.removeAttribute('aria-busy');
    }
  }

  /** @param {string} key @param {string} value */
  function set(key, value) {
    if (value) state[key] = value;
    else delete state[key];
    delete state.cursor;
    void load();
  }

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => set('q', search.value.trim()), 300);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearTimeout(debounce);
    set('q', search.value.trim());
  });
  health.sel.addEventListener('change', () => set('health', health.sel.value));
  source.sel.addEventListener('change', () => set('source', source.sel.value));
  expiring.sel.addEventListener('change', () => set('expiring', expiring.sel.value));
  sort.sel.addEventListener('change', () => set('sort', sort.sel.value));
  limit.sel.addEventListener('change', () => set('limit', limit.sel.value === String(DEFAULT_LIMIT) ? '' : limit.sel.value));
  all.addEventListener('change', () => set('all', all.checked ? 'true' : ''));
  prev.addEventListener('click', () => {
    state.cursor = prev.dataset.cursor ?? '0';
    if (state.cursor === '0') delete state.cursor;
    void load();
  });
  next.addEventListener('click', () => {
    if (!next.dataset.cursor) return;
    state.cursor = next.dataset.cursor;
    void load();
  });

  await load();
}
