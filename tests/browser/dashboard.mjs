// Walks the dashboard in a real browser (Debian's chromium, driven by playwright-core) as an
// on-call engineer would: signs in, opens every page, follows an anomaly and a slow request to
// their waterfalls, a caller to its requests, runs SQL. Fails on any console error or failed
// check; screenshots every page.
// Usage: node dashboard.mjs <base-url> <admin-token> <screenshot-dir>
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const [base, token, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const problems = [];
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const step = (name) => console.log(`ok - ${name}`);
// A deliberate refusal shows in the console as its status, once; nothing else may.
function expectRefusal(status) {
  assert.deepEqual(problems, [`console: Failed to load resource: the server responded with a status of ${status} (${
    { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found' }[status]})`]);
  problems.length = 0;
}

async function open(path) {
  const response = await page.goto(base + path);
  assert.equal(response.status(), 200, `${path} answered ${response.status()}`);
}

try {
  // Signing in: a wrong token is refused, the right one leads back to the page asked for.
  await page.goto(`${base}/dashboard/canary`);
  assert.match(page.url(), /\/dashboard\/login/);
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('#login-error');
  expectRefusal(401);

  await page.fill('#token', token);
  await Promise.all([page.waitForURL(/\/dashboard\/canary$/), page.click('button[type=submit]')]);
  step('login');

  // Canary: the demo's v2 of `book` is slower and fails more: roll back, with reasons.
  const canary = await page.textContent('#canary-book');
  assert.match(canary, /v2 vs v1/);
  assert.match(canary, /roll back/i);
  assert.match(canary, /Mann-Whitney U/);
  // `book` has an objective: v2 misses it on its failures, v1 hardly ever.
  assert.match(canary, /missed the route's objective on [1-9][\d.]*% of its requests vs 0\.\d\d% on v1/);
  await shot('canary');
  step('canary verdict');

  // Overview: figures, hour charts, and the live fragment refreshing.
  await open('/dashboard');
  assert.notEqual((await page.textContent('#rate')).trim(), '0');
  // Of the demo's four objectives, inventory's budget is gone.
  assert.equal((await page.textContent('#objectives-at-risk')).trim(), '1 of 4');
  assert.ok(await page.locator('polyline').count() >= 4, 'hour charts drawn');
  const before = await page.textContent('#live');
  await page.waitForFunction((old) => document.getElementById('live').textContent !== old, before, { timeout: 10000 });
  assert.ok(await page.locator('#upstreams tr').count() > 3, 'upstream instances listed');
  // The demo's books upstream weighs one instance twice, and has a backup standing by.
  const books = await page.locator('#upstreams tr', { hasText: 'books' }).allTextContents();
  assert.ok(books.some((row) => row.includes('weight 2')), `a weighted instance: ${books}`);
  assert.ok(books.some((row) => row.includes('backup') && row.includes('healthy')), `a backup standing by: ${books}`);
  // The demo discovers its web front end through DNS (localhost, from /etc/hosts).
  const web = page.locator('#discovered tr', { hasText: 'web' });
  const resolved = await web.textContent();
  assert.ok(resolved.includes('localhost:') && resolved.endsWith(' agook'), `the discovered upstream and how it resolves: ${resolved}`);
  assert.ok(await page.locator('#latest-failed a[title]').count() > 0, 'the latest failed requests listed');
  // The demo's traces go where nothing listens: every export fails, and the live cards say so.
  assert.equal((await page.textContent('#spans-exported')).trim(), '0');
  assert.notEqual((await page.textContent('#spans-failed')).trim(), '0');
  assert.match(await page.getAttribute('#spans-failed', 'class'), /warn/);
  // The gateway's own process: memory and descriptors at once, CPU and the workers' busy share
  // once the stats task has two readings, 10 s apart.
  assert.match((await page.textContent('#process-memory')).trim(), /MiB$/);
  assert.match((await page.textContent('#process-fds')).trim(), / of /);
  await page.waitForFunction(() => /^\d+\.\d\d$/.test(document.getElementById('process-cpu').textContent.trim()), null, { timeout: 25000 });
  assert.match((await page.textContent('#process-busy')).trim(), /^\d+%$/);
  await shot('overview');
  step('overview and live refresh');

  // Anomalies: the demo's error burst on reviews and latency spike on books-list, with examples.
  await open('/dashboard/anomalies');
  const anomalies = await page.textContent('#anomalies');
  assert.match(anomalies, /reviews\s*error ratio/);
  assert.match(anomalies, /books-list\s*p99 latency/);
  await shot('anomalies');
  await Promise.all([page.waitForURL(/\/dashboard\/requests\//), page.locator('a.example').first().click()]);
  assert.ok(await page.locator('.waterfall rect').count() >= 3, 'request, route match, attempt');
  assert.match(await page.textContent('#request-fields'), /route/);
  await shot('request-from-anomaly');
  step('anomaly to its waterfall');

  // An anomaly's requests: the latency spike's, slower than the p99 expected, in its minutes.
  await open('/dashboard/anomalies');
  const spike = page.locator('#anomalies tr', { hasText: 'p99 latency' }).first();
  await Promise.all([page.waitForURL(/slower_than=\d+us/), spike.locator('a.behind').click()]);
  assert.ok(await page.locator('#found a[title]').count() > 0, 'the slow requests of the spike listed');
  step('anomaly to the requests behind it');

  // A route: distribution, statuses, slowest requests; the slowest leads to its waterfall.
  await open('/dashboard/routes/book');
  assert.ok(await page.locator('rect').count() > 5, 'histogram and status bars');
  assert.match(await page.textContent('#route-objective'), /healthy/);
  await shot('route');
  await Promise.all([page.waitForURL(/\/dashboard\/requests\//), page.locator('#slowest a').first().click()]);
  assert.match(await page.textContent('#request-status'), /\d{3}/);
  assert.match(await page.textContent('#request-fields'), /upstream first byte\s*[\d.]+ ?(µs|ms|s)/);
  step('route to its slowest request');

  // The list of requests: a route's failed ones, then a search typed into the form, then older.
  await open('/dashboard/routes/inventory');
  await Promise.all([page.waitForURL(/\/dashboard\/requests\?/), page.click('#more-failed')]);
  assert.equal(await page.inputValue('select[name=status]'), 'failed');
  assert.ok(await page.locator('#found a[title]').count() > 0, 'failed inventory requests listed');
  await page.selectOption('select[name=status]', '2xx');
  await page.fill('input[name=route]', 'book');
  await Promise.all([page.waitForURL(/status=2xx/), page.click('#search button')]);
  const rows = await page.locator('#found tr').count();
  assert.equal(rows, 51, 'a full page of the busy route');
  await shot('requests');
  await Promise.all([page.waitForURL(/after=/), page.click('#older')]);
  assert.ok(await page.locator('#first').count() === 1, 'a way back to the first page');
  await page.fill('input[name=slower_than]', 'soon');
  await page.click('#search button');
  await page.waitForSelector('#bad-search');
  expectRefusal(400);
  step('request list: filters and pages');

  // From one request to the other requests of its consumer. The demo's partner calls with its
  // key every few seconds: the list is read again until one is there (15 s at most).
  await open('/dashboard/requests?route=partner-books&status=2xx');
  for (let tries = 1; (await page.locator('#found a[title]').count()) === 0; tries++) {
    assert.ok(tries < 30, "a partner's call with its key within 15 s");
    await page.waitForTimeout(500);
    await open('/dashboard/requests?route=partner-books&status=2xx');
  }
  await Promise.all([page.waitForURL(/\/dashboard\/requests\/[^?]/), page.locator('#found a[title]').first().click()]);
  await Promise.all([page.waitForURL(/consumer=demo-partner/), page.click('#request-fields a[href*="consumer="]')]);
  assert.equal(await page.inputValue('input[name=consumer]'), 'demo-partner');
  assert.ok(await page.locator('#found a[title]').count() > 0, "the consumer's requests listed");
  step("a request's consumer to its other requests");

  // Callers: the partner among the consumers, by requests and by refusals; on to its requests.
  await open('/dashboard/callers');
  assert.match(await page.textContent('#consumers'), /demo-partner/);
  assert.ok(await page.locator('#clients a.caller').count() > 0, 'client addresses listed');
  await shot('callers');
  await page.selectOption('select[name=by]', 'refused');
  await Promise.all([page.waitForURL(/by=refused/), page.click('#choice button')]);
  await Promise.all([page.waitForURL(/consumer=demo-partner/),
    page.locator('#consumers a.caller', { hasText: 'demo-partner' }).click()]);
  assert.equal(await page.inputValue('input[name=consumer]'), 'demo-partner');
  assert.ok(await page.locator('#found a[title]').count() > 0, "the partner's requests in the window");
  step('callers to their requests');

  // Objectives: inventory fails a tenth of its requests against 99% (its budget gone), books'
  // list keeps 99.9% within 100 ms; on to the requests inventory missed it with.
  await Promise.all([page.waitForURL(/\/dashboard\/slos$/), page.click('header a >> text=Objectives')]);
  assert.match(await page.textContent('#slo-inventory .verdict-pill'), /budget exhausted/);
  assert.match(await page.textContent('#slo-books-list .verdict-pill'), /healthy/);
  assert.match(await page.textContent('#slo-book .verdict-pill'), /healthy/);
  assert.match(await page.textContent('#slo-inventory .budget-spent'), /^\d+\.\d\d%$/);
  assert.ok(await page.locator('#slo-inventory polyline').count() > 0, 'budget chart drawn');
  await shot('objectives');
  await Promise.all([page.waitForURL(/status=slo_missed/), page.click('#slo-inventory a.missed')]);
  assert.equal(await page.inputValue('input[name=route]'), 'inventory');
  assert.ok(await page.locator('#found a[title]').count() > 0, 'the requests that missed it');
  step('objectives to the requests that missed them');

  // Finding a request: an unknown id says so.
  await open('/dashboard/requests');
  await page.fill('input[name=id] >> nth=1', 'no-such-request');
  await page.press('input[name=id] >> nth=1', 'Enter');
  await page.waitForSelector('#not-found');
  expectRefusal(404);
  step('unknown request id');

  // SQL console: an example runs; a write is refused with DuckDB's reason.
  await open('/dashboard/sql');
  await page.click('button.example >> text=Errors by instance');
  await page.waitForSelector('#sql-result');
  assert.ok(await page.locator('#sql-result tr').count() > 1);
  await shot('sql');
  await page.fill('#sql', 'DROP TABLE requests');
  await page.click('#run');
  await page.waitForSelector('#sql-error');
  assert.match(await page.textContent('#sql-error'), /SELECT/);
  expectRefusal(400);
  step('sql console');

  assert.deepEqual(problems, [], 'no console errors');
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(problems.join('\n'));
  throw error;
} finally {
  await browser.close();
}
