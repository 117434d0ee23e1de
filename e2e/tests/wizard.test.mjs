// The seven-step provisioning wizard in Debian's Chromium, with and without JavaScript: every step at 1280 and
// 390 px (screenshots `wizard7-<js|nojs>-<step>-*.png` in $TENANTRY_E2E_SCREENSHOTS), each step's bad input shown
// at its field with the values kept, a data source checked for reachability, and two tenants provisioned to the
// end: a dedicated one on the bundled SQLite server and a free-tier one (a schema in the machine's PostgreSQL).
// The data source's URL, password and all, appears on no page after the submit.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fleet, PHONE, SCREENSHOTS, WIDE, capture, launchBrowser, reloadUntil, signIn } from '../lib/fleet.mjs';

const JOB_TIMEOUT = 30_000;
const ACTION_TIMEOUT = 15_000;
const TEST_TIMEOUT = { timeout: 180_000 };
// The machine's PostgreSQL (trust auth on loopback), as the free tier's server.
const POSTGRES_URL = process.env.TENANTRY_E2E_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
// A run's own names, so that a run never meets what an earlier one left on the shared PostgreSQL.
const RUN = Math.random().toString(36).slice(2, 8);
const PASSWORD_IN_URL = `pw-${RUN}-secret`;
const DATA_SOURCE_URL = `postgres://reader:${PASSWORD_IN_URL}@127.0.0.1:5432/warehouse`;

// The built-in starter plan, and a free tier whose tenants are schemas in a shared PostgreSQL database. No warm
// pool: this installation makes nothing on the shared server beyond its tenants and its shared database.
const CONFIG = `default_plan = "starter"
warm_pool_size = 0

[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000
base_monthly_price = 49.0

[[plans]]
name = "free"
engine = "postgres"
isolation = "schema"
shared_tables = ["documents"]
connection_limit = 5
statement_timeout_ms = 20000
base_monthly_price = 0.0
`;

function psql(sql) {
  const run = spawnSync('psql', [POSTGRES_URL, '-v', 'ON_ERROR_STOP=1', '-Atc', sql], { encoding: 'utf8' });
  assert.equal(run.status, 0, `psql failed: ${run.stderr}`);
  return run.stdout.trim();
}

/** Clicks Next and waits for the step `title`. */
async function next(page, title) {
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByRole('group', { name: title, exact: true }).waitFor();
}

/**
 * `capture` for a page without JavaScript, where no script of the test's own can run either: the full-page
 * screenshot's width (the PNG header's) is the page's, so a page that scrolls sideways is wider than the viewport.
 */
async function captureWithoutScript(page, name) {
  for (const [label, size] of [['1280', WIDE], ['390', PHONE]]) {
    await page.setViewportSize(size);
    const png = await page.screenshot({ path: join(SCREENSHOTS, `${name}-${label}.png`), fullPage: true });
    const width = png.readUInt32BE(16);
    assert.ok(width <= size.width, `${name} is ${width}px wide at ${label} px`);
  }
  await page.setViewportSize(WIDE);
}

async function fieldError(page, field) {
  const error = page.locator(`[data-field="${field}"] .field-error`).first();
  await error.filter({ hasText: /\S/ }).waitFor();
  return error.textContent();
}

/**
 * Walks the seven steps as a person would, making one mistake per step and correcting it, and provisions.
 * `mode` is `nojs` for a page without JavaScript, else `js…`; it names the screenshots.
 */
