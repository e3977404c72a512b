// Browser scenarios of the Orthanc Explorer extension and the dashboard, in Debian's headless
// Chromium driven by playwright-core. test_browser.py starts Orthanc and the fake Azure service,
// then runs: node scenarios.js NAME CONFIG_JSON. CONFIG_JSON has "orthanc" (the base URL),
// "fake" (the fake's base URL), "screenshots" (a folder), "user" and "password" when Orthanc
// requires them, and the scenario's own keys.
// The exit code is 0 when the scenario passed; on failure the page is saved as NAME.png in the
// screenshots folder.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
// Time limits in ms. Mirroring a few small instances to the fake takes about a second.
const ACTION_TIMEOUT_MS = 15000;
const MIRROR_TIMEOUT_MS = 60000;

function log(message) {
  console.log(`[${new Date().toISOString()}] ${message}`);
}

// Waits until the element's attribute has the expected value, and fails with the last value.
async function waitForAttribute(page, selector, name, expected, timeout) {
  try {
    await page.waitForFunction(
      ([sel, attribute, value]) => {
        const node = document.querySelector(sel);
        return node !== null && node.getAttribute(attribute) === value;
      },
      [selector, name, expected],
      { timeout: timeout || MIRROR_TIMEOUT_MS, polling: 200 },
    );
  } catch (error) {
    const actual = await page.locator(selector).first().getAttribute(name).catch(() => null);
    throw new Error(`${selector} [${name}] is ${JSON.stringify(actual)}, expected ` +
                    `${JSON.stringify(expected)}: ${error.message.split('\n')[0]}`);
  }
}

// Waits until the element's text contains the expected text, and fails with the last text.
async function waitForText(page, selector, expected, timeout) {
  try {
    await page.waitForFunction(
      ([sel, text]) => {
        const node = document.querySelector(sel);
        return node !== null && !node.hidden && node.textContent.includes(text);
      },
      [selector, expected],
      { timeout: timeout || ACTION_TIMEOUT_MS, polling: 200 },
    );
  } catch (error) {
    const actual = await page.locator(selector).first().textContent().catch(() => null);
    throw new Error(`${selector} shows ${JSON.stringify(actual)}, expected it to contain ` +
                    `${JSON.stringify(expected)}: ${error.message.split('\n')[0]}`);
  }
}

async function controlFake(config, command) {
  const response = await fetch(`${config.fake}/_control`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(command),
  });
  assert.equal(response.status, 200, `fake control ${command.Action}: ${await response.text()}`);
}

// Returns the Authorization header of Orthanc's user, or no header when Orthanc has no users.
function authorization(config) {
  if (!config.user) {
    return {};
  }
  const token = Buffer.from(`${config.user}:${config.password}`).toString('base64');
  return { Authorization: `Basic ${token}` };
}

// Returns Orthanc's base URL with the user name and password in it: http://user:password@host.
function urlWithCredentials(config) {
  const url = new URL(config.orthanc);
  url.username = config.user;
  url.password = config.password;
  return url.href.replace(/\/$/, '');
}

async function getJson(config, route) {
  const response = await fetch(config.orthanc + route, { headers: authorization(config) });
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${route}: ${text}`);
  return JSON.parse(text);
}

async function postJson(config, route, body) {
  const response = await fetch(config.orthanc + route, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...authorization(config) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `POST ${route}: ${text}`);
  return JSON.parse(text);
}

function studyPage(config, studyId) {
  return `${config.orthanc}/app/explorer.html#study?uuid=${studyId}`;
}

