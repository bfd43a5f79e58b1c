// riskwatch dashboard: header, client-side router (History API) and the
// shared pipeline status. Pages live in ./pages and export mount(root, ctx)
// returning {unmount()}.

import 'uplot/dist/uPlot.min.css';
import 'riskwatch:korean-font.css'; // the bundled Korean webfont's @font-face rules (build.mjs)
import './style.css';

import { api, events } from './api.js';
import { h, replace, message } from './dom.js';
import { t, getLang, setLang, initLang, onLangChange } from './i18n.js';
import { setTimeZone, getTimeZone, fmtTime, fmtDecimal, fmtInt } from './format.js';
import * as overview from './pages/overview.js';
import * as merchants from './pages/merchants.js';
import * as merchant from './pages/merchant.js';
import * as alerts from './pages/alerts.js';
import * as alertPage from './pages/alert.js';
import { setIdentity } from './alerts-ui.js';

const routes = [
  { re: /^\/$/, page: overview, nav: 'overview' },
  { re: /^\/merchants\/?$/, page: merchants, nav: 'merchants' },
  { re: /^\/merchants\/(\d+)\/?$/, page: merchant, nav: 'merchants', params: ['id'] },
  { re: /^\/alerts\/?$/, page: alerts, nav: 'alerts' },
  { re: /^\/alerts\/(\d+)\/?$/, page: alertPage, nav: 'alerts', params: ['id'] },
];

const app = {
  status: null, // latest /api/status (from the GET and then SSE `status`)
  connection: 'connecting',
  current: null, // mounted page
};

// ---------------------------------------------------------------------------
// Header

const header = document.getElementById('header');
const main = document.getElementById('main');
const banner = document.getElementById('banner');
// Above every page while the pipeline repeats one failure: what the
// operator must fix is not on any page.
const stuckBanner = h('div', { class: 'stuck-banner', role: 'alert', dataset: { testid: 'stuck-banner' } });
let pill = null;
let navLinks = {};

function renderHeader() {
  navLinks = {
    overview: h('a', { href: '/', class: 'nav-link' }, t('nav.overview')),
    merchants: h('a', { href: '/merchants', class: 'nav-link' }, t('nav.merchants')),
    alerts: h('a', { href: '/alerts', class: 'nav-link' }, t('nav.alerts')),
  };
  pill = h('div', { class: 'pill', dataset: { testid: 'pipeline-status' }, 'aria-live': 'polite' });
  const lang = getLang();
  const langSwitch = h('button', {
    type: 'button',
    class: 'lang-switch',
    dataset: { testid: 'lang-switch' },
    title: t('lang.switch'),
    onclick: () => setLang(getLang() === 'ko' ? 'en' : 'ko'),
  },
  h('span', { class: lang === 'en' ? 'on' : null, lang: 'en' }, 'EN'),
  h('span', { class: lang === 'ko' ? 'on' : null, lang: 'ko' }, '한국어'));

  replace(header,
    h('a', { href: '/', class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'riskwatch'),
    h('nav', { class: 'nav', 'aria-label': t('nav.label') }, Object.values(navLinks)),
    h('div', { class: 'header-right' }, pill, langSwitch));
  renderPill();
  markNav();
}

function markNav() {
  const route = matchRoute(location.pathname);
  for (const [key, link] of Object.entries(navLinks)) {
    link.classList.toggle('active', !!route && route.nav === key);
    if (route && route.nav === key) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function renderPill() {
  if (!pill) return;
  const s = app.status;
  let cls = 'pill-unknown';
  let label = t('pipeline.connecting');
  const details = [];
  if (app.connection === 'error' && s) {
    cls = 'pill-offline';
    label = t('pipeline.offline');
  } else if (s) {
    cls = s.ready ? 'pill-ok' : 'pill-warn';
    label = s.ready ? t('pipeline.ready') : t('pipeline.catchingUp');
  }
  if (s) {
    details.push(t('pipeline.lag', { s: fmtDecimal(s.lag_seconds ?? 0, s.lag_seconds >= 10 ? 0 : 1) }));
    // With minute delivery the lag runs up to a minute by design; say so
    // next to it rather than let it look like trouble.
    if (s.delivery === 'minute') details.push(t('pipeline.minuteDelivery'));
    details.push(t('pipeline.lastMinute', { time: s.last_closed_minute ? fmtTime(s.last_closed_minute) : '—' }));
    details.push(t('pipeline.eps', { n: fmtInt(s.events_per_second ?? 0) }));
  }
  pill.className = `pill ${cls}`;
  pill.dataset.ready = s && s.ready ? 'true' : 'false';
  pill.title = s ? `${t('pipeline.title')} · ${getTimeZone()} · ${s.version || ''}` : '';
  replace(pill, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('strong', null, label),
    details.map((d) => h('span', { class: 'pill-detail' }, d)));
}

function renderStuck() {
  const k = app.status && app.status.stuck;
  if (!k) {
    stuckBanner.remove();
    return;
  }
  replace(stuckBanner, t('pipeline.stuck', {
    since: fmtTime(k.since), n: fmtInt(k.failures), position: k.position, error: k.error,
  }));
  if (!stuckBanner.isConnected) banner.prepend(stuckBanner);
}

// ---------------------------------------------------------------------------
// Router

function matchRoute(path) {
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      const params = {};
      (r.params || []).forEach((name, i) => (params[name] = decodeURIComponent(m[i + 1])));
      return { ...r, params };
    }
  }
  return null;
}

const ctx = {
  status: () => app.status,
  navigate,
};

function render() {
  if (app.current) {
    try {
      app.current.unmount();
    } catch (err) {
      console.error(err);
    }
    app.current = null;
  }
  const route = matchRoute(location.pathname);
  markNav();
  main.replaceChildren();
  window.scrollTo(0, 0);
  if (!route) {
    document.title = `${t('notFound.title')} · riskwatch`;
    main.appendChild(h('section', { class: 'page' }, h('h1', null, t('notFound.title')),
      message('empty', t('notFound.text')), h('p', null, h('a', { href: '/' }, t('nav.overview')))));
    return;
  }
  const root = h('section', { class: 'page' });
  main.appendChild(root);
  const query = new URLSearchParams(location.search);
  app.current = route.page.mount(root, { ...ctx, params: route.params, query });
}

/** Client-side navigation; `replace` rewrites the current history entry. */
export function navigate(url, { replace: rep = false } = {}) {
  if (rep) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

// Intercept same-origin links to app pages; everything else (new tab,
// modified clicks, downloads, /api/...) is left to the browser.
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !matchRoute(url.pathname)) return;
  ev.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener('popstate', render);

// ---------------------------------------------------------------------------
// Boot

function applyStatus(s) {
  app.status = s;
  setIdentity(s && s.identity);
  if (s && s.business_timezone) setTimeZone(s.business_timezone);
  renderPill();
  renderStuck();
}

async function boot() {
  initLang();
  renderHeader();
  onLangChange(() => {
    renderHeader();
    renderStuck();
    render(); // pages are rebuilt in the new language (no page reload)
  });

  events.on('status', applyStatus);
  events.on('connection', (state) => {
    app.connection = state;
    renderPill();
  });

  try {
    applyStatus(await api.status());
  } catch (err) {
    banner.appendChild(message('error', `${t('error.status')}: ${err.message}`));
  }
  events.start();
  render();
}

boot();
