// @ts-check
/**
 * One certificate: its facts, findings, deployments, history and PEM, and (for operators and
 * admins, on a server with a CA) a revocation behind a confirmation.
 */
import { ApiError, call, roleAtLeast } from './api.js';
import { confirmDialog, copyButton, fmtTime, h, healthBadge, loading, replace, section, severityBadge, table, timeLeft, uid } from './dom.js';
import { certificateLabel } from './page-certificates.js';

/** RFC 5280 §5.3.1 CRLReason codes. */
export const REASON_NAMES = /** @type {Record<number, string>} */ ({
  0: 'unspecified',
  1: 'keyCompromise',
  2: 'cACompromise',
  3: 'affiliationChanged',
  4: 'superseded',
  5: 'cessationOfOperation',
  6: 'certificateHold',
  8: 'removeFromCRL',
  9: 'privilegeWithdrawn',
  10: 'aACompromise',
});
/** The reasons the API accepts (as ACME does, RFC 8555 §7.6). */
const REVOKE_REASONS = [4, 5, 3, 1, 9, 0];

/** @param {number | null | undefined} r */
export function reasonText(r) {
  return r === null || r === undefined ? 'no reason given' : `${REASON_NAMES[r] ?? 'reason'} (${r})`;
}

/** @param {import('./app.js').Ctx} ctx */
export async function render(ctx) {
  const fp = (ctx.params[0] ?? '').toLowerCase();
  const { root } = ctx;
  root.append(h('p', { class: 'crumbs' }, h('a', { href: '#/certificates' }, '← Certificates')), h('h1', {}, 'Certificate'), loading());
  let data;
  try {
    data = await call(`/certificates/${encodeURIComponent(fp)}`);
  } catch (e) {
    if (!ctx.alive()) return;
    replace(
      root,
      h('p', { class: 'crumbs' }, h('a', { href: '#/certificates' }, '← Certificates')),
      h('h1', {}, 'Certificate'),
      h('p', { class: 'form-error', role: 'alert' }, e instanceof ApiError && e.status === 404 ? 'No certificate with this fingerprint in the inventory.' : 'The certificate could not be loaded.'),
    );
    ctx.error(e);
    return;
  }
  if (!ctx.alive()) return;
  show(ctx, data, null);
}

/**
 * @param {import('./app.js').Ctx} ctx
 * @param {any} c the certificate
 * @param {{ at: string, reason: number } | null} justRevoked a revocation made from this page that the inventory has not recorded yet
 */
