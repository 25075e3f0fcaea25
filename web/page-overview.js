// @ts-check
/** The overview: the estate's health, counts, what expires soonest, and the two charts. */
import { call } from './api.js';
import { forecastChart, timelineChart } from './charts.js';
import { fmtDay, h, healthBadge, loading, replace, section, severityBadge, table, timeLeft } from './dom.js';
import { certificateLabel } from './page-certificates.js';

const LEVELS = /** @type {const} */ (['good', 'fair', 'poor', 'critical']);

/** @param {string} key @param {string} label @param {string | number | Node} value @param {string | Node | null} [note] @param {string} [href] */
function card(key, label, value, note, href) {
  const v = h('span', { class: 'value' }, typeof value === 'number' ? String(value) : value);
  return h('div', { class: 'card', 'data-stat': key }, h('span', { class: 'label' }, label), href ? h('a', { href, class: 'value-link' }, v) : v, note ? h('span', { class: 'note' }, note) : null);
}

/** @param {import('./app.js').Ctx} ctx */
export async function render(ctx) {
  const { root } = ctx;
  const summaryBox = h('div', { class: 'overview-summary' }, loading('Loading the estate…'));
  const timelineBody = h('div', {}, loading('Loading the timeline…'));
  const perSelect = h(
    'select',
    { id: 'forecast-per' },
    h('option', { value: 'month' }, 'per month'),
    h('option', { value: 'week' }, 'per week'),
  );
  const forecastBody = h('div', {}, loading('Loading the forecast…'));
  const charts = h(
    'div',
    { class: 'grid-2' },
    section('Expiry timeline', h('p', { class: 'help' }, 'Certificates expiring per week over the next 90 days, by the severity of their worst finding.'), timelineBody),
    section(
      'Renewal forecast',
      h('div', { class: 'inline-field' }, h('label', { for: 'forecast-per' }, 'Show renewals'), perSelect),
      h('p', { class: 'help' }, 'Renewals the estate needs over the next year, as it is and under the CA/Browser Forum maximum lifetimes.'),
      forecastBody,
    ),
  );
  const detailsBox = h('div', { class: 'overview-details' });
  root.append(h('h1', {}, 'Overview'), summaryBox, charts, detailsBox);

  const summary = call('/summary').then(
    (s) => {
      if (!ctx.alive()) return;
      const v = summaryView(s);
      replace(summaryBox, v.cards);
      replace(detailsBox, v.details);
    },
    (e) => {
      replace(summaryBox, h('p', { class: 'form-error' }, 'The summary could not be loaded.'));
      ctx.error(e);
    },
  );
  const timeline = call('/timeline?days=90&bucket=7').then(
    (t) => {
      if (ctx.alive()) replace(timelineBody, timelineChart(t));
    },
    (e) => {
      replace(timelineBody, h('p', { class: 'form-error' }, 'The timeline could not be loaded.'));
      ctx.error(e);
    },
  );
  /** @type {any} */
  let fc = null;
  const forecast = call('/forecast?days=365').then(
    (f) => {
      fc = f;
      if (ctx.alive()) replace(forecastBody, forecastChart(f, 'month'));
    },
    (e) => {
      replace(forecastBody, h('p', { class: 'form-error' }, 'The forecast could not be loaded.'));
      ctx.error(e);
    },
  );
  perSelect.addEventListener('change', () => {
    if (fc) replace(forecastBody, forecastChart(fc, perSelect.value === 'week' ? 'week' : 'month'));
  });
  await Promise.all([summary, timeline, forecast]);
}

