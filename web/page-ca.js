// @ts-check
/** The CA: its ACME accounts, orders and revocations, newest first. */
import { fmtTime, h, section } from './dom.js';
import { pagedTable } from './pager.js';
import { reasonText } from './page-certificate.js';

/** @param {Array<{ type: string, value: string }>} ids */
function identifiers(ids) {
  return (ids ?? []).map((i) => i.value).join(', ');
}

/** @param {import('./app.js').Ctx} ctx */
export async function render(ctx) {
  const { root } = ctx;
  root.append(h('h1', {}, 'Certificate authority'));
  if (!ctx.me.ca) {
    root.append(h('p', { class: 'info' }, 'This server has no CA: the dashboard runs over an inventory only.'));
    return;
  }
  const common = { alive: ctx.alive, error: ctx.error, limit: 25 };
  const accounts = pagedTable({
    ...common,
    id: 'ca-accounts',
    path: '/ca/accounts',
    caption: 'ACME accounts',
    empty: 'No accounts yet.',
    columns: [
      { label: 'Account', cell: (/** @type {any} */ a) => h('code', {}, a.id) },
      { label: 'Status', cell: (/** @type {any} */ a) => h('span', { class: `badge status-${a.status === 'valid' ? 'present' : 'missing'}` }, a.status) },
      { label: 'Contact', cell: (/** @type {any} */ a) => (a.contact?.length ? a.contact.join(', ') : '—') },
      { label: 'EAB key', cell: (/** @type {any} */ a) => (a.eabKid ? h('code', {}, a.eabKid) : '—') },
      { label: 'Created', cell: (/** @type {any} */ a) => fmtTime(a.createdAt) },
    ],
  });
  const orders = pagedTable({
    ...common,
    id: 'ca-orders',
    path: '/ca/orders',
    caption: 'Orders',
    empty: 'No orders yet.',
    columns: [
      { label: 'Order', cell: (/** @type {any} */ o) => h('code', {}, o.id) },
      { label: 'Identifiers', cell: (/** @type {any} */ o) => identifiers(o.identifiers) },
      { label: 'Status', cell: (/** @type {any} */ o) => h('span', { class: `badge order-${/^[a-z]+$/.test(o.status) ? o.status : 'other'}` }, o.status) },
      { label: 'Profile', cell: (/** @type {any} */ o) => o.profile ?? '—' },
      { label: 'Account', cell: (/** @type {any} */ o) => h('code', {}, o.accountId) },
      { label: 'Created', cell: (/** @type {any} */ o) => fmtTime(o.createdAt) },
      { label: 'Expires', cell: (/** @type {any} */ o) => fmtTime(o.expires) },
    ],
  });
  const revocations = pagedTable({
    ...common,
    id: 'ca-revocations',
    path: '/ca/revocations',
    caption: 'Revocations',
    empty: 'No certificate has been revoked.',
    columns: [
      { label: 'Serial', cell: (/** @type {any} */ r) => h('a', { href: `#/certificates?q=${encodeURIComponent(r.serial)}&all=true`, title: 'Find it in the inventory' }, h('code', {}, r.serial)) },
      { label: 'Identifiers', cell: (/** @type {any} */ r) => identifiers(r.identifiers) },
      { label: 'Revoked', cell: (/** @type {any} */ r) => fmtTime(r.revokedAt) },
      { label: 'Reason', cell: (/** @type {any} */ r) => reasonText(r.reason) },
      { label: 'Expires', cell: (/** @type {any} */ r) => fmtTime(r.notAfter) },
    ],
  });
  root.append(section('Revocations', revocations.el), section('Orders', orders.el), section('Accounts', accounts.el));
  await Promise.all([accounts.load(), orders.load(), revocations.load()]);
}