async function walkTheWizard(page, baseUrl, mode, { slug, plan, tier, isolation }) {
  const shot = (name) => (mode === 'nojs' ? captureWithoutScript : capture)(page, `wizard7-${mode}-${name}`);
  await page.goto(`${baseUrl}/platform/tenants/new`);
  await page.getByRole('group', { name: 'Tenant details' }).waitFor();
  const scripted = mode !== 'nojs';
  if (scripted) await page.locator('#wizard[data-enhanced="true"]').waitFor();

  // 1 Tenant details: a description of 501 characters is refused at its field; the other values stay.
  await page.getByLabel('Display name').fill(`Wizard ${slug}`);
  await page.getByLabel('Slug').fill(slug);
  await page.getByLabel('Description').fill('x'.repeat(501));
  await page.getByLabel('Billing tier').selectOption(plan);
  await page.getByLabel('First admin email').fill(`admin@${slug}.example`);
  await page.getByLabel('Contact name').fill('Ada Lovelace');
  await page.getByRole('button', { name: 'Next' }).click();
  assert.match(await fieldError(page, 'description'), /at most 500 characters; it has 501/);
  assert.equal(await page.getByLabel('Description').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.getByLabel('Contact name').inputValue(), 'Ada Lovelace');
  assert.match(await page.locator('[data-counter="description"]').textContent(), /^501 \/ 500$/);
  await shot('1-details-error');
  await page.getByLabel('Description').fill('Clinics in two cities');
  await shot('1-details');
  await next(page, 'Infrastructure');

  // 2 Infrastructure: each tier with its numbers; compute that is not the plan's is refused at its field.
  const large = page.locator('[data-tier-detail="large"]');
  assert.match(await large.textContent(), /connections · .* queries \/ min · .* per month/);
  await page.locator(`#field-resource_tier-${tier}`).check();
  const wrong = isolation === 'schema' ? 'database' : 'schema';
  await page.locator(`#field-isolation-${wrong}`).check();
  await page.getByRole('button', { name: 'Next' }).click();
  assert.match(await fieldError(page, 'isolation'), new RegExp(`${plan}.*gives each tenant`));
  assert.equal(await page.locator(`#field-resource_tier-${tier}`).isChecked(), true, 'the tier is kept');
  await shot('2-infrastructure-error');
  await page.locator(`#field-isolation-${isolation}`).check();
  await shot('2-infrastructure');
  await next(page, 'Data sources');

  // 3 Data sources: a row with a URL that is not a URL is refused at the row; Check finds the real one.
  await shot('3-data-sources-empty');
  await page.getByRole('button', { name: 'Add data source' }).click();
  const row = page.locator('fieldset.data-source').first();
  await row.waitFor();
  await page.locator('#field-ds-0-name').fill('warehouse');
  await page.locator('#field-ds-0-kind').selectOption('postgres');
  await page.locator('#field-ds-0-url').fill('not a url');
  await page.getByRole('button', { name: 'Next' }).click();
  assert.match(await fieldError(page, 'data_sources[0].url'), /data source URL is not a URL/);
  assert.equal(await page.locator('#field-ds-0-name').inputValue(), 'warehouse');
  await shot('3-data-sources-error');
  await page.locator('#field-ds-0-url').fill(DATA_SOURCE_URL);
  await page.locator('fieldset.data-source').first().getByRole('button', { name: 'Check' }).click();
  const check = page.locator('fieldset.data-source').first().locator('.data-source-check');
  await check.getByText('reachable').waitFor();
  const checked = await check.textContent();
  assert.match(checked, /postgres:\/\/127\.0\.0\.1:5432/);
  assert.ok(!checked.includes(PASSWORD_IN_URL), checked);
  await shot('3-data-sources');
  await next(page, 'Service selection');

  // 4 Service selection: the seed's defaults; a module the plan lacks is disabled with the reason.
  for (const module of ['core', 'bi', 'context_graph']) {
    assert.equal(await page.locator(`#field-module-${module}`).isChecked(), true, `${module} is on`);
  }
  assert.equal(await page.locator('#field-module-ml').isDisabled(), true);
  assert.match(await page.locator('[data-module="ml"] .module-unavailable').textContent(), new RegExp(`not in the ${plan} tier`));
  assert.ok((await page.locator('ul.plan-resources li').count()) > 0, 'the resources the plan gives');
  await page.locator('#field-module-bi').uncheck();
  await shot('4-services');
  await next(page, 'Security');

  // 5 Security: every bad allowlist line is named.
  await page.getByLabel('Authentication method').selectOption('oidc');
  await page.getByLabel('MFA policy').selectOption('required');
  await page.getByLabel('Network allowlist').fill('10.0.0.0/8\n10.0.0.0/33\nnot-a-network');
  await page.getByRole('button', { name: 'Next' }).click();
  const cidrs = await fieldError(page, 'allowed_cidrs');
  assert.match(cidrs, /line 2: "10\.0\.0\.0\/33"/);
  assert.match(cidrs, /line 3: "not-a-network"/);
  assert.equal(await page.getByLabel('Network allowlist').inputValue(), '10.0.0.0/8\n10.0.0.0/33\nnot-a-network');
  await shot('5-security-error');
  await page.getByLabel('Network allowlist').fill('10.0.0.0/8\n127.0.0.1');
  await shot('5-security');
  await next(page, 'Review');

  // 6 Review: everything chosen, and the tier's price.
  const review = page.getByRole('group', { name: 'Review' });
  const cell = (name) => review.locator(`[data-review="${name}"]`).textContent();
  assert.equal(await cell('description'), 'Clinics in two cities');
  assert.equal(await cell('contact_name'), 'Ada Lovelace');
  assert.equal(await cell('resource_tier'), tier);
  assert.equal(await cell('isolation'), isolation);
  assert.equal(await cell('data_sources'), 'warehouse (postgres)');
  assert.equal(await cell('modules'), 'Core (AI + Agents), Context Graph');
  assert.equal(await cell('auth_method'), 'oidc');
  assert.equal(await cell('allowed_cidrs'), '10.0.0.0/8, 127.0.0.1');
  assert.match(await cell('estimate'), /^\d+\.\d\d \w+ per month in local$/);
  assert.equal(await review.locator('.approval-notice').isVisible(), false, 'it runs without approval');
  await shot('6-review');

  // 7 Provisioning: the drawer (JavaScript) or the job's page, to the end.
  if (scripted) {
    await page.getByRole('button', { name: 'Provision' }).click();
    const drawer = page.locator('#job-drawer');
    await drawer.locator('.job-live[data-status="complete"]').waitFor({ timeout: JOB_TIMEOUT });
    await drawer.getByText(`Tenant ${slug} is ready.`).waitFor();
    assert.equal(await page.locator('.steps li[aria-current="step"]').getAttribute('data-step'), '7');
    await shot('7-provisioning');
    await drawer.getByRole('link', { name: "Open the job's page" }).click();
    await page.locator('main .job-live[data-status="complete"]').waitFor();
  } else {
    await Promise.all([
      page.waitForURL(/\/platform\/jobs\/[0-9a-f-]+$/),
      page.getByRole('button', { name: 'Provision' }).click(),
    ]);
    await reloadUntil(page, async () => (await page.locator('.job-live').getAttribute('data-status')) === 'complete', {
      timeoutMs: JOB_TIMEOUT,
    });
    await page.getByText(`Tenant ${slug} is ready.`).waitFor();
    await shot('7-provisioning');
  }
  // No page after the submit has the data source's URL.
  const jobPage = page.url();
  for (const path of [jobPage, `${baseUrl}/platform/tenants/${slug}`, `${baseUrl}/platform/audit`]) {
    await page.goto(path);
    const html = await page.content();
    assert.ok(!html.includes(PASSWORD_IN_URL), `${path} shows the data source's password`);
    assert.ok(!html.includes('reader:'), `${path} shows the data source's user`);
  }
}

