// Browser test of the riskwatch dashboard against a running engine + API.
// Started by a Go test (or by hand) with:
//   RW_BASE_URL, RW_READ_USER, RW_READ_PASSWORD, RW_OPERATOR_USER,
//   RW_OPERATOR_PASSWORD, RW_ALERT_MERCHANT, RW_XSS_MERCHANT, RW_SSE_MERCHANT,
//   RW_ATTACKER_URL (a page on another site: /?alert=ID auto-submits a
//   cross-site form that tries to acknowledge alert ID),
//   RW_ARTIFACTS (screenshots; default $TMPDIR/riskwatch-e2e), CHROMIUM (default /usr/bin/chromium),
//   RW_P3_MERCHANT (optional: a merchant whose alert fires at P3 with more
//   money at stake than RW_ALERT_MERCHANT's, which fires at P1).
// Test hooks: data-testid (alert-row, alert-link, alert-detail, audit,
// audit-row, silences, silence-*, comment-*, op-*, open-alerts, alerts-table, ack-*,
// priority-badge, evidence, money, escalated, continues, filter-*,
// ranking-risk, ranking-volume, ranking-row, chart-*, merchant-*, lang-switch,
// pipeline-status, stuck-banner), data-alert-id, data-merchant-id, data-acked,
// data-state, data-priority (P1|P2|P3|none), data-evidence, data-ready,
// data-action, data-by and data-silence-id (audit and silence rows), and on
// chart-rate data-series and data-same-hour-points.
// Prints progress on stdout, the line SSE-READY when the driver should make
// RW_SSE_MERCHANT fire, STUCK-READY when it should make every flush of the
// engine fail and UNSTICK when it should stop that, and PASS at the end.
// Any failure: message on stderr, exit 1.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v == null || v === '') {
    console.error(`FAIL: environment variable ${name} is required`);
    process.exit(1);
  }
  return v;
};

const BASE = env('RW_BASE_URL').replace(/\/+$/, '');
const READ_USER = process.env.RW_READ_USER || '';
const READ_PASSWORD = process.env.RW_READ_PASSWORD || '';
const OP_USER = process.env.RW_OPERATOR_USER || '';
const OP_PASSWORD = process.env.RW_OPERATOR_PASSWORD || '';
const ALERT_MERCHANT = env('RW_ALERT_MERCHANT');
const XSS_MERCHANT = env('RW_XSS_MERCHANT');
const SSE_MERCHANT = env('RW_SSE_MERCHANT');
const ATTACKER = env('RW_ATTACKER_URL').replace(/\/+$/, '');
const P3_MERCHANT = process.env.RW_P3_MERCHANT || '';
const ARTIFACTS = env('RW_ARTIFACTS', path.join(os.tmpdir(), 'riskwatch-e2e'));
const XSS_NAME = '<img src=x onerror=alert(1)>';
const RED = [224, 49, 49]; // #e03131, the rule-threshold line colour

mkdirSync(ARTIFACTS, { recursive: true });

const log = (line) => process.stdout.write(`${line}\n`);
let browser = null;

async function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  try {
    await browser?.close();
  } catch {
    /* already gone */
  }
  process.exit(1);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

let currentStep = 'setup';
async function step(name, fn) {
  currentStep = name;
  log(`step: ${name}`);
  try {
    await fn();
  } catch (err) {
    await fail(`${name}: ${err && err.message ? err.message : err}`);
  }
  log(`ok: ${name}`);
}

/** Non-transparent and #e03131-like pixel counts of the first canvas in a chart container. */
async function canvasStats(page, testid) {
  return page.evaluate(({ testid, red }) => {
    const canvas = document.querySelector(`[data-testid="${testid}"] canvas`);
    if (!canvas || !canvas.width || !canvas.height) return { opaque: 0, red: 0, missing: true };
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let opaque = 0;
    let reds = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      opaque++;
      if (data[i + 3] > 200 && Math.abs(data[i] - red[0]) <= 16 && Math.abs(data[i + 1] - red[1]) <= 16 && Math.abs(data[i + 2] - red[2]) <= 16) reds++;
    }
    return { opaque, red: reds };
  }, { testid, red: RED });
}

async function expectChartReady(page, testid, timeout = 30000) {
  await page.waitForSelector(`[data-testid="${testid}"][data-ready="true"] canvas`, { timeout });
  const stats = await canvasStats(page, testid);
  assert(!stats.missing, `${testid}: no canvas`);
  assert(stats.opaque > 500, `${testid}: canvas looks empty (${stats.opaque} non-transparent pixels)`);
  return stats;
}

