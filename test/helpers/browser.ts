/**
 * Headless Debian Chromium driven by playwright-core, for the dashboard's end-to-end tests. The
 * browser is the system's (/usr/bin/chromium, installed by .ci/run); nothing is ever downloaded.
 * Each launch gets a fresh profile in a temporary directory, removed by close().
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';

export const CHROMIUM = process.env.ANVIL_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A reason to skip browser tests (no Chromium on a developer machine), or false. Never skipped under CI. */
export function missingBrowser(): string | false {
  if (process.env.CI === 'true') return false;
  return existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (bash .ci/run installs the Debian chromium package)`;
}

/** What a page said on its console, and the errors it threw. */
export interface PageLog {
  /** Console messages of type error, and uncaught exceptions ("pageerror: ..."). */
  errors: string[];
  /** Every console message, "type: text". */
  all: string[];
}

export interface Browser {
  context: BrowserContext;
  /** A new page (tab) of the given size, its console and errors collected into `log`. */
  newPage(opts?: { width?: number; height?: number }): Promise<{ page: Page; log: PageLog }>;
  /** Closes the browser (bounded in time) and removes its profile. */
  close(): Promise<void>;
}

/**
 * Launches Chromium with a fresh profile. `timeoutMs` bounds the launch and every action;
 * `ignoreHttpsErrors` accepts a server certificate from a root the browser does not know (a test
 * CA made at its start).
 */
export async function launchBrowser(opts: { timeoutMs?: number; ignoreHttpsErrors?: boolean } = {}): Promise<Browser> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'anvil-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: opts.timeoutMs ?? 30_000,
      viewport: { width: 1280, height: 800 },
      deviceScaleFactor: 1,
      locale: 'en-US',
      timezoneId: 'UTC',
      colorScheme: 'light',
      reducedMotion: 'reduce',
      ignoreHTTPSErrors: opts.ignoreHttpsErrors ?? false,
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  context.setDefaultTimeout(opts.timeoutMs ?? 15_000);
  context.setDefaultNavigationTimeout(opts.timeoutMs ?? 15_000);
  // The persistent context opens a first tab by itself; it is not used.
  for (const p of context.pages()) await p.close().catch(() => {});
  return {
    context,
    async newPage(size = {}) {
      const page = await context.newPage();
      await page.setViewportSize({ width: size.width ?? 1280, height: size.height ?? 800 });
      const log: PageLog = { errors: [], all: [] };
      page.on('console', (m: ConsoleMessage) => {
        log.all.push(`${m.type()}: ${m.text()}`);
        if (m.type() === 'error') log.errors.push(m.text());
      });
      page.on('pageerror', (e: Error) => {
        log.all.push(`pageerror: ${e.message}`);
        log.errors.push(`pageerror: ${e.message}`);
      });
      return { page, log };
    },
    async close() {
      const closing = context.close().catch(() => {});
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closing, new Promise<void>((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      await rm(profile, { recursive: true, force: true, maxRetries: 3, retryDelay: 200 });
    },
  };
}
