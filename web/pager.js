// @ts-check
/**
 * A table fed by a paged API list ({items, next}), with Previous and Next. The cursors of the
 * pages seen are kept, so Previous goes back without the API knowing about it.
 */
import { call } from './api.js';
import { h, loading, replace, table } from './dom.js';

/**
 * @template T
 * @param {{
 *   id: string,
 *   path: string,
 *   caption: string,
 *   columns: Array<{ label: string, cell: (row: T) => any, className?: string }>,
 *   empty: string,
 *   limit?: number,
 *   alive: () => boolean,
 *   error: (e: unknown) => void,
 * }} spec
 */
export function pagedTable(spec) {
  /** @type {Array<string | null>} */
  const cursors = [null];
  let index = 0;
  let seq = 0;
  const body = h('div', { id: spec.id, class: 'paged' }, loading());
  const status = h('span', { class: 'page-no', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'secondary small', 'aria-controls': spec.id, disabled: true }, '← Previous');
  const next = h('button', { type: 'button', class: 'secondary small', 'aria-controls': spec.id, disabled: true }, 'Next →');
  const el = h('div', { class: 'paged-table' }, body, h('div', { class: 'pager' }, prev, status, next));

  async function load() {
    const mine = ++seq;
    body.setAttribute('aria-busy', 'true');
    prev.disabled = true;
    next.disabled = true;
    const cursor = cursors[index];
    const sep = spec.path.includes('?') ? '&' : '?';
    try {
      const page = await call(`${spec.path}${sep}limit=${spec.limit ?? 25}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      if (mine !== seq || !spec.alive()) return;
      replace(body, table({ caption: spec.caption, captionHidden: true, rows: page.items, columns: spec.columns, empty: spec.empty }));
      if (page.next) cursors[index + 1] = page.next;
      else cursors.length = index + 1;
      prev.disabled = index === 0;
      next.disabled = !page.next;
      status.textContent = `Page ${index + 1}`;
    } catch (e) {
      if (mine !== seq) return;
      replace(body, h('p', { class: 'form-error' }, `${spec.caption}: could not be loaded.`));
      prev.disabled = index === 0;
      spec.error(e);
    } finally {
      if (mine === seq) body.removeAttribute('aria-busy');
    }
  }
  prev.addEventListener('click', () => {
    if (index > 0) {
      index--;
      void load();
    }
  });
  next.addEventListener('click', () => {
    if (cursors[index + 1] !== undefined) {
      index++;
      void load();
    }
  });
  /** Back to the first page (after a change). */
  const reload = () => {
    index = 0;
    cursors.length = 1;
    return load();
  };
  return { el, load, reload };
}
