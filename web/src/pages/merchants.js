// Merchants: search by id or name, and the two rankings (risk, volume drop).

import { api, events } from '../api.js';
import { h, replace, message, debounce } from '../dom.js';
import { t } from '../i18n.js';
import { fmtInt, fmtKRW, fmtKRWCompact, fmtPct, fmtRatio, fmtDecimal, fmtDateTime } from '../format.js';
import { merchantLink, priorityBadge, fmtEvidence, moneyCell } from '../alerts-ui.js';

export function mount(root, ctx) {
  document.title = `${t('nav.merchants')} · riskwatch`;
  let destroyed = false;

  // -- search ---------------------------------------------------------------
  const input = h('input', {
    type: 'search',
    class: 'search',
    placeholder: t('search.placeholder'),
    'aria-label': t('search.placeholder'),
    autocomplete: 'off',
    spellcheck: 'false',
    dataset: { testid: 'merchant-search' },
    value: ctx.query.get('q') || '',
  });
  const results = h('div', { class: 'search-results', dataset: { testid: 'search-results' } });
  let inflight = null;

  async function search() {
    const q = input.value.trim();
    // Reflect the query in the URL without adding history entries.
    const url = q ? `/merchants?q=${encodeURIComponent(q)}` : '/merchants';
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
    inflight?.abort();
    if (!q) {
      replace(results, h('p', { class: 'muted hint' }, t('search.hint')));
      return;
    }
    inflight = new AbortController();
    replace(results, message('loading', t('loading')));
    try {
      const res = await api.searchMerchants(q, 50, { signal: inflight.signal });
      if (destroyed) return;
      const list = res.merchants || [];
      if (!list.length) {
        replace(results, message('empty', t('search.none', { q })));
        return;
      }
      replace(results, h('table', { class: 'data' },
        h('thead', null, h('tr', null, h('th', { class: 'num' }, t('col.id')), h('th', null, t('col.name')))),
        h('tbody', null, list.map((m) => h('tr', { dataset: { testid: 'search-result', merchantId: m.id } },
          h('td', { class: 'num mono' }, String(m.id)),
          h('td', null, h('a', { href: `/merchants/${m.id}` }, m.name || t('merchant.unnamed'))))))));
    } catch (err) {
      if (err.name === 'AbortError' || destroyed) return;
      replace(results, message('error', err.message));
    }
  }
  const searchSoon = debounce(search, 250);
  input.addEventListener('input', searchSoon);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      searchSoon.cancel();
      search();
    }
  });

  // -- rankings -------------------------------------------------------------
  const riskAsOf = h('span', { class: 'as-of' });
  const dropAsOf = h('span', { class: 'as-of' });
  const riskBody = h('div', { class: 'table-wrap', dataset: { testid: 'ranking-risk' } }, message('loading', t('loading')));
  const dropBody = h('div', { class: 'table-wrap', dataset: { testid: 'ranking-volume' } }, message('loading', t('loading')));

  // A firing merchant shows its alert's priority (the plain "Firing" badge
  // only if the server gave none).
  const firesBadge = (m) => {
    if (!m.fires) return null;
    return m.priority ? priorityBadge(m.priority) : h('span', { class: 'badge badge-firing' }, t('ranking.fires'));
  };
  const evidenceTh = () => h('th', { class: 'num has-help', title: t('evidence.help') }, t('col.evidence'));

  function renderRisk(res) {
    riskAsOf.textContent = res.as_of_minute ? t('ranking.asOf', { time: fmtDateTime(res.as_of_minute) }) : '';
    const list = res.merchants || [];
    if (!list.length) return replace(riskBody, message('empty', t('ranking.empty')));
    replace(riskBody, h('table', { class: 'data' },
      h('thead', null, h('tr', null,
        h('th', { class: 'num' }, '#'),
        h('th', null, t('col.merchant')),
        h('th', null, t('col.priority')),
        evidenceTh(),
        h('th', { class: 'num', title: t('ranking.scoreHelp') }, t('col.score')),
        h('th', { class: 'num raw' }, 'a_h'),
        h('th', { class: 'num raw' }, 'c_h'),
        h('th', { class: 'num' }, t('col.rate1h')),
        h('th', { class: 'num' }, t('col.baseline')),
        h('th', { class: 'num' }, t('col.ratio')),
        h('th', { class: 'num has-help', title: t('money.help') }, t('col.money')))),
      // The server's order: evidence, then score.
      h('tbody', null, list.map((m, i) => h('tr', {
        class: m.fires ? 'is-firing' : null,
        dataset: { testid: 'ranking-row', merchantId: m.id, priority: m.priority || null, evidence: m.evidence },
      },
        h('td', { class: 'num muted' }, String(i + 1)),
        h('td', null, merchantLink(m.id, m.name)),
        h('td', null, firesBadge(m)),
        h('td', { class: 'num strong', dataset: { testid: 'evidence' } }, m.evidence ? fmtEvidence(m.evidence) : '—'),
        h('td', { class: 'num' }, fmtDecimal(m.score, 2)),
        h('td', { class: 'num' }, fmtInt(m.a_h)),
        h('td', { class: 'num' }, fmtInt(m.c_h)),
        h('td', { class: 'num' }, fmtPct(m.rate_h)),
        h('td', { class: 'num', title: `${t('col.baseline')}: ${fmtPct(m.baseline, 3)} (${m.baseline_source || ''})` },
          // "merchant" is the usual source; only the platform fallback is tagged.
          m.baseline_source && m.baseline_source !== 'merchant' ? h('span', { class: 'tag' }, t(`baseline.${m.baseline_source}`, null, m.baseline_source)) : null,
          fmtPct(m.effective_baseline)),
        h('td', { class: 'num' }, fmtRatio(m.ratio)),
        h('td', { class: 'num' }, moneyCell(m.exposure, m.canceled_amount_h)))))));
  }

  function renderDrop(res) {
    dropAsOf.textContent = res.as_of_minute ? t('ranking.asOf', { time: fmtDateTime(res.as_of_minute) }) : '';
    const list = res.merchants || [];
    if (!list.length) return replace(dropBody, message('empty', t('ranking.emptyLarge')));
    replace(dropBody, h('table', { class: 'data' },
      h('thead', null, h('tr', null,
        h('th', { class: 'num' }, '#'),
        h('th', null, t('col.merchant')),
        h('th', null, t('col.priority')),
        h('th', { class: 'num' }, t('col.drop')),
        evidenceTh(),
        h('th', { class: 'num' }, t('col.today')),
        h('th', { class: 'num' }, t('col.expected')),
        h('th', { class: 'num' }, t('col.dailyAvg')),
        h('th', { class: 'num has-help', title: t('money.exposureHelp') }, t('col.exposure')))),
      h('tbody', null, list.map((m, i) => h('tr', { class: m.fires ? 'is-firing' : null, dataset: { merchantId: m.id, priority: m.priority || null } },
        h('td', { class: 'num muted' }, String(i + 1)),
        h('td', null, merchantLink(m.id, m.name)),
        h('td', null, firesBadge(m)),
        h('td', { class: 'num strong' }, fmtPct(m.drop, 1)),
        h('td', { class: 'num', title: m.spread ? t('evidence.volume', { s: fmtPct(m.spread, 1) }) : null }, m.evidence ? fmtEvidence(m.evidence) : '—'),
        h('td', { class: 'num', title: fmtKRW(m.today) }, fmtKRWCompact(m.today)),
        h('td', { class: 'num', title: fmtKRW(m.expected) }, fmtKRWCompact(m.expected)),
        h('td', { class: 'num', title: fmtKRW(m.daily_avg) }, fmtKRWCompact(m.daily_avg)),
        h('td', { class: 'num' }, moneyCell(m.exposure, null)))))));
  }

  async function loadRankings() {
    const [risk, drop] = await Promise.allSettled([api.riskRanking(50), api.volumeDropRanking(50)]);
    if (destroyed) return;
    if (risk.status === 'fulfilled') renderRisk(risk.value);
    else replace(riskBody, message('error', risk.reason.message));
    if (drop.status === 'fulfilled') renderDrop(drop.value);
    else replace(dropBody, message('error', drop.reason.message));
  }
  const refreshRankings = debounce(loadRankings, 1000);

  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, t('merchants.title'))),
    h('div', { class: 'card' }, h('h2', null, t('search.title')), input, results),
    // One above the other: with evidence and money the tables are wide.
    h('div', { class: 'rankings' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, t('ranking.risk')), riskAsOf),
        h('p', { class: 'muted small' }, t('ranking.riskHelp')),
        riskBody),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, t('ranking.drop')), dropAsOf),
        h('p', { class: 'muted small' }, t('ranking.dropHelp', { amount: fmtKRWCompact(ctx.status()?.rules?.volume_drop?.large_daily_amount ?? 1e9) })),
        dropBody)));

  search();
  loadRankings();
  input.focus();
  const unsubs = [events.on('minute', refreshRankings), events.on('reconnect', refreshRankings)];

  return {
    unmount() {
      destroyed = true;
      inflight?.abort();
      searchSoon.cancel();
      refreshRankings.cancel();
      unsubs.forEach((u) => u());
    },
  };
}
