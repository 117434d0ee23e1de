// The console in Debian's Chromium against a real `tenantry serve`: sign-in, the wizard to a complete job, slug
// errors at the field, a forced failure with Retry, roles, the no-JavaScript path, a request that waits for
// another admin's approval, the costs page, and every page at 1280 and 390 px wide (screenshots in
// $TENANTRY_E2E_SCREENSHOTS, no sideways scrolling).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Fleet, SCREENSHOTS, WIDE, capture, horizontalOverflow, launchBrowser, reloadUntil, signIn,
} from '../lib/fleet.mjs';

console.log(`screenshots: ${SCREENSHOTS}`);

const JOB_TIMEOUT = 30_000;
// Every provisioning phase, request_validated to complete.
const PROVISION_PHASES = 11;
const ACTION_TIMEOUT = 15_000;
// A test that hangs fails instead of holding up the suite.
const TEST_TIMEOUT = { timeout: 120_000 };

/** Clicks Next and waits for the step `title`. */
async function nextStep(page, title) {
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByRole('group', { name: title, exact: true }).waitFor();
}

/** Clicks Next through the steps after Infrastructure, leaving their defaults, to the Review. */
async function nextToReview(page) {
  for (const title of ['Data sources', 'Service selection', 'Security', 'Review']) await nextStep(page, title);
}

/** Fills step 1 of the wizard, leaves the other steps at their defaults, and arrives at the review. */
async function fillWizard(page, { slug, displayName, email, plan, budget }) {
  await page.getByLabel('Slug').fill(slug);
  await page.getByLabel('Display name').fill(displayName);
  await page.getByLabel('First admin email').fill(email);
  if (plan) await page.getByLabel('Billing tier').selectOption(plan);
  if (budget !== undefined) await page.getByLabel('Monthly budget').fill(budget);
  await nextStep(page, 'Infrastructure');
  await nextToReview(page);
}