const scenarios = {
  // A study stored while the plugin runs: its badge in Orthanc Explorer ends Mirrored, and the
  // home page links to the dashboard.
  async 'explorer-badge-mirrored'(page, config) {
    log(`opening the study ${config.study}`);
    await page.goto(studyPage(config, config.study));
    await waitForAttribute(page, '#azure-dicom-study-badge', 'data-summary', 'Mirrored');
    await waitForText(page, '#azure-dicom-study-counts',
                      `${config.instances} instances: ${config.instances} Mirrored`);
    assert.equal(await page.locator('#azure-dicom-study-retry-item').isVisible(), false,
                 'Retry failed is shown although nothing failed');

    log('opening a series of the study');
    await page.goto(`${config.orthanc}/app/explorer.html#series?uuid=${config.series}`);
    await waitForAttribute(page, '#azure-dicom-series-badge', 'data-summary', 'Mirrored');

    log('opening the home page');
    await page.goto(`${config.orthanc}/app/explorer.html#lookup`);
    const link = page.locator('#azure-dicom-dashboard-link');
    await link.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });
    assert.equal(await link.getAttribute('href'), '../azure-dicom/ui/index.html');
    await link.click();
    await page.waitForURL(`${config.orthanc}/azure-dicom/ui/index.html`,
                          { timeout: ACTION_TIMEOUT_MS });
    await waitForAttribute(page, '#state-badge', 'data-state', 'Running', ACTION_TIMEOUT_MS);
  },

  // A study stored before the plugin's first start is NotMirrored until "Mirror to Azure".
  async 'explorer-mirror-button'(page, config) {
    log(`opening the study ${config.study}`);
    await page.goto(studyPage(config, config.study));
    await waitForAttribute(page, '#azure-dicom-study-badge', 'data-summary', 'NotMirrored',
                           ACTION_TIMEOUT_MS);
    await waitForText(page, '#azure-dicom-study-counts',
                      `${config.instances} instances: ${config.instances} not queued`);

    log('clicking Mirror to Azure');
    await page.click('#azure-dicom-study-sync');
    await waitForAttribute(page, '#azure-dicom-study-badge', 'data-summary', 'Mirrored');
    await waitForText(page, '#azure-dicom-study-message', 'done: Mirrored.', MIRROR_TIMEOUT_MS);
    await waitForText(page, '#azure-dicom-study-counts',
                      `${config.instances} instances: ${config.instances} Mirrored`);
  },

  // Instances that the service rejects are listed on the dashboard; once the fake accepts them,
  // the per-item retry and "Retry all failed" mirror them.
  async 'dashboard-failed-retry'(page, config) {
    log('opening the dashboard');
    await page.goto(`${config.orthanc}/azure-dicom/ui/`);
    for (const uid of config.failedUids) {
      await page.locator(`#failed-table tr:has-text("${uid}")`)
        .waitFor({ timeout: MIRROR_TIMEOUT_MS });
    }
    const firstRow = page.locator(`#failed-table tr:has-text("${config.failedUids[0]}")`);
    const cells = await firstRow.locator('td').allTextContents();
    assert.equal(cells[1], String(config.failureReason), `reason column of ${cells}`);
    assert.equal(cells[2], String(config.statusCode), `status code column of ${cells}`);
    await waitForText(page, '#counts-table tr[data-state="Failed"]',
                      String(config.failedUids.length));

    log('making the fake accept the instances again');
    await controlFake(config, { Action: 'SetInvalidPatientIds', PatientIds: [] });

    log('retrying the first failed instance');
    await firstRow.locator('button.retry-item').click();
    await waitForText(page, '#failed-message', '1 instance queued again');
    await firstRow.waitFor({ state: 'detached', timeout: ACTION_TIMEOUT_MS });

    log('retrying all the other failed instances');
    await page.click('#retry-all-failed');
    await waitForText(page, '#failed-message',
                      `${config.failedUids.length - 1} failed instances queued again`);
    await page.locator('#failed-empty').waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });

    log('waiting for the counts to show every instance Mirrored');
    await page.click('#refresh-button');
    await waitForText(page, '#counts-table tr[data-state="Failed"]', '0', MIRROR_TIMEOUT_MS);
    const deadline = Date.now() + MIRROR_TIMEOUT_MS;
    for (;;) {
      const mirrored = await page.locator('#counts-table tr[data-state="Mirrored"] td')
        .nth(1).textContent();
      if (mirrored === String(config.failedUids.length)) {
        break;
      }
      assert.ok(Date.now() < deadline, `the dashboard shows ${mirrored} Mirrored, expected ` +
                                       `${config.failedUids.length}`);
      await page.waitForTimeout(500);
      await page.click('#refresh-button');
    }

    log('looking up an unknown ID');
    await page.fill('#lookup-input', '1.2.3.4.5.6.7.8.9');
    await page.click('#lookup-submit');
    await waitForText(page, '#lookup-message', 'no patient, study, series or instance has');
    assert.equal(await page.locator('#lookup-message').getAttribute('class'), 'message error');
  },

  // The nodes table lists this node with the count it sent, as GET /azure-dicom/status returns.
  async 'dashboard-nodes'(page, config) {
    log('opening the dashboard');
    await page.goto(`${config.orthanc}/azure-dicom/ui/`);
    await waitForText(page, '#nodes-this', config.node);
    await waitForText(page, '#nodes-follower', 'It follows the change log.');
    await waitForText(page, '#status-database', 'SQLite, connected');

    const row = page.locator(`#nodes-table tr[data-node="${config.node}"]`);
    await row.waitFor({ timeout: ACTION_TIMEOUT_MS });
    assert.equal(await page.locator('#nodes-table tbody tr').count(), 1, 'rows of the nodes table');
    assert.ok(await row.evaluate((node) => node.classList.contains('this-node')),
              'the row of this node is marked');

    const status = await getJson(config, '/azure-dicom/status');
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], config.node, `node column of ${cells}`);
    assert.equal(cells[1], '0', `sending column of ${cells}`);
    assert.equal(cells[2], String(config.instances), `sent column of ${cells}`);
    assert.equal(status.Nodes[0].Sent, config.instances, 'Sent in the status');
    assert.notEqual(cells[3], '–', `last seen column of ${cells}`);
  },

  // Opened as http://user:password@host/azure-dicom/ui/, the dashboard fills its fields. Its
  // request URLs carry no credentials, which fetch() would reject, and the browser sends the
  // page's credentials with them. Orthanc Explorer's panel works from such a URL too.
  async 'dashboard-credentials-url'(page, config) {
    const base = urlWithCredentials(config);
    log('opening the dashboard with the user name and password in the URL');
    await page.goto(`${base}/azure-dicom/ui/`);
    await waitForAttribute(page, '#state-badge', 'data-state', 'Running', ACTION_TIMEOUT_MS);
    await waitForText(page, '#status-state', 'Running');
    await waitForText(page, '#counts-table tr[data-state="Mirrored"]', String(config.instances));
    await waitForText(page, '#status-database', 'SQLite, connected');
    await waitForText(page, '#nodes-this', config.node);
    await page.waitForFunction(() => document.querySelector('#updated-at').textContent !== 'never',
                               null, { timeout: ACTION_TIMEOUT_MS, polling: 200 });
    assert.equal(await page.locator('#header-message').isVisible(), false,
                 `header message: ${await page.locator('#header-message').textContent()}`);
    await page.locator('#failed-empty').waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });
    await page.locator('#snapshots-empty').waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });
    await page.locator('#credentials-list dt').first().waitFor({ timeout: ACTION_TIMEOUT_MS });
    for (const id of ['failed-message', 'check-message', 'snapshot-message']) {
      assert.equal(await page.locator(`#${id}`).isVisible(), false,
                   `#${id}: ${await page.locator(`#${id}`).textContent()}`);
    }

    // On such a URL, the jQuery Mobile 1.1 of Orthanc Explorer raises an error of its own
    // (history.replaceState() rejects its URL without credentials), so the Explorer opens in a
    // page whose errors the scenario does not check.
    log('opening the study in Orthanc Explorer with the user name and password in the URL');
    const explorer = await page.context().newPage();
    try {
      await explorer.goto(`${base}/app/explorer.html#study?uuid=${config.study}`);
      await waitForAttribute(explorer, '#azure-dicom-study-badge', 'data-summary', 'Mirrored',
                             ACTION_TIMEOUT_MS);
      await waitForText(explorer, '#azure-dicom-study-counts',
                        `${config.instances} instances: ${config.instances} Mirrored`);
    } finally {
      await explorer.close();
    }
  },

  // Counts read in the singular and in the plural, a few requests in an hour show a rate above
  // zero, a note names the requests that the tiles count, and the chart's labels fit in it.
  async 'dashboard-display'(page, config) {
    log('opening the dashboard');
    await page.goto(`${config.orthanc}/azure-dicom/ui/`);
    await waitForText(page, '#counts-table tr[data-state="Mirrored"]', String(config.instances));

    const history = await getJson(config, '/azure-dicom/status/history');
    const requests = history.Requests.Last60Minutes.Requests;
    assert.ok(requests >= 1, `${requests} requests in the last 60 minutes`);
    assert.ok(requests < 60, `${requests} requests in the last 60 minutes, expected under 60`);
    const noun = requests === 1 ? 'request' : 'requests';
    await waitForText(page, '#tile-rate [data-window="Last60Minutes"]',
                      `${requests} /h (${requests} ${noun})`);
    await waitForText(page, '#tiles-scope', 'STOW-RS requests only');

    await page.locator('#history-chart polyline').first().waitFor({ state: 'attached' });
    const labels = await page.locator('#history-chart text').evaluateAll((nodes) => nodes.map(
      (node) => ({ text: node.textContent, left: node.getBBox().x,
                   right: node.getBBox().x + node.getBBox().width })));
    const texts = labels.map((label) => label.text);
    assert.ok(texts.includes('instances'), `chart labels ${texts}`);
    assert.ok(texts.includes('per s'), `chart labels ${texts}`);
    for (const label of labels) {
      assert.ok(label.left >= 0, `chart label "${label.text}" starts at x ${label.left}`);
      assert.ok(label.right <= 800, `chart label "${label.text}" ends at x ${label.right}`);
    }

    log(`looking up the instance ${config.instance}`);
    await page.fill('#lookup-input', config.instance);
    await page.click('#lookup-submit');
    await waitForText(page, '#lookup-level', 'Instance');
    await waitForText(page, '#lookup-counts', '1 instance, ');
    await waitForText(page, '#lookup-counts', ': 1 Mirrored');
  },

  // The dashboard shows a snapshot's rollback plan with the count that the REST API returns,
  // and the confirmation starts the rollback job.
  async 'dashboard-rollback-plan'(page, config) {
    const plan = await postJson(config, `/azure-dicom/snapshots/${config.snapshot}/rollback`, {});
    assert.equal(plan.Delete.Instances, config.instances, JSON.stringify(plan.Delete));

    log('opening the dashboard');
    await page.goto(`${config.orthanc}/azure-dicom/ui/`);
    const row = page.locator(`#snapshots-table tr[data-id="${config.snapshot}"]`);
    await row.waitFor({ timeout: ACTION_TIMEOUT_MS });
    assert.ok((await row.textContent()).includes(config.label), await row.textContent());

    log(`opening snapshot ${config.snapshot}`);
    await row.locator('button.open-snapshot').click();
    await waitForText(page, '#snapshot-detail-id', config.snapshot);
    assert.equal(await page.locator('#rollback-confirm').isVisible(), false,
                 'the confirm button is visible before the plan');

    log('showing the rollback plan');
    await page.click('#rollback-plan-button');
    await waitForText(page, '#rollback-delete-instances', String(plan.Delete.Instances));
    assert.equal(await page.locator('#rollback-dropped').textContent(),
                 String(plan.DroppedPending.Instances));
    assert.equal(await page.locator('#rollback-items tbody tr').count(),
                 plan.Delete.FirstItems.length);
    assert.equal(await page.locator('#rollback-destinations tbody tr').count(),
                 plan.Delete.Destinations.length);

    log('taking a snapshot from the form');
    await page.fill('#snapshot-label', 'taken in the browser');
    await page.click('#snapshot-take');
    await waitForText(page, '#snapshot-message', 'taken.');
    await page.locator('#snapshots-table tr:has-text("taken in the browser")')
      .waitFor({ timeout: ACTION_TIMEOUT_MS });

    log('confirming the rollback');
    await page.click('#rollback-confirm');
    await waitForText(page, '#rollback-message', 'started as job');
    const text = await page.locator('#rollback-message').textContent();
    const job = /job (\S+) /.exec(text)[1];
    const status = await getJson(config, '/azure-dicom/status');
    assert.ok(status.Rollback, 'the status shows no rollback');
    assert.equal(status.Rollback.Job, job, JSON.stringify(status.Rollback));
  },
};