const alertRow = (merchantId, scope = '') =>
  `${scope}[data-testid="alert-row"][data-merchant-id="${merchantId}"]`;

/** GET from the API outside the browser, as the read user. */
async function apiGet(pathAndQuery) {
  const headers = { Accept: 'application/json' };
  if (READ_USER) headers.Authorization = `Basic ${Buffer.from(`${READ_USER}:${READ_PASSWORD}`).toString('base64')}`;
  const res = await fetch(`${BASE}${pathAndQuery}`, { headers });
  assert(res.ok, `GET ${pathAndQuery}: ${res.status}`);
  return res.json();
}

/** The alert's acknowledgement as the API reports it (null when none), read outside the browser. */
async function ackOf(alertId) {
  const alert = (await apiGet(`/api/alerts?merchant=${ALERT_MERCHANT}&limit=500`)).alerts.find((a) => String(a.id) === String(alertId));
  assert(alert, `alert ${alertId} is not listed`);
  return alert.ack;
}

// "Priority, then money at stake" (GET /api/alerts?order=priority) from the
// alerts' own fields: P1 < P2 < P3 < none, then exposure (else the hour's
// canceled amount) highest first, then newest.
const RANK = { P1: 1, P2: 2, P3: 3 };
const moneyOf = (a) => a.exposure ?? a.canceled_amount_h ?? 0;
const byPriorityThenMoney = (a, b) => (RANK[a.priority] ?? 4) - (RANK[b.priority] ?? 4) || moneyOf(b) - moneyOf(a) ||
  Date.parse(b.active_at) - Date.parse(a.active_at) || b.id - a.id;
const byMoney = (a, b) => moneyOf(b) - moneyOf(a) || Date.parse(b.active_at) - Date.parse(a.active_at) || b.id - a.id;

/** The rows of an alert table: [{id, merchant, priority (data-), badge (text), badgeClass, evidence, money}] in page order. */
async function alertRows(page, scope) {
  return page.locator(`${scope} [data-testid="alert-row"]`).evaluateAll((trs) => trs.map((tr) => {
    const badge = tr.querySelector('[data-testid="priority-badge"]');
    return {
      id: tr.dataset.alertId,
      merchant: tr.dataset.merchantId,
      priority: tr.dataset.priority,
      badge: badge ? badge.textContent : null,
      badgeClass: badge ? badge.className : '',
      badgeColor: badge ? getComputedStyle(badge).backgroundColor : '',
      evidence: tr.querySelector('[data-testid="evidence"]')?.textContent ?? null,
      money: tr.querySelector('[data-testid="money"]')?.textContent ?? null,
    };
  }));
}

/**
 * Waits until the table shows exactly the alerts `want()` lists, in its
 * order (figures move with every minute, so both sides are read again until
 * they agree); returns the rows and that list.
 */
async function expectOrder(page, scope, want, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let rows;
  let list;
  for (;;) {
    list = await want();
    rows = await alertRows(page, scope);
    const got = rows.map((r) => r.id).join(',');
    if (got === list.map((a) => String(a.id)).join(',')) return { rows, list };
    if (Date.now() > deadline) {
      throw new Error(`${what}: rows ${got}, want ${list.map((a) => `${a.id}(${a.priority ?? '—'}, ₩${moneyOf(a)})`).join(', ')}`);
    }
    await page.waitForTimeout(500);
  }
}

/** Every row's badge says the API's priority ("—" for none), and evidence and money are shown. */
function expectBadges(rows, list, what) {
  const byId = new Map(list.map((a) => [String(a.id), a]));
  for (const r of rows) {
    const a = byId.get(r.id);
    assert(a, `${what}: row ${r.id} is not in the API's list`);
    const want = a.priority ?? '—';
    assert(r.badge === want, `${what}: alert ${r.id} badge ${JSON.stringify(r.badge)}, want ${want}`);
    assert(r.priority === (a.priority ?? 'none'), `${what}: alert ${r.id} data-priority ${r.priority}, want ${a.priority ?? 'none'}`);
    if (a.evidence != null) assert(r.evidence && /\d/.test(r.evidence), `${what}: alert ${r.id} shows no evidence (${JSON.stringify(r.evidence)})`);
    if (a.exposure != null) assert(r.money && r.money.includes('₩'), `${what}: alert ${r.id} shows no money at stake (${JSON.stringify(r.money)})`);
  }
}

