/**
 * The web dashboard (docs/dashboard.md) in a real browser: headless Debian Chromium driven by
 * playwright-core, against a real `anvil server` whose inventory holds what it issued (synced every
 * second), the client's lineage, and a folder of certificate files made for the occasion (sound,
 * expiring, expired, a weak key, and one whose name is markup). Three tokens from `anvil token
 * create`: a viewer, an operator and an admin.
 *
 * ANVIL_SCREENSHOTS=1 also saves docs/screenshots/*.png (1280x800).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { Agent, fetch, type RequestInit } from 'undici';
import { testCa, testLeaf } from '../../src/inventory/test-certs.js';
import { ANVIL_BIN, REPO } from '../helpers/anvil-process.js';
import { launchBrowser, missingBrowser, type Browser, type PageLog } from '../helpers/browser.js';
import { startLoopbackCa, type LoopbackCa } from '../helpers/loopback-ca.js';
import { missingTools, runTool } from '../helpers/run.js';

// The functions given to page.evaluate and page.waitForFunction run in the page; the project's
// TypeScript lib has no DOM, so these two are declared here, for this file only.
declare const document: any;
declare const window: any;

const DAY = 86_400_000;
const SCREENSHOTS = process.env.ANVIL_SCREENSHOTS === '1';
/** Console errors a page may show: the browser's own line for an API answer the test provokes. */
const EXPECTED_NETWORK = /^Failed to load resource: the server responded with a status of (401|403|404) /;
const XSS_NAME = '<img src=x onerror=alert(1)>.example.test';

interface Summary {
  fingerprint: string;
  names: string[];
  serial: string;
  source: string;
  revoked: boolean;
}

function sha256Fingerprint(pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem }).toString().split('=')[1]!.trim().replaceAll(':', '').toLowerCase();
}

