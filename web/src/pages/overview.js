// Overview: live platform totals per minute (last 3 hours) and the open alerts.

import { api, events } from '../api.js';
import { h, replace, message, debounce } from '../dom.js';
import { t } from '../i18n.js';
import { fmtInt, fmtKRW, fmtKRWCompact, fmtCompact, fmtPct, fmtDateTime } from '../format.js';
import { createChart, pairScales, line, yAxis, COLORS } from '../charts.js';
import { AlertTable } from '../alerts-ui.js';

const WINDOW_SECONDS = 3 * 3600;

export function mount(root, ctx) {
  document.title = `${t('nav.overview')} · riskwatch`;

  const countsBox = h('div', { dataset: { testid: 'chart-platform-counts' } }, message('loading', t('loading')));
  const amountsBox = h('div', { dataset: { testid: 'chart-platform-amounts' } }, message('loading', t('loading')));
  const chartError = h('div');
  const kpis = h('div', { class: 'kpis' });
  const alertsError = h('div');
  const alertCount = h('span', { class: 'count' });
  // Most urgent first, then the most money at stake (as the API orders them).
  const table = new AlertTable({
    columns: ['priority', 'rule', 'merchant', 'since', 'evidence', 'money', 'values', 'ack'],
    emptyText: t('overview.noAlerts'),
    testid: 'open-alerts',
    order: 'priority',
  });
  const alertsLoading = message('loading', t('loading'));

  replace(root,
    h('div', { class: 'page-head' },
      h('h1', null, t('overview.title')),
      h('p', { class: 'sub' }, t('overview.subtitle'))),
    kpis,
    chartError,
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, h('h2', null, t('overview.countsChart')), countsBox),
      h('div', { class: 'card' }, h('h2', null, t('overview.amountsChart')), amountsBox)),
    h('div', { class: 'card' },
      h('h2', null, t('overview.openAlerts'), ' ', alertCount),
      alertsError, alertsLoading, table.el));

  // -- platform charts --------------------------------------------------------
  let data = null; // {t, approvals, approved_amount, cancels, canceled_amount}
  let counts = null;
  let amounts = null;
  let loadingPlatform = false;

  const toCounts = () => [data.t, data.approvals, data.cancels];
  const toAmounts = () => [data.t, data.approved_amount, data.canceled_amount];

  function drawCharts() {
    if (!counts) {
      counts = createChart(countsBox, {
        height: 240,
        scales: pairScales(),
        series: [
          line(t('series.approvals'), COLORS.approvals, { scale: 'a', fill: 'rgba(28,126,214,0.07)', value: (u, v) => fmtInt(v) }),
          line(t('series.cancels'), COLORS.cancels, { scale: 'c', value: (u, v) => fmtInt(v) }),
        ],
        axes: [yAxis(fmtCompact, { scale: 'a', stroke: COLORS.approvals }), yAxis(fmtCompact, { scale: 'c', side: 1, stroke: COLORS.cancels, grid: { show: false } })],
        data: toCounts(),
        syncKey: 'platform',
      });
      amounts = createChart(amountsBox, {
        height: 240,
        scales: pairScales(),
        series: [
          line(t('series.approvedAmount'), COLORS.approvals, { scale: 'a', fill: 'rgba(28,126,214,0.07)', value: (u, v) => fmtKRW(v) }),
          line(t('series.canceledAmount'), COLORS.cancels, { scale: 'c', value: (u, v) => fmtKRW(v) }),
        ],
        axes: [yAxis(fmtKRWCompact, { scale: 'a', stroke: COLORS.approvals }), yAxis(fmtKRWCompact, { scale: 'c', side: 1, stroke: COLORS.cancels, grid: { show: false } })],
        data: toAmounts(),
        syncKey: 'platform',
      });
      counts.setEmptyText(t('chart.noData'));
      amounts.setEmptyText(t('chart.noData'));
    } else {
      counts.setData(toCounts());
      amounts.setData(toAmounts());
    }
    renderKpis();
  }

  function renderKpis() {
    const n = data.t.length;
    if (!n) {
      replace(kpis);
      return;
    }
    const i = n - 1;
    const sum = (arr, from) => arr.slice(from).reduce((s, v) => s + (v || 0), 0);
    const from60 = Math.max(0, n - 60);
    const a60 = sum(data.approvals, from60);
    const c60 = sum(data.cancels, from60);
    const kpi = (label, value, cls) => h('div', { class: ['kpi', cls] }, h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value));
    replace(kpis,
      kpi(t('kpi.lastMinute'), fmtDateTime(data.t[i] * 1000)),
      kpi(t('kpi.approvals'), fmtInt(data.approvals[i]), 'kpi-blue'),
      kpi(t('kpi.cancels'), fmtInt(data.cancels[i]), 'kpi-orange'),
      kpi(t('kpi.approvedAmount'), fmtKRW(data.approved_amount[i]), 'kpi-blue'),
      kpi(t('kpi.canceledAmount'), fmtKRW(data.canceled_amount[i]), 'kpi-orange'),
      kpi(t('kpi.cancelRate1h'), a60 ? fmtPct(c60 / a60) : '—'));
  }

  async function loadPlatform() {
    if (loadingPlatform) return;
    loadingPlatform = true;
    try {
      const res = await api.platformMinutes();
      if (destroyed) return;
      data = {
        t: res.t || [],
        approvals: res.approvals || [],
        approved_amount: res.approved_amount || [],
        cancels: res.cancels || [],
        canceled_amount: res.canceled_amount || [],
      };
      replace(chartError);
      drawCharts();
    } catch (err) {
      if (destroyed) return;
      replace(chartError, message('error', `${t('error.load')}: ${err.message}`));
      if (!counts) {
        replace(countsBox, message('error', err.message));
        replace(amountsBox, message('error', err.message));
      }
    } finally {
      loadingPlatform = false;
    }
  }

  // Appends one closed minute from SSE; a gap (after a catch-up) means a refetch.
  function onMinute(ev) {
    if (!data || !counts) return;
    const n = data.t.length;
    const last = n ? data.t[n - 1] : null;
    if (last != null && ev.t <= last) {
      const i = data.t.indexOf(ev.t);
      if (i < 0) return;
      for (const k of ['approvals', 'approved_amount', 'cancels', 'canceled_amount']) data[k][i] = ev[k];
    } else if (last == null || ev.t === last + 60) {
      data.t.push(ev.t);
      for (const k of ['approvals', 'approved_amount', 'cancels', 'canceled_amount']) data[k].push(ev[k] ?? 0);
      // Keep the 3-hour window.
      let drop = 0;
      while (drop < data.t.length && data.t[drop] <= ev.t - WINDOW_SECONDS) drop++;
      if (drop) for (const k of Object.keys(data)) data[k].splice(0, drop);
    } else {
      loadPlatform();
      return;
    }
    drawCharts();
  }

  // -- open alerts -----------------------------------------------------------
  async function loadAlerts() {
    try {
      const res = await api.alerts({ state: 'firing', order: 'priority', limit: 500 });
      if (destroyed) return;
      alertsLoading.remove();
      replace(alertsError);
      table.setAlerts(res.alerts || []);
      updateCount();
    } catch (err) {
      if (destroyed) return;
      alertsLoading.remove();
      replace(alertsError, message('error', `${t('error.load')}: ${err.message}`));
    }
  }
  const refreshAlerts = debounce(loadAlerts, 800);

  function updateCount() {
    const firing = [...table.rows.values()].filter((r) => r.alert.state === 'firing').length;
    alertCount.textContent = String(firing);
    alertCount.className = firing ? 'count count-firing' : 'count';
  }

  const resolvedTimers = new Set();
  function onAlert(ev) {
    if (ev.transition === 'firing' || (ev.transition === 'escalated' && !table.has(ev.id))) {
      const { transition, ...alert } = ev;
      table.upsert(alert, { flash: true, transition });
    } else if (ev.transition === 'resolved') {
      if (!table.has(ev.id)) return;
      // Mark it for a while so the operator sees what happened, then drop it.
      table.update(ev);
      const timer = setTimeout(() => {
        resolvedTimers.delete(timer);
        table.remove(ev.id);
        updateCount();
      }, 30000);
      resolvedTimers.add(timer);
    } else {
      table.update(ev);
    }
    updateCount();
  }

  let destroyed = false;
  const unsubs = [
    events.on('minute', (ev) => {
      onMinute(ev);
      refreshAlerts(); // values of still-firing alerts are not pushed
    }),
    events.on('alert', onAlert),
    events.on('reconnect', () => {
      loadPlatform();
      loadAlerts();
    }),
  ];

  loadPlatform();
  loadAlerts();

  return {
    unmount() {
      destroyed = true;
      unsubs.forEach((u) => u());
      refreshAlerts.cancel();
      resolvedTimers.forEach(clearTimeout);
      table.destroy();
      counts?.destroy();
      amounts?.destroy();
    },
  };
}