describe('the console', () => {
  const fleet = new Fleet();
  let server;
  let browser;
  let admin;
  let support;
  let readonly;

  before(async () => {
    admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    support = fleet.addUser('support@example.com', 'PLATFORM_SUPPORT');
    readonly = fleet.addUser('viewer@example.com', 'PLATFORM_READONLY');
    server = await fleet.serve();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await fleet.cleanup();
  });

  async function newPage(options = {}) {
    const context = await browser.newContext({ viewport: WIDE, ...options });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    return context.newPage();
  }

  test('signs in with email and password, and refuses a wrong one at the field', TEST_TIMEOUT, async () => {
    const page = await newPage();
    // An unauthenticated page view goes to the sign-in form, which comes back to it.
    await page.goto(`${server.baseUrl}/platform/servers`);
    assert.match(page.url(), /\/platform\/login\?next=%2Fplatform%2Fservers$/);
    await capture(page, 'login');

    await page.getByLabel('Email').fill(admin.email);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('Wrong email or password.').waitFor();
    assert.equal(await page.getByLabel('Password').getAttribute('aria-invalid'), 'true');

    await page.getByLabel('Password').fill(admin.password);
    await Promise.all([
      page.waitForURL(/\/platform\/servers$/),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    await page.getByRole('heading', { name: 'Servers' }).waitFor();
    await page.getByText('ops@example.com').waitFor();
    await page.context().close();
  });

  test('the wizard provisions a tenant to complete, and the tenant is in the list', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    await capture(page, 'tenants-empty');
    await page.getByText('No tenants yet.').waitFor();
    await page.getByRole('link', { name: 'Costs', exact: true }).click();
    await page.getByText('No billable tenants yet.').waitFor();
    await capture(page, 'costs-empty');
    await page.getByRole('link', { name: 'Tenants', exact: true }).click();
    await page.locator('.page-actions').getByRole('link', { name: 'New tenant' }).click();
    await page.getByRole('heading', { name: 'New tenant' }).waitFor();
    await capture(page, 'wizard-1-details');

    await page.getByLabel('Slug').fill('acme');
    await page.getByLabel('Display name').fill('Acme Health');
    await page.getByLabel('First admin email').fill('admin@acme.example');
    await page.getByLabel('Billing tier').selectOption('professional');
    await page.getByRole('button', { name: 'Next' }).click();

    const serverSelect = page.getByLabel('Target db server');
    await serverSelect.waitFor();
    const options = await serverSelect.locator('option').allTextContents();
    assert.equal(options[0], 'Default (auto-place)');
    assert.ok(options.some((text) => /^local — sqlite, local, \d+ free$/.test(text)), options.join(' | '));
    await capture(page, 'wizard-2-infrastructure');
    await nextToReview(page);

    const review = page.getByRole('group', { name: 'Review' });
    await review.waitFor();
    assert.equal(await review.locator('[data-review="slug"]').textContent(), 'acme');
    assert.equal(await review.locator('[data-review="plan"]').textContent(), 'professional');
    assert.equal(await review.locator('[data-review="server"]').textContent(), 'Default (auto-place)');
    await capture(page, 'wizard-3-review');

    await page.getByRole('button', { name: 'Provision' }).click();
    const drawer = page.locator('#job-drawer');
    await drawer.locator('.job-live[data-status="complete"]').waitFor({ timeout: JOB_TIMEOUT });
    assert.equal(await drawer.locator('#drawer-title').textContent(), 'Provisioning acme');
    assert.equal(await drawer.locator('.job-percent').textContent(), '100%');
    const phases = drawer.locator('.timeline > li');
    assert.equal(await phases.count(), PROVISION_PHASES);
    assert.equal(await drawer.locator('.timeline > li.phase-applied').count(), PROVISION_PHASES);
    for (const duration of await drawer.locator('.phase-duration').allTextContents()) {
      assert.match(duration, /^\d+(\.\d)? (ms|s)$|min/, `every phase shows its duration: ${duration}`);
    }
    assert.ok((await drawer.locator('.job-log .log-line').count()) > 0, 'the job log is shown');
    await drawer.getByText('Tenant acme is ready.').waitFor();
    await capture(page, 'wizard-drawer-complete');

    // The job page shows the same timeline.
    await drawer.getByRole('link', { name: "Open the job's page" }).click();
    await page.locator('main .job-live[data-status="complete"]').waitFor();
    assert.equal(await page.locator('main .timeline > li.phase-applied').count(), PROVISION_PHASES);
    await capture(page, 'job-complete');

    await page.getByRole('link', { name: 'Tenants', exact: true }).click();
    const row = page.getByRole('row', { name: /acme/ });
    await row.waitFor();
    assert.match(await row.textContent(), /active/);
    await capture(page, 'tenants');

    await row.getByRole('link', { name: 'acme' }).click();
    await page.getByRole('heading', { name: 'acme' }).waitFor();
    await page.getByText('Acme Health').first().waitFor();
    await page.getByText('Offboard this tenant').waitFor();
    await capture(page, 'tenant-detail');

    await page.goto(`${server.baseUrl}/platform/tenants?search=acm&status=active`);
    await page.getByRole('row', { name: /acme/ }).waitFor();
    await page.goto(`${server.baseUrl}/platform/tenants?search=nothing-like-this`);
    await page.getByText('No tenants match these filters.').waitFor();
    await page.context().close();
  });

  test('slug errors appear at the slug field: the rule as you type, the server as the authority', TEST_TIMEOUT, async () => {
    fleet.cli([
      'provision-tenant', '--slug', 'taken', '--display-name', 'Taken Inc', '--admin-email', 'it@taken.example',
    ]);
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    await page.goto(`${server.baseUrl}/platform/tenants/new`);
    const slug = page.getByLabel('Slug');
    const slugError = page.locator('[data-field="slug"] .field-error');

    await slug.fill('Bad_Slug');
    await page.getByText('Use lowercase letters only.').waitFor();
    assert.equal(await slug.getAttribute('aria-invalid'), 'true');
    await slug.fill('9lives');
    assert.equal(await slugError.textContent(), 'Start with a letter.');
    await slug.fill('ok-slug');
    assert.equal(await slugError.textContent(), '');
    await capture(page, 'wizard-slug-typing');

    // Next refuses a broken slug without asking the server.
    await slug.fill('x');
    await page.getByRole('button', { name: 'Next' }).click();
    assert.equal(await slugError.textContent(), 'Use at least 3 characters.');
    assert.equal(await page.getByRole('group', { name: 'Tenant details' }).isVisible(), true);

    // A slug only the server can refuse: its error comes back to the field, on step 1.
    await fillWizard(page, { slug: 'taken', displayName: 'Taken Again', email: 'it@taken.example' });
    await page.getByRole('button', { name: 'Provision' }).click();
    await slugError.getByText('E_ALREADY_PROVISIONED').waitFor();
    assert.match(await slugError.textContent(), /already exists/);
    assert.equal(await page.getByRole('group', { name: 'Tenant details' }).isVisible(), true);
    assert.equal(await slug.evaluate((element) => element === document.activeElement), true);
    await capture(page, 'wizard-slug-error');
    await page.context().close();
  });

  test('READONLY and SUPPORT see no Provision, and the server refuses the POST anyway', TEST_TIMEOUT, async () => {
    for (const user of [readonly, support]) {
      const page = await newPage();
      await signIn(page, server.baseUrl, user);
      await page.getByRole('heading', { name: 'Tenants' }).waitFor();
      assert.equal(await page.getByRole('link', { name: 'New tenant' }).count(), 0, `${user.role} sees no New tenant`);
      await page.goto(`${server.baseUrl}/platform/servers`);
      assert.equal(await page.getByRole('button', { name: /Drain/ }).count(), 0);
      assert.equal(await page.getByRole('heading', { name: 'Add a server' }).count(), 0);
      if (user === readonly) await capture(page, 'servers-readonly');

      const wizard = await page.goto(`${server.baseUrl}/platform/tenants/new`);
      assert.equal(wizard.status(), 403);
      await page.getByText('E_FORBIDDEN').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Provision' }).count(), 0);
      if (user === readonly) await capture(page, 'forbidden');

      // With the session and its CSRF token, as the page's own script would send it: still refused.
      await page.goto(`${server.baseUrl}/platform/tenants`);
      const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
      const refused = await page.request.post(`${server.baseUrl}/platform/tenants`, {
        headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' },
        data: { slug: 'sneaky', display_name: 'Sneaky Co', admin_email: 'a@sneaky.example' },
      });
      assert.equal(refused.status(), 403);
      assert.equal((await refused.json()).error_code, 'E_FORBIDDEN');
      const refusedForm = await page.request.post(`${server.baseUrl}/platform/tenants/new`, {
        form: { csrf_token: csrf, action: 'provision', slug: 'sneaky', display_name: 'Sneaky Co',
          admin_email: 'a@sneaky.example', plan: 'starter', region: 'local' },
      });
      assert.equal(refusedForm.status(), 403);
      await page.context().close();
    }
    const jobs = JSON.parse(fleet.cli(['jobs', 'list', '--json']));
    assert.ok(!jobs.some((job) => job.tenant_slug === 'sneaky'), 'nothing was submitted');
  });

  test('every page works without JavaScript: the wizard by form posts, then the job page', TEST_TIMEOUT, async () => {
    const page = await newPage({ javaScriptEnabled: false });
    await signIn(page, server.baseUrl, admin);
    await page.goto(`${server.baseUrl}/platform/tenants/new`);
    await page.getByLabel('Slug').fill('Nope');
    await page.getByLabel('Display name').fill('No Script Ltd');
    await page.getByLabel('First admin email').fill('admin@noscript.example');
    await page.getByRole('button', { name: 'Next' }).click();
    // The server checked step 1 and sent it back with the error at the slug.
    await page.locator('[data-field="slug"] .field-error').getByText('E_INVALID_SLUG').waitFor();
    await page.getByLabel('Slug').fill('no-script');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('group', { name: 'Infrastructure' }).waitFor();
    await page.getByRole('button', { name: 'Back' }).click();
    assert.equal(await page.getByLabel('Slug').inputValue(), 'no-script');
    await nextStep(page, 'Infrastructure');
    await nextToReview(page);
    await Promise.all([
      page.waitForURL(/\/platform\/jobs\/[0-9a-f-]+$/),
      page.getByRole('button', { name: 'Provision' }).click(),
    ]);
    await reloadUntil(page, async () => (await page.locator('.job-live').getAttribute('data-status')) === 'complete', {
      timeoutMs: JOB_TIMEOUT,
    });
    await page.getByText('Tenant no-script is ready.').waitFor();

    // Offboard from the tenant's page: a plain form post that lands on the offboarding job.
    await page.goto(`${server.baseUrl}/platform/tenants/no-script`);
    await page.getByText('Offboard this tenant').click();
    await Promise.all([
      page.waitForURL(/\/platform\/jobs\/[0-9a-f-]+$/),
      page.getByRole('button', { name: 'Offboard', exact: true }).click(),
    ]);
    await reloadUntil(page, async () => (await page.locator('.job-live').getAttribute('data-status')) === 'complete', {
      timeoutMs: JOB_TIMEOUT,
    });
    assert.match(await page.locator('.page-header').textContent(), /offboard/);

    // Servers: add one with the form (a SQLite directory), then drain it.
    await page.goto(`${server.baseUrl}/platform/servers`);
    await page.getByLabel('Name', { exact: true }).fill('spare');
    await page.getByLabel('Engine').selectOption('sqlite');
    // Under the data directory: a SQLite server anywhere else is refused (sqlite_server_roots).
    await page.getByLabel('Admin URL').fill(`sqlite://${fleet.dataDir}/spare`);
    await page.getByLabel('Capacity', { exact: true }).fill('5');
    await page.getByRole('button', { name: 'Add server' }).click();
    const spare = page.getByRole('row', { name: /spare/ });
    await spare.waitFor();
    assert.match(await spare.textContent(), /0 \/ 5/);
    await spare.getByRole('button', { name: 'Drain spare' }).click();
    await page.getByRole('row', { name: /spare/ }).getByText('draining').waitFor();
    // A bad add comes back with the error at its field, and without the admin URL typed.
    await page.getByLabel('Name', { exact: true }).fill('Bad Name');
    await page.getByLabel('Admin URL').fill('sqlite:///tmp/whatever');
    await page.getByLabel('Capacity', { exact: true }).fill('0');
    await page.getByRole('button', { name: 'Add server' }).click();
    await page.locator('[data-field="name"] .field-error').getByText('server name').waitFor();
    await page.locator('[data-field="capacity"] .field-error').getByText('at least 1').waitFor();
    assert.equal(await page.getByLabel('Admin URL').inputValue(), '');
    await page.context().close();
  });

  test('jobs, audit and error pages read well at both widths', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    await page.goto(`${server.baseUrl}/platform/servers`);
    await page.getByRole('row', { name: /spare/ }).waitFor();
    await capture(page, 'servers');
    await page.goto(`${server.baseUrl}/platform/jobs`);
    await page.getByRole('row', { name: /acme/ }).first().waitFor();
    await capture(page, 'jobs');
    await page.goto(`${server.baseUrl}/platform/jobs?status=cancelled`);
    await page.getByText('No jobs match these filters.').waitFor();

    await page.goto(`${server.baseUrl}/platform/audit`);
    await page.getByRole('cell', { name: 'TENANT_PROVISIONED' }).first().waitFor();
    await capture(page, 'audit');
    await page.getByLabel('Tenant').fill('acme');
    await page.getByLabel('Event type').fill('TENANT_PROVISIONED');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/event_type=TENANT_PROVISIONED/);
    const rows = page.locator('tbody tr');
    assert.equal(await rows.count(), 1);
    assert.match(await rows.first().textContent(), /acme/);

    const missing = await page.goto(`${server.baseUrl}/platform/jobs/no-such-job`);
    assert.equal(missing.status(), 404);
    await page.getByText('E_NOT_FOUND').waitFor();
    await capture(page, 'not-found');

    // The same URL still answers programs with JSON.
    const json = await page.request.get(`${server.baseUrl}/platform/tenants`, { headers: { Accept: 'application/json' } });
    assert.equal(json.status(), 200);
    assert.ok((await json.json()).some((tenant) => tenant.slug === 'acme'));
    assert.ok((await horizontalOverflow(page)) <= 0);
    await page.context().close();
  });
});

