// One merchant: open alerts, the series charts over a chosen range (synced
// cursors and zoom), the cancel-rate chart with its rule lines and alert
// periods, the alert history, and today's cumulative volume against the
// expected same-time curve.

import { api, events } from '../api.js';
import { h, replace, message, debounce } from '../dom.js';
import { t } from '../i18n.js';
import {
  fmtInt, fmtKRW, fmtKRWCompact, fmtCompact, fmtPct, fmtDateTime, fmtDay,
  toZonedInput, fromZonedInput, zonedParts, getTimeZone,
} from '../format.js';
import { createChart, pairScales, linkZoom, bandsPlugin, line, thresholdLine, yAxis, COLORS, BAND_COLORS } from '../charts.js';
import { AlertTable } from '../alerts-ui.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const RELATIVE = { '1h': HOUR, '24h': DAY, '7d': 7 * DAY };
const STEP_MS = { '1m': MIN, '1h': HOUR, '1d': DAY };
const MAX_POINTS = 20000; // the API refuses more (400)

/** RFC 3339 in UTC without fractional seconds, as the API documents. */
const rfc3339 = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Start of the bucket containing ms, in the business zone. */
function floorToStep(ms, step) {
  if (step === '1m') return Math.floor(ms / MIN) * MIN;
  const p = zonedParts(ms);
  if (step === '1h') return ms - ((p.minute * 60 + p.second) * 1000 + (ms % 1000));
  const day = `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}T00:00`;
  return fromZonedInput(day);
}
function ceilToStep(ms, step) {
  const f = floorToStep(ms, step);
  if (f === ms) return ms;
  // next bucket start: step forward from the floor (+ a little for DST days) and floor again
  return floorToStep(f + STEP_MS[step] + (step === '1d' ? 2 * HOUR : 0), step);
}