// Returns the URLs that the page requested outside Orthanc, which must stay empty: the pages
// load nothing from another host.
function watchForeignRequests(page, config) {
  const foreign = [];
  const origin = new URL(config.orthanc).origin;
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith('data:') && new URL(url).origin !== origin) {
      foreign.push(url);
    }
  });
  return foreign;
}

async function main() {
  const [name, configText] = process.argv.slice(2);
  if (!scenarios[name] || !configText) {
    console.error(`usage: node scenarios.js NAME CONFIG_JSON, with NAME one of ` +
                  Object.keys(scenarios).join(', '));
    return 2;
  }
  const config = JSON.parse(configText);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'azure-dicom-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  const foreign = watchForeignRequests(page, config);

  let passed = false;
  try {
    await scenarios[name](page, config);
    assert.deepEqual(errors, [], 'the page raised JavaScript errors');
    assert.deepEqual(foreign, [], 'the page requested URLs outside Orthanc');
    passed = true;
    log(`${name} passed`);
  } catch (error) {
    console.error(`${name} failed: ${error.stack || error}`);
    if (errors.length) {
      console.error(`JavaScript errors of the page: ${errors.join('; ')}`);
    }
    fs.mkdirSync(config.screenshots, { recursive: true });
    const file = path.join(config.screenshots, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true }).then(
      () => console.error(`screenshot saved to ${file}`),
      (screenshotError) => console.error(`no screenshot: ${screenshotError.message}`));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  return passed ? 0 : 1;
}

main().then((code) => process.exit(code), (error) => {
  console.error(error.stack || error);
  process.exit(1);
});
