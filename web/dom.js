// @ts-check
/**
 * DOM helpers. Text from the server (certificate names, subjects, errors) is attacker-controlled:
 * it only ever becomes text nodes or attribute values, never markup.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * @typedef {string | number | Node | null | undefined | false} Child
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs
 */

/**
 * @param {Element} el
 * @param {Attrs} attrs
 */
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') throw new Error('inline styles are refused by the CSP; use a class');
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

/**
 * @param {Element} el
 * @param {Child[]} children
 */
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * An HTML element: h('a', { href: '#/x', class: 'link', onclick: fn }, 'text', child).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, /** @type {Child[]} */ (children));
  return el;
}

/**
 * An SVG element.
 * @param {string} tag
 * @param {Record<string, string | number | boolean | null | undefined>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {SVGElement}
 */
export function s(tag, attrs = {}, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  setAttrs(el, attrs);
  append(el, /** @type {Child[]} */ (children));
  return el;
}

/** @param {Element} el @param {...(Child | Child[])} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, /** @type {Child[]} */ (children));
}

let idCounter = 0;
/** A document-unique id for label/aria links. */
export function uid(prefix = 'id') {
  return `${prefix}-${++idCounter}`;
}

const DAY = 86_400_000;

/** "2026-03-04 17:05 UTC" @param {string | null | undefined} iso */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** "2026-03-04" @param {string | null | undefined} iso */
export function fmtDay(iso) {
  if (!iso) return '—';
  return new Date(iso).toISOString().slice(0, 10);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** "Mar 4" @param {Date} d */
export function shortDay(d) {
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
}
/** "Mar ’26" (month and two-digit year) @param {Date} d */
export function shortMonth(d) {
  return `${MONTHS[d.getUTCMonth()]} ’${String(d.getUTCFullYear()).slice(2)}`;
}

/**
 * Time left until `iso`: "in 12 days", "in 5 hours", "expired 3 days ago".
 * @param {string} iso
 * @param {number} [now]
 * @returns {{ text: string, expired: boolean, days: number }}
 */
export function timeLeft(iso, now = Date.now()) {
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  const days = Math.floor(abs / DAY);
  const amount = days >= 2 ? `${days} days` : days === 1 ? '1 day' : `${Math.max(0, Math.round(abs / 3_600_000))} hours`;
  return ms < 0 ? { text: `expired ${amount} ago`, expired: true, days: -days } : { text: `in ${amount}`, expired: false, days };
}

/**
 * A health level badge ("good", "fair", "poor", "critical"), with the score when given.
 * @param {string} level
 * @param {number} [score]
 */
export function healthBadge(level, score) {
  return h('span', { class: `badge level-${/^[a-z]+$/.test(level) ? level : 'unknown'}` }, level, score !== undefined ? h('span', { class: 'score' }, ` ${score}`) : null);
}

/** A severity badge ("critical", "warning", "notice"). */
export function severityBadge(/** @type {string} */ severity) {
  return h('span', { class: `badge sev-${/^[a-z]+$/.test(severity) ? severity : 'unknown'}` }, severity);
}

/**
 * A table. Columns name a header and how to fill a cell from a row.
 * @template T
 * @param {{ caption: string, columns: Array<{ label: string, cell: (row: T) => Child | Child[], className?: string }>, rows: T[], empty?: string, captionHidden?: boolean }} spec
 */
export function table(spec) {
  const t = h(
    'table',
    { class: 'data' },
    h('caption', { class: spec.captionHidden ? 'visually-hidden' : '' }, spec.caption),
    h('thead', {}, h('tr', {}, spec.columns.map((c) => h('th', { scope: 'col', class: c.className }, c.label)))),
    h(
      'tbody',
      {},
      spec.rows.length
        ? spec.rows.map((r) => h('tr', {}, spec.columns.map((c) => h('td', { class: c.className, 'data-label': c.label }, c.cell(r)))))
        : h('tr', {}, h('td', { colspan: spec.columns.length, class: 'empty' }, spec.empty ?? 'Nothing here yet.')),
    ),
  );
  return h('div', { class: 'table-wrap' }, t);
}

/** A section with a heading. @param {string} title @param {...(Child | Child[])} children */
export function section(title, ...children) {
  const id = uid('sec');
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/** A "Loading…" placeholder. @param {string} [what] */
export function loading(what = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, what);
}

/**
 * A button that copies text to the clipboard, saying so; where the clipboard is refused, it
 * selects the text so that Ctrl+C copies it.
 * @param {() => string} text
 * @param {Element | null} select what to select when the clipboard is refused
 * @param {string} [label]
 */
export function copyButton(text, select, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'secondary small' }, label);
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      b.textContent = 'Copied';
    } catch {
      if (select) {
        const range = document.createRange();
        range.selectNodeContents(select);
        const sel = window.getSelection();
        sel?.removeAllRanges();
        sel?.addRange(range);
      }
      b.textContent = 'Selected: press Ctrl+C';
    }
    setTimeout(() => {
      b.textContent = label;
    }, 2500);
  });
  return b;
}

/**
 * A modal confirmation (a native <dialog>: focus stays inside, Escape cancels). Resolves true
 * when confirmed.
 * @param {{ title: string, body: Child | Child[], confirm: string, danger?: boolean }} spec
 * @returns {Promise<boolean>}
 */
export function confirmDialog(spec) {
  const titleId = uid('dlg');
  const ok = h('button', { type: 'button', class: spec.danger ? 'danger' : 'primary', 'data-action': 'confirm' }, spec.confirm);
  const cancel = h('button', { type: 'button', class: 'secondary', 'data-action': 'cancel' }, 'Cancel');
  const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId }, h('h2', { id: titleId }, spec.title), h('div', { class: 'dialog-body' }, spec.body), h('div', { class: 'actions' }, cancel, ok));
  document.body.append(dlg);
  return new Promise((resolve) => {
    ok.addEventListener('click', () => dlg.close('confirm'));
    cancel.addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'confirm');
      dlg.remove();
    });
    dlg.showModal();
    cancel.focus();
  });
}