describe('the seven-step wizard', () => {
  const fleet = new Fleet();
  let server;
  let browser;
  let admin;
  const slugs = [];

  before(async () => {
    writeFileSync(join(fleet.scratchDir, 'tenantry.toml'), CONFIG);
    admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    fleet.cli(['servers', 'add', '--name', 'pg', '--engine', 'postgres', '--admin-url-stdin', '--capacity', '20'], POSTGRES_URL);
    server = await fleet.serve();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    // What this run made on the shared PostgreSQL goes: its tenants, then its shared database and owner role.
    for (const slug of slugs) {
      spawnSync(process.env.TENANTRY_BIN, ['offboard-tenant', '--slug', slug, '--purge', '--no-backup'], {
        cwd: fleet.scratchDir,
        env: { ...process.env, TENANTRY_DATA_DIR: fleet.dataDir, USER: 'e2e' },
        encoding: 'utf8',
      });
    }
    const installation = spawnSync('sqlite3', [join(fleet.dataDir, 'registry.db'), 'SELECT id FROM installation'], {
      encoding: 'utf8',
    }).stdout.trim();
    if (/^[a-z0-9_-]+$/i.test(installation)) {
      const id = installation.replace(/-/g, '_');
      for (const name of psql(`SELECT datname FROM pg_database WHERE datname LIKE '%${id}%'`).split('\n').filter(Boolean)) {
        psql(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }
      for (const name of psql(`SELECT rolname FROM pg_roles WHERE rolname LIKE '%${id}%'`).split('\n').filter(Boolean)) {
        psql(`DROP ROLE IF EXISTS "${name}"`);
      }
    }
    await fleet.cleanup();
  });

  async function newPage(options = {}) {
    const context = await browser.newContext({ viewport: WIDE, ...options });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    return context.newPage();
  }

  test('with JavaScript: a dedicated tenant on the large tier, every step checked in the browser', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    const slug = `wjs${RUN}`;
    slugs.push(slug);
    await walkTheWizard(page, server.baseUrl, 'js', { slug, plan: 'starter', tier: 'large', isolation: 'database' });
    await page.context().close();
  });

  test('without JavaScript: the same seven steps as form posts, each checked by the server', TEST_TIMEOUT, async () => {
    const page = await newPage({ javaScriptEnabled: false });
    await signIn(page, server.baseUrl, admin);
    const slug = `wnojs${RUN}`;
    slugs.push(slug);
    await walkTheWizard(page, server.baseUrl, 'nojs', { slug, plan: 'starter', tier: 'small', isolation: 'database' });
    await page.context().close();
  });

  test('the free tier: a schema in the shared PostgreSQL database, provisioned from the wizard', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    const slug = `wfree${RUN}`;
    slugs.push(slug);
    await walkTheWizard(page, server.baseUrl, 'js-free', { slug, plan: 'free', tier: 'medium', isolation: 'schema' });
    // The tenant is a schema and a role on the PostgreSQL server, not a database of its own.
    const schema = `tenant_${slug}`;
    assert.equal(psql(`SELECT count(*) FROM pg_database WHERE datname = '${schema}'`), '0');
    assert.equal(psql(`SELECT count(*) FROM pg_roles WHERE rolname = '${schema}'`), '1');
    await page.context().close();
  });
});
