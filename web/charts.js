// @ts-check
/**
 * The overview's two charts, drawn as SVG by hand: the expiry timeline (stacked bars per bucket,
 * by the severity of each certificate's worst finding) and the renewal forecast (two series, as
 * the estate is and under the CA/Browser Forum schedule). Each has a <title> and <desc> for
 * assistive technology, and a table of the same numbers under a disclosure.
 */
import { h, s, shortDay, shortMonth, table, uid } from './dom.js';

const W = 640;
const H = 260;
const M = { top: 12, right: 12, bottom: 46, left: 44 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;
const DAY = 86_400_000;

/** A round maximum for the y axis, and its tick step. @param {number} max */
function niceScale(max) {
  if (max <= 0) return { top: 4, step: 1 };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) ?? 10 * mag;
  const stepInt = Math.max(1, Math.ceil(step));
  return { top: Math.ceil(max / stepInt) * stepInt, step: stepInt };
}

/**
 * The frame: y grid lines with labels, axis titles.
 * @param {SVGElement} svg
 * @param {number} top
 * @param {number} step
 * @param {string} yTitle
 * @param {string} xTitle
 */
function frame(svg, top, step, yTitle, xTitle) {
  const grid = s('g', { class: 'grid', 'aria-hidden': 'true' });
  for (let v = 0; v <= top; v += step) {
    const y = M.top + PH - (v / top) * PH;
    grid.append(s('line', { x1: M.left, x2: M.left + PW, y1: y, y2: y, class: v === 0 ? 'axis' : 'gridline' }), s('text', { x: M.left - 6, y: y + 4, class: 'tick y-tick' }, String(v)));
  }
  grid.append(
    s('text', { x: 12, y: M.top + PH / 2, class: 'axis-title', transform: `rotate(-90 12 ${M.top + PH / 2})` }, yTitle),
    s('text', { x: M.left + PW / 2, y: H - 4, class: 'axis-title' }, xTitle),
  );
  svg.append(grid);
}

/** @param {string} titleText @param {string} descText @param {string} className */
function svgRoot(titleText, descText, className) {
  const t = uid('chart-title');
  const d = uid('chart-desc');
  return s('svg', { viewBox: `0 0 ${W} ${H}`, class: `chart ${className}`, role: 'img', 'aria-labelledby': `${t} ${d}`, preserveAspectRatio: 'xMidYMid meet' }, s('title', { id: t }, titleText), s('desc', { id: d }, descText));
}

/** @param {Array<{ cls: string, label: string }>} items */
function legend(items) {
  return h(
    'ul',
    { class: 'legend', 'aria-label': 'Legend' },
    items.map((i) => h('li', {}, h('span', { class: `swatch ${i.cls}`, 'aria-hidden': 'true' }), i.label)),
  );
}

const SEVERITIES = /** @type {const} */ (['none', 'notice', 'warning', 'critical']);
const SEVERITY_LABEL = { none: 'no findings', notice: 'notice', warning: 'warning', critical: 'critical' };

/**
 * @typedef {{ start: string, end: string, total: number, bySeverity: Record<'critical'|'warning'|'notice'|'none', number> }} Bucket
 * @param {{ days: number, bucketDays: number, expired: number, buckets: Bucket[] }} t
 */
export function timelineChart(t) {
  const total = t.buckets.reduce((n, b) => n + b.total, 0);
  const per = t.bucketDays === 7 ? 'week' : `${t.bucketDays} days`;
  const svg = svgRoot(
    `Expiry timeline: certificates expiring per ${per} over the next ${t.days} days`,
    `${total} certificate(s) expire in the next ${t.days} days, in ${t.buckets.length} bars by the severity of their worst finding; ${t.expired} expired already.`,
    'timeline-chart',
  );
  const max = Math.max(0, ...t.buckets.map((b) => b.total));
  const { top, step } = niceScale(max);
  frame(svg, top, step, 'Certificates', `${t.bucketDays === 7 ? 'Week' : 'Period'} starting`);
  const band = PW / Math.max(1, t.buckets.length);
  const bw = Math.max(2, band * 0.68);
  const labelEvery = Math.ceil(t.buckets.length / 8);
  const bars = s('g', { class: 'bars' });
  t.buckets.forEach((b, i) => {
    const x = M.left + i * band + (band - bw) / 2;
    const start = new Date(b.start);
    const parts = SEVERITIES.filter((k) => b.bySeverity[k] > 0).map((k) => `${b.bySeverity[k]} ${SEVERITY_LABEL[k]}`);
    const g = s('g', { class: 'bucket', 'data-total': b.total, 'data-start': b.start }, s('title', {}, `${shortDay(start)} to ${shortDay(new Date(new Date(b.end).getTime() - DAY))}: ${b.total} certificate(s)${parts.length ? ` (${parts.join(', ')})` : ''}`));
    let y = M.top + PH;
    for (const k of SEVERITIES) {
      const n = b.bySeverity[k];
      if (!n) continue;
      const hgt = (n / top) * PH;
      y -= hgt;
      g.append(s('rect', { x, y, width: bw, height: hgt, class: `seg sev-${k}`, 'data-count': n }));
    }
    // An invisible full-height target, so that the tooltip also shows over an empty week.
    g.append(s('rect', { x: M.left + i * band, y: M.top, width: band, height: PH, class: 'hit' }));
    bars.append(g);
    if (i % labelEvery === 0) svg.append(s('text', { x: x + bw / 2, y: M.top + PH + 16, class: 'tick x-tick' }, shortDay(start)));
  });
  svg.append(bars);
  const rows = t.buckets.map((b) => ({ b }));
  return h(
    'figure',
    { class: 'chart-figure' },
    svg,
    legend([
      { cls: 'sev-critical', label: 'critical' },
      { cls: 'sev-warning', label: 'warning' },
      { cls: 'sev-notice', label: 'notice' },
      { cls: 'sev-none', label: 'no findings' },
    ]),
    h('figcaption', {}, `${total} expiring in the next ${t.days} days; ${t.expired} expired already (not drawn).`),
    h(
      'details',
      { class: 'chart-data' },
      h('summary', {}, 'Show the numbers'),
      table({
        caption: 'Certificates expiring per period',
        rows,
        columns: [
          { label: 'From', cell: ({ b }) => b.start.slice(0, 10) },
          { label: 'Total', cell: ({ b }) => String(b.total), className: 'num' },
          { label: 'Critical', cell: ({ b }) => String(b.bySeverity.critical), className: 'num' },
          { label: 'Warning', cell: ({ b }) => String(b.bySeverity.warning), className: 'num' },
          { label: 'Notice', cell: ({ b }) => String(b.bySeverity.notice), className: 'num' },
          { label: 'No findings', cell: ({ b }) => String(b.bySeverity.none), className: 'num' },
        ],
      }),
    ),
  );
}