describe('a failed job', () => {
  const fleet = new Fleet();
  let browser;

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await fleet.cleanup();
  });

  test('shows the failed phase, the error code and what to do, and Retry ends the job', TEST_TIMEOUT, async () => {
    const admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    // This server's workers fail the job at migrations_applied; the job unwinds and ends rolled_back.
    const failing = await fleet.serve({ TENANTRY_FAILPOINTS: 'migrations_applied.before=error' });
    const context = await browser.newContext({ viewport: WIDE });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    const page = await context.newPage();
    await signIn(page, failing.baseUrl, admin);
    await page.goto(`${failing.baseUrl}/platform/tenants/new`);
    await fillWizard(page, { slug: 'globex', displayName: 'Globex Corp', email: 'it@globex.example' });
    await page.getByRole('button', { name: 'Provision' }).click();

    const drawer = page.locator('#job-drawer');
    await drawer.locator('.job-live[data-status="rolled_back"]').waitFor({ timeout: JOB_TIMEOUT });
    const failure = drawer.locator('.job-failure');
    await failure.getByText('E_FAILPOINT').waitFor();
    assert.match(await failure.locator('h3').textContent(), /Failed at migrations_applied/);
    assert.match(await failure.textContent(), /a test failpoint stopped the job/);
    assert.match(await failure.textContent(), /What to do:/);
    await failure.getByRole('button', { name: 'Retry' }).waitFor();
    // Nothing is left to roll back after the automatic rollback.
    assert.equal(await failure.getByRole('button', { name: 'Roll back' }).count(), 0);
    await capture(page, 'wizard-drawer-failed');
    const jobPath = await drawer.getByRole('link', { name: "Open the job's page" }).getAttribute('href');

    // The same registry served without the failpoint: Retry there runs the job to the end.
    assert.equal(await fleet.stop(failing), 0);
    const healthy = await fleet.serve();
    await page.goto(`${healthy.baseUrl}${jobPath}`);
    await page.locator('main .job-live[data-status="rolled_back"]').waitFor();
    await capture(page, 'job-failed');
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.locator('main .job-live[data-status="complete"]').waitFor({ timeout: JOB_TIMEOUT });
    assert.equal(await page.locator('main .job-failure').isHidden(), true);
    assert.equal(await page.locator('main .timeline > li.phase-applied').count(), PROVISION_PHASES);
    await page.getByText('Tenant globex is ready.').waitFor();

    const audit = JSON.parse(fleet.cli(['audit', 'list', '--tenant', 'globex', '--json']));
    const types = audit.map((event) => event.event_type);
    assert.ok(types.includes('TENANT_PROVISION_FAILED'), types.join(','));
    assert.ok(types.includes('JOB_RETRIED'), types.join(','));
    assert.ok(types.includes('TENANT_PROVISIONED'), types.join(','));
    await context.close();
  });
});