function show(ctx, c, justRevoked) {
  const now = Date.now();
  const revoked = c.revoked ?? justRevoked;
  const label = certificateLabel(c);
  ctx.setTitle(label);
  const left = timeLeft(c.notAfter, now);

  const facts = h(
    'dl',
    { class: 'facts' },
    fact('Subject', c.subject || '(empty)'),
    fact('Names', c.names.length ? h('ul', { class: 'names' }, c.names.map((/** @type {string} */ n) => h('li', {}, n))) : '(none)'),
    fact('Issuer', c.issuer),
    fact('Serial', h('code', {}, c.serial)),
    fact('Fingerprint', h('code', { class: 'fingerprint' }, c.fingerprint), 'SHA-256'),
    fact('Key', `${c.key.type}${c.key.bits ? ` ${c.key.bits} bits` : ''}${c.key.detail ? ` (${c.key.type === 'rsa' ? `e=${c.key.detail}` : c.key.detail})` : ''}`),
    fact('Signature', c.signatureAlgorithm),
    fact('Valid from', fmtTime(c.notBefore)),
    fact('Valid until', [fmtTime(c.notAfter), ' ', h('span', { class: `left${left.expired ? ' expired' : left.days < 30 ? ' soon' : ''}` }, `(${left.text})`)]),
    fact('Kind', `${c.isCa ? 'CA certificate' : 'leaf'}${c.selfSigned ? ', self-signed' : ''}`),
    fact('Source', `${c.source}${c.profile ? `, profile ${c.profile}` : ''}`),
    fact('Seen', `first ${fmtTime(c.firstSeen)}, last ${fmtTime(c.lastSeen)}`),
    revoked ? fact('Revoked', `${fmtTime(revoked.at)}, ${reasonText(revoked.reason)}`) : null,
    c.renewedBy ? fact('Renewed by', h('a', { href: `#/certificate/${c.renewedBy}` }, h('code', {}, c.renewedBy.slice(0, 16)), '…')) : null,
  );

  const header = h(
    'div',
    { class: 'detail-head' },
    h('h1', { class: 'cert-title' }, label),
    h('div', { class: 'badges' }, healthBadge(c.health.level, c.health.score), revoked ? h('span', { class: 'badge revoked', id: 'revoked-badge' }, 'revoked') : null, c.isCa ? h('span', { class: 'badge ca' }, 'CA') : null),
  );

  const findings = section(
    'Findings',
    c.health.findings.length
      ? h(
          'ul',
          { class: 'findings' },
          c.health.findings.map((/** @type {any} */ f) => h('li', { 'data-check': f.check }, severityBadge(f.severity), ' ', h('strong', {}, f.check), ': ', f.message)),
        )
      : h('p', { class: 'empty' }, 'No findings: this certificate is good.'),
  );

  const deployments = section(
    'Deployments',
    table({
      caption: 'Where the certificate is or was deployed',
      captionHidden: true,
      rows: c.installations,
      empty: 'Not known to be deployed anywhere (the CA does not know where its certificates go; scans, file scans and the client’s lineages do).',
      columns: [
        { label: 'Kind', cell: (/** @type {any} */ i) => i.kind },
        { label: 'Location', cell: (/** @type {any} */ i) => [h('code', {}, i.location), i.sni ? h('span', { class: 'sub' }, ` SNI ${i.sni}`) : null] },
        { label: 'Status', cell: (/** @type {any} */ i) => h('span', { class: `badge status-${i.status === 'present' ? 'present' : 'missing'}` }, i.status) },
        { label: 'Problems', cell: (/** @type {any} */ i) => [i.chainError, i.hostnameError, i.error].filter(Boolean).join('; ') || '—' },
        { label: 'First seen', cell: (/** @type {any} */ i) => fmtTime(i.firstSeen) },
        { label: 'Last seen', cell: (/** @type {any} */ i) => fmtTime(i.lastSeen) },
      ],
    }),
  );

  const history = section(
    'History',
    c.events.length
      ? h(
          'ol',
          { class: 'timeline' },
          c.events.map((/** @type {any} */ e) =>
            h('li', { 'data-event': e.type }, h('time', { datetime: e.at }, fmtTime(e.at)), ' ', h('span', { class: `event event-${/^[a-z-]+$/.test(e.type) ? e.type : 'other'}` }, e.type), eventDetail(e, c.installations)),
          ),
        )
      : h('p', { class: 'empty' }, 'No events recorded.'),
  );

  const pemId = uid('pem');
  const pem = h('pre', { class: 'pem', id: pemId, tabindex: '0', 'aria-label': 'The certificate in PEM' }, c.pem);
  const pemSection = section('PEM', h('div', { class: 'actions' }, copyButton(() => c.pem, pem, 'Copy PEM')), pem);

  /** @type {HTMLElement[]} */
  const parts = [header];
  if (justRevoked && !c.revoked) parts.push(h('p', { class: 'info', role: 'status' }, 'Revoked. The inventory records it at its next sync; this page refreshes by itself.'));
  const revoke = revokeSection(ctx, c, revoked);
  if (revoke) parts.push(revoke);
  parts.push(h('div', { class: 'grid-2' }, section('Facts', facts), h('div', {}, findings, history)), deployments, pemSection);
  replace(ctx.root, h('p', { class: 'crumbs' }, h('a', { href: '#/certificates' }, '← Certificates')), parts);
}

/** @param {string} label @param {any} value @param {string} [note] */
function fact(label, value, note) {
  return h('div', { class: 'fact' }, h('dt', {}, label), h('dd', {}, value, note ? h('span', { class: 'sub' }, ` ${note}`) : null));
}

