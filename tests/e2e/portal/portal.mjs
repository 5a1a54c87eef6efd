// The portal end to end in Chromium (playwright-core), against the serve and
// worker portal_test.sh started. Env: BASE, ADMIN_KEY, OPS_KEY, VIEWER_KEY,
// OUT (screenshots, downloads), CHROMIUM.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const { BASE, ADMIN_KEY, OPS_KEY, VIEWER_KEY, OUT, CHROMIUM } = process.env;
const LONG = 90_000;  // an ASan build on a busy machine

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
const problems = [];

async function open(name) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 }, acceptDownloads: true });
  context.setDefaultTimeout(LONG);
  const page = await context.newPage();
  // Anything the CSP refused, the page threw or a missing file of the
  // portal is a failure. The API's 4xx answers are expected ones (a wrong
  // parameter, the CSRF probe): the browser logs them as errors too.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded/.test(m.text()))
      problems.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`));
  page.on('response', (r) => {
    if (!new URL(r.url()).pathname.startsWith('/v1/') && r.status() >= 400)
      problems.push(`${name}: ${r.status()} for ${r.url()}`);
  });
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
}

async function signIn(page, key) {
  await page.goto(`${BASE}/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Schemas' }).waitFor();
}

async function step(name, fn) {
  const t = Date.now();
  await fn();
  console.log(`ok - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

// Fills the run form of a schema and submits it.
async function submitForm(page, schema, values) {
  await page.goto(`${BASE}/#/run/${schema}`);
  await page.getByRole('button', { name: `Run ${schema}` }).waitFor();
  for (const [name, value] of Object.entries(values)) await page.getByLabel(name, { exact: true }).fill(String(value));
  await page.getByRole('button', { name: `Run ${schema}` }).click();
}

async function waitForState(page, state) {
  await page.locator('h1 .state', { hasText: new RegExp(`^${state}$`) }).waitFor();
}

try {
  const ops = await open('operator');

  await step('every portal response carries a strict CSP and its companions', async () => {
    const res = await ops.page.goto(`${BASE}/`);
    const h = res.headers();
    assert.match(h['content-security-policy'], /default-src 'self'/);
    assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
    assert.doesNotMatch(h['content-security-policy'], /unsafe-inline|unsafe-eval/);
    assert.equal(h['x-content-type-options'], 'nosniff');
    assert.equal(h['referrer-policy'], 'no-referrer');
    for (const file of ['portal.js', 'portal.css']) {
      const r = await ops.context.request.get(`${BASE}/${file}`);
      assert.match(r.headers()['content-security-policy'], /default-src 'self'/, file);
    }
  });

  await step('a wrong key is refused at sign-in', async () => {
    await ops.page.getByLabel('API key').fill('th_000000000000_nope');
    await ops.page.getByRole('button', { name: 'Sign in' }).click();
    await ops.page.locator('#sign-in-error', { hasText: 'unknown, revoked or expired' }).waitFor();
    await shot(ops.page, 'sign-in');
  });

  await step('the operator signs in; the cookie is HttpOnly and SameSite=Strict', async () => {
    await signIn(ops.page, OPS_KEY);
    const [cookie] = await ops.context.cookies();
    assert.equal(cookie.name, 'taskhost_session');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(await ops.page.evaluate(() => document.cookie), '', 'scripts cannot read it');
    await ops.page.getByRole('link', { name: 'Run hello' }).waitFor();
    await shot(ops.page, 'schemas');
  });

  await step('hello from the form: a wrong parameter is shown beside its field', async () => {
    await submitForm(ops.page, 'hello', { count: 0 });
    const error = ops.page.locator('#param-count-error');
    await error.filter({ hasText: 'expected an integer from 1 to 10000, got 0' }).waitFor();
    assert.equal(await ops.page.getByLabel('count', { exact: true }).getAttribute('aria-invalid'), 'true');
    assert.equal(await ops.page.locator('#param-name-error').textContent(), '');
    await shot(ops.page, 'run-form-error');
  });

  let helloRun;
  await step('then a right one: the progress bar reaches 100 %', async () => {
    await ops.page.getByLabel('count', { exact: true }).fill('25');
    await ops.page.getByLabel('name', { exact: true }).fill('portal');
    await ops.page.getByRole('button', { name: 'Run hello' }).click();
    await ops.page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/);
    helloRun = ops.page.url().split('/').pop();
    await ops.page.locator('#run-percent', { hasText: '100 %' }).waitFor();
    assert.equal(await ops.page.locator('#run-progress').getAttribute('value'), '100');
    await waitForState(ops.page, 'succeeded');
    assert.equal(await ops.page.locator('#items-done').textContent(), '25');
    assert.equal(await ops.page.locator('#items-remaining').textContent(), '0');
    await ops.page.getByText('"greeting": "Hello, portal!"').waitFor();
    await ops.page.getByRole('cell', { name: 'run.succeeded' }).first().waitFor();  // the audit trail
    await ops.page.getByRole('cell', { name: 'greeted portal 25 times' }).waitFor();  // the live log
    await ops.page.getByRole('cell', { name: /^running -> succeeded by worker:/ }).waitFor();
    await shot(ops.page, 'run-detail');
  });

  await step('a CSV uploads into the granted bucket and fills its parameter', async () => {
    await ops.page.goto(`${BASE}/#/run/probe`);
    await ops.page.getByLabel('File for input').setInputFiles(
      { name: 'ids.csv', mimeType: 'text/csv', buffer: Buffer.from('submission_id\n17\n18\n') });
    await ops.page.getByText(/^Stored 20 bytes in inbox as portal\/uploads\//).waitFor();
    const key = await ops.page.getByLabel('input', { exact: true }).inputValue();
    assert.match(key, /^portal\/uploads\/\d{4}-\d\d-\d\d\/[0-9a-f]{16}\/ids\.csv$/);
    await shot(ops.page, 'run-form-upload');
  });

  await step('an output file downloads', async () => {
    await submitForm(ops.page, 'probe', { items: 15, delay_ms: 20 });
    await ops.page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/);
    await ops.page.locator('#run-percent', { hasText: '100 %' }).waitFor();
    const link = ops.page.getByRole('link', { name: 'result.csv' });
    await link.waitFor();
    const [download] = await Promise.all([ops.page.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), 'result.csv');
    await download.saveAs(`${OUT}/result.csv`);
    const csv = fs.readFileSync(`${OUT}/result.csv`, 'utf8');
    assert.equal(csv.split('\n')[0], 'item,status');
    assert.equal(csv.trim().split('\n').length, 16);
    await shot(ops.page, 'run-files');
  });

  await step('a long run is cancelled with its button', async () => {
    await submitForm(ops.page, 'probe', { items: 100000, delay_ms: 50 });
    await ops.page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/);
    await waitForState(ops.page, 'running');
    await ops.page.locator('#run-percent').waitFor();
    await shot(ops.page, 'run-running');
    assert.equal(await ops.page.getByRole('button', { name: 'Resume' }).count(), 0, 'resume is not offered to a running run');
    await ops.page.getByRole('button', { name: 'Cancel' }).click();
    await waitForState(ops.page, 'cancelled');
    await ops.page.getByRole('button', { name: 'Retry' }).waitFor();
    await shot(ops.page, 'run-cancelled');
  });

  let gatedRuns = [];
  await step('a run needing approval waits; its submitter is offered no approval', async () => {
    for (const name of ['approve me', 'reject me']) {
      await submitForm(ops.page, 'gated', { name });
      await ops.page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/);
      gatedRuns.push(ops.page.url().split('/').pop());
      await waitForState(ops.page, 'awaiting_approval');
    }
    await ops.page.locator('#approval-note', { hasText: 'waits for an approver who did not submit it' }).waitFor();
    const buttons = ops.page.getByRole('group', { name: 'Run actions' }).getByRole('button');
    assert.deepEqual(await buttons.allTextContents(), ['Cancel'], 'the submitter may only withdraw it');
    await shot(ops.page, 'run-awaiting-approval');
  });

  await step('the submitter approving it through the API anyway is refused (403)', async () => {
    const result = await ops.page.evaluate(async (id) => {
      const { csrf_token } = await (await fetch('/v1/session')).json();
      const r = await fetch(`/v1/runs/${id}/approve`, { method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf_token }, body: '{}' });
      return { status: r.status, body: await r.json() };
    }, gatedRuns[0]);
    assert.equal(result.status, 403);
    assert.match(result.body.detail, /api:ops submitted run .* may not approve or reject it/);
    await ops.page.reload();
    await waitForState(ops.page, 'awaiting_approval');
  });

  await step('the runs list shows them, filtered and live', async () => {
    await ops.page.goto(`${BASE}/#/runs`);
    await ops.page.getByRole('link', { name: helloRun.slice(0, 8) }).waitFor();
    await shot(ops.page, 'runs');
    await ops.page.getByLabel('State').selectOption('cancelled');
    await ops.page.getByRole('button', { name: 'Filter' }).click();
    await ops.page.waitForURL(/state=cancelled/);
    await ops.page.locator('tbody .state', { hasText: 'cancelled' }).first().waitFor();
    assert.equal(await ops.page.locator('tbody .state', { hasText: 'succeeded' }).count(), 0);
  });

  await step('a state change with the cookie but without the CSRF token gets 403', async () => {
    const result = await ops.page.evaluate(async () => {
      const r = await fetch('/v1/runs', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ schema: 'hello', params: {} }) });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(result.status, 403);
    assert.match(result.body.detail, /CSRF token/);
    const wrong = await ops.page.evaluate(async (id) => (await fetch(`/v1/runs/${id}/retry`, {
      method: 'POST', headers: { 'X-CSRF-Token': 'forged' } })).status, helloRun);
    assert.equal(wrong, 403);
  });

  await step('an operator sees no audit or webhook pages', async () => {
    assert.equal(await ops.page.getByRole('link', { name: 'Audit log' }).isVisible(), false);
  });

  const cookie = (await ops.context.cookies())[0].value;
  await step('signing out ends the session on the server', async () => {
    await ops.page.getByRole('button', { name: 'Sign out' }).click();
    await ops.page.getByLabel('API key').waitFor();
    assert.deepEqual(await ops.context.cookies(), []);
    const r = await fetch(`${BASE}/v1/session`, { headers: { Cookie: `taskhost_session=${cookie}` } });
    assert.equal(r.status, 401, 'the old cookie opens nothing');
  });

  const viewer = await open('viewer');
  await step('a viewer sees no run button and no run controls', async () => {
    await signIn(viewer.page, VIEWER_KEY);
    await viewer.page.getByRole('rowheader', { name: 'hello' }).waitFor();
    assert.equal(await viewer.page.getByRole('link', { name: /^Run / }).count(), 0);
    await shot(viewer.page, 'viewer-schemas');
    await viewer.page.goto(`${BASE}/#/run/hello`);
    await viewer.page.getByText('may view hello but not run it').waitFor();
    assert.equal(await viewer.page.getByRole('button', { name: 'Run hello' }).count(), 0);
    await viewer.page.goto(`${BASE}/#/runs/${helloRun}`);
    await waitForState(viewer.page, 'succeeded');
    assert.equal(await viewer.page.getByRole('group', { name: 'Run actions' }).getByRole('button').count(), 0);
    await shot(viewer.page, 'viewer-run');
  });

  const admin = await open('admin');
  await step('an admin browses the audit log and verifies the chain', async () => {
    await signIn(admin.page, ADMIN_KEY);
    await admin.page.getByRole('link', { name: 'Audit log' }).click();
    await admin.page.getByRole('cell', { name: 'session.started' }).first().waitFor();
    await admin.page.getByRole('button', { name: 'Verify the chain' }).click();
    await admin.page.locator('#verify-result', { hasText: 'Intact' }).waitFor();
    await shot(admin.page, 'audit');
    await admin.page.getByLabel('Action').fill('session');
    await admin.page.getByRole('button', { name: 'Filter' }).click();
    await admin.page.waitForURL(/action=session/);
    await admin.page.getByRole('cell', { name: 'session.ended' }).waitFor();
    assert.equal(await admin.page.getByRole('cell', { name: 'run.submitted' }).count(), 0);
  });

  await step('an admin approves one run and rejects the other with a reason', async () => {
    await admin.page.goto(`${BASE}/#/runs/${gatedRuns[0]}`);
    await admin.page.locator('#approval-note', { hasText: 'Submitted by api:ops: it waits for your approval.' }).waitFor();
    await shot(admin.page, 'run-approve');
    await admin.page.getByRole('button', { name: 'Approve' }).click();
    await waitForState(admin.page, 'succeeded');  // approved, queued, run, without a reload
    await admin.page.locator('#approval-decision', { hasText: 'approved by api:root' }).waitFor();

    await admin.page.goto(`${BASE}/#/runs/${gatedRuns[1]}`);
    await admin.page.getByRole('button', { name: 'Reject' }).click();
    await admin.page.locator('#status', { hasText: 'A rejection needs a reason' }).waitFor();
    await waitForState(admin.page, 'awaiting_approval');
    await admin.page.getByLabel('Reason').fill('wrong batch');
    await admin.page.getByRole('button', { name: 'Reject' }).click();
    await waitForState(admin.page, 'rejected');
    await admin.page.locator('#approval-decision', { hasText: 'rejected by api:root: wrong batch' }).waitFor();
    assert.equal(await admin.page.getByRole('group', { name: 'Run actions' }).getByRole('button').count(), 0);
    await shot(admin.page, 'run-rejected');
  });

  await step('an admin redelivers a webhook dead letter', async () => {
    await admin.page.getByRole('link', { name: 'Webhooks' }).click();
    await admin.page.getByRole('heading', { name: 'Webhook dead letters' }).waitFor();
    const table = admin.page.getByRole('table', { name: 'Dead deliveries' });
    await table.getByRole('cell', { name: 'run.succeeded' }).first().waitFor();  // hello's, to a 410
    await table.getByText('HTTP 410').first().waitFor();
    await shot(admin.page, 'webhooks');
    const button = table.getByRole('button', { name: /^Redeliver delivery \d+$/ }).first();
    const id = (await button.getAttribute('aria-label')).split(' ').pop();
    await button.click();
    await admin.page.locator('#status', { hasText: `Delivery ${id} queued again.` }).waitFor();
  });

  assert.deepEqual(problems, [], 'no console errors, no CSP violations');
} finally {
  await browser.close();
}
