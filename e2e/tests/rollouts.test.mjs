// The Rollouts pages in Debian's Chromium against a real `tenantry serve`: four SQLite tenants, a new migration
// in a writable copy of the tenant schema, one tenant that refuses it (a table made by hand), a rollout started
// from the browser that stops and names that tenant with Retry, and, the cause removed, Retry finishing it while
// the page follows live. Screenshots: rollout-failed, rollout-complete, rollouts (1280 and 390 px).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fleet, WIDE, capture, launchBrowser, signIn } from '../lib/fleet.mjs';

const ROLLOUT_TIMEOUT = 60_000;
const ACTION_TIMEOUT = 15_000;
const TEST_TIMEOUT = { timeout: 180_000 };
const SLUGS = ['alpha', 'bravo', 'charlie', 'delta'];
// The new version: a column on every tenant, and a table that one tenant is given by hand beforehand.
const MIGRATION = [
  'ALTER TABLE organizations ADD COLUMN tier TEXT;',
  'CREATE TABLE tiers (name TEXT PRIMARY KEY, seats INTEGER NOT NULL);',
  '',
].join('\n');
const EXAMPLE_MIGRATIONS = new URL('../../tenant-schema/migrations', import.meta.url).pathname;

/** One statement on a tenant's SQLite file, as someone with a shell on the host would run it; its output. */
function onTenantFile(fleet, slug, statement) {
  const file = join(fleet.dataDir, 'tenants', `tenant_${slug.replaceAll('-', '_')}.db`);
  const run = spawnSync('sqlite3', ['-bail', '-cmd', '.timeout 10000', file, statement], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.ifError(run.error);
  assert.equal(run.status, 0, `sqlite3 ${file} ${JSON.stringify(statement)} failed: ${run.stderr}`);
  return run.stdout.trim();
}

/** Posts JSON to the API from the page's session, with the CSRF token of its meta tag, as the console does. */
function postJson(page, path, body) {
  return page.evaluate(async ({ path, body }) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  }, { path, body });
}

/**
 * Waits until two screenshots in a row are the same. The bars' width transition (200 ms) runs on the
 * browser's own progress pseudo-elements, which `getAnimations()` does not list; without this the screenshot
 * may catch a bar that says 100% half-filled.
 */