export function mount(root, ctx) {
  const id = ctx.params.id;
  let destroyed = false;
  const status = () => ctx.status() || {};
  const multiplier = status().rules?.cancel_rate_spike?.multiplier ?? 2;

  // -- state (range reflected in the URL query) --------------------------------
  const q = ctx.query;
  const state = {
    range: ['1h', '24h', '7d', 'custom'].includes(q.get('range')) ? q.get('range') : '24h',
    step: ['1m', '1h', '1d'].includes(q.get('step')) ? q.get('step') : 'auto',
    customFrom: q.get('from') || '',
    customTo: q.get('to') || '',
    day: q.get('day') || '', // '' follows the current business day
  };

  function syncURL() {
    const p = new URLSearchParams();
    if (state.range !== '24h') p.set('range', state.range);
    if (state.step !== 'auto') p.set('step', state.step);
    if (state.range === 'custom') {
      p.set('from', state.customFrom);
      p.set('to', state.customTo);
    }
    if (state.day) p.set('day', state.day);
    const url = `/merchants/${id}${p.toString() ? `?${p}` : ''}`;
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
  }

  /** The last closed minute's end (exclusive range end for relative ranges). */
  function liveEnd() {
    const s = status();
    const last = s.last_closed_minute ? Date.parse(s.last_closed_minute) : Math.floor(Date.now() / MIN) * MIN - MIN;
    return last + MIN;
  }

  /** {from, to, step} in ms for the API, or {error}. */
  function window_() {
    let from;
    let to;
    if (state.range === 'custom') {
      from = fromZonedInput(state.customFrom);
      to = fromZonedInput(state.customTo);
      if (from == null || to == null) return { error: t('range.invalid') };
      if (to <= from) return { error: t('range.order') };
    } else {
      to = liveEnd();
      from = to - RELATIVE[state.range];
    }
    let step = state.step;
    if (step === 'auto') step = to - from <= 8 * DAY ? '1m' : '1h';
    if (step !== '1m') {
      from = floorToStep(from, step);
      to = ceilToStep(to, step);
    }
    if ((to - from) / STEP_MS[step] > MAX_POINTS) return { error: t('range.tooMany', { max: fmtInt(MAX_POINTS) }) };
    return { from, to, step };
  }

  // -- layout ---------------------------------------------------------------
  const nameEl = h('h1', { class: 'merchant-title', dataset: { testid: 'merchant-name' } }, t('loading'));
  const headError = h('div');
  const openTable = new AlertTable({
    columns: ['priority', 'rule', 'since', 'evidence', 'money', 'values', 'ack'],
    emptyText: t('merchant.noOpenAlerts'),
    testid: 'open-alerts',
    order: 'priority',
  });
  const historyTable = new AlertTable({
    columns: ['priority', 'rule', 'from', 'to', 'state', 'evidence', 'money', 'values', 'ack'],
    emptyText: t('merchant.noHistory'),
    testid: 'alert-history',
  });

  const rangeButtons = {};
  for (const r of ['1h', '24h', '7d', 'custom']) {
    rangeButtons[r] = h('button', {
      type: 'button', class: 'seg', dataset: { testid: `range-${r}` },
      onclick: () => chooseRange(r),
    }, t(`range.${r}`));
  }
  const stepButtons = {};
  for (const s of ['auto', '1m', '1h', '1d']) {
    stepButtons[s] = h('button', {
      type: 'button', class: 'seg', dataset: { testid: `step-${s}` },
      onclick: () => {
        state.step = s;
        reloadSeries({ resetZoom: true });
      },
    }, s === 'auto' ? t('step.auto') : s);
  }
  const fromInput = h('input', { type: 'datetime-local', step: 60, dataset: { testid: 'range-from' }, 'aria-label': t('range.from') });
  const toInput = h('input', { type: 'datetime-local', step: 60, dataset: { testid: 'range-to' }, 'aria-label': t('range.to') });
  const applyBtn = h('button', {
    type: 'button', class: 'btn btn-small', dataset: { testid: 'range-apply' },
    onclick: () => {
      state.customFrom = fromInput.value;
      state.customTo = toInput.value;
      reloadSeries({ resetZoom: true });
    },
  }, t('range.apply'));
  const customBox = h('div', { class: 'custom-range', hidden: true },
    h('label', null, t('range.from'), ' ', fromInput), h('label', null, t('range.to'), ' ', toInput), applyBtn,
    h('span', { class: 'muted small' }, getTimeZone()));
  const rangeInfo = h('div', { class: 'range-info muted' });
  const seriesError = h('div');

  const countsBox = h('div', { dataset: { testid: 'chart-counts' } }, message('loading', t('loading')));
  const amountsBox = h('div', { dataset: { testid: 'chart-amounts' } }, message('loading', t('loading')));
  const rateBox = h('div', { dataset: { testid: 'chart-rate' } }, message('loading', t('loading')));
  const baselineNote = h('span', { class: 'muted small' });

  const dayInput = h('input', {
    type: 'date', dataset: { testid: 'volume-day' }, 'aria-label': t('volume.day'),
    onchange: () => {
      state.day = dayInput.value || '';
      if (state.day === currentBusinessDay()) state.day = '';
      syncURL();
      loadVolume();
    },
  });
  const todayBtn = h('button', {
    type: 'button', class: 'btn btn-small',
    onclick: () => {
      state.day = '';
      syncURL();
      loadVolume();
    },
  }, t('volume.today'));
  const volumeNote = h('div', { class: 'volume-note' });
  const volumeError = h('div');
  const volumeBox = h('div', { dataset: { testid: 'chart-volume' } }, message('loading', t('loading')));

  replace(root,
    h('div', { class: 'page-head' },
      h('p', { class: 'crumbs' }, h('a', { href: '/merchants' }, t('nav.merchants')), ' / ', `#${id}`),
      nameEl),
    headError,
    h('div', { class: 'card' }, h('h2', null, t('merchant.openAlerts')), openTable.el),
    h('div', { class: 'toolbar card' },
      h('div', { class: 'seg-group', role: 'group', 'aria-label': t('range.label') },
        h('span', { class: 'seg-label' }, t('range.label')), Object.values(rangeButtons)),
      h('div', { class: 'seg-group', role: 'group', 'aria-label': t('step.label') },
        h('span', { class: 'seg-label' }, t('step.label')), Object.values(stepButtons)),
      customBox,
      rangeInfo),
    seriesError,
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('merchant.countsChart')), h('span', { class: 'muted small' }, t('range.zoomHint'))),
      countsBox),
    h('div', { class: 'card' }, h('h2', null, t('merchant.amountsChart')), amountsBox),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('merchant.rateChart')), baselineNote),
      rateBox,
      h('div', { class: 'legend-extra' },
        h('span', { class: 'swatch swatch-band-cancel' }), t('merchant.bandCancel'),
        h('span', { class: 'swatch swatch-band-volume' }), t('merchant.bandVolume'))),
    h('div', { class: 'card' }, h('h2', null, t('merchant.history')), historyTable.el),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('merchant.volumeChart')),
        h('div', { class: 'day-picker' }, h('label', null, t('volume.day'), ' ', dayInput), todayBtn)),
      volumeNote, volumeError, volumeBox));

  // -- merchant + open alerts ---------------------------------------------------
  let merchantName = null;
  async function loadMerchant() {
    try {
      const m = await api.merchant(id);
      if (destroyed) return;
      merchantName = m.name || '';
      // The name is merchant-supplied: text nodes only.
      replace(nameEl,
        h('span', { class: 'name' }, m.name ? m.name : t('merchant.unnamed')),
        h('span', { class: 'merchant-id mono' }, `#${m.id}`));
      document.title = `${m.name || `#${m.id}`} · riskwatch`;
      replace(headError);
      openTable.setAlerts((m.open_alerts || []).map((a) => ({ ...a, merchant_name: a.merchant_name ?? m.name })));
    } catch (err) {
      if (destroyed) return;
      if (merchantName == null) replace(nameEl, `#${id}`);
      replace(headError, message('error', `${t('error.load')}: ${err.message}`));
    }
  }

  // -- series charts ----------------------------------------------------------
  let charts = null; // {counts, amounts, rate}
  let series = null; // last response
  let seriesBusy = false;
  let seriesPending = false;

  const alertBands = () => (series?.alerts || []).map((a) => ({
    from: Date.parse(a.active_at) / 1000,
    to: a.resolved_at ? Date.parse(a.resolved_at) / 1000 : null,
    color: BAND_COLORS[a.rule] || BAND_COLORS.cancel_rate_spike,
  }));

  // The rate chart's series after x, in the order of rateData (the test reads data-series).
  const RATE_SERIES = ['rate_h', 'effective_baseline', 'same_hour_baseline', 'alert_line'];
  const rateData = (res) => [res.t, ...RATE_SERIES.map((k) => res[k] || res.t.map(() => null))];
  const markRate = (res) => {
    rateBox.dataset.series = RATE_SERIES.join(' ');
    rateBox.dataset.sameHourPoints = String((res.same_hour_baseline || []).filter((v) => v != null).length);
  };

  function buildCharts(res) {
    const syncKey = `merchant-${id}`;
    const counts = createChart(countsBox, {
      height: 200,
      syncKey,
      scales: pairScales(),
      series: [
        line(t('series.approvals'), COLORS.approvals, { scale: 'a', fill: 'rgba(28,126,214,0.07)', value: (u, v) => fmtInt(v) }),
        line(t('series.cancels'), COLORS.cancels, { scale: 'c', value: (u, v) => fmtInt(v) }),
      ],
      axes: [yAxis(fmtCompact, { scale: 'a', stroke: COLORS.approvals }), yAxis(fmtCompact, { scale: 'c', side: 1, stroke: COLORS.cancels, grid: { show: false } })],
      data: [res.t, res.approvals, res.cancels],
    });
    const amounts = createChart(amountsBox, {
      height: 200,
      syncKey,
      scales: pairScales(),
      series: [
        line(t('series.approvedAmount'), COLORS.approvals, { scale: 'a', fill: 'rgba(28,126,214,0.07)', value: (u, v) => fmtKRW(v) }),
        line(t('series.canceledAmount'), COLORS.cancels, { scale: 'c', value: (u, v) => fmtKRW(v) }),
      ],
      axes: [yAxis(fmtKRWCompact, { scale: 'a', stroke: COLORS.approvals }), yAxis(fmtKRWCompact, { scale: 'c', side: 1, stroke: COLORS.cancels, grid: { show: false } })],
      data: [res.t, res.approved_amount, res.canceled_amount],
    });
    const pct = (v) => fmtPct(v, v != null && Math.abs(v) < 0.1 ? 2 : 1);
    const rate = createChart(rateBox, {
      height: 240,
      syncKey,
      scales: { p: { range: (u, min, max) => [0, Math.max(max || 0, 0.01) * 1.1] } },
      series: [
        line(t('series.rate'), COLORS.rate, { scale: 'p', width: 1.75, value: (u, v) => fmtPct(v) }),
        line(t('series.baseline'), COLORS.baseline, { scale: 'p', value: (u, v) => fmtPct(v) }),
        line(t('series.sameHour'), COLORS.sameHour, { scale: 'p', dash: [2, 3], value: (u, v) => fmtPct(v) }),
        { ...thresholdLine(t('series.alertLine', { m: multiplier }), (v) => fmtPct(v)), scale: 'p' },
      ],
      // A right axis too, so the plot area lines up with the dual-axis charts above.
      axes: [yAxis(pct, { scale: 'p' }), yAxis(pct, { scale: 'p', side: 1, grid: { show: false } })],
      data: rateData(res),
      plugins: [bandsPlugin(alertBands)],
    });
    for (const c of [counts, amounts, rate]) c.setEmptyText(t('chart.noData'));
    linkZoom([counts, amounts, rate]);
    charts = { counts, amounts, rate };
  }

  function applySeries(res, { resetZoom }) {
    series = res;
    if (!charts) buildCharts(res);
    else {
      const keepZoom = !resetZoom;
      charts.counts.setData([res.t, res.approvals, res.cancels], { keepZoom });
      charts.amounts.setData([res.t, res.approved_amount, res.canceled_amount], { keepZoom });
      charts.rate.setData(rateData(res), { keepZoom });
    }
    markRate(res);
    const src = res.baseline_source;
    baselineNote.textContent = [
      src ? t('merchant.baselineSource', { src: t(`baseline.${src}`, null, src) }) : '',
      res.t.length && rateBox.dataset.sameHourPoints === '0' ? t('merchant.sameHourNone') : '',
    ].filter(Boolean).join(' · ');
    baselineNote.title = t('merchant.sameHourHelp');
    historyTable.setAlerts((res.alerts || []).map((a) => ({ ...a, merchant_name: a.merchant_name ?? merchantName })));
  }

  function renderControls(win) {
    for (const [r, b] of Object.entries(rangeButtons)) b.classList.toggle('on', state.range === r);
    for (const [s, b] of Object.entries(stepButtons)) b.classList.toggle('on', state.step === s);
    if (win && !win.error) stepButtons.auto.textContent = `${t('step.auto')}${state.step === 'auto' ? ` (${win.step})` : ''}`;
    customBox.hidden = state.range !== 'custom';
    if (win && !win.error) {
      const points = Math.round((win.to - win.from) / STEP_MS[win.step]);
      rangeInfo.textContent = t('range.info', {
        from: fmtDateTime(win.from), to: fmtDateTime(win.to), tz: getTimeZone(), step: win.step, n: fmtInt(points),
      });
      rangeInfo.title = t('range.zoomHint');
    } else {
      rangeInfo.textContent = '';
    }
  }

  function chooseRange(r) {
    if (r === 'custom' && state.range !== 'custom') {
      // Start the custom range from what is on screen.
      const win = window_();
      if (!win.error) {
        state.customFrom = toZonedInput(win.from);
        state.customTo = toZonedInput(win.to);
      }
    }
    state.range = r;
    state.step = 'auto';
    reloadSeries({ resetZoom: true });
  }

  /** Fetches the series for the current state; coalesces overlapping calls. */
  async function reloadSeries({ resetZoom = false } = {}) {
    syncURL();
    if (state.range === 'custom') {
      fromInput.value = state.customFrom;
      toInput.value = state.customTo;
    }
    const win = window_();
    renderControls(win);
    if (win.error) {
      replace(seriesError, message('error', win.error));
      return;
    }
    if (seriesBusy) {
      seriesPending = resetZoom ? 'reset' : seriesPending || true;
      return;
    }
    seriesBusy = true;
    for (const box of [countsBox, amountsBox, rateBox]) box.classList.add('is-loading');
    try {
      const res = await api.merchantSeries(id, {
        from: rfc3339(win.from),
        to: rfc3339(win.to),
        step: win.step,
      });
      if (destroyed) return;
      replace(seriesError);
      applySeries(res, { resetZoom });
    } catch (err) {
      if (destroyed) return;
      replace(seriesError, message('error', `${t('error.load')}: ${err.message}`));
      if (!charts) for (const box of [countsBox, amountsBox, rateBox]) replace(box, message('error', err.message));
    } finally {
      seriesBusy = false;
      for (const box of [countsBox, amountsBox, rateBox]) box.classList.remove('is-loading');
      if (seriesPending && !destroyed) {
        const reset = seriesPending === 'reset';
        seriesPending = false;
        reloadSeries({ resetZoom: reset });
      }
    }
  }

  // -- volume (SPEC §6) -------------------------------------------------------
  let volumeChart = null;
  let volumeBusy = false;
  const currentBusinessDay = () => fmtDay(liveEnd() - MIN);

  function renderVolumeNote(res) {
    const tdy = res.today || [];
    const exp = res.expected || [];
    let i = tdy.length - 1;
    while (i >= 0 && tdy[i] == null) i--;
    const parts = [];
    if (res.large) {
      parts.push(h('span', { class: 'badge badge-large' }, t('volume.large')),
        ' ', t('volume.largeText', { avg: fmtKRW(res.daily_avg), min: fmtKRW(res.large_daily_amount) }));
    } else {
      parts.push(h('span', { class: 'badge badge-muted' }, t('volume.notLarge')),
        ' ', t('volume.notLargeText', { avg: fmtKRW(res.daily_avg), min: fmtKRW(res.large_daily_amount) }));
    }
    if (i >= 0) {
      const drop = exp[i] ? 1 - tdy[i] / exp[i] : null;
      const complete = i === tdy.length - 1; // a past day: the whole day is in
      parts.push(h('div', { class: 'volume-now' },
        complete
          ? t('volume.endOfDay', { day: res.day, today: fmtKRW(tdy[i]), expected: fmtKRW(exp[i]) })
          : t('volume.now', { time: fmtDateTime((res.t[i] + 60) * 1000), today: fmtKRW(tdy[i]), expected: fmtKRW(exp[i]) }),
        drop != null ? h('strong', { class: drop >= (res.drop_ratio ?? 0.5) ? 'text-red' : null }, ` · ${t('volume.drop', { drop: fmtPct(drop, 1) })}`) : null));
    }
    replace(volumeNote, parts);
  }

  async function loadVolume() {
    if (volumeBusy) return;
    volumeBusy = true;
    volumeBox.classList.add('is-loading');
    try {
      const res = await api.merchantVolume(id, state.day || undefined);
      if (destroyed) return;
      replace(volumeError);
      dayInput.value = res.day || '';
      dayInput.max = currentBusinessDay();
      // The API draws only days whose minutes are within the retention.
      const keep = status().retention_seconds;
      if (keep) dayInput.min = fmtDay(liveEnd() - keep * 1000);
      const data = [res.t || [], res.today || [], res.expected || [], res.alert_line || []];
      if (!volumeChart) {
        const keep = 1 - (res.drop_ratio ?? 0.5);
        volumeChart = createChart(volumeBox, {
          height: 260,
          series: [
            line(t('series.todayCum'), COLORS.today, { width: 2, value: (u, v) => fmtKRW(v) }),
            line(t('series.expected'), COLORS.expected, { width: 1.5, value: (u, v) => fmtKRW(v) }),
            thresholdLine(t('series.dropLine', { p: fmtPct(keep, 0) }), fmtKRW),
          ],
          axes: [yAxis(fmtKRWCompact), yAxis(fmtKRWCompact, { side: 1, grid: { show: false } })],
          data,
        });
        volumeChart.setEmptyText(t('chart.noData'));
      } else {
        volumeChart.setData(data, { keepZoom: false });
      }
      renderVolumeNote(res);
    } catch (err) {
      if (destroyed) return;
      replace(volumeError, message('error', `${t('error.load')}: ${err.message}`));
      if (!volumeChart) replace(volumeBox, message('error', err.message));
    } finally {
      volumeBusy = false;
      volumeBox.classList.remove('is-loading');
    }
  }

  // -- live updates -------------------------------------------------------------
  const refreshAfterAlert = debounce(() => {
    loadMerchant();
    reloadSeries();
  }, 500);

  const unsubs = [
    events.on('minute', () => {
      // Relative ranges slide with the clock; a custom range stays put.
      if (state.range !== 'custom') reloadSeries();
      loadMerchant(); // refreshed values of open alerts
      if (!state.day) loadVolume();
    }),
    events.on('alert', (ev) => {
      if (String(ev.merchant_id) !== String(id)) return;
      const { transition, ...alert } = ev;
      if (transition === 'firing') openTable.upsert({ ...alert, merchant_name: alert.merchant_name ?? merchantName }, { flash: true });
      else if (transition === 'resolved') openTable.remove(alert.id);
      else openTable.update(alert, { transition });
      historyTable.update(alert, { transition });
      refreshAfterAlert();
    }),
    events.on('reconnect', () => {
      loadMerchant();
      reloadSeries();
      loadVolume();
    }),
  ];

  loadMerchant();
  reloadSeries({ resetZoom: true });
  loadVolume();

  return {
    unmount() {
      destroyed = true;
      unsubs.forEach((u) => u());
      refreshAfterAlert.cancel();
      openTable.destroy();
      historyTable.destroy();
      if (charts) Object.values(charts).forEach((c) => c.destroy());
      volumeChart?.destroy();
    },
  };
}