/** @param {any} s the /summary answer */
function summaryView(s) {
  const e = s.estate;
  const now = new Date(s.at).getTime();
  const cards = h(
    'div',
    { class: 'cards' },
    card('health', 'Estate health', h('span', {}, healthBadge(e.level)), `score ${e.score} of 100`, '#/certificates?sort=health'),
    card('leaves', 'Certificates', s.leaves, `${s.certificates} with CA certificates`, '#/certificates'),
    card('expired', 'Expired', s.expired, 'not renewed', '#/certificates?expiring=0'),
    card('days7', 'Expiring in 7 days', s.expiring.days7, null, '#/certificates?expiring=7'),
    card('days30', 'Expiring in 30 days', s.expiring.days30, null, '#/certificates?expiring=30'),
    card('deployed', 'Deployed at', s.installations.present, `place(s); ${s.installations.missing} missing`),
  );

  const totalLevels = LEVELS.reduce((n, l) => n + (e.byLevel[l] ?? 0), 0);
  const levelBar = h('div', { class: 'level-bar', 'aria-hidden': 'true' });
  for (const l of LEVELS) {
    const n = e.byLevel[l] ?? 0;
    if (!n) continue;
    const seg = h('span', { class: `level-seg level-${l}` });
    seg.style.width = `${(n / totalLevels) * 100}%`;
    levelBar.append(seg);
  }
  const levels = section(
    'Health by level',
    levelBar,
    h(
      'ul',
      { class: 'level-list' },
      LEVELS.map((l) => h('li', { 'data-level': l }, healthBadge(l), ' ', h('a', { href: `#/certificates?health=${l}` }, h('span', { class: 'count' }, String(e.byLevel[l] ?? 0)), ' certificate(s)'))),
    ),
    h('p', { class: 'help' }, 'good: no findings; fair: notices only; poor: a warning; critical: a critical finding. The estate takes the level of its worst certificate and the mean score.'),
  );

  const findings = section(
    'Top findings',
    table({
      caption: 'Checks that flag certificates, most serious first',
      captionHidden: true,
      rows: e.byCheck.slice(0, 8),
      empty: 'No findings: every certificate is good.',
      columns: [
        { label: 'Check', cell: (/** @type {any} */ c) => h('a', { href: `#/certificates?check=${encodeURIComponent(c.check)}&all=true` }, c.check) },
        { label: 'Severity', cell: (/** @type {any} */ c) => severityBadge(c.severity) },
        { label: 'Certificates', cell: (/** @type {any} */ c) => String(c.certificates), className: 'num' },
      ],
    }),
  );

  const sources = Object.entries(s.bySource ?? {}).sort((a, b) => Number(b[1]) - Number(a[1]));
  const bySource = section(
    'By source',
    sources.length
      ? h(
          'ul',
          { class: 'source-list' },
          sources.map(([k, n]) => h('li', { 'data-source': k }, h('a', { href: `#/certificates?source=${encodeURIComponent(k)}&all=true` }, k), ' ', h('span', { class: 'count' }, String(n)))),
        )
      : h('p', { class: 'empty' }, 'Nothing recorded yet.'),
    h('p', { class: 'help' }, 'ca: issued here; lineage: the Anvil client; network: found by anvil scan; file: found in files; import: imported.'),
  );

  const soonest = section(
    'Expiring soonest',
    table({
      caption: 'Live certificates expiring soonest',
      captionHidden: true,
      rows: s.soonest,
      empty: 'No live certificates.',
      columns: [
        { label: 'Certificate', cell: (/** @type {any} */ c) => h('a', { href: `#/certificate/${c.fingerprint}` }, certificateLabel(c)) },
        { label: 'Expires', cell: (/** @type {any} */ c) => [fmtDay(c.notAfter), ' ', h('span', { class: `left${timeLeft(c.notAfter, now).days < 7 ? ' soon' : ''}` }, timeLeft(c.notAfter, now).text)] },
        { label: 'Health', cell: (/** @type {any} */ c) => healthBadge(c.health.level, c.health.score) },
      ],
    }),
  );

  return {
    cards,
    details: [h('div', { class: 'grid-2' }, soonest, levels), h('div', { class: 'grid-2' }, findings, bySource), h('p', { class: 'as-of' }, `As of ${new Date(s.at).toISOString().slice(0, 19).replace('T', ' ')} UTC.`)],
  };
}