async function untilStill(page, { timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let previous = await page.screenshot();
  for (;;) {
    const next = await page.screenshot();
    if (next.equals(previous)) return;
    if (Date.now() > deadline) throw new Error(`${page.url()} still moves after ${timeoutMs} ms`);
    previous = next;
  }
}

describe('a fleet migration (rollout)', () => {
  const fleet = new Fleet();
  // A writable copy of the example tenant schema, which the test adds a migration to; every tenantry process of
  // the fleet (the CLI and `serve`) runs it.
  const migrations = join(fleet.scratchDir, 'migrations');
  fleet.env.TENANTRY_TENANT_MIGRATIONS = migrations;
  let server;
  let browser;
  let admin;

  before(async () => {
    cpSync(EXAMPLE_MIGRATIONS, migrations, { recursive: true });
    admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    for (const slug of SLUGS) {
      fleet.cli([
        'provision-tenant', '--slug', slug, '--display-name', `Tenant ${slug}`, '--admin-email', `it@${slug}.example`,
      ]);
    }
    server = await fleet.serve();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await fleet.cleanup();
  });

  test('stops at the tenant that refuses the migration, and Retry finishes it live', TEST_TIMEOUT, async () => {
    for (const engine of ['postgres', 'sqlite']) writeFileSync(join(migrations, engine, '0003_tier.sql'), MIGRATION);

    const context = await browser.newContext({ viewport: WIDE });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    const page = await context.newPage();
    await signIn(page, server.baseUrl, admin);
    await page.getByRole('link', { name: 'Rollouts', exact: true }).click();
    await page.getByText('No rollouts yet.').waitFor();

    // A dry run says who the canary is; a tenant of wave 1 is the one that refuses.
    const options = { canary: 1, concurrency: 1 };
    const dry = await postJson(page, '/platform/rollouts', { ...options, dry_run: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(dry.body.tenants.map((tenant) => tenant.tenant_slug).sort(), SLUGS);
    const broken = dry.body.tenants.filter((tenant) => tenant.wave === 1).at(-1).tenant_slug;
    // Someone made the migration's table by hand on that tenant.
    onTenantFile(fleet, broken, 'CREATE TABLE tiers (hand_made TEXT)');

    const started = await postJson(page, '/platform/rollouts', options);
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const rolloutId = started.body.id;
    await page.goto(`${server.baseUrl}/platform/rollouts/${rolloutId}`);
    const live = page.locator('main .rollout-live');
    await live.waitFor();
    assert.equal(await live.getAttribute('data-rollout-id'), rolloutId);
    // A mark on this document: still there at the end means the page was patched in place, never reloaded.
    await page.evaluate(() => { window.rolloutE2eMark = 'loaded once'; });

    // The page follows the run until it stops at the broken tenant.
    await page.locator('main .rollout-live[data-status="failed"]').waitFor({ timeout: ROLLOUT_TIMEOUT });
    const failure = live.locator('.job-failure');
    await failure.getByText('E_MIGRATIONS_FAILED').waitFor();
    assert.match(await failure.locator('h3').textContent(), /Stopped/);
    assert.match(await failure.textContent(), new RegExp(`${broken}: .*tiers`));
    const failed = live.locator('.rollout-failed');
    await failed.waitFor();
    assert.equal(await failed.locator('.failed-count').textContent(), '1');
    const rows = failed.locator('table.failed-tenants tbody tr');
    assert.equal(await rows.count(), 1);
    await rows.first().getByRole('link', { name: broken, exact: true }).waitFor();
    assert.match(await rows.first().locator('.details-cell').textContent(), /tiers/);
    assert.equal(await live.locator('[data-count="failed"]').textContent(), '1');
    const retry = live.getByRole('button', { name: 'Retry failed tenants' });
    await retry.waitFor();
    assert.equal(await page.evaluate(() => window.rolloutE2eMark), 'loaded once', 'the page followed the run live');
    await untilStill(page);
    await capture(page, 'rollout-failed');

    // The cause removed, Retry (a plain form post back to this page) runs the rollout to the end.
    onTenantFile(fleet, broken, 'DROP TABLE tiers');
    // The next load event is the new document's: the post answered 303 to this same URL.
    await Promise.all([page.waitForEvent('load'), retry.click()]);
    assert.equal(page.url(), `${server.baseUrl}/platform/rollouts/${rolloutId}`);
    await page.evaluate(() => { window.rolloutE2eMark = 'after retry'; });
    const complete = page.locator('main .rollout-live[data-status="complete"]');
    await complete.waitFor({ timeout: ROLLOUT_TIMEOUT });
    await complete.locator('.job-outcome').getByText('Complete: every tenant to migrate is at version 3.').waitFor();
    assert.equal(await complete.locator('[data-count="applied"]').textContent(), String(SLUGS.length));
    assert.equal(await complete.locator('[data-count="failed"]').textContent(), '0');
    assert.equal(await complete.locator('.job-failure').isHidden(), true);
    assert.equal(await complete.locator('.rollout-failed').isHidden(), true);
    assert.equal(await complete.locator('.rollout-percent').textContent(), '100%');
    assert.deepEqual(await complete.locator('.rollout-progress').evaluate((bar) => [bar.value, bar.max]),
      [SLUGS.length, SLUGS.length]);
    assert.equal(await page.evaluate(() => window.rolloutE2eMark), 'after retry', 'the page followed the run live');
    await untilStill(page);
    await capture(page, 'rollout-complete');

    // The list shows it complete, every tenant applied.
    await page.getByRole('link', { name: 'Rollouts', exact: true }).click();
    const row = page.locator('table.rollouts tbody tr', { hasText: rolloutId.slice(-8) });
    await row.waitFor();
    await row.locator('.pill-complete').waitFor();
    assert.match(await row.textContent(), new RegExp(`${SLUGS.length}/${SLUGS.length}`));
    await capture(page, 'rollouts');

    // Every tenant is at the new version, the retried one with the migration's column and table.
    for (const slug of SLUGS) {
      const schema = await page.request.get(`${server.baseUrl}/platform/tenants/${slug}/schema`, {
        headers: { Accept: 'application/json' },
      });
      assert.equal(schema.status(), 200);
      const view = await schema.json();
      assert.deepEqual([view.state, view.version], ['latest', 3], `${slug}: ${JSON.stringify(view)}`);
    }
    assert.equal(onTenantFile(fleet, broken,
      "SELECT (SELECT COUNT(*) FROM pragma_table_info('organizations') WHERE name = 'tier') || ' ' || " +
      "(SELECT COUNT(*) FROM pragma_table_info('tiers') WHERE name = 'seats')"), '1 1');
    await context.close();
  });
});
