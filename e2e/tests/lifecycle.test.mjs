// A tenant's life from its page in Debian's Chromium against a real `tenantry serve`: Suspend with a reason and
// Resume, "Back up now" and the backup in the tenant's list, and a rotation refused with its code where there is
// nothing to rotate; with JavaScript and without (plain form posts, the job page reloaded until it ends), every
// page at 1280 and 390 px wide.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fleet, WIDE, capture, launchBrowser, reloadUntil, signIn } from '../lib/fleet.mjs';

const JOB_TIMEOUT = 30_000;
const ACTION_TIMEOUT = 15_000;
const TEST_TIMEOUT = { timeout: 120_000 };

describe("a tenant's life from its page", () => {
  const fleet = new Fleet();
  let server;
  let browser;
  let admin;
  let readonly;

  before(async () => {
    admin = fleet.addUser('ops@example.com', 'PLATFORM_ADMIN');
    readonly = fleet.addUser('viewer@example.com', 'PLATFORM_READONLY');
    for (const slug of ['lively', 'plain']) {
      fleet.cli(['provision-tenant', '--slug', slug, '--display-name', `${slug} Ltd`, '--admin-email', `it@${slug}.example`]);
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

  for (const javaScript of [true, false]) {
    const slug = javaScript ? 'lively' : 'plain';

    // Screenshots only with JavaScript: `capture` waits for animation frames, which a page without it never runs.
    test(`suspend, resume and back up ${javaScript ? 'with' : 'without'} JavaScript`, TEST_TIMEOUT, async () => {
      const page = await newPage({ javaScriptEnabled: javaScript });
      await signIn(page, server.baseUrl, admin);
      const tenantUrl = `${server.baseUrl}/platform/tenants/${slug}`;
      await page.goto(tenantUrl);
      await page.getByRole('heading', { name: slug }).waitFor();

      await page.getByText('Suspend this tenant').click();
      await page.getByLabel('Reason').fill('invoice 1042 unpaid');
      if (javaScript) await capture(page, 'tenant-suspend-form');
      await page.getByRole('button', { name: 'Suspend', exact: true }).click();
      await jobCompletes(page, javaScript);
      assert.match(await page.locator('.page-header').textContent(), /suspend/);
      if (javaScript) await capture(page, 'suspend-job');

      await page.goto(tenantUrl);
      await page.locator('dd .pill', { hasText: 'suspended' }).waitFor();
      await page.getByRole('button', { name: 'Resume' }).waitFor();
      assert.equal(await page.getByText('Suspend this tenant').count(), 0, 'a suspended tenant offers no Suspend');
      if (javaScript) await capture(page, 'tenant-suspended');
      await page.getByRole('button', { name: 'Resume' }).click();
      await jobCompletes(page, javaScript);
      assert.match(await page.locator('.page-header').textContent(), /resume/);

      await page.goto(tenantUrl);
      await page.locator('dd .pill', { hasText: 'active' }).first().waitFor();
      await page.getByRole('button', { name: 'Back up now' }).click();
      await jobCompletes(page, javaScript);
      await page.goto(tenantUrl);
      const backups = page.locator('table').filter({ has: page.getByRole('columnheader', { name: 'Backup', exact: true }) });
      const backup = backups.locator('tbody tr', { hasText: 'complete' });
      await backup.first().waitFor();
      assert.equal(await backup.count(), 1);
      if (javaScript) await capture(page, 'tenant-backups');

      // The audit trail names what happened, with the reason.
      await page.goto(`${server.baseUrl}/platform/audit?tenant=${slug}&event_type=TENANT_SUSPENDED`);
      await page.getByRole('cell', { name: 'TENANT_SUSPENDED' }).waitFor();
      await page.context().close();
    });
  }

  test('a rotation with nothing to rotate is refused with its code, and changes nothing', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, admin);
    await page.goto(`${server.baseUrl}/platform/tenants/lively`);
    await page.getByText('Rotate credentials').first().click();
    await page.getByRole('button', { name: 'Rotate credentials' }).click();
    await page.getByText('E_INVALID_INPUT').first().waitFor();
    await capture(page, 'rotate-refused');
    const jobs = await page.request.get(`${server.baseUrl}/platform/jobs?tenant=lively`, {
      headers: { Accept: 'application/json' },
    });
    assert.equal(jobs.status(), 200);
    const body = await jobs.json();
    const list = Array.isArray(body) ? body : body.jobs ?? body.items ?? [];
    assert.equal(list.filter((job) => job.kind === 'rotate_credentials').length, 0, JSON.stringify(body));
    await page.context().close();
  });

  test('a read-only user sees no Suspend, Rotate or Back up, and the server refuses the POST anyway', TEST_TIMEOUT, async () => {
    const page = await newPage();
    await signIn(page, server.baseUrl, readonly);
    await page.goto(`${server.baseUrl}/platform/tenants/lively`);
    await page.getByRole('heading', { name: 'lively' }).waitFor();
    for (const text of ['Suspend this tenant', 'Rotate credentials']) {
      assert.equal(await page.getByText(text).count(), 0, `${text} shown to a read-only user`);
    }
    assert.equal(await page.getByRole('button', { name: 'Back up now' }).count(), 0, 'Back up now shown to a read-only user');
    const refused = await page.request.post(`${server.baseUrl}/platform/tenants/lively/suspend`, {
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      data: { reason: 'not allowed' },
    });
    assert.equal(refused.status(), 403);
    await page.context().close();
  });
});
