// Drives keel-server's dashboard in Debian's headless Chromium (playwright-core, no bundled browser).
//
// Environment (set by crates/server/tests/dashboard_e2e.rs):
//   KEEL_URL             server base URL, e.g. http://127.0.0.1:39123
//   KEEL_ADMIN_TOKEN     management token with role admin
//   KEEL_VIEWER_TOKEN    management token with role viewer
//   KEEL_ARTIFACT        path of the file to upload
//   KEEL_TAG             tag of the simulated devices the rollout targets
//   KEEL_FAILING_DEVICE  controller id of the device that reports failure
//   KEEL_SCREENSHOTS     directory for screenshots (created)
//   CHROMIUM             browser binary (default /usr/bin/chromium)
// Exit code 0 only if every step and check passed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is required`);
  return value;
};
const base = env('KEEL_URL');
const adminToken = env('KEEL_ADMIN_TOKEN');
const viewerToken = env('KEEL_VIEWER_TOKEN');
const artifact = env('KEEL_ARTIFACT');
const tag = env('KEEL_TAG');
const failingDevice = env('KEEL_FAILING_DEVICE');
const shots = env('KEEL_SCREENSHOTS');
fs.mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function login(context, token) {
  const page = await context.newPage();
  page.on('pageerror', (err) => { console.error(`page error: ${err}`); process.exitCode = 1; });
  page.on('console', (msg) => { if (msg.type() === 'error') console.error(`console error: ${msg.text()}`); });
  await page.goto(`${base}/ui/login`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/ui/fleet`), page.click('#login-form button[type=submit]')]);
  return page;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  // Playwright refuses --user-data-dir with launch(); it gives every launch a fresh temporary profile.
});

try {
  // ---- operator (admin) ----
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await login(admin, adminToken);
  check(await page.locator('#who').getAttribute('data-role') === 'admin', 'logged in as admin');
  check(Number(await page.textContent('#device-total')) > 0, 'fleet overview counts devices');
  await shot(page, '01-fleet');

  // Upload: create a module, upload the file with progress, make a distribution set.
  await page.goto(`${base}/ui/software`);
  await page.fill('#module-form input[name=name]', 'keel-os');
  await page.fill('#module-form input[name=version]', '2.0');
  await Promise.all([page.waitForURL(`${base}/ui/software`), page.click('#module-form button[type=submit]')]);
  const filename = path.basename(artifact);
  await page.setInputFiles('#upload-file', artifact);
  const progressSeen = page.waitForFunction(() => Number(document.getElementById('upload-progress').value) > 0);
  await page.click('#upload-form button[type=submit]');
  await progressSeen;
  await page.waitForSelector('#upload-status[data-done]');
  check(await page.getAttribute('#upload-status', 'data-done') === 'ok',
    `artifact uploaded: ${await page.textContent('#upload-status')}`);
  check(Number(await page.getAttribute('#upload-progress', 'value')) === 100, 'upload progress reached 100%');
  await shot(page, '02-upload-done');
  await page.waitForSelector(`#modules .artifact:text-is("${filename}")`);
  await page.fill('#set-form input[name=name]', 'keel-os');
  await page.fill('#set-form input[name=version]', '2.0');
  await page.check('#set-form input[name=module] >> nth=0');
  await Promise.all([page.waitForURL(`${base}/ui/software`), page.click('#set-form button[type=submit]')]);
  check((await page.textContent('#sets')).includes('keel-os 2.0'), 'distribution set created');
  await shot(page, '03-software');

  // Rollout: three groups over the tagged devices; one device fails, which stays under the
  // error threshold, so the rollout completes.
  await page.goto(`${base}/ui/rollouts`);
  await page.fill('#rollout-form input[name=name]', 'e2e rollout');
  await page.fill('#rollout-form input[name=tag]', tag);
  await page.fill('#rollout-form input[name=groups]', '3');
  await page.fill('#rollout-form input[name=success]', '50');
  await page.fill('#rollout-form input[name=error]', '50');
  await Promise.all([page.waitForURL(/\/ui\/rollouts\/\d+$/), page.click('#rollout-form button[type=submit]')]);
  const rolloutUrl = page.url();
  const rolloutId = rolloutUrl.split('/').pop();
  check(await page.getAttribute('#rollout', 'data-status') === 'ready', `rollout ${rolloutId} is ready`);
  await shot(page, '04-rollout-ready');
  await Promise.all([page.waitForURL(rolloutUrl), page.click('#op-start')]);

  // From here on the page is never reloaded: progress must arrive live.
  await page.evaluate(() => { window.keelMarker = 'same page'; });
  const seen = new Set();
  let midShot = false;
  const deadline = Date.now() + 120_000;
  let status = '';
  while (Date.now() < deadline) {
    status = await page.getAttribute('#rollout', 'data-status');
    const text = await page.textContent('#bar-total-text');
    if (!seen.has(text)) {
      seen.add(text);
      console.log(`progress: ${status}: ${text}`);
      if (!midShot && status === 'running' && !text.startsWith('0 of')) {
        await shot(page, '05-rollout-progress');
        midShot = true;
      }
    }
    if (status === 'finished') break;
    await page.waitForTimeout(250);
  }
  check(status === 'finished', 'rollout reached finished');
  check(await page.evaluate(() => window.keelMarker) === 'same page', 'progress updated without reloading the page');
  check(seen.size >= 3, `watched ${seen.size} distinct progress states live`);
  check((await page.textContent('#bar-total-text')).includes('1 failed'), 'one device failed');
  check(await page.locator('#op-start').isHidden() && await page.locator('#op-cancel').isHidden(),
    'start and cancel are hidden once finished');
  await shot(page, '06-rollout-finished');

  // The failed device's history.
  const failedLink = page.locator('a.failed-device');
  check(await failedLink.count() === 1, 'one failed device listed');
  check(await failedLink.textContent() === failingDevice, `failed device is ${failingDevice}`);
  await Promise.all([page.waitForURL(/\/ui\/devices\//), failedLink.click()]);
  const failedAction = page.locator('section.action.status-error');
  check(await failedAction.count() >= 1, 'device page shows the failed action');
  const messages = await failedAction.first().locator('td.messages').allTextContents();
  check(messages.some((m) => m.includes('failed')), `failure feedback shown: ${messages.filter((m) => m).join(' | ')}`);
  check(await failedAction.first().locator('progress').count() > 0, 'progress reports shown in the history');
  await shot(page, '07-failed-device');

  await page.goto(`${base}/ui/fleet`);
  check((await page.textContent('#by-version')).includes('keel-os 2.0'), 'fleet overview counts the new version');
  await shot(page, '08-fleet-after');
  await page.locator('#devices a', { hasText: 'press-01' }).click();
  await page.waitForURL(/\/ui\/devices\/press-01$/);
  const slots = await page.textContent('#booted-slot');
  check(slots.includes('2.0') && slots.includes('Booted slot B'), `updated device reports slot b: ${slots.replace(/\s+/g, ' ')}`);
  check((await page.textContent('#installed')).includes('keel-os 2.0'), 'device page shows the installed set');
  await shot(page, '08-updated-device');
  await page.goto(`${base}/ui/tuf`);
  await shot(page, '08-tuf-status');

  // ---- viewer ----
  const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const viewer = await login(viewerContext, viewerToken);
  check(await viewer.locator('#who').getAttribute('data-role') === 'viewer', 'logged in as viewer');
  await viewer.goto(`${base}/ui/rollouts`);
  check(await viewer.locator('#rollout-form').count() === 0, 'viewer gets no create-rollout form');
  await viewer.goto(rolloutUrl);
  for (const op of ['start', 'pause', 'resume', 'cancel']) {
    check(await viewer.locator(`#op-${op}`).count() === 0, `viewer sees no ${op} button`);
  }
  await shot(viewer, '09-viewer-rollout');
  const api = await viewerContext.request.post(`${base}/rest/v1/rollouts/${rolloutId}/cancel`, {
    headers: { Authorization: `Bearer ${viewerToken}` },
  });
  check(api.status() === 403, `management API refuses the viewer's cancel (${api.status()})`);
  const csrf = await viewer.getAttribute('header form input[name=csrf]', 'value');
  const ui = await viewerContext.request.post(`${base}/ui/rollouts/${rolloutId}/cancel`, {
    form: { csrf }, maxRedirects: 0,
  });
  check(ui.status() === 403, `dashboard refuses the viewer's cancel (${ui.status()})`);
  const apiStart = await viewerContext.request.post(`${base}/rest/v1/rollouts/${rolloutId}/start`, {
    headers: { Authorization: `Bearer ${viewerToken}` },
  });
  check(apiStart.status() === 403, `management API refuses the viewer's start (${apiStart.status()})`);
  console.log('dashboard e2e: all checks passed');
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
