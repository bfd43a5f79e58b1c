// Alerts: every alert, filtered by state, rule, merchant and priority, sorted
// newest first, by priority then money, or by money (all reflected in the URL
// query), with paging and acknowledgement.

import { api, events } from '../api.js';
import { h, replace, message, debounce } from '../dom.js';
import { t } from '../i18n.js';
import { AlertTable, priorityRank } from '../alerts-ui.js';

const PAGE = 100;
const MAX_LIMIT = 500; // the API's largest page

export function mount(root, ctx) {
  document.title = `${t('nav.alerts')} · riskwatch`;
  let destroyed = false;

  const q = ctx.query;
  const filters = {
    state: ['firing', 'resolved'].includes(q.get('state')) ? q.get('state') : '',
    rule: ['cancel_rate_spike', 'volume_drop'].includes(q.get('rule')) ? q.get('rule') : '',
    merchant: /^\d+$/.test(q.get('merchant') || '') ? q.get('merchant') : '',
    priority: ['P1', 'P2'].includes(q.get('priority')) ? q.get('priority') : '',
    order: ['priority', 'money'].includes(q.get('order')) ? q.get('order') : '', // '' = newest
  };

  const select = (name, options) => {
    const el = h('select', {
      name, dataset: { testid: `filter-${name}` },
      onchange: (ev) => {
        filters[name] = ev.target.value;
        apply();
      },
    }, options.map(([value, label]) => h('option', { value }, label)));
    el.value = filters[name];
    return el;
  };

  const stateSel = select('state', [['', t('filter.all')], ['firing', t('state.firing')], ['resolved', t('state.resolved')]]);
  const ruleSel = select('rule', [['', t('filter.all')], ['cancel_rate_spike', t('rule.cancel_rate_spike')], ['volume_drop', t('rule.volume_drop')], ['pipeline_stuck', t('rule.pipeline_stuck')]]);
  const prioritySel = select('priority', [['', t('filter.all')], ['P1', t('filter.P1')], ['P2', t('filter.P2')]]);
  const orderSel = select('order', [['', t('sort.newest')], ['priority', t('sort.priority')], ['money', t('sort.money')]]);
  const merchantInput = h('input', {
    type: 'text', inputmode: 'numeric', pattern: '[0-9]*', placeholder: t('filter.merchantPlaceholder'),
    value: filters.merchant, dataset: { testid: 'filter-merchant' }, class: 'narrow',
  });
  const merchantError = h('span', { class: 'text-red small' });
  const applyMerchant = debounce(() => {
    const v = merchantInput.value.trim();
    if (v && !/^\d+$/.test(v)) {
      merchantError.textContent = t('filter.merchantInvalid');
      return;
    }
    merchantError.textContent = '';
    filters.merchant = v;
    apply();
  }, 400);
  merchantInput.addEventListener('input', applyMerchant);

  const clearBtn = h('button', {
    type: 'button', class: 'btn btn-small',
    onclick: () => {
      filters.state = filters.rule = filters.merchant = filters.priority = '';
      stateSel.value = ruleSel.value = merchantInput.value = prioritySel.value = '';
      apply();
    },
  }, t('filter.clear'));

  const table = new AlertTable({
    columns: ['id', 'priority', 'rule', 'merchant', 'state', 'from', 'to', 'evidence', 'money', 'values', 'ack'],
    emptyText: t('alerts.none'),
    testid: 'alerts-table',
    order: filters.order || 'newest',
  });
  const status = h('div');
  const moreBtn = h('button', { type: 'button', class: 'btn', hidden: true, onclick: () => load({ more: true }) }, t('alerts.more'));

  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, t('alerts.title'))),
    h('div', { class: 'card toolbar' },
      h('label', null, t('col.state'), ' ', stateSel),
      h('label', null, t('col.rule'), ' ', ruleSel),
      h('label', null, t('col.merchant'), ' ', merchantInput, ' ', merchantError),
      h('label', null, t('filter.priority'), ' ', prioritySel),
      clearBtn,
      h('label', { class: 'toolbar-end' }, t('sort.label'), ' ', orderSel)),
    h('div', { class: 'card' }, status, table.el, h('div', { class: 'more' }, moreBtn)));

  const params = () => ({
    state: filters.state || undefined,
    rule: filters.rule || undefined,
    merchant: filters.merchant || undefined,
    priority: filters.priority || undefined,
    order: filters.order || undefined,
  });

  function apply() {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) p.set(k, v);
    const url = `/alerts${p.toString() ? `?${p}` : ''}`;
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
    table.setOrder(filters.order || 'newest');
    load();
  }

  // Newest first pages with `before` (ids fall with age); the other orders
  // have no such cursor, so "more" asks again for a longer list.
  let limit = PAGE;
  let seq = 0; // drops answers to superseded requests
  async function load({ more = false } = {}) {
    const my = ++seq;
    const byId = !filters.order;
    if (!more) {
      replace(status, message('loading', t('loading')));
      limit = PAGE;
    } else if (!byId) {
      limit = Math.min(MAX_LIMIT, limit + PAGE);
    }
    moreBtn.disabled = true;
    try {
      const res = byId
        ? await api.alerts({ ...params(), limit: PAGE, before: more ? table.lastId() : undefined })
        : await api.alerts({ ...params(), limit });
      if (destroyed || my !== seq) return;
      const list = res.alerts || [];
      if (more && byId) table.appendAlerts(list);
      else table.setAlerts(list);
      replace(status);
      moreBtn.hidden = byId ? list.length < PAGE : list.length < limit || limit >= MAX_LIMIT;
    } catch (err) {
      if (destroyed || my !== seq) return;
      replace(status, message('error', `${t('error.load')}: ${err.message}`));
    } finally {
      moreBtn.disabled = false;
    }
  }

  const matches = (a) =>
    (!filters.rule || a.rule === filters.rule) &&
    (!filters.merchant || String(a.merchant_id) === filters.merchant) &&
    (!filters.priority || priorityRank(a.priority) <= priorityRank(filters.priority));

  const unsubs = [
    events.on('alert', (ev) => {
      const { transition, ...alert } = ev;
      if (table.has(alert.id)) table.update(alert, { transition });
      // An escalation can bring an open alert into the priority filter.
      else if ((transition === 'firing' || transition === 'escalated') && matches(alert) && filters.state !== 'resolved') table.upsert(alert, { flash: true, transition });
      else if (transition === 'resolved' && matches(alert) && filters.state === 'resolved') table.upsert(alert, { flash: true });
    }),
    events.on('reconnect', () => load()),
  ];

  load();

  return {
    unmount() {
      destroyed = true;
      applyMerchant.cancel();
      unsubs.forEach((u) => u());
      table.destroy();
    },
  };
}