/**
 * Sums the daily series per calendar month (UTC) or per 7 days.
 * @param {{ start: string, days: number, current: number[], cabf: number[] }} f
 * @param {'month' | 'week'} per
 * @returns {Array<{ label: string, from: string, current: number, cabf: number }>}
 */
export function aggregateForecast(f, per) {
  const start = new Date(f.start).getTime();
  /** @type {Array<{ label: string, from: string, current: number, cabf: number, key: string }>} */
  const out = [];
  for (let d = 0; d < f.days; d++) {
    const day = new Date(start + d * DAY);
    const key = per === 'month' ? day.toISOString().slice(0, 7) : String(Math.floor(d / 7));
    let last = out[out.length - 1];
    if (!last || last.key !== key) {
      last = { key, label: per === 'month' ? shortMonth(day) : shortDay(day), from: day.toISOString().slice(0, 10), current: 0, cabf: 0 };
      out.push(last);
    }
    last.current += f.current[d] ?? 0;
    last.cabf += f.cabf[d] ?? 0;
  }
  return out.map(({ key: _key, ...rest }) => rest);
}

/**
 * @param {{ start: string, days: number, certificates: number, current: number[], cabf: number[] }} f
 * @param {'month' | 'week'} per
 */
export function forecastChart(f, per) {
  const points = aggregateForecast(f, per);
  const sum = (/** @type {'current'|'cabf'} */ k) => points.reduce((n, p) => n + p[k], 0);
  const svg = svgRoot(
    `Renewal forecast: renewals per ${per} over the next ${f.days} days`,
    `${f.certificates} certificate(s) counted. As the estate is: ${sum('current')} renewals; under the CA/Browser Forum schedule: ${sum('cabf')} renewals, in ${points.length} points per series.`,
    'forecast-chart',
  );
  const max = Math.max(0, ...points.map((p) => Math.max(p.current, p.cabf)));
  const { top, step } = niceScale(max);
  frame(svg, top, step, 'Renewals', per === 'month' ? 'Month' : 'Week starting');
  const band = PW / Math.max(1, points.length);
  const xOf = (/** @type {number} */ i) => M.left + band * i + band / 2;
  const yOf = (/** @type {number} */ v) => M.top + PH - (v / top) * PH;
  const labelEvery = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    if (i % labelEvery === 0) svg.append(s('text', { x: xOf(i), y: M.top + PH + 16, class: 'tick x-tick' }, p.label));
  });
  for (const [key, label] of /** @type {const} */ ([
    ['current', 'as it is'],
    ['cabf', 'CA/B Forum schedule'],
  ])) {
    const g = s('g', { class: `series series-${key}`, 'data-series': key });
    g.append(s('polyline', { points: points.map((p, i) => `${xOf(i)},${yOf(p[key])}`).join(' '), class: 'line' }));
    points.forEach((p, i) => g.append(s('circle', { cx: xOf(i), cy: yOf(p[key]), r: 3.5, class: 'point', 'data-value': p[key] }, s('title', {}, `${p.label}: ${p[key]} renewal(s), ${label}`))));
    svg.append(g);
  }
  return h(
    'figure',
    { class: 'chart-figure' },
    svg,
    legend([
      { cls: 'series-current', label: 'As the estate is (renewal at 2/3 of the lifetime)' },
      { cls: 'series-cabf', label: 'Under the CA/B Forum schedule (SC-081: 200, 100, then 47 days)' },
    ]),
    h('figcaption', {}, `${f.certificates} certificate(s) counted; ${sum('current')} renewals as it is, ${sum('cabf')} under the schedule.`),
    h(
      'details',
      { class: 'chart-data' },
      h('summary', {}, 'Show the numbers'),
      table({
        caption: `Renewals per ${per}`,
        rows: points,
        columns: [
          { label: per === 'month' ? 'Month' : 'Week from', cell: (p) => (per === 'month' ? p.from.slice(0, 7) : p.from) },
          { label: 'As it is', cell: (p) => String(p.current), className: 'num' },
          { label: 'CA/B Forum schedule', cell: (p) => String(p.cabf), className: 'num' },
        ],
      }),
    ),
  );
}