/** The detail of an event, as "key value" pairs; fingerprints become links. @param {any} e @param {any[]} installations */
function eventDetail(e, installations) {
  const out = [];
  const inst = e.installationId ? installations.find((i) => i.id === e.installationId) : null;
  if (inst) out.push(h('span', { class: 'kv' }, 'at ', h('code', {}, inst.location)));
  for (const [k, v] of Object.entries(e.detail ?? {})) {
    if (v === null || v === undefined || v === '' || (inst && k === 'location' && v === inst.location)) continue;
    const value =
      typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)
        ? h('a', { href: `#/certificate/${v}` }, h('code', {}, v.slice(0, 16)), '…')
        : typeof v === 'object' && v !== null
          ? JSON.stringify(v)
          : String(v);
    out.push(h('span', { class: 'kv' }, `${k} `, value));
  }
  return out.length ? h('span', { class: 'event-detail' }, out) : null;
}

/**
 * The revoke button and its confirmation, for operators and admins on a server with a CA.
 * @param {import('./app.js').Ctx} ctx
 * @param {any} c
 * @param {any} revoked
 */
function revokeSection(ctx, c, revoked) {
  // canRevoke is absent from an older server's /me: then the role decides.
  const may = ctx.me.canRevoke ?? (ctx.me.ca && roleAtLeast(ctx.me.role, 'operator'));
  if (!may || revoked) return null;
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true, id: 'revoke-error' });
  const button = h('button', { type: 'button', class: 'danger', id: 'revoke' }, 'Revoke…');
  button.addEventListener('click', async () => {
    const reasonId = uid('reason');
    const reason = h(
      'select',
      { id: reasonId, name: 'reason' },
      REVOKE_REASONS.map((r) => h('option', { value: String(r) }, reasonText(r))),
    );
    const ok = await confirmDialog({
      title: 'Revoke this certificate?',
      body: [
        h('p', {}, 'Revoke ', h('strong', {}, certificateLabel(c)), ' (serial ', h('code', {}, c.serial), ')? This cannot be undone: clients that check the CRL or OCSP will refuse it.'),
        h('div', { class: 'field' }, h('label', { for: reasonId }, 'Reason'), reason),
      ],
      confirm: 'Revoke certificate',
      danger: true,
    });
    if (!ok || !ctx.alive()) return;
    button.disabled = true;
    button.textContent = 'Revoking…';
    err.hidden = true;
    try {
      const r = await call('/ca/revocations', { method: 'POST', body: { fingerprint: c.fingerprint, reason: Number(reason.value) } });
      if (!ctx.alive()) return;
      ctx.notice(`Revoked the certificate with serial ${r.serial} (${reasonText(r.reason)}).`);
      show(ctx, c, { at: r.revokedAt, reason: r.reason });
      void refreshUntilRecorded(ctx, c.fingerprint);
    } catch (e) {
      button.disabled = false;
      button.textContent = 'Revoke…';
      err.textContent = e instanceof ApiError ? (e.status === 404 ? `This CA did not issue this certificate, so it cannot revoke it (${e.detail}).` : `${e.title}: ${e.detail}`) : String(e);
      err.hidden = false;
      ctx.error(e);
    }
  });
  return h('div', { class: 'revoke-box' }, h('p', {}, 'Operators can revoke a certificate this CA issued.'), button, err);
}

/** Re-reads the certificate until the inventory shows the revocation (its sync), for a minute at most. */
async function refreshUntilRecorded(/** @type {import('./app.js').Ctx} */ ctx, /** @type {string} */ fp) {
  for (let i = 0; i < 40 && ctx.alive(); i++) {
    await new Promise((r) => setTimeout(r, 1500));
    if (!ctx.alive()) return;
    try {
      const c = await call(`/certificates/${fp}`);
      // The revocation (read fresh) and its finding (from the assessment, cached for seconds).
      if (c.revoked && c.health.findings.some((/** @type {any} */ f) => f.check === 'revoked') && ctx.alive()) {
        show(ctx, c, null);
        return;
      }
    } catch {
      return;
    }
  }
}
