// Tenant admins and change requests in Debian's Chromium against a real `tenantry serve`: a tenant admin signs in
// to their own tenant alone (another tenant's page is 404), files a change request from the tenant page (bad input
// comes back with the error at its field), with JavaScript and without; a platform admin approves it on the
// Changes page and the set-plan job moves the tenant; a second request is rejected with a reason (none given: the
// error at the field); a platform admin cannot decide a request they filed. Pages at 1280 and 390 px wide.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fleet, PASSWORD, WIDE, capture, launchBrowser, reloadUntil, signIn } from '../lib/fleet.mjs';

const JOB_TIMEOUT = 60_000;
const ACTION_TIMEOUT = 15_000;
const TEST_TIMEOUT = { timeout: 180_000 };

describe('tenant admins and change requests', () => {
  const fleet = new Fleet();
  let server;
  let browser;
  let admin;
  let deck;
  // With JavaScript for `lively`, without for `plain`; `bystander` is the tenant nobody of theirs may see.
  const tenantAdmins = {};

  before(async () => {
    admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    deck = fleet.addUser('deck@example.com', 'PLATFORM_ADMIN');
    for (const slug of ['lively', 'plain', 'bystander']) {
      fleet.cli(['provision-tenant', '--slug', slug, '--display-name', `${slug} Ltd`, '--admin-email', `it@${slug}.example`]);
    }
    for (const slug of ['lively', 'plain']) {
      const email = `owner@${slug}.example`;
      fleet.cli(['users', 'add', '--email', email, '--role', 'TENANT_ADMIN', '--tenant', slug, '--password-stdin'], PASSWORD);
      tenantAdmins[slug] = { email, password: PASSWORD, role: 'TENANT_ADMIN' };
    }
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

  /** Waits on a job's page (which updates itself, or is reloaded without JavaScript) until the job is complete. */
  async function jobCompletes(page, javaScript) {
    await page.waitForURL(/\/platform\/jobs\/[0-9a-f-]+$/);
    if (javaScript) {
      await page.locator('main .job-live[data-status="complete"]').waitFor({ timeout: JOB_TIMEOUT });
    } else {
      await reloadUntil(page, async () => (await page.locator('.job-live').getAttribute('data-status')) === 'complete', {
        timeoutMs: JOB_TIMEOUT,
      });
    }
  }

  /** The change requests of one tenant, from the API as a platform admin sees them. */
  async function storedRequests(page, slug) {
    const response = await page.request.get(`${server.baseUrl}/platform/change-requests?tenant=${slug}`, {
      headers: { Accept: 'application/json' },
    });
    assert.equal(response.status(), 200);
    return response.json();
  }

  /** The error shown at a form field, found by the field's name. */
  function fieldError(page, name) {
    return page.locator(`form.change-request-form [data-field="${name}"] .field-error`);
  }

  /** Waits until the tenant page's details say the tenant is on `plan`. */
  async function planShown(page, plan) {
    const row = page.locator('dl.details > div').filter({ has: page.locator('dt', { hasText: /^Plan$/ }) });
    await row.locator('dd', { hasText: new RegExp(`^${plan}$`) }).waitFor();
  }

  /** Fills the tenant page's "Request a change" form and sends it. */
  async function requestChange(page, { plan = '', modules = {}, reason }) {
    const form = page.locator('form.change-request-form');
    await form.getByLabel('Plan (resource tier)').selectOption(plan);
    for (const [name, choice] of Object.entries(modules)) {
      await form.getByLabel(name, { exact: true }).selectOption(choice);
    }
    await form.getByLabel('Reason').fill(reason);
    await form.getByRole('button', { name: 'Request the change' }).click();
  }

  for (const javaScript of [true, false]) {
    const slug = javaScript ? 'lively' : 'plain';
    const shot = (name) => (javaScript ? name : `${name}-nojs`);

    test(`a tenant admin sees their tenant alone and files a change request ${javaScript ? 'with' : 'without'} JavaScript`, TEST_TIMEOUT, async () => {
      const page = await newPage({ javaScriptEnabled: javaScript });
      await signIn(page, server.baseUrl, tenantAdmins[slug]);
      // The way in is their tenant's page, with their own navigation.
      assert.equal(new URL(page.url()).pathname, `/platform/tenants/${slug}`);
      await page.getByRole('heading', { name: slug }).waitFor();
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My tenant' }).waitFor();
      assert.equal(await page.getByRole('link', { name: 'Servers' }).count(), 0, 'no platform navigation');
      await page.getByRole('heading', { name: 'Request a change' }).waitFor();
      if (javaScript) await capture(page, 'tenant-admin-home');

      for (const elsewhere of ['/platform/tenants/bystander', '/platform/tenants', '/platform/servers']) {
        const response = await page.goto(`${server.baseUrl}${elsewhere}`);
        assert.equal(response.status(), 404, `${elsewhere} is not theirs`);
        await page.getByText('E_NOT_FOUND').first().waitFor();
      }
      if (javaScript) await capture(page, 'tenant-admin-other-tenant');

      // A module the plan does not allow: refused at the module's field, what was typed kept, nothing stored.
      await page.goto(`${server.baseUrl}/platform/tenants/${slug}`);
      await requestChange(page, { modules: { ml: 'on' }, reason: 'ML for the analysts' });
      await fieldError(page, 'module_ml').filter({ hasText: 'does not allow module "ml"' }).waitFor();
      assert.equal(await page.locator('#field-module_ml').getAttribute('aria-invalid'), 'true');
      assert.equal(await page.getByLabel('Reason').inputValue(), 'ML for the analysts');
      assert.equal(await page.locator('#field-module_ml').inputValue(), 'on');
      if (javaScript) await capture(page, shot('change-request-refused-module'));

      // No reason (blanks pass the browser's `required`, not the server): refused at the reason field.
      await requestChange(page, { plan: 'enterprise', modules: { ml: 'on' }, reason: '   ' });
      await fieldError(page, 'reason').filter({ hasText: 'a reason is required' }).waitFor();
      assert.equal(await page.locator('#field-plan').inputValue(), 'enterprise', 'the plan chosen is kept');
      if (javaScript) await capture(page, shot('change-request-refused-reason'));
      const admins = await newPage();
      await signIn(admins, server.baseUrl, admin);
      assert.deepEqual(await storedRequests(admins, slug), [], 'refused requests store nothing');

      // The form again, corrected: filed, and listed on the tenant's page as waiting.
      await page.getByLabel('Reason').fill('ML for the analysts');
      await page.getByRole('button', { name: 'Request the change' }).click();
      await page.waitForURL(new RegExp(`/platform/tenants/${slug}$`));
      const row = page.locator('tr[data-change-request]', { hasText: 'plan → enterprise' });
      await row.getByText('Waiting for a platform admin.').waitFor();
      assert.match(await row.textContent(), /ml on/);
      assert.match(await row.textContent(), /pending/);
      if (javaScript) await capture(page, shot('change-request-filed'));
      const stored = await storedRequests(admins, slug);
      assert.equal(stored.length, 1, JSON.stringify(stored));
      assert.equal(stored[0].plan, 'enterprise');
      assert.deepEqual(stored[0].modules, { ml: true });

      // A platform admin approves it on the Changes page; the set-plan job moves the tenant.
      const adminPage = await newPage({ javaScriptEnabled: javaScript });
      await signIn(adminPage, server.baseUrl, admin);
      await adminPage.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Changes' }).click();
      await adminPage.waitForURL(/\/platform\/change-requests$/);
      const pending = adminPage.locator('tr[data-change-request]', { hasText: slug }).filter({ hasText: 'pending' });
      await pending.getByRole('button', { name: 'Approve' }).waitFor();
      if (javaScript) await capture(adminPage, 'change-requests-pending');
      await pending.getByRole('button', { name: 'Approve' }).click();
      await jobCompletes(adminPage, javaScript);
      assert.match(await adminPage.locator('.page-header').textContent(), /set_plan|plan/);
      await adminPage.goto(`${server.baseUrl}/platform/tenants/${slug}`);
      await planShown(adminPage, 'enterprise');
      await adminPage.locator('dd.modules .label-chip:not(.chip-off)', { hasText: 'ml' }).waitFor();
      if (javaScript) await capture(adminPage, 'tenant-after-change');

      // The tenant admin sees the decision on their page.
      await page.reload();
      await page.locator('tr[data-change-request]', { hasText: 'plan → enterprise' }).filter({ hasText: 'approved' }).waitFor();
      await planShown(page, 'enterprise');
      await page.context().close();
      await admins.context().close();
      await adminPage.context().close();
    });
  }

  test('a second request is rejected with a reason, and a rejection without one is refused at the field', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, tenantAdmins.lively);
    await requestChange(page, { plan: 'professional', reason: 'cheaper, please' });
    await page.locator('tr[data-change-request]', { hasText: 'plan → professional' }).filter({ hasText: 'pending' }).waitFor();

    const adminPage = await newPage();
    await signIn(adminPage, server.baseUrl, admin);
    await adminPage.goto(`${server.baseUrl}/platform/change-requests`);
    const row = () => adminPage.locator('tr[data-change-request]', { hasText: 'plan → professional' });
    await row().getByRole('button', { name: 'Reject' }).click();
    // No reason: the list again, the error at this request's reason field.
    const refused = row().locator('[data-field="reason"] .field-error', { hasText: 'a reason is required' });
    await refused.waitFor();
    assert.equal(await row().getByLabel('Reason').getAttribute('aria-invalid'), 'true');
    await capture(adminPage, 'change-request-reject-refused');
    await row().getByLabel('Reason').fill('budget frozen until March');
    await row().getByRole('button', { name: 'Reject' }).click();
    await adminPage.waitForURL(/\/platform\/change-requests$/);
    await row().filter({ hasText: 'rejected' }).getByText('budget frozen until March').waitFor();
    await capture(adminPage, 'change-requests-decided');

    // Rejected: no job, the tenant stays where the approved request put it, and the tenant admin reads why.
    const [request] = (await storedRequests(adminPage, 'lively')).filter((stored) => stored.plan === 'professional');
    assert.equal(request.status, 'rejected');
    assert.equal(request.job_id ?? null, null);
    await page.reload();
    await page.locator('tr[data-change-request]', { hasText: 'plan → professional' }).getByText('budget frozen until March').waitFor();
    await planShown(page, 'enterprise');
    await capture(page, 'tenant-admin-rejected');
    await page.context().close();
    await adminPage.context().close();
  });

  test('a platform admin cannot approve a request they filed: the page does not offer it and refuses it, saying why', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
    const filed = await page.request.post(`${server.baseUrl}/platform/change-requests`, {
      headers: { Accept: 'application/json', 'X-CSRF-Token': csrf },
      data: { tenant_slug: 'bystander', plan: 'professional', reason: 'more connections for the launch' },
    });
    assert.equal(filed.status(), 201, await filed.text());
    const { id } = await filed.json();

    await page.goto(`${server.baseUrl}/platform/change-requests`);
    const row = page.locator(`tr[data-change-request="${id}"]`);
    await row.getByText('You filed this request, so another platform admin approves or rejects it.').waitFor();
    assert.equal(await row.getByRole('button', { name: 'Approve' }).count(), 0, 'no Approve for the requester');
    await capture(page, 'change-request-own');

    // The form posted anyway (an old tab, a crafted request): the page refuses it and says why.
    const [refused] = await Promise.all([
      page.waitForResponse((response) => response.url().endsWith(`/${id}/approve`)),
      page.evaluate(({ path, token }) => {
        const form = document.createElement('form');
        form.method = 'post';
        form.action = path;
        form.innerHTML = '<input name="csrf_token"><input name="reason">';
        form.elements.csrf_token.value = token;
        document.body.append(form);
        form.submit();
      }, { path: `/platform/change-requests/${id}/approve`, token: csrf }),
    ]);
    assert.equal(refused.status(), 403);
    await page.getByText('E_FORBIDDEN').first().waitFor();
    await page.getByText('cannot approve it; another PLATFORM_ADMIN must decide').waitFor();
    await capture(page, 'change-request-own-refused');
    assert.equal((await storedRequests(page, 'bystander'))[0].status, 'pending', 'the refusal changed nothing');

    // Another platform admin may decide it.
    const other = await newPage();
    await signIn(other, server.baseUrl, deck);
    await other.goto(`${server.baseUrl}/platform/change-requests`);
    await other.locator(`tr[data-change-request="${id}"]`).getByRole('button', { name: 'Approve' }).waitFor();
    await page.context().close();
    await other.context().close();
  });
});
