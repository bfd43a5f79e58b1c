// uPlot helpers: sizing, business-time-zone axes, readiness marking for the
// browser test, synced cursors / zoom, and the alert-period shading hook.

import uPlot from 'uplot';
import { getTimeZone, fmtDateTime, fmtTime, fmtDay, zonedParts } from './format.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';

/** The rule threshold lines (2× baseline, (1 − drop) × expected). No other series may use it. */
export const ALERT_RED = '#e03131';

export const COLORS = {
  approvals: '#1c7ed6',
  cancels: '#f76707',
  rate: '#7048e8',
  baseline: '#2b8a3e',
  sameHour: '#0c8599', // same hours of the day over 7 days, dotted
  expected: '#868e96',
  today: '#1c7ed6',
};

// Alert periods on the rate chart; light, and deliberately not ALERT_RED.
export const BAND_COLORS = {
  cancel_rate_spike: 'rgba(250, 82, 82, 0.13)',
  volume_drop: 'rgba(253, 126, 20, 0.13)',
};

function maxOf(arr) {
  let m = 0;
  if (arr) for (const v of arr) if (v != null && v > m) m = v;
  return m;
}

/**
 * Scales for the "approvals vs cancels" charts: two y axes from zero (a for
 * approvals, c for cancels, series 1 and 2). Cancels are usually tiny next to
 * approvals, so they get their own axis, but it is magnified at most 25×, so
 * that a single stray cancel does not fill the chart.
 */
export function pairScales() {
  return {
    a: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.08] },
    c: { range: (u, min, max) => [0, Math.max((max || 0) * 1.08, maxOf(u.data[1]) * 0.04, 1)] },
  };
}

/** A series spec with the common bits filled in. */
export function line(label, stroke, extra = {}) {
  return { label, stroke, width: 1.5, points: { show: false }, spanGaps: false, ...extra };
}

/** The dashed rule-threshold series. */
export function thresholdLine(label, fmt) {
  return line(label, ALERT_RED, { width: 2, dash: [8, 5], value: (u, v) => (v == null ? '—' : fmt(v)) });
}

/**
 * The axes' canvas font: the page's own stack (--font), so that Korean unit
 * labels (만, 억) are drawn with the bundled Korean font like the page's text.
 */
function axisFont() {
  const stack = getComputedStyle(document.documentElement).getPropertyValue('--font').trim();
  return `11px ${stack || 'system-ui, sans-serif'}`;
}

const requestedGlyphs = new Set();

/**
 * A canvas draws with the fonts there at that moment: labels drawn before
 * their subset arrived stay drawn with a fallback (empty boxes where the OS
 * has no Korean font), and no font load redraws a canvas. So fetch the
 * subsets these labels need and draw the axes again once they are there.
 */
function withGlyphs(u, font, labels) {
  const text = labels.join('');
  if (/[^\u0000-\u024f]/.test(text) && !requestedGlyphs.has(text) && !document.fonts.check(font, text)) {
    requestedGlyphs.add(text);
    document.fonts.load(font, text).then(() => {
      if (u.root.isConnected) u.redraw(false, true);
    }, () => {});
  }
  return labels;
}

/** A y axis whose tick labels are formatted with fmt. */
export function yAxis(fmt, extra = {}) {
  const font = axisFont();
  return {
    size: 64,
    gap: 4,
    values: (u, splits) => withGlyphs(u, font, splits.map((v) => (v == null ? '' : fmt(v)))),
    grid: { stroke: '#eef0f3', width: 1 },
    ticks: { stroke: '#dee2e6', width: 1, size: 4 },
    font,
    ...extra,
  };
}

/**
 * X-axis tick labels in the business zone: times within a day, dates when
 * the ticks are a day or more apart (and on day changes).
 */
function xAxis() {
  return {
    space: 70,
    gap: 4,
    font: axisFont(),
    grid: { stroke: '#eef0f3', width: 1 },
    ticks: { stroke: '#dee2e6', width: 1, size: 4 },
    values: (u, splits, axisIdx, foundSpace, foundIncr) => {
      let prevDay = null;
      return splits.map((ts) => {
        const ms = ts * 1000;
        const day = fmtDay(ms);
        let label;
        if (foundIncr >= 86400) label = day.slice(5);
        else {
          const p = zonedParts(ms);
          const time = fmtTime(ms);
          label = prevDay !== null && day !== prevDay ? `${day.slice(5)}\n${time}` : time;
          if (prevDay === null && p.hour === 0 && p.minute === 0) label = `${day.slice(5)}\n${time}`;
        }
        prevDay = day;
        return label;
      });
    },
  };
}

/**
 * Creates a chart inside `container` (which keeps its data-testid). Returns
 * {u, setData(data), destroy()}. The container gets data-ready="true" once the
 * chart has drawn at least one point.
 */