describe('the web dashboard in headless Chromium', { timeout: 300_000, skip: missingBrowser() || missingTools('openssl') }, () => {
  let ca: LoopbackCa;
  let dir: string;
  let browser: Browser;
  let base: string;
  const tokens: Record<'viewer' | 'operator' | 'admin', string> = { viewer: '', operator: '', admin: '' };
  const fp: Record<string, string> = {};
  const logs: PageLog[] = [];
  let page: Page;
  /** Trusts the server's root (made at its first start): the API over HTTPS from node. */
  let agent: Agent;

  const anvilCli = (...args: string[]) => runTool(process.execPath, [ANVIL_BIN, ...args], {}, 60_000);

  async function eventually<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 30_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** The API as a token holder outside the browser sees it. */
  async function apiAs(token: string, p: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
    const res = await fetch(`${base}/api/v1${p}`, { ...init, dispatcher: agent, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...(init.headers ?? {}) }, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  async function shot(name: string) {
    if (!SCREENSHOTS) return;
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(REPO, 'docs', 'screenshots', `${name}.png`), fullPage: false, animations: 'disabled' });
  }

  async function login(token: string) {
    await page.goto(`${base}/dashboard/#/overview`);
    await page.getByLabel('API token', { exact: true }).fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#who').waitFor({ state: 'visible' });
  }

  async function logout() {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('API token', { exact: true }).waitFor();
  }

  before(async () => {
    ca = await startLoopbackCa('anvil-dashboard-', { inventory: { syncSeconds: 1 } });
    base = new URL(ca.anvil.directoryUrl).origin;
    agent = new Agent({ connect: { ca: await readFile(ca.anvil.rootPem, 'utf8') } });
    dir = await mkdtemp(path.join(os.tmpdir(), 'anvil-dashboard-files-'));

    // What the CA issues: one certificate, deployed as the client's lineage.
    const issued = await ca.issue('loop');
    assert.equal(issued.code, 0, issued.out);

    // A folder of certificates of another CA, as found on a server.
    const now = Date.now();
    const root = await testCa('Dashboard Files Root');
    const files = path.join(dir, 'files');
    await mkdir(files);
    const leaves = {
      shop: await testLeaf({ ca: root, names: ['shop.example.test', 'www.shop.example.test'] }),
      api: await testLeaf({ ca: root, names: ['api.example.test'], notBefore: new Date(now - 85 * DAY), notAfter: new Date(now + 5 * DAY) }),
      mail: await testLeaf({ ca: root, names: ['mail.example.test'], notBefore: new Date(now - 70 * DAY), notAfter: new Date(now + 20 * DAY) }),
      old: await testLeaf({ ca: root, names: ['old.example.test'], notBefore: new Date(now - 93 * DAY), notAfter: new Date(now - 3 * DAY) }),
      legacy: await testLeaf({ ca: root, names: ['legacy.example.test'], key: 'rsa1024', notBefore: new Date(now - 30 * DAY), notAfter: new Date(now + 60 * DAY) }),
      xss: await testLeaf({ ca: root, names: [XSS_NAME], cn: '<script>alert(1)</script>', notBefore: new Date(now - 10 * DAY), notAfter: new Date(now + 80 * DAY) }),
    };
    for (const [name, leaf] of Object.entries(leaves)) {
      await writeFile(path.join(files, `${name}.pem`), leaf.pem);
      fp[name] = sha256Fingerprint(leaf.pem);
    }
    await writeFile(path.join(files, 'root.pem'), root.cert.toString('pem'));
    const scan = await anvilCli('inventory', 'scan-files', files, '--data-dir', ca.anvil.dataDir);
    assert.equal(scan.code, 0, scan.out);
    const sync = await anvilCli('inventory', 'sync', '--lineages', ca.store, '--data-dir', ca.anvil.dataDir);
    assert.equal(sync.code, 0, sync.out);

    for (const role of ['viewer', 'operator', 'admin'] as const) {
      const r = await anvilCli('token', 'create', '--name', `${role}-e2e`, '--role', role, '--json', '-c', ca.anvil.configFile);
      assert.equal(r.code, 0, r.out);
      tokens[role] = (JSON.parse(r.stdout) as { token: string }).token;
      assert.match(tokens[role], /^anvil_/);
    }

    // The server's own sync has recorded the issued certificate once the API lists it.
    const loop = await eventually('the issued certificate in the inventory', async () => {
      const r = await apiAs(tokens.viewer, '/certificates?source=ca');
      return (r.body?.items as Summary[] | undefined)?.find((c) => c.names.includes('127.0.0.1'));
    });
    fp.loop = loop.fingerprint;
    // The estate view is cached for 10 s; wait until it shows every leaf.
    await eventually('every leaf in the estate view', async () => (await apiAs(tokens.viewer, '/summary')).body?.leaves === 7);

    if (SCREENSHOTS) await mkdir(path.join(REPO, 'docs', 'screenshots'), { recursive: true });
    // The server's certificate comes from the root it made at its first start, which Chromium
    // does not know; the test trusts it by ignoring certificate errors for this browser only.
    browser = await launchBrowser({ timeoutMs: 15_000, ignoreHttpsErrors: true });
    const p = await browser.newPage({ width: 1280, height: 800 });
    page = p.page;
    logs.push(p.log);
  });

  after(async () => {
    await browser?.close();
    await ca?.cleanup();
    await agent?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a bad token is refused with a message; a good one shows the name and role, and a viewer no Admin link', async () => {
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API token', { exact: true }).fill('anvil_notarealtokennotarealtokennotarealtokenxx');
    await page.getByRole('button', { name: 'Log in' }).click();
    const err = page.locator('#login-error');
    await err.waitFor({ state: 'visible' });
    assert.match(await err.innerText(), /unknown, revoked or expired/);
    assert.equal(await page.locator('#who').isVisible(), false);

    await page.getByLabel('API token', { exact: true }).fill(tokens.viewer);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#who').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#who-role').innerText(), 'viewer');
    assert.equal(await page.locator('#who-name').innerText(), 'viewer-e2e');
    assert.deepEqual(await page.evaluate(async () => (await fetch('/api/v1/me')).json()), { name: 'viewer-e2e', role: 'viewer', ca: true, canRevoke: false });
    assert.equal(await page.getByRole('link', { name: 'Admin' }).isVisible(), false);
    assert.equal(await page.getByRole('link', { name: 'CA', exact: true }).isVisible(), true);
    // The cookie is HttpOnly: the page cannot read the token.
    assert.equal(await page.evaluate(() => document.cookie), '');
  });

  test('the overview shows the estate: health, counts, findings, and the soonest expiry first', async () => {
    await page.goto(`${base}/dashboard/#/overview`);
    const stat = (k: string) => page.locator(`[data-stat="${k}"] .value`).innerText();
    await page.locator('[data-stat="leaves"]').waitFor();
    assert.equal(await stat('leaves'), '7');
    assert.equal(await stat('expired'), '1');
    assert.equal(await stat('days7'), '1', 'api.example.test, 5 days');
    assert.equal(await stat('days30'), '2', 'and mail.example.test, 20 days');
    assert.equal(await stat('deployed'), '8', '7 files and a lineage');
    assert.equal(await stat('health'), 'critical');
    assert.equal(await page.locator('[data-level="critical"] .count').innerText(), '3', 'api (critical expiry), old (expired, deployed), legacy (weak key)');
    assert.equal(await page.locator('[data-source="file"] .count').innerText(), '7');
    assert.equal(await page.locator('[data-source="ca"] .count').innerText(), '1');
    const findings = await page.locator('section:has(h2:text("Top findings")) tbody tr').allInnerTexts();
    for (const check of ['expired', 'expiring', 'weak-key']) assert.ok(findings.some((r) => r.startsWith(check)), `${check} in ${JSON.stringify(findings)}`);
    const soonest = page.locator('section:has(h2:text("Expiring soonest")) tbody tr');
    assert.equal(await soonest.count(), 6, 'live leaves: every leaf but the expired one');
    assert.match(await soonest.first().innerText(), /api\.example\.test/);
    assert.equal(await soonest.first().locator('a').getAttribute('href'), `#/certificate/${fp.api}`);
  });

  test('the charts render: 13 weekly bars of the expiry timeline, and two forecast series with a legend', async () => {
    const timeline = page.locator('svg.timeline-chart');
    await timeline.waitFor();
    assert.equal(await timeline.getAttribute('role'), 'img');
    assert.match(await timeline.locator('title').first().textContent() ?? '', /Expiry timeline: certificates expiring per week over the next 90 days/);
    const buckets = timeline.locator('g.bucket');
    assert.equal(await buckets.count(), 13, 'ceil(90 / 7) buckets');
    const totals = (await buckets.evaluateAll((gs) => gs.map((g) => Number(g.getAttribute('data-total'))))) as number[];
    assert.equal(totals.reduce((a, b) => a + b, 0), 6, 'every live leaf (the expired one is counted apart)');
    assert.equal(totals[0], 1, 'api.example.test expires within the first week');
    assert.equal(await timeline.locator('rect.seg.sev-critical').count(), 2, 'api (expiring) and legacy (weak key)');
    assert.ok((await timeline.locator('text.x-tick').count()) >= 6, 'the weeks are labelled');
    assert.match(await page.locator('figure:has(svg.timeline-chart) figcaption').innerText(), /1 expired already/);

    const forecast = page.locator('svg.forecast-chart');
    await forecast.waitFor();
    const f = (await page.evaluate(async () => (await fetch('/api/v1/forecast?days=365')).json())) as { start: string; days: number; certificates: number; current: number[]; cabf: number[] };
    const months = new Set(Array.from({ length: f.days }, (_, d) => new Date(Date.parse(f.start) + d * DAY).toISOString().slice(0, 7))).size;
    assert.equal(await forecast.locator('g.series').count(), 2);
    assert.equal(await forecast.locator('g.series-current circle.point').count(), months);
    assert.equal(await forecast.locator('g.series-cabf circle.point').count(), months);
    const drawn = (await forecast.locator('g.series-current circle.point').evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('data-value'))))) as number[];
    assert.equal(drawn.reduce((a, b) => a + b, 0), f.current.reduce((a, b) => a + b, 0), 'the monthly points add up to the daily series');
    assert.equal(await page.locator('figure:has(svg.forecast-chart) .legend li').count(), 2);
    assert.match(await forecast.locator('title').first().textContent() ?? '', /Renewal forecast: renewals per month/);
    await page.getByLabel('Show renewals').selectOption('week');
    assert.ok((await forecast.locator('g.series-current circle.point').count()) >= 52);
    await page.getByLabel('Show renewals').selectOption('month');
    await shot('overview');
  });

  test('the list searches (debounced), filters and pages, and keeps its view in the hash across a reload', async () => {
    await page.goto(`${base}/dashboard/#/certificates`);
    const status = page.locator('#list-status');
    await page.waitForFunction(() => document.querySelector('#list-status')?.getAttribute('data-total') === '7');
    const rows = page.locator('#cert-results tbody tr');
    assert.equal(await rows.count(), 7);
    await shot('certificates');

    await page.getByLabel('Search').pressSequentially('mail', { delay: 30 });
    await page.waitForFunction(() => document.querySelector('#list-status')?.getAttribute('data-total') === '1');
    assert.equal(await rows.count(), 1);
    assert.match(await rows.first().innerText(), /mail\.example\.test/);
    assert.match(page.url(), /#\/certificates\?q=mail$/);
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#list-status')?.getAttribute('data-total') === '1');
    assert.equal(await page.getByLabel('Search').inputValue(), 'mail');
    assert.match(await rows.first().innerText(), /mail\.example\.test/);

    // A name that is markup stays text.
    await page.getByLabel('Search').fill('onerror');
    await rows.filter({ hasText: 'onerror' }).waitFor();
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().locator('a').innerText(), XSS_NAME);
    assert.equal(await page.locator('#cert-results img, #cert-results script').count(), 0);

    await page.getByLabel('Search').fill('');
    await page.getByLabel('Health').selectOption('critical');
    await page.waitForFunction(() => document.querySelector('#list-status')?.getAttribute('data-total') === '3');
    const critical = (await rows.locator('a.cert-link').allInnerTexts()).sort();
    assert.deepEqual(critical, ['api.example.test', 'legacy.example.test', 'old.example.test']);
    assert.match(page.url(), /health=critical/);

    // Paging: two a page, soonest expiry first.
    await page.goto(`${base}/dashboard/#/certificates?limit=2`);
    await page.waitForFunction(() => document.querySelector('#list-status')?.textContent?.startsWith('Showing 1–2 of 7'));
    assert.deepEqual(await rows.locator('a.cert-link').allInnerTexts(), ['old.example.test', 'api.example.test']);
    const prev = page.getByRole('button', { name: '← Previous' });
    const next = page.getByRole('button', { name: 'Next →' });
    assert.equal(await prev.isDisabled(), true);
    await next.click();
    await page.waitForFunction(() => document.querySelector('#list-status')?.textContent?.startsWith('Showing 3–4 of 7'));
    assert.match(page.url(), /cursor=2/);
    assert.deepEqual(await rows.locator('a.cert-link').allInnerTexts(), ['mail.example.test', 'legacy.example.test']);
    await next.click();
    await page.waitForFunction(() => document.querySelector('#list-status')?.textContent?.startsWith('Showing 5–6 of 7'));
    await next.click();
    await page.waitForFunction(() => document.querySelector('#list-status')?.textContent?.startsWith('Showing 7–7 of 7'));
    assert.equal(await next.isDisabled(), true);
    await prev.click();
    await page.waitForFunction(() => document.querySelector('#list-status')?.textContent?.startsWith('Showing 5–6 of 7'));
    assert.ok(await status.isVisible());

    // On a phone the table becomes one card per certificate, and nothing scrolls sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/dashboard/#/certificates`);
    await page.waitForFunction(() => document.querySelector('#list-status')?.getAttribute('data-total') === '7');
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 390);
    assert.equal(await page.locator('#cert-results thead').isVisible(), false);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  test('the detail page shows names, deployments, history and PEM; a viewer has no revoke button and the API refuses a forced one', async () => {
    await page.goto(`${base}/dashboard/#/certificates?q=127.0.0.1`);
    await page.getByRole('link', { name: '127.0.0.1' }).click();
    await page.waitForURL(`**/#/certificate/${fp.loop}`);
    await page.locator('h1.cert-title').waitFor();
    assert.equal(await page.locator('h1.cert-title').innerText(), '127.0.0.1');
    assert.deepEqual(await page.locator('ul.names li').allInnerTexts(), ['127.0.0.1']);
    const deployments = page.locator('section:has(h2:text("Deployments")) tbody tr');
    assert.equal(await deployments.count(), 1);
    assert.match(await deployments.first().innerText(), new RegExp(`lineage\\s+${path.join(ca.store, 'live', 'loop').replaceAll('.', '\\.')}`));
    assert.match(await deployments.first().innerText(), /present/);
    const events = await page.locator('ol.timeline li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-event')));
    assert.deepEqual(events, ['issued', 'deployed']);
    assert.match(await page.locator('pre.pem').innerText(), /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----/);
    assert.equal(await page.locator('#revoke').count(), 0, 'no revoke button for a viewer');
    await shot('certificate');

    const forced = await page.evaluate(async (fingerprint) => {
      const res = await fetch('/api/v1/ca/revocations', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Anvil-CSRF': '1' }, body: JSON.stringify({ fingerprint, reason: 1 }) });
      return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as { title: string; detail: string } };
    }, fp.loop!);
    assert.equal(forced.status, 403);
    assert.match(forced.type ?? '', /application\/problem\+json/);
    assert.match(forced.body.detail, /needs the operator role/);
    const still = await apiAs(tokens.viewer, `/certificates/${fp.loop}`);
    assert.equal(still.body.revoked, null, 'nothing was revoked');

    // The admin page is not for viewers, and neither is its API.
    await page.goto(`${base}/dashboard/#/admin`);
    assert.match(await page.locator('main .info').innerText(), /needs the admin role/);
    const tokensApi = await page.evaluate(async () => (await fetch('/api/v1/tokens')).status);
    assert.equal(tokensApi, 403);
  });

  test('an operator revokes through the UI (after a confirmation); the page, the CA revocations and the CRL show it', async () => {
    await logout();
    await login(tokens.operator);
    assert.equal(await page.locator('#who-role').innerText(), 'operator');
    assert.equal(((await page.evaluate(async () => (await fetch('/api/v1/me')).json())) as { canRevoke: boolean }).canRevoke, true);

    // A certificate this CA did not issue cannot be revoked here: the page says why.
    await page.goto(`${base}/dashboard/#/certificate/${fp.shop}`);
    await page.getByRole('button', { name: 'Revoke…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke certificate' }).click();
    const notHere = page.locator('#revoke-error');
    await notHere.waitFor({ state: 'visible' });
    assert.match(await notHere.innerText(), /did not issue this certificate/);
    assert.ok(await page.locator('#banner').isVisible(), 'the error banner shows the API error');

    await page.goto(`${base}/dashboard/#/certificate/${fp.loop}`);
    const revoke = page.getByRole('button', { name: 'Revoke…' });
    // Cancelling changes nothing.
    await revoke.click();
    const dialog = page.getByRole('dialog', { name: 'Revoke this certificate?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    assert.equal((await apiAs(tokens.viewer, `/certificates/${fp.loop}`)).body.revoked, null);

    await revoke.click();
    await dialog.getByLabel('Reason').selectOption('1');
    await dialog.getByRole('button', { name: 'Revoke certificate' }).click();
    await page.locator('#notice').waitFor({ state: 'visible' });
    assert.match(await page.locator('#notice').innerText(), /Revoked the certificate with serial [0-9a-f]+ \(keyCompromise \(1\)\)/);
    await page.locator('#revoked-badge').waitFor();
    assert.equal(await page.locator('#revoke').count(), 0, 'no second revocation offered');
    // The inventory records it at its next sync, and the page refreshes by itself.
    await page.locator('section:has(h2:text("Findings")) li[data-check="revoked"]').waitFor({ timeout: 30_000 });
    assert.match(await page.locator('.fact:has(dt:text("Revoked")) dd').innerText(), /keyCompromise \(1\)/);
    const events = await page.locator('ol.timeline li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-event')));
    assert.ok(events.includes('revoked'), JSON.stringify(events));
    await page.reload();
    await page.locator('#revoked-badge').waitFor();

    const serial = (await apiAs(tokens.viewer, `/certificates/${fp.loop}`)).body.serial as string;
    const bare = serial.toLowerCase().replace(/^0+/, '');
    await page.getByRole('link', { name: 'CA', exact: true }).click();
    const revocations = page.locator('#ca-revocations tbody tr');
    await revocations.first().waitFor();
    assert.equal(await revocations.count(), 1);
    assert.match(await revocations.first().innerText(), new RegExp(`${bare}[\\s\\S]*127\\.0\\.0\\.1[\\s\\S]*keyCompromise \\(1\\)`));
    assert.ok((await page.locator('#ca-orders tbody tr').count()) >= 1);
    assert.ok((await page.locator('#ca-accounts tbody tr').count()) >= 1);
    await shot('ca');

    // The CA's CRL lists the serial.
    const crl = Buffer.from(await (await fetch(`${base}/ca/crl`, { dispatcher: agent, signal: AbortSignal.timeout(10_000) })).arrayBuffer());
    const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: crl }).toString();
    const listed = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase().replace(/^0+/, ''));
    assert.ok(listed.includes(bare), `${bare} in ${JSON.stringify(listed)}`);
  });

  test('an admin creates an EAB key (the HMAC key shown once), a token, revokes it, and reads and verifies the audit log', async () => {
    await logout();
    await login(tokens.admin);
    await page.getByRole('link', { name: 'Admin' }).click();
    const eab = page.locator('section:has(h2:text("EAB keys"))');
    await eab.locator('#eab-list table').waitFor();
    await eab.getByLabel('Uses').fill('3');
    await eab.getByLabel('Comment').fill('team-web');
    await eab.getByRole('button', { name: 'Create EAB key' }).click();
    const secret = page.locator('#eab-secret');
    await secret.waitFor();
    const values = await secret.locator('code.secret-value').allInnerTexts();
    const [kid, hmac] = values;
    assert.match(kid!, /^kid-[A-Za-z0-9_-]+$/);
    assert.match(hmac!, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(values.some((v) => v.includes(`--eab-kid ${kid} --eab-hmac-key ${hmac}`)), 'certbot flags');
    assert.ok(values.some((v) => v.includes(`--eab --kid ${kid} --hmac ${hmac}`)), 'lego flags');
    const keyRow = eab.locator('#eab-list tbody tr', { hasText: kid! });
    await keyRow.waitFor();
    assert.match(await keyRow.innerText(), /0 of 3[\s\S]*team-web[\s\S]*active/);

    // Tokens: one made here, shown once, usable, then revoked.
    const tokenSection = page.locator('section:has(h2:text("API tokens"))');
    await tokenSection.locator('#token-list table').waitFor();
    await tokenSection.getByLabel('Name').fill('made-in-ui');
    await tokenSection.getByLabel('Role').selectOption('viewer');
    await tokenSection.getByRole('button', { name: 'Create token' }).click();
    await page.locator('#token-secret').waitFor();
    const made = (await page.locator('#token-secret code.secret-value').first().innerText()).trim();
    assert.match(made, /^anvil_[A-Za-z0-9_-]{43}$/);
    assert.equal((await apiAs(made, '/me')).body.role, 'viewer');
    await shot('admin');
    await tokenSection.getByRole('button', { name: 'Revoke the token made-in-ui' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke token' }).click();
    await tokenSection.locator('tbody tr', { hasText: 'made-in-ui' }).getByText(/^revoked /).waitFor();
    assert.equal((await apiAs(made, '/me')).status, 401);

    // Reloading shows the key in the list, but its HMAC key no more.
    await page.reload();
    await keyRow.waitFor();
    assert.equal(await page.locator('#eab-secret').count(), 0);
    assert.equal(await page.getByText(hmac!).count(), 0);
    await keyRow.getByRole('button', { name: `Disable the EAB key ${kid}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
    await keyRow.getByText('used up or disabled').waitFor();

    // The audit log holds every change, newest first, and its chain verifies.
    const audit = page.locator('#audit-log tbody tr');
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#audit-log tbody tr').length === 8);
    const actions = await audit.locator('.action').allInnerTexts();
    // Newest first; the first three are the CLI's "anvil token create" of the three test tokens.
    assert.deepEqual(actions, ['eab.disable', 'token.revoke', 'token.create', 'eab.create', 'certificate.revoke', 'token.create', 'token.create', 'token.create']);
    assert.match(await audit.nth(4).innerText(), /token:operator-e2e[\s\S]*certificate\.revoke[\s\S]*serial:[0-9a-f]+[\s\S]*"reason":1/);
    assert.match(await audit.nth(2).innerText(), /token:admin-e2e[\s\S]*token\.create[\s\S]*token:made-in-ui/);
    assert.match(await audit.last().innerText(), /cli:[\s\S]*token\.create[\s\S]*token:viewer-e2e/);
    await page.getByRole('button', { name: 'Verify the chain' }).click();
    const ok = page.locator('#audit-verify .verify');
    await ok.waitFor();
    assert.equal(await ok.getAttribute('data-ok'), 'true');
    assert.match(await ok.innerText(), /The chain is intact\. 8 entries; head 8:[0-9a-f]{64}/);
  });

  test('logging out ends the session: the API refuses the old cookie', async () => {
    await logout();
    const status = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
    assert.equal(status, 401);
  });

  test('no script errors, no CSP violations: the console shows only the API refusals the tests provoked', () => {
    const errors = logs.flatMap((l) => l.errors);
    assert.deepEqual(errors.filter((e) => !EXPECTED_NETWORK.test(e)), [], logs.flatMap((l) => l.all).join('\n'));
    // The refusals provoked: 401 for /me before the login, the bad token and /me after the logout;
    // 403 for the forced revocation and the tokens list as a viewer; 404 for the revocation of a
    // certificate from elsewhere. (The console reports them asynchronously: the last may not be in yet.)
    const statuses = new Set(errors.map((e) => EXPECTED_NETWORK.exec(e)![1]));
    assert.deepEqual([...statuses].sort(), ['401', '403', '404']);
    const all = logs.flatMap((l) => l.all);
    assert.equal(all.filter((m) => /Content Security Policy|Refused to/i.test(m)).length, 0, all.join('\n'));
  });
});
