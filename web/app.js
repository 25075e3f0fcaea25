// @ts-check
/**
 * The Anvil dashboard (docs/dashboard.md): the shell (login, header, navigation, error banner)
 * and the hash router. Each page is a module with render(ctx).
 *
 * Routes: #/overview, #/certificates?q=&health=&source=&expiring=&sort=&cursor=&limit=&all=&check=,
 * #/certificate/<fingerprint>, #/ca, #/admin.
 */
import { ApiError, call, setUnauthorizedHandler } from './api.js';
import { h, replace } from './dom.js';
import * as adminPage from './page-admin.js';
import * as caPage from './page-ca.js';
import * as certificatePage from './page-certificate.js';
import * as certificatesPage from './page-certificates.js';
import * as overviewPage from './page-overview.js';

/**
 * @typedef {'viewer' | 'operator' | 'admin'} Role
 * @typedef {{ name: string, role: Role, ca: boolean, canRevoke?: boolean }} Me
 * @typedef {{
 *   me: Me,
 *   root: HTMLElement,
 *   params: string[],
 *   query: URLSearchParams,
 *   alive: () => boolean,
 *   error: (e: unknown) => void,
 *   notice: (text: string) => void,
 *   setTitle: (title: string) => void,
 * }} Ctx
 */

/** @type {Record<string, { title: string, render: (ctx: Ctx) => Promise<void> | void }>} */
const ROUTES = {
  overview: { title: 'Overview', render: overviewPage.render },
  certificates: { title: 'Certificates', render: certificatesPage.render },
  certificate: { title: 'Certificate', render: certificatePage.render },
  ca: { title: 'CA', render: caPage.render },
  admin: { title: 'Admin', render: adminPage.render },
};

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {Me | null} */
let me = null;
let generation = 0;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let noticeTimer;

// ------------------------------------------------------------------ banner and notices

/** Shows an error in the banner at the top of the page. @param {unknown} e */
function showError(e) {
  const text = e instanceof ApiError ? `${e.title}${e.status ? ` (${e.status})` : ''}: ${e.detail}` : e instanceof Error ? e.message : String(e);
  $('banner-text').textContent = text;
  $('banner').hidden = false;
}

function clearError() {
  $('banner').hidden = true;
  $('banner-text').textContent = '';
}

/** A short success message, which goes away by itself. @param {string} text */
function showNotice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    n.hidden = true;
  }, 10_000);
}

// ------------------------------------------------------------------ routing

/** @returns {{ name: string, params: string[], query: URLSearchParams }} */
function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const cut = raw.indexOf('?');
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const query = new URLSearchParams(cut < 0 ? '' : raw.slice(cut + 1));
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { name: parts[0] ?? 'overview', params: parts.slice(1), query };
}

function updateNav() {
  const nav = $('nav');
  const current = parseHash().name;
  for (const a of nav.querySelectorAll('a[data-route]')) {
    const route = a.getAttribute('data-route');
    const active = route === current || (route === 'certificates' && current === 'certificate');
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
    const li = /** @type {HTMLElement} */ (a.parentElement);
    if (route === 'admin') li.hidden = !me || me.role !== 'admin';
    if (route === 'ca') li.hidden = !me || !me.ca;
  }
}

async function route(focus = true) {
  if (!me) return;
  const gen = ++generation;
  const { name, params, query } = parseHash();
  const r = ROUTES[name];
  const main = $('main');
  clearError();
  updateNav();
  if (!r) {
    location.replace('#/overview');
    return;
  }
  const root = h('div', { class: `page page-${name}` });
  replace(main, root);
  main.setAttribute('aria-busy', 'true');
  document.title = `${r.title} · Anvil`;
  /** @type {Ctx} */
  const ctx = {
    me,
    root,
    params,
    query,
    alive: () => gen === generation && me !== null,
    error: (e) => {
      if (gen === generation) showError(e);
    },
    notice: showNotice,
    setTitle: (t) => {
      if (gen === generation) document.title = `${t} · Anvil`;
    },
  };
  try {
    await r.render(ctx);
  } catch (e) {
    if (ctx.alive()) showError(e);
  } finally {
    if (gen === generation) main.removeAttribute('aria-busy');
  }
  if (focus && gen === generation) {
    const heading = root.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
  }
}

// ------------------------------------------------------------------ session

/** @param {string} [message] shown above the form (a session that ended) */
function showLogin(message) {
  me = null;
  generation++;
  $('who').hidden = true;
  $('nav').hidden = true;
  document.title = 'Log in · Anvil';
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'token-help', placeholder: 'anvil_…' });
  const err = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: !message }, message ?? '');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h(
    'form',
    { class: 'login-form', novalidate: true },
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'help' }, 'Create one on the server with ', h('code', {}, 'anvil token create --name NAME --role viewer'), '. It is kept in a cookie this page cannot read, for at most 8 hours.'),
    err,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) {
      err.textContent = 'Paste an API token first.';
      err.hidden = false;
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Logging in…';
    err.hidden = true;
    try {
      await call('/session', { method: 'POST', body: { token }, login: true });
      input.value = '';
      await start();
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 401 ? 'That token is unknown, revoked or expired.' : e instanceof ApiError ? `${e.title}: ${e.detail}` : String(e);
      err.hidden = false;
      submit.disabled = false;
      submit.textContent = 'Log in';
      input.focus();
      input.select();
    }
  });
  replace($('main'), h('section', { class: 'login panel', 'aria-labelledby': 'login-title' }, h('h1', { id: 'login-title' }, 'Log in to Anvil'), form));
  $('main').removeAttribute('aria-busy');
  input.focus();
}

/** Asks who we are; shows the dashboard, or the login when there is no session. */
async function start() {
  try {
    /** @type {Me} */
    const who = await call('/me', { login: true });
    me = who;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showLogin();
      return;
    }
    replace($('main'), h('p', { class: 'form-error' }, 'The dashboard could not reach the server.'));
    showError(e);
    return;
  }
  $('who-name').textContent = me.name;
  $('who-role').textContent = me.role;
  $('who-role').className = `role-badge role-${me.role}`;
  $('who').hidden = false;
  $('nav').hidden = false;
  await route(false);
}

async function logout() {
  try {
    await call('/session', { method: 'DELETE', login: true });
  } catch (e) {
    showError(e);
  }
  clearError();
  showLogin();
}

// ------------------------------------------------------------------ start-up

setUnauthorizedHandler(() => {
  if (me) showLogin('Your session ended (the token was revoked or expired, or 8 hours passed). Log in again.');
});

$('banner-close').addEventListener('click', clearError);
$('logout').addEventListener('click', logout);
$('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  $('main').focus();
});
window.addEventListener('hashchange', () => {
  if (me) void route();
});
void start();