describe('a request that needs approval', () => {
  const fleet = new Fleet();
  let server;
  let browser;
  let requester;
  let approver;

  before(async () => {
    requester = fleet.addUser('alice@example.com', 'PLATFORM_ADMIN');
    approver = fleet.addUser('bob@example.com', 'PLATFORM_ADMIN');
    // Low enough that a budget of 500 waits, high enough that the starter plan's estimate (49 USD) alone does not.
    server = await fleet.serve({ TENANTRY_AUTO_APPROVE_THRESHOLD: '100' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await fleet.cleanup();
  });

  async function newContext(options = {}) {
    const context = await browser.newContext({ viewport: WIDE, ...options });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    return context;
  }

  /** Posts a decision as a plain form from `page`'s session would, asking for HTML. */
  async function postDecision(page, jobPath, decision) {
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
    return page.request.post(`${server.baseUrl}${jobPath}/${decision}`, {
      headers: { Accept: 'text/html' },
      form: { csrf_token: csrf, reason: 'from a test' },
    });
  }

  test('A asks with a budget over the threshold and waits; B approves and the job runs to complete', TEST_TIMEOUT, async () => {
    const requesterContext = await newContext();
    const page = await requesterContext.newPage();
    await signIn(page, server.baseUrl, requester);
    await page.goto(`${server.baseUrl}/platform/tenants/new`);
    await fillWizard(page, {
      slug: 'initech', displayName: 'Initech Corp', email: 'admin@initech.example', plan: 'starter', budget: '500',
    });

    const review = page.getByRole('group', { name: 'Review' });
    assert.equal(await review.locator('[data-review="estimate"]').textContent(), '49.00 USD per month in local');
    assert.match(await review.locator('[data-review="quotas"]').textContent(), /^10 connections · 30 s statement timeout · 100 queries \/ min · 500 ms query SLA$/);
    assert.equal(await review.locator('[data-review="modules"]').textContent(), 'Core (AI + Agents), BI Platform, Context Graph');
    assert.equal(await review.locator('[data-review="budget"]').textContent(), '500 USD per month');
    const notice = review.locator('.approval-notice');
    assert.equal(await notice.isVisible(), true);
    assert.match(await notice.textContent(), /wait for approval: the budget of 500 USD reaches the auto-approve threshold of 100 USD/);
    await capture(page, 'wizard-3-review-approval');

    // Without the budget the starter plan's estimate counts, and 49 USD is under the threshold.
    for (let step = 6; step > 1; step -= 1) await page.getByRole('button', { name: 'Back' }).click();
    await page.getByLabel('Monthly budget').fill('');
    await nextStep(page, 'Infrastructure');
    await nextToReview(page);
    await review.waitFor();
    assert.equal(await notice.isVisible(), false);
    assert.equal(await review.locator('[data-review="budget"]').textContent(), "none: the plan's estimate counts");
    for (let step = 6; step > 1; step -= 1) await page.getByRole('button', { name: 'Back' }).click();
    await page.getByLabel('Monthly budget').fill('500');
    await nextStep(page, 'Infrastructure');
    await nextToReview(page);
    await notice.waitFor();

    await page.getByRole('button', { name: 'Provision' }).click();
    const drawer = page.locator('#job-drawer');
    await drawer.locator('.job-live[data-status="awaiting_approval"]').waitFor({ timeout: JOB_TIMEOUT });
    await drawer.locator('.job-status .pill-awaiting_approval').waitFor();
    const waiting = drawer.locator('.job-approval');
    await waiting.getByText('Waiting for another platform admin.').waitFor();
    assert.match(await waiting.textContent(), /Budget 500 USD is at or above the auto-approve threshold of 100 USD/);
    assert.match(await waiting.textContent(), /Lapses in \d+ (s|min|h|d)/);
    assert.equal(await drawer.getByRole('button', { name: 'Approve' }).count(), 0);
    // The drawer may still be sliding in: let its transition finish before the screenshot.
    await drawer.evaluate((element) => Promise.all(element.getAnimations().map((animation) => animation.finished)));
    await capture(page, 'wizard-drawer-awaiting-approval');
    const jobPath = await drawer.getByRole('link', { name: "Open the job's page" }).getAttribute('href');

    // The requester's own view of the job page: the reason and the expiry, and no way to approve it.
    const jobPage = await requesterContext.newPage();
    await jobPage.goto(`${server.baseUrl}${jobPath}`);
    const approval = jobPage.locator('main .job-approval');
    await approval.getByText('Waiting for another platform admin.').waitFor();
    await approval.locator('time').waitFor();
    assert.equal(await jobPage.getByRole('button', { name: 'Approve' }).count(), 0);
    assert.equal(await jobPage.getByRole('button', { name: 'Reject' }).count(), 0);
    await capture(jobPage, 'job-awaiting-approval-requester');
    // The server refuses the requester's own decision even when posted by hand, as a page.
    const ownDecision = await postDecision(jobPage, jobPath, 'approve');
    assert.equal(ownDecision.status(), 403);
    assert.match(await ownDecision.text(), /E_FORBIDDEN/);
    await jobPage.close();

    const approverContext = await newContext();
    const approverPage = await approverContext.newPage();
    await signIn(approverPage, server.baseUrl, approver);
    await approverPage.goto(`${server.baseUrl}${jobPath}`);
    const decision = approverPage.locator('main .job-approval');
    await decision.getByRole('button', { name: 'Approve' }).waitFor();
    await decision.getByRole('button', { name: 'Reject' }).waitFor();
    await decision.getByLabel('Reason').fill('within the quarter budget');
    await capture(approverPage, 'job-awaiting-approval-approver');
    await decision.getByRole('button', { name: 'Approve' }).click();
    // Back on the job's page, which follows the run live to the end.
    const live = approverPage.locator('main .job-live[data-status="complete"]');
    await live.waitFor({ timeout: JOB_TIMEOUT });
    assert.equal(approverPage.url(), `${server.baseUrl}${jobPath}`);
    assert.equal(await live.locator('.timeline > li.phase-applied').count(), PROVISION_PHASES);
    assert.equal(await live.locator('.job-approval').isHidden(), true);
    await live.locator('.job-log').getByText(/approved by .*within the quarter budget/).waitFor();
    const checks = live.locator('.job-checks table');
    await checks.waitFor();
    assert.ok((await checks.locator('tbody tr').count()) > 0, 'the validation checks are listed');
    assert.ok((await checks.locator('.pill-passed').count()) > 0, 'checks that passed say so');
    await capture(approverPage, 'job-approved-complete');

    // The requester's drawer followed the job from waiting to done.
    await drawer.locator('.job-live[data-status="complete"]').waitFor({ timeout: JOB_TIMEOUT });
    await drawer.getByText('Tenant initech is ready.').waitFor();
    assert.equal(await drawer.locator('.job-approval').isHidden(), true);
    await drawer.locator('.job-checks tbody tr').first().waitFor();

    // The tenant's page shows what the plan gave it.
    await approverPage.goto(`${server.baseUrl}/platform/tenants/initech`);
    const settings = approverPage.locator('.plan-settings');
    await settings.getByRole('heading', { name: 'Plan settings' }).waitFor();
    assert.equal(await settings.locator('.monthly-cost').textContent(), '49.00 USD');
    assert.match(await settings.textContent(), /100 queries \/ min/);
    await settings.locator('.modules').getByText('core').waitFor();
    await capture(approverPage, 'tenant-plan-settings');
    await requesterContext.close();
    await approverContext.close();
  });

  test('the costs page lists the tenant with its monthly cost and the totals', TEST_TIMEOUT, async () => {
    const context = await newContext();
    const page = await context.newPage();
    await signIn(page, server.baseUrl, approver);
    await page.getByRole('link', { name: 'Costs', exact: true }).click();
    await page.getByRole('heading', { name: 'Costs' }).waitFor();
    const row = page.locator('table.cost-tenants tbody tr', { hasText: 'initech' });
    await row.waitFor();
    assert.match(await row.textContent(), /starter/);
    assert.match(await row.textContent(), /49\.00 USD/);
    assert.equal(await page.locator('.cost-summary .cost-total').textContent(), '49.00 USD');
    await page.getByRole('heading', { name: 'By plan' }).waitFor();
    await capture(page, 'costs');
    // The same URL still answers programs with the JSON report.
    const json = await page.request.get(`${server.baseUrl}/platform/costs`, { headers: { Accept: 'application/json' } });
    assert.equal(json.status(), 200);
    assert.ok((await json.json()).tenants.some((line) => line.tenant_slug === 'initech'));
    await context.close();
  });

  test('without JavaScript the Review says the request waits, and Reject cancels it with the reason', TEST_TIMEOUT, async () => {
    const requesterContext = await newContext({ javaScriptEnabled: false });
    const page = await requesterContext.newPage();
    await signIn(page, server.baseUrl, requester);
    await page.goto(`${server.baseUrl}/platform/tenants/new`);
    await fillWizard(page, {
      slug: 'hooli', displayName: 'Hooli Inc', email: 'admin@hooli.example', plan: 'professional', budget: '1000',
    });
    const review = page.getByRole('group', { name: 'Review' });
    assert.equal(await review.locator('[data-review="estimate"]').textContent(), '98.00 USD per month in local');
    // The same texts the script writes (see the test above), rendered by the server.
    assert.equal(await review.locator('[data-review="quotas"]').textContent(),
      '50 connections · 60 s statement timeout · 500 queries / min · 500 ms query SLA');
    assert.equal(await review.locator('[data-review="flags"]').textContent(), 'realtime_indexing');
    assert.equal(await review.locator('[data-review="budget"]').textContent(), '1000 USD per month');
    assert.match(await review.locator('.approval-notice').textContent(), /budget of 1000 USD reaches the auto-approve threshold/);
    await Promise.all([
      page.waitForURL(/\/platform\/jobs\/[0-9a-f-]+$/),
      page.getByRole('button', { name: 'Provision' }).click(),
    ]);
    const jobPath = new URL(page.url()).pathname;
    assert.equal(await page.locator('.job-live').getAttribute('data-status'), 'awaiting_approval');
    await page.getByText('Waiting for another platform admin.').waitFor();

    const approverContext = await newContext({ javaScriptEnabled: false });
    const approverPage = await approverContext.newPage();
    await signIn(approverPage, server.baseUrl, approver);
    await approverPage.goto(`${server.baseUrl}${jobPath}`);
    await approverPage.getByLabel('Reason').fill('too big for this quarter');
    await Promise.all([
      approverPage.waitForURL(`${server.baseUrl}${jobPath}`),
      approverPage.getByRole('button', { name: 'Reject' }).click(),
    ]);
    const live = approverPage.locator('.job-live');
    assert.equal(await live.getAttribute('data-status'), 'cancelled');
    const failure = live.locator('.job-failure');
    await failure.getByText('E_APPROVAL_REJECTED').waitFor();
    assert.match(await failure.textContent(), /too big for this quarter/);
    assert.equal(await failure.getByRole('button', { name: 'Retry' }).count(), 0);

    // A second decision on a decided job is a conflict, shown as the console shows errors.
    const again = await postDecision(approverPage, jobPath, 'approve');
    assert.equal(again.status(), 409);
    assert.match(await again.text(), /E_CONFLICT/);
    await requesterContext.close();
    await approverContext.close();

    // The screenshots measure the layout with a script, so they are taken with one.
    const screenshotContext = await newContext();
    const screenshotPage = await screenshotContext.newPage();
    await signIn(screenshotPage, server.baseUrl, approver);
    await screenshotPage.goto(`${server.baseUrl}${jobPath}`);
    await screenshotPage.locator('main .job-failure').getByText('E_APPROVAL_REJECTED').waitFor();
    await capture(screenshotPage, 'job-rejected');
    await screenshotContext.close();
  });
});
