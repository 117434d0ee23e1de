// The browser tests' world: a real `tenantry serve` on a fresh data directory (SQLite registry, the bundled
// local SQLite server), users made with the real CLI, and Debian's Chromium driven by playwright-core.

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const BINARY = process.env.TENANTRY_BIN;
if (!BINARY) {
  throw new Error('TENANTRY_BIN is not set: run the browser tests through scripts/e2e PATH_TO_TENANTRY');
}

export const SCREENSHOTS = process.env.TENANTRY_E2E_SCREENSHOTS || '/tmp/tenantry-e2e-screenshots';
mkdirSync(SCREENSHOTS, { recursive: true });

export const PASSWORD = 'correct horse battery staple';

/** The environment every tenantry process of a fleet runs with. */
function fleetEnv(dataDir, extra = {}) {
  const env = { ...process.env, TENANTRY_DATA_DIR: dataDir, USER: 'e2e', ...extra };
  for (const name of ['TENANTRY_REGISTRY_URL', 'TENANTRY_CONFIG', 'RUST_LOG']) delete env[name];
  if (!('TENANTRY_FAILPOINTS' in extra)) delete env.TENANTRY_FAILPOINTS;
  return env;
}

/** A data directory of its own: one registry, one set of users, one local tenant server. */
export class Fleet {
  constructor() {
    this.scratchDir = mkdtempSync(join(tmpdir(), 'tenantry-e2e-'));
    this.dataDir = join(this.scratchDir, 'data');
    // Variables every tenantry process of this fleet runs with, the CLI's and `serve`'s alike.
    this.env = {};
    this.servers = [];
  }

  /** Runs the CLI; returns its stdout and fails the test on a non-zero exit. */
  cli(args, input) {
    const run = spawnSync(BINARY, args, {
      cwd: this.scratchDir,
      env: fleetEnv(this.dataDir, this.env),
      input: input ?? '',
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `tenantry ${args.join(' ')} failed: ${run.stderr}`);
    return run.stdout;
  }

  addUser(email, role) {
    this.cli(['users', 'add', '--email', email, '--role', role, '--password-stdin'], PASSWORD);
    return { email, password: PASSWORD, role };
  }

  /** Starts `tenantry serve --listen 127.0.0.1:0` and waits for the line that says where it listens. */
  async serve(extraEnv = {}) {
    const logPath = join(this.scratchDir, `serve-${this.servers.length}.log`);
    const child = spawn(BINARY, ['serve', '--listen', '127.0.0.1:0'], {
      cwd: this.scratchDir,
      env: fleetEnv(this.dataDir, { ...this.env, ...extraEnv }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr.pipe(createWriteStream(logPath));
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const lines = createInterface({ input: child.stdout });
    const baseUrl = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('tenantry serve did not listen within 30 s')), 30_000);
      lines.on('line', (line) => {
        const match = /^tenantry listening on (http:\/\/\S+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`tenantry serve exited (${code}) before listening: ${readFileSync(logPath, 'utf8')}`));
      });
    });
    const server = { child, baseUrl, logPath, exited };
    this.servers.push(server);
    return server;
  }

  /** SIGTERM, then the exit status; a clean shutdown exits 0. */
  async stop(server) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
    const { code } = await server.exited;
    this.servers = this.servers.filter((running) => running !== server);
    return code;
  }

  async cleanup() {
    for (const server of [...this.servers]) await this.stop(server);
    rmSync(this.scratchDir, { recursive: true, force: true });
  }
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium; never a downloaded browser. */
export function launchBrowser() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

export const WIDE = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** Signs in through the form, as a person would, and waits for the page it leads to. */
export async function signIn(page, baseUrl, user) {
  await page.goto(`${baseUrl}/platform/login`);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await Promise.all([
    page.waitForURL(/\/platform\/tenants/),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
}

/** Whether the page scrolls sideways at its current width. */
export async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

/**
 * Screenshots the page at 1280 and 390 px wide into the screenshot folder, checking at each width that nothing
 * scrolls sideways; leaves the page at 1280 px.
 */
export async function capture(page, name) {
  for (const [label, size] of [['1280', WIDE], ['390', PHONE]]) {
    await page.setViewportSize(size);
    // Layout settles in the next frame after a resize.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    const overflow = await horizontalOverflow(page);
    assert.ok(overflow <= 0, `${name} scrolls sideways by ${overflow}px at ${label} px wide`);
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(WIDE);
}

/** Reloads until `check` holds or the time is up: for pages without JavaScript, which cannot update themselves. */
export async function reloadUntil(page, check, { timeoutMs = 30_000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms on ${page.url()}`);
    await page.waitForTimeout(intervalMs);
    await page.reload();
  }
}