export function createChart(container, { series, data, axes, scales = {}, height = 220, syncKey, hooks = {}, plugins = [] }) {
  container.classList.add('chart');
  const plotHost = h('div', { class: 'chart-plot' });
  const overlay = h('div', { class: 'chart-empty', hidden: true });
  replace(container, plotHost, overlay);

  const tz = getTimeZone();
  let zoomed = false;

  // With no cursor on the chart, the legend shows the latest point instead of dashes.
  const showLatest = (u) => {
    if (u.cursor.idx != null) return;
    const xs = u.data[0];
    if (!xs || !xs.length) return;
    const first = u.data[1] || [];
    let i = xs.length - 1;
    while (i > 0 && first[i] == null) i--;
    if (u.legend.idx !== i) u.setLegend({ idx: i }, false);
  };

  const markReady = (u) => {
    const hasPoints = u.data && u.data[0] && u.data[0].length > 0;
    overlay.hidden = hasPoints;
    if (hasPoints) container.dataset.ready = 'true';
  };

  const opts = {
    width: Math.max(300, container.clientWidth || 600),
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
    cursor: {
      drag: { x: true, y: false, setScale: true },
      sync: syncKey ? { key: syncKey, setSeries: false } : undefined,
      points: { size: 6 },
    },
    legend: { live: true },
    scales: { x: { time: true }, ...scales },
    series: [
      { label: t('chart.time'), value: (u, ts) => (ts == null ? '—' : fmtDateTime(ts * 1000)) },
      ...series,
    ],
    axes: [xAxis(), ...axes],
    plugins,
    hooks: {
      ...hooks,
      draw: [...(hooks.draw || []), markReady, showLatest],
      setCursor: [...(hooks.setCursor || []), showLatest],
      setScale: [
        ...(hooks.setScale || []),
        (u, key) => {
          if (key !== 'x') return;
          const t = u.data[0];
          zoomed = t.length > 1 && (u.scales.x.min > t[0] || u.scales.x.max < t[t.length - 1]);
        },
      ],
    },
  };

  const u = new uPlot(opts, data, plotHost);

  // Follow the container's width (window resizes, narrow layouts).
  let lastWidth = opts.width;
  const ro = new ResizeObserver(() => {
    const w = Math.max(300, Math.floor(container.clientWidth));
    if (w && Math.abs(w - lastWidth) > 2) {
      lastWidth = w;
      u.setSize({ width: w, height });
    }
  });
  ro.observe(container);

  return {
    u,
    container,
    /** Replaces the data without re-creating the chart (no flicker); keeps a user zoom. */
    setData(next, { keepZoom = true } = {}) {
      const keep = keepZoom && zoomed ? { min: u.scales.x.min, max: u.scales.x.max } : null;
      u.setData(next);
      if (keep) u.setScale('x', keep);
    },
    setEmptyText(text) {
      overlay.textContent = text;
    },
    destroy() {
      ro.disconnect();
      u.destroy();
    },
  };
}

/**
 * Keeps the x scale (zoom) of several charts in step. Charts sharing a
 * cursor sync key already move their cursors together; this adds the zoom.
 */
export function linkZoom(charts) {
  let busy = false;
  for (const c of charts) {
    c.u.hooks.setScale = c.u.hooks.setScale || [];
    c.u.hooks.setScale.push((u, key) => {
      if (key !== 'x' || busy) return;
      busy = true;
      try {
        for (const other of charts) {
          if (other.u !== u && (other.u.scales.x.min !== u.scales.x.min || other.u.scales.x.max !== u.scales.x.max)) {
            other.u.setScale('x', { min: u.scales.x.min, max: u.scales.x.max });
          }
        }
      } finally {
        busy = false;
      }
    });
  }
}

/**
 * A uPlot plugin shading time bands behind the series (drawn in the
 * drawClear hook, i.e. before grid and lines). getBands() returns
 * [{from, to, color}] in Unix seconds; `to` null means "still open".
 */
export function bandsPlugin(getBands) {
  return {
    hooks: {
      drawClear: (u) => {
        const bands = getBands() || [];
        if (!bands.length) return;
        const { ctx } = u;
        const { left, top, width, height } = u.bbox;
        const xMin = u.scales.x.min;
        const xMax = u.scales.x.max;
        ctx.save();
        for (const b of bands) {
          const from = Math.max(b.from, xMin);
          const to = Math.min(b.to == null ? Date.now() / 1000 : b.to, xMax);
          if (!(to > from)) continue;
          const x0 = Math.round(u.valToPos(from, 'x', true));
          const x1 = Math.round(u.valToPos(to, 'x', true));
          ctx.fillStyle = b.color;
          ctx.fillRect(Math.max(left, x0), top, Math.max(1, Math.min(left + width, x1) - Math.max(left, x0)), height);
        }
        ctx.restore();
      },
    },
  };
}