/** The cancel-rate chart's series (data-series), same-hour points and legend labels. */
async function rateChartMeta(page) {
  return page.locator('[data-testid="chart-rate"]').evaluate((el) => ({
    series: el.dataset.series || '',
    sameHourPoints: el.dataset.sameHourPoints,
    legend: [...el.querySelectorAll('.u-legend .u-series')].map((tr) => tr.querySelector('.u-label')?.textContent || ''),
  }));
}

async function main() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({
    viewport: { width: 1400, height: 900 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    httpCredentials: READ_USER ? { username: READ_USER, password: READ_PASSWORD } : undefined,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);

  // An alert() from injected markup, or any uncaught error, fails the run.
  page.on('dialog', async (dialog) => {
    const msg = dialog.message();
    await dialog.dismiss().catch(() => {});
    await fail(`unexpected browser dialog (${dialog.type()}: ${msg}) during "${currentStep}" — XSS?`);
  });
  page.on('pageerror', (err) => fail(`page error during "${currentStep}": ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') log(`  console error: ${msg.text()}`);
  });

  let alertId = null;

  await step('1 overview shows the firing alert and live platform charts', async () => {
    await page.goto(`${BASE}/`);
    const row = page.locator(alertRow(ALERT_MERCHANT, '[data-testid="open-alerts"] ')).first();
    await row.waitFor();
    alertId = await row.getAttribute('data-alert-id');
    assert(alertId, 'alert row has no data-alert-id');
    log(`  alert ${alertId} for merchant ${ALERT_MERCHANT}`);
    if (P3_MERCHANT) await page.locator(alertRow(P3_MERCHANT, '[data-testid="open-alerts"] ')).first().waitFor();
    // Open alerts: most urgent first, then the most money at stake, exactly
    // as the API orders them, and that order is what its fields say.
    const { rows, list } = await expectOrder(page, '[data-testid="open-alerts"]',
      async () => (await apiGet('/api/alerts?state=firing&order=priority&limit=500')).alerts, 'open alerts vs ?order=priority');
    const own = [...list].sort(byPriorityThenMoney).map((a) => a.id).join(',');
    assert(own === list.map((a) => a.id).join(','), `GET /api/alerts?order=priority gave ${list.map((a) => a.id)}, by priority then money is ${own}`);
    expectBadges(rows, list, 'open alerts');
    const p1 = rows.find((r) => r.id === alertId);
    assert(p1.badge === 'P1' && /\bprio-P1\b/.test(p1.badgeClass) && p1.badgeColor === 'rgb(201, 42, 42)',
      `alert ${alertId}: badge ${JSON.stringify(p1.badge)} (${p1.badgeClass}, ${p1.badgeColor}), want a red P1`);
    log(`  open alerts: ${rows.map((r) => `${r.id} ${r.badge} evidence ${r.evidence} ${r.money}`).join(' | ')}`);
    if (P3_MERCHANT) {
      const p3 = rows.find((r) => r.merchant === P3_MERCHANT);
      assert(p3 && p3.badge === 'P3' && /\bprio-P3\b/.test(p3.badgeClass), `merchant ${P3_MERCHANT}: badge ${JSON.stringify(p3?.badge)}, want P3`);
      const money1 = moneyOf(list.find((a) => String(a.id) === alertId));
      const money3 = moneyOf(list.find((a) => String(a.id) === p3.id));
      assert(money3 > money1, `fixture: the P3 alert has ₩${money3} at stake, not more than the P1 alert's ₩${money1}`);
      assert(rows.indexOf(p1) < rows.indexOf(p3), `the P1 alert (₩${money1}) is not above the P3 alert with more money (₩${money3})`);
    }
    for (const id of ['chart-platform-counts', 'chart-platform-amounts']) {
      const s = await expectChartReady(page, id);
      log(`  ${id}: ${s.opaque} drawn pixels`);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'overview.png'), fullPage: true });
  });

  await step('2 merchant page charts and the 2× line', async () => {
    const row = page.locator(`[data-testid="open-alerts"] [data-testid="alert-row"][data-alert-id="${alertId}"]`);
    await row.locator(`a[href="/merchants/${ALERT_MERCHANT}"]`).first().click();
    await page.waitForURL((u) => new URL(u).pathname === `/merchants/${ALERT_MERCHANT}`);
    for (const id of ['chart-counts', 'chart-volume', 'chart-rate']) {
      const s = await expectChartReady(page, id);
      log(`  ${id}: ${s.opaque} drawn pixels, ${s.red} #e03131 pixels`);
    }
    // The uPlot redraw is synchronous with data-ready, but give a frame for layout changes.
    await page.waitForTimeout(200);
    const rate = await canvasStats(page, 'chart-rate');
    assert(rate.red > 20, `chart-rate: the 2× baseline line (#e03131) is not drawn (${rate.red} matching pixels)`);
    const meta = await rateChartMeta(page);
    log(`  chart-rate series ${meta.series}, ${meta.sameHourPoints} same-hour points, legend ${JSON.stringify(meta.legend)}`);
    assert(meta.series.split(' ').includes('same_hour_baseline'), `chart-rate: no same-hour series (${meta.series})`);
    assert(meta.legend.length === 5 && meta.legend.some((l) => l.startsWith('Same hours of day (7 d)')),
      `chart-rate legend: ${JSON.stringify(meta.legend)}, want time, rate, 7-day, same hours of day, 2× line`);
    for (const scope of ['[data-testid="open-alerts"]', '[data-testid="alert-history"]']) {
      await page.locator(`${scope} [data-testid="alert-row"][data-alert-id="${alertId}"]`).waitFor();
      const r = (await alertRows(page, scope)).find((x) => x.id === alertId);
      assert(r && r.badge === 'P1', `${scope}: alert ${alertId} badge ${JSON.stringify(r?.badge)}, want P1`);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'merchant.png'), fullPage: true });
    if (P3_MERCHANT) {
      // Sales every three minutes: enough history for the same hours of the day.
      await page.goto(`${BASE}/merchants/${P3_MERCHANT}`);
      await expectChartReady(page, 'chart-rate');
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-rate"]')?.dataset.sameHourPoints) > 0, null, { timeout: 15000 })
        .catch(() => {});
      const m3 = await rateChartMeta(page);
      assert(Number(m3.sameHourPoints) > 0, `merchant ${P3_MERCHANT}: no same-hour baseline points (${m3.sameHourPoints})`);
      log(`  merchant ${P3_MERCHANT}: ${m3.sameHourPoints} same-hour points`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'merchant-same-hour.png'), fullPage: true });
      await page.goto(`${BASE}/merchants/${ALERT_MERCHANT}`);
    }
  });

  await step('3 a page of another site cannot acknowledge with the operator\'s cached credentials', async () => {
    // The operator signs in with the browser's own Basic prompt, which
    // leaves the credentials in the browser for every later request to the
    // dashboard's origin, whichever site's page makes it.
    const operatorContext = await browser.newContext({
      viewport: { width: 1400, height: 900 },
      locale: 'en-US',
      httpCredentials: { username: OP_USER, password: OP_PASSWORD },
    });
    try {
      const p = await operatorContext.newPage();
      p.setDefaultTimeout(30000);
      await p.goto(`${BASE}/`);
      await p.locator(alertRow(ALERT_MERCHANT, '[data-testid="open-alerts"] ')).first().waitFor();
      // A page on another site auto-submits a text/plain form whose body is
      // the ack's JSON (the name=value trick) to the dashboard.
      const target = `${BASE}/api/alerts/${alertId}/ack`;
      const answered = p.waitForResponse((r) => r.url() === target && r.request().method() === 'POST', { timeout: 15000 });
      await p.goto(`${ATTACKER}/?alert=${alertId}`);
      const res = await answered;
      const sent = await res.request().allHeaders();
      log(`  the other site's form: Origin ${sent.origin}, Sec-Fetch-Site ${sent['sec-fetch-site']}, Content-Type ${sent['content-type']}, answered ${res.status()}`);
      // Without the cached credentials the attempt would prove nothing.
      assert((sent.authorization || '').startsWith('Basic '), 'the browser did not send its cached Basic credentials with the cross-site form');
      assert(res.status() === 403, `the cross-site form was answered ${res.status()}, want 403`);
      await p.screenshot({ path: path.join(ARTIFACTS, 'cross-site.png') });
    } finally {
      await operatorContext.close();
    }
    const ack = await ackOf(alertId);
    assert(ack == null, `the other site's form acknowledged the alert: ${JSON.stringify(ack)}`);
    log('  alert still unacknowledged');
  });

  await step('4 acknowledge with operator credentials', async () => {
    const scope = '[data-testid="open-alerts"] ';
    const rowSel = `${scope}[data-testid="alert-row"][data-alert-id="${alertId}"]`;
    const row = page.locator(rowSel);
    await row.waitFor();
    await row.locator('[data-testid="ack-button"]').click();
    await page.locator('[data-testid="ack-by"]').fill('e2e');
    await page.locator('[data-testid="ack-comment"]').fill('acknowledged by the browser test');
    await page.locator('[data-testid="ack-submit"]').click();
    // The read user may not acknowledge: the dialog asks for operator credentials.
    const user = page.locator('[data-testid="ack-user"]');
    await user.waitFor({ state: 'visible', timeout: 15000 });
    await user.fill(OP_USER);
    await page.locator('[data-testid="ack-password"]').fill(OP_PASSWORD);
    await page.locator('[data-testid="ack-submit"]').click();
    await page.waitForSelector(`${rowSel}[data-acked="true"]`, { timeout: 15000 });
    log('  acked in place');
    await page.reload();
    await page.waitForSelector(`${rowSel}[data-acked="true"]`);
    log('  still acked after reload');
    await page.goto(`${BASE}/alerts?state=firing`);
    await page.waitForSelector(`[data-testid="alert-row"][data-alert-id="${alertId}"][data-acked="true"]`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'alerts.png'), fullPage: true });
  });

  await step('4b the alerts page sorts by priority or money and filters by priority, kept in the URL', async () => {
    const scope = '[data-testid="alerts-table"]';
    const query = () => new URLSearchParams(location.search).toString();
    await page.goto(`${BASE}/alerts?state=firing`);
    await page.locator(`${scope} [data-testid="alert-row"]`).first().waitFor();
    const alertsOf = async (q) => (await apiGet(`/api/alerts?${q}&limit=100`)).alerts;
    const index = (rows, pred) => rows.findIndex(pred);

    await page.locator('[data-testid="filter-order"]').selectOption('money');
    await page.waitForFunction(() => new URLSearchParams(location.search).get('order') === 'money');
    let { rows, list } = await expectOrder(page, scope, () => alertsOf('state=firing&order=money'), 'sorted by money');
    assert(list.map((a) => a.id).join(',') === [...list].sort(byMoney).map((a) => a.id).join(','), 'GET /api/alerts?order=money is not by money at stake');
    expectBadges(rows, list, 'alerts by money');
    if (P3_MERCHANT) {
      assert(index(rows, (r) => r.merchant === P3_MERCHANT) < index(rows, (r) => r.id === alertId), 'by money, the P3 alert with more at stake is not first');
    }

    await page.locator('[data-testid="filter-order"]').selectOption('priority');
    await page.waitForFunction(() => new URLSearchParams(location.search).get('order') === 'priority');
    ({ rows, list } = await expectOrder(page, scope, () => alertsOf('state=firing&order=priority'), 'sorted by priority'));
    expectBadges(rows, list, 'alerts by priority');
    if (P3_MERCHANT) {
      assert(index(rows, (r) => r.id === alertId) < index(rows, (r) => r.merchant === P3_MERCHANT), 'by priority, the P1 alert is not above the P3 one');
    }

    await page.locator('[data-testid="filter-priority"]').selectOption('P1');
    await page.waitForFunction(() => new URLSearchParams(location.search).get('priority') === 'P1');
    ({ rows, list } = await expectOrder(page, scope, () => alertsOf('state=firing&order=priority&priority=P1'), 'P1 only'));
    assert(rows.length > 0 && rows.every((r) => r.badge === 'P1'), `P1 only: badges ${rows.map((r) => r.badge)}`);
    assert(rows.some((r) => r.id === alertId), `P1 only: alert ${alertId} is missing`);
    log(`  URL ${await page.evaluate(query)}`);

    // The URL brings the same view back.
    await page.reload();
    await page.locator(`${scope} [data-testid="alert-row"]`).first().waitFor();
    const kept = await page.evaluate(() => [document.querySelector('[data-testid="filter-order"]').value, document.querySelector('[data-testid="filter-priority"]').value]);
    assert(kept[0] === 'priority' && kept[1] === 'P1', `after a reload the selectors show ${kept}`);
    await expectOrder(page, scope, () => alertsOf('state=firing&order=priority&priority=P1'), 'P1 only after a reload');
    await page.screenshot({ path: path.join(ARTIFACTS, 'alerts-priority.png'), fullPage: true });
  });

  await step('4c the alert page: silence its merchant and expire it, comment, and see who did what', async () => {
    const audit = async () => page.locator('[data-testid="audit"] [data-testid="audit-row"]').evaluateAll((trs) => trs.map((tr) => ({
      action: tr.dataset.action, by: tr.dataset.by, silence: tr.dataset.silenceId ?? null, text: tr.textContent,
    })));
    const waitAudit = async (pred, what) => {
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="audit"] [data-testid="audit-row"]').length >= n, 1, { timeout: 15000 });
      const deadline = Date.now() + 15000;
      for (;;) {
        const rows = await audit();
        if (pred(rows)) return rows;
        assert(Date.now() < deadline, `${what}: the audit shows ${JSON.stringify(rows)}`);
        await page.waitForTimeout(200);
      }
    };
    // Operator actions ask for the operator's credentials when the tab has none.
    const signInIfAsked = async () => {
      const user = page.locator('[data-testid="op-user"]');
      if (await user.isVisible()) {
        await user.fill(OP_USER);
        await page.locator('[data-testid="op-password"]').fill(OP_PASSWORD);
        return true;
      }
      return false;
    };
    const submit = async (testid) => {
      await page.locator(`[data-testid="${testid}"]`).click();
      await page.waitForTimeout(300);
      if (await signInIfAsked()) await page.locator(`[data-testid="${testid}"]`).click();
    };

    // From the alerts list, the alert's id leads to its page.
    await page.goto(`${BASE}/alerts?state=firing`);
    await page.locator(`[data-testid="alert-row"][data-alert-id="${alertId}"] [data-testid="alert-link"]`).click();
    await page.waitForURL((u) => new URL(u).pathname === `/alerts/${alertId}`);
    await page.locator('[data-testid="alert-detail"] [data-testid="alert-row"][data-acked="true"]').waitFor();
    let rows = await waitAudit((r) => r.some((e) => e.action === 'ack'), 'the acknowledgement');
    const ack = rows.find((e) => e.action === 'ack');
    assert(ack.by === OP_USER && ack.text.includes('acknowledged by the browser test') && ack.text.includes('127.0.0.1'),
      `the ack's audit row: ${JSON.stringify(ack)}, want by ${OP_USER} with its comment and peer`);
    log(`  ack recorded: ${ack.text}`);

    // Silence the merchant's rule for an hour.
    await page.locator('[data-testid="silences"] .msg-empty').waitFor();
    await page.locator('[data-testid="silence-for"]').selectOption('1h');
    await page.locator('[data-testid="silence-reason"]').fill('merchant under review (browser test)');
    await submit('silence-submit');
    const silenceRow = page.locator('[data-testid="silences"] [data-testid="silence-row"]');
    await silenceRow.first().waitFor({ timeout: 15000 });
    const silenceId = await silenceRow.first().getAttribute('data-silence-id');
    const listed = (await apiGet(`/api/silences?merchant=${ALERT_MERCHANT}`)).silences;
    const made = listed.find((x) => String(x.id) === silenceId);
    assert(made && made.created_by === OP_USER && made.rule === 'cancel_rate_spike' && made.reason === 'merchant under review (browser test)',
      `silence ${silenceId} as the API lists it: ${JSON.stringify(listed)}`);
    const hour = Date.parse(made.ends_at) - Date.parse(made.starts_at);
    assert(hour === 3600000, `the silence lasts ${hour} ms, want an hour`);
    rows = await waitAudit((r) => r.some((e) => e.action === 'silence_create' && e.silence === silenceId), 'the silence');
    log(`  silence ${silenceId} made by ${made.created_by} until ${made.ends_at}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'alert-silenced.png'), fullPage: true });

    // Expire it from the page.
    await page.locator(`[data-testid="silence-row"][data-silence-id="${silenceId}"] [data-testid="silence-expire"]`).click();
    await page.waitForTimeout(300);
    if (await signInIfAsked()) await page.locator(`[data-testid="silence-row"][data-silence-id="${silenceId}"] [data-testid="silence-expire"]`).click();
    await page.locator(`[data-testid="silence-row"][data-silence-id="${silenceId}"]`).waitFor({ state: 'detached', timeout: 15000 });
    const left = (await apiGet(`/api/silences?merchant=${ALERT_MERCHANT}`)).silences;
    assert(!left.some((x) => String(x.id) === silenceId), `silence ${silenceId} is still in force: ${JSON.stringify(left)}`);
    rows = await waitAudit((r) => r.some((e) => e.action === 'silence_expire' && e.silence === silenceId), 'the expiry');

    // A comment.
    await page.locator('[data-testid="comment-text"]').fill('refunds match a known batch');
    await submit('comment-submit');
    rows = await waitAudit((r) => r.some((e) => e.action === 'comment'), 'the comment');
    const order = rows.map((e) => e.action).join(',');
    assert(order === 'ack,silence_create,silence_expire,comment', `the audit lists ${order}, want ack,silence_create,silence_expire,comment`);
    assert(rows.every((e) => e.by === OP_USER), `the audit names ${rows.map((e) => e.by)}, want ${OP_USER} each time`);
    const api = (await apiGet(`/api/alerts/${alertId}/audit`)).entries;
    assert(api.map((e) => e.action).join(',') === order && api.every((e) => e.via === 'basic' && e.peer === '127.0.0.1'),
      `GET /api/alerts/${alertId}/audit: ${JSON.stringify(api)}`);
    log(`  audit: ${rows.map((e) => `${e.action} by ${e.by}`).join(' | ')}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'alert.png'), fullPage: true });
  });

  await step('5 search renders a hostile merchant name as text', async () => {
    await page.goto(`${BASE}/merchants`);
    const search = page.locator('[data-testid="merchant-search"]');
    await search.fill('onerror');
    const result = page.locator(`[data-testid="search-result"][data-merchant-id="${XSS_MERCHANT}"]`);
    await result.waitFor();
    const text = await result.textContent();
    assert(text.includes(XSS_NAME), `search result text does not contain the literal name: ${JSON.stringify(text)}`);
    const imgs = await page.locator('[data-testid="search-results"] img').count();
    assert(imgs === 0, `search results contain ${imgs} <img> element(s)`);
    for (const id of ['ranking-risk', 'ranking-volume']) {
      await page.locator(`[data-testid="${id}"]`).waitFor({ state: 'visible' });
      await page.waitForSelector(`[data-testid="${id}"] table, [data-testid="${id}"] .msg-empty`);
    }
    // "Riskiest now" is ranked by evidence (the server's order), firing ones with their priority.
    const risk = await page.locator('[data-testid="ranking-risk"] [data-testid="ranking-row"]').evaluateAll((trs) => trs.map((tr) => ({
      id: tr.dataset.merchantId,
      evidence: Number(tr.dataset.evidence),
      priority: tr.dataset.priority || null,
      badge: tr.querySelector('[data-testid="priority-badge"]')?.textContent ?? null,
      shown: tr.querySelector('[data-testid="evidence"]')?.textContent ?? null,
    })));
    log(`  riskiest: ${risk.slice(0, 4).map((r) => `${r.id} ${r.badge ?? '-'} evidence ${r.shown}`).join(' | ')}`);
    assert(risk.length > 0 && risk[0].id === ALERT_MERCHANT, `riskiest now starts with ${risk[0]?.id}, want ${ALERT_MERCHANT}`);
    for (let i = 1; i < risk.length; i++) {
      assert(risk[i - 1].evidence >= risk[i].evidence, `riskiest now: #${i} evidence ${risk[i - 1].evidence} < #${i + 1} evidence ${risk[i].evidence}`);
    }
    assert(risk[0].badge === 'P1' && risk[0].priority === 'P1' && /\d/.test(risk[0].shown), `riskiest now: ${JSON.stringify(risk[0])}, want a P1 badge and its evidence`);
    if (P3_MERCHANT) {
      const r3 = risk.find((r) => r.id === P3_MERCHANT);
      assert(r3 && r3.badge === 'P3', `riskiest now: merchant ${P3_MERCHANT} ${JSON.stringify(r3)}, want a P3 badge`);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'merchants.png'), fullPage: true });
    await result.locator(`a[href="/merchants/${XSS_MERCHANT}"]`).click();
    await page.waitForURL((u) => new URL(u).pathname === `/merchants/${XSS_MERCHANT}`);
    const title = page.locator('[data-testid="merchant-name"]');
    await page.waitForFunction((lit) => document.querySelector('[data-testid="merchant-name"]')?.textContent.includes(lit), XSS_NAME);
    assert((await title.locator('img').count()) === 0, 'merchant title contains an <img> element');
    assert((await page.locator('main img').count()) === 0, 'the merchant page contains an <img> element');
  });

  await step('6 Korean', async () => {
    await page.goto(`${BASE}/merchants/${ALERT_MERCHANT}`);
    await page.locator('[data-testid="merchant-name"]').waitFor();
    await page.locator('[data-testid="lang-switch"]').click();
    await page.waitForFunction(() => document.documentElement.lang === 'ko');
    const nav = await page.locator('header nav').textContent();
    assert(nav.includes('가맹점'), `nav is not Korean: ${JSON.stringify(nav)}`);
    await expectChartReady(page, 'chart-rate');
    await expectChartReady(page, 'chart-volume');
    const legend = (await rateChartMeta(page)).legend;
    assert(legend.some((l) => l.startsWith('같은 시간대 기준선')) && legend.some((l) => l.startsWith('7일 기준선')), `Korean legend: ${JSON.stringify(legend)}`);
    await page.locator(`[data-testid="open-alerts"] [data-alert-id="${alertId}"] [data-testid="priority-badge"]`).waitFor();
    const head = await page.locator('[data-testid="open-alerts"] thead').textContent();
    for (const word of ['우선순위', '근거 강도', '위험 금액']) assert(head.includes(word), `Korean alert columns: ${JSON.stringify(head)} lacks ${word}`);
    const tip = await page.locator(`[data-testid="open-alerts"] [data-alert-id="${alertId}"] [data-testid="priority-badge"]`).getAttribute('title');
    assert(tip === 'P1 — 즉시 호출', `Korean P1 tooltip: ${JSON.stringify(tip)}`);
    const moneyTip = await page.locator('[data-testid="open-alerts"] th.has-help').last().getAttribute('title');
    assert(moneyTip.includes('위험 노출 금액') && moneyTip.includes('최근 1시간 취소 금액'), `Korean money help: ${JSON.stringify(moneyTip)}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'merchant-ko.png'), fullPage: true });
    await page.locator('[data-testid="lang-switch"]').click();
    await page.waitForFunction(() => document.documentElement.lang === 'en');
    const navEn = await page.locator('header nav').textContent();
    assert(navEn.includes('Merchants'), `nav did not switch back to English: ${JSON.stringify(navEn)}`);
  });

  await step('7 a new alert arrives over SSE without a reload', async () => {
    await page.goto(`${BASE}/`);
    await page.locator('[data-testid="open-alerts"]').waitFor();
    await page.waitForSelector('[data-testid="pipeline-status"].pill-ok, [data-testid="pipeline-status"].pill-warn', { timeout: 30000 });
    await page.evaluate(() => {
      window.__noReload = 1;
    });
    log('SSE-READY');
    await page.waitForSelector(alertRow(SSE_MERCHANT, '[data-testid="open-alerts"] '), { timeout: 150000 });
    const flag = await page.evaluate(() => window.__noReload);
    assert(flag === 1, 'the page was reloaded (window.__noReload is gone)');
    // Pushed in where priority then money puts it, with its badge.
    const { rows, list } = await expectOrder(page, '[data-testid="open-alerts"]',
      async () => (await apiGet('/api/alerts?state=firing&limit=500')).alerts.sort(byPriorityThenMoney), 'open alerts with the pushed one');
    expectBadges(rows, list, 'open alerts with the pushed one');
    const pushed = rows.find((r) => r.merchant === SSE_MERCHANT);
    assert(pushed && /^P[123]$/.test(pushed.badge), `the pushed alert's badge: ${JSON.stringify(pushed?.badge)}`);
    log(`  open alerts: ${rows.map((r) => `${r.id} ${r.badge} ${r.money}`).join(' | ')}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'overview-live.png'), fullPage: true });
  });

  await step('8 a stuck pipeline shows a red banner on every page until it moves again', async () => {
    const banner = page.locator('[data-testid="stuck-banner"]');
    await page.goto(`${BASE}/alerts`);
    await page.locator('[data-testid="pipeline-status"].pill-ok').waitFor({ timeout: 60000 });
    assert((await banner.count()) === 0, 'the stuck banner shows while the pipeline moves');
    log('STUCK-READY');
    await banner.waitFor({ state: 'visible', timeout: 120000 });
    const text = await banner.textContent();
    log(`  banner: ${text}`);
    assert(/^Pipeline stuck since \d\d:\d\d — \d+ failures at position \S+: .*injected failure/.test(text), `banner text: ${JSON.stringify(text)}`);
    const red = await banner.evaluate((el) => getComputedStyle(el).backgroundColor);
    assert(red === 'rgb(201, 42, 42)', `banner background ${red}, want the dashboard's red`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'stuck.png'), fullPage: true });
    // Every page shows it from its first status, not only the one that was open.
    for (const p of ['/', `/merchants/${ALERT_MERCHANT}`, '/merchants']) {
      await page.goto(`${BASE}${p}`);
      await banner.waitFor({ state: 'visible' });
    }
    await page.locator('[data-testid="lang-switch"]').click();
    await page.waitForFunction(() => document.documentElement.lang === 'ko');
    const ko = await banner.textContent();
    assert(ko.startsWith('파이프라인 정지:') && ko.includes('injected failure'), `Korean banner: ${JSON.stringify(ko)}`);
    await page.locator('[data-testid="lang-switch"]').click();
    await page.waitForFunction(() => document.documentElement.lang === 'en');
    log('UNSTICK');
    await banner.waitFor({ state: 'detached', timeout: 120000 });
    log('  banner gone once the pipeline moved again');
  });

  await browser.close();
  log('PASS');
  process.exit(0);
}

main().catch((err) => fail(`${currentStep}: ${err && err.stack ? err.stack : err}`));
