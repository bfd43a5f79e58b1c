// Alert rows shared by the overview, merchant and alerts pages, and the
// acknowledge dialog. Rows carry the data-* hooks the browser test uses.

import { h, replace } from './dom.js';
import { t } from './i18n.js';
import { api } from './api.js';
import { fmtDateTime, fmtDecimal, fmtInt, fmtKRW, fmtKRWCompact, fmtPct, fmtRatio } from './format.js';

export const ruleLabel = (rule) => t(`rule.${rule}`, null, rule);

const num = (v) => (typeof v === 'number' ? v : v == null ? null : Number(v));

/** The rule's key values as compact text (SPEC §5 / §6 reported values). */
export function alertValuesText(alert) {
  const v = alert.values || {};
  if (alert.rule === 'cancel_rate_spike') {
    return t('values.cancel', {
      c: fmtInt(num(v.c_h)),
      a: fmtInt(num(v.a_h)),
      rate: fmtPct(num(v.rate_h)),
      ratio: fmtRatio(num(v.ratio)),
    });
  }
  if (alert.rule === 'volume_drop') {
    return t('values.volume', {
      today: fmtKRWCompact(num(v.today)),
      expected: fmtKRWCompact(num(v.expected)),
      drop: fmtPct(num(v.drop), 0),
    });
  }
  return alert.summary || '';
}

/** Full-precision values for the tooltip. */
function alertValuesTitle(alert) {
  const v = alert.values || {};
  if (alert.rule === 'cancel_rate_spike') {
    return [
      `c_h=${v.c_h}  a_h=${v.a_h}  rate_h=${fmtPct(num(v.rate_h), 3)}`,
      `baseline=${fmtPct(num(v.baseline), 3)} (${v.baseline_source ?? '?'})  effective=${fmtPct(num(v.effective_baseline), 3)}`,
      `ratio=${fmtRatio(num(v.ratio))}`,
      alert.summary || '',
    ].join('\n');
  }
  if (alert.rule === 'volume_drop') {
    return [
      `today=${fmtKRW(num(v.today))}  expected=${fmtKRW(num(v.expected))}`,
      `daily_avg=${fmtKRW(num(v.daily_avg))}  drop=${fmtPct(num(v.drop), 1)}`,
      alert.summary || '',
    ].join('\n');
  }
  return alert.summary || '';
}

// ---------------------------------------------------------------------------
// Priority, evidence and money at stake (SPEC §7a).

const PRIORITY_RANK = { P1: 1, P2: 2, P3: 3 };

/** 1 (P1) … 3 (P3); 4 for an alert from before priorities, as the API orders them. */
export const priorityRank = (p) => PRIORITY_RANK[p] ?? 4;

/** P1 red, P2 amber, P3 grey; "—" for an alert from before priorities. */
export function priorityBadge(p) {
  const known = !!PRIORITY_RANK[p];
  return h('span', {
    class: ['badge', 'prio', `prio-${known ? p : 'none'}`],
    title: t(known ? `priority.${p}` : 'priority.none'),
    dataset: { testid: 'priority-badge', priority: known ? p : 'none' },
  }, known ? p : '—');
}

/** What the API orders "money" by: the exposure, else what the hour canceled. */
export const moneyAtStake = (a) => num(a.exposure ?? a.canceled_amount_h) ?? 0;

const newestFirst = (a, b) => (Date.parse(b.active_at) || 0) - (Date.parse(a.active_at) || 0) || b.id - a.id;

/** Client-side twins of GET /api/alerts?order=… (for rows pushed over SSE). */
export const ALERT_ORDERS = {
  newest: newestFirst,
  priority: (a, b) => priorityRank(a.priority) - priorityRank(b.priority) || moneyAtStake(b) - moneyAtStake(a) || newestFirst(a, b),
  money: (a, b) => moneyAtStake(b) - moneyAtStake(a) || newestFirst(a, b),
};

/** "7.3"; the API caps evidence at 300. */
export function fmtEvidence(e) {
  const n = num(e);
  if (n == null || Number.isNaN(n)) return '—';
  return n >= 300 ? '≥ 300' : fmtDecimal(n, 1);
}

function evidenceTitle(alert) {
  const v = alert.values || {};
  const lines = [t('evidence.help')];
  if (alert.rule === 'cancel_rate_spike' && v.evidence_7d != null) {
    const x = (n) => fmtDecimal(num(n), 1);
    lines.push(t('evidence.cancel', {
      e7: fmtEvidence(v.evidence_7d), x7: x(v.expected_7d),
      es: fmtEvidence(v.evidence_same_hour), xs: x(v.expected_same_hour),
      er: fmtEvidence(v.evidence_recent), xr: x(v.expected_recent),
      eu: fmtEvidence(v.evidence_usual), xu: x(v.expected_usual),
      b: fmtDecimal(num(v.batch_factor), 2),
    }));
    // Only when today's level raised what was expected (it is off by
    // default, and then always 1).
    const level = Math.max(num(v.today_level ?? 1), num(v.today_level_usual ?? 1));
    if (level > 1) {
      lines.push(t('evidence.today', { l: fmtDecimal(level, 2), c: fmtInt(num(v.today_cancels)) }));
    }
  }
  if (alert.rule === 'volume_drop' && v.spread != null) lines.push(t('evidence.volume', { s: fmtPct(num(v.spread), 1) }));
  return lines.join('\n');
}

function evidenceCell(alert) {
  return h('span', { class: 'evidence', title: evidenceTitle(alert), dataset: { testid: 'evidence' } }, fmtEvidence(alert.evidence));
}

/** Exposure on top, what the hour canceled below (cancel_rate_spike only). */
export function moneyCell(exposure, canceled) {
  const x = num(exposure);
  const c = num(canceled);
  if (x == null && c == null) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'money', dataset: { testid: 'money' } },
    x != null ? h('span', { class: 'money-exposure', title: t('money.exposure', { amount: fmtKRW(x) }) }, fmtKRWCompact(x)) : null,
    c != null ? h('span', { class: 'money-canceled', title: t('money.canceledH', { amount: fmtKRW(c) }) }, t('money.canceledShort', { amount: fmtKRWCompact(c) })) : null);
}

// Escalations seen over SSE in this tab: alert id -> the priority it had before.
const escalations = new Map();

function priorityCell(alert) {
  const from = escalations.get(alert.id);
  return h('span', { class: 'prio-cell' },
    priorityBadge(alert.priority),
    escalations.has(alert.id)
      ? h('span', { class: 'escalated', dataset: { testid: 'escalated' } }, from ? t('alert.escalated', { from }) : t('alert.escalatedNew'))
      : null,
    alert.continues != null
      ? h('span', { class: 'continues muted', title: t('alert.continuesHelp', { id: alert.continues }), dataset: { testid: 'continues' } },
        t('alert.continues', { id: alert.continues }))
      : null);
}

export function stateBadge(state) {
  return h('span', { class: `badge badge-${state === 'firing' ? 'firing' : 'resolved'}` }, t(`state.${state}`, null, state));
}

export function merchantLink(id, name) {
  // Merchant 0 is riskwatch's own alerts (a stuck pipeline): no merchant page.
  if (id === 0) return h('span', { class: 'merchant-ref muted' }, t('merchant.system'));
  return h('span', { class: 'merchant-ref' },
    h('a', { href: `/merchants/${id}`, class: 'merchant-link' }, name ? name : t('merchant.unnamed')),
    h('span', { class: 'muted mono' }, ` #${id}`));
}

function ackButton(alert, label) {
  return h('button', {
    type: 'button',
    class: 'btn btn-small',
    dataset: { testid: 'ack-button' },
    onclick: async (ev) => {
      ev.preventDefault();
      const updated = await openAckDialog(alert);
      if (updated) updateAlertEverywhere(updated);
    },
  }, label);
}

function ackCell(alert) {
  if (alert.ack) {
    const k = alert.ack;
    const title = [fmtDateTime(k.at), k.priority ? t('ack.atPriority', { p: k.priority }) : '', k.comment || ''].filter(Boolean).join(' — ');
    const badge = h('span', { class: 'badge badge-acked', title, dataset: { testid: 'ack-badge' } }, t('ack.by', { by: k.by || '?' }));
    // An ack covers the priority it was given at; past it, notifications resume.
    if (alert.state === 'firing' && k.priority && priorityRank(alert.priority) < priorityRank(k.priority)) {
      return h('span', { class: 'ack-escalated' }, badge,
        h('span', { class: 'escalated', title: t('ack.escalated', { p: alert.priority }) }, `${k.priority} → ${alert.priority}`),
        ackButton(alert, t('ack.again', { p: alert.priority })));
    }
    return badge;
  }
  if (alert.state !== 'firing') return h('span', { class: 'muted' }, '—');
  return ackButton(alert, t('ack.button'));
}

// Column renderers; each page picks the columns it needs.
const COLUMNS = {
  id: { head: () => t('col.id'), cell: (a) => h('a', { class: 'mono', href: `/alerts/${a.id}`, dataset: { testid: 'alert-link' } }, String(a.id)), cls: 'num' },
  priority: { head: () => t('col.priority'), cell: priorityCell },
  evidence: { head: () => t('col.evidence'), help: () => t('evidence.help'), cell: evidenceCell, cls: 'num' },
  money: { head: () => t('col.money'), help: () => t('money.help'), cell: (a) => moneyCell(a.exposure, a.canceled_amount_h), cls: 'num' },
  rule: { head: () => t('col.rule'), cell: (a) => h('span', { class: `rule rule-${a.rule}` }, ruleLabel(a.rule)) },
  merchant: { head: () => t('col.merchant'), cell: (a) => merchantLink(a.merchant_id, a.merchant_name) },
  state: { head: () => t('col.state'), cell: (a) => stateBadge(a.state) },
  since: { head: () => t('col.since'), cell: (a) => h('span', { class: 'mono' }, fmtDateTime(a.active_at)) },
  from: { head: () => t('col.from'), cell: (a) => h('span', { class: 'mono' }, fmtDateTime(a.active_at)) },
  to: {
    head: () => t('col.to'),
    cell: (a) => h('span', { class: 'mono' }, a.resolved_at ? fmtDateTime(a.resolved_at) : t('alert.ongoing')),
  },
  values: { head: () => t('col.values'), cell: (a) => h('span', { class: 'values', title: alertValuesTitle(a) }, alertValuesText(a)) },
  ack: { head: () => t('col.ack'), cell: (a) => ackCell(a) },
};

// Every live table, so that an acknowledgement updates the alert wherever it is shown.
const liveTables = new Set();

// Acknowledgements seen in this tab (our own POSTs and SSE `acknowledged`).
// A refetch that was already in flight when the ack happened must not turn
// the row back into "not acknowledged".
const knownAcks = new Map();

function withKnownAck(alert) {
  if (alert.ack) {
    knownAcks.set(alert.id, alert.ack);
    return alert;
  }
  const ack = knownAcks.get(alert.id);
  return ack ? { ...alert, ack } : alert;
}

/** Replaces the alert's row in every table on the page that shows it. */
export function updateAlertEverywhere(alert) {
  withKnownAck(alert);
  for (const table of liveTables) table.update(alert);
}

/**
 * A table of alerts keyed by id, updated in place, in one of ALERT_ORDERS
 * (newest first unless told otherwise).
 * options: columns (keys of COLUMNS), emptyText, testid, order.
 */
export class AlertTable {
  constructor({ columns, emptyText, testid, order = 'newest' }) {
    this.columns = columns.map((c) => ({ key: c, ...COLUMNS[c] }));
    this.order = ALERT_ORDERS[order] || ALERT_ORDERS.newest;
    this.rows = new Map(); // id -> {alert, tr}
    this.emptyText = emptyText;
    this.tbody = h('tbody');
    this.empty = h('div', { class: 'msg msg-empty', hidden: true }, emptyText);
    this.table = h('table', { class: 'data alerts' },
      h('thead', null, h('tr', null, this.columns.map((c) => h('th', { class: [c.cls, c.help ? 'has-help' : null], title: c.help ? c.help() : null }, c.head())))),
      this.tbody);
    this.el = h('div', { class: 'table-wrap', dataset: { testid } }, this.table, this.empty);
    this.table.hidden = true;
    liveTables.add(this);
  }

  destroy() {
    liveTables.delete(this);
  }

  renderRow(alert) {
    const tr = h('tr', {
      class: ['alert-row', `is-${alert.state}`, alert.ack ? 'is-acked' : null],
      dataset: {
        testid: 'alert-row',
        alertId: alert.id,
        merchantId: alert.merchant_id,
        acked: alert.ack ? 'true' : 'false',
        state: alert.state,
        priority: alert.priority || 'none',
      },
    }, this.columns.map((c) => h('td', { class: c.cls }, c.cell(alert))));
    tr._key = JSON.stringify(alert); // lets setAlerts keep unchanged rows (and buttons under the pointer)
    return tr;
  }

  /** Re-sorts the rows in another of ALERT_ORDERS. */
  setOrder(order) {
    this.order = ALERT_ORDERS[order] || ALERT_ORDERS.newest;
    this.setAlerts([...this.rows.values()].map((r) => r.alert));
  }

  /** Shows exactly these alerts (rows of unchanged alerts are rebuilt, cheaply). */
  setAlerts(list) {
    const old = this.rows;
    this.rows = new Map();
    const sorted = list.map(withKnownAck).sort(this.order);
    const trs = sorted.map((a) => {
      const prev = old.get(a.id);
      const tr = prev && prev.tr._key === JSON.stringify(a) ? prev.tr : this.renderRow(a);
      this.rows.set(a.id, { alert: a, tr });
      return tr;
    });
    const current = [...this.tbody.children];
    const same = current.length === trs.length && current.every((el, i) => el === trs[i]);
    if (!same) replace(this.tbody, trs);
    this.refreshEmpty();
  }

  /** Appends older alerts (paging newest first). */
  appendAlerts(list) {
    for (const a of list.map(withKnownAck)) {
      if (this.rows.has(a.id)) continue;
      const tr = this.renderRow(a);
      this.rows.set(a.id, { alert: a, tr });
      this.tbody.appendChild(tr);
    }
    this.refreshEmpty();
  }

  /**
   * Inserts or replaces one alert where the table's order puts it (an
   * escalation moves it up). transition "escalated" marks the row with the
   * priority it had.
   */
  upsert(alert, { flash = false, transition } = {}) {
    alert = withKnownAck(alert);
    const existing = this.rows.get(alert.id);
    if (transition === 'escalated') {
      const from = existing?.alert.priority;
      escalations.set(alert.id, from && from !== alert.priority ? from : escalations.get(alert.id) ?? null);
    }
    const tr = this.renderRow(alert);
    if (flash) tr.classList.add('flash');
    if (existing) {
      existing.tr.remove();
      this.rows.delete(alert.id);
    }
    // Insert before the first row that comes after it.
    let before = null;
    for (const { alert: other, tr: otherTr } of this.rows.values()) {
      if (this.order(alert, other) < 0 && (!before || this.order(other, before.alert) < 0)) {
        before = { alert: other, tr: otherTr };
      }
    }
    this.tbody.insertBefore(tr, before ? before.tr : null);
    this.rows.set(alert.id, { alert, tr });
    this.refreshEmpty();
  }

  /** Updates an alert only if this table shows it (acknowledgements, state changes, escalations). */
  update(alert, { transition = alert.transition, flash = transition === 'escalated' } = {}) {
    const existing = this.rows.get(alert.id);
    if (!existing) return;
    // The SSE payload carries `transition`; keep merchant_name if the update lacks it.
    const merged = { ...existing.alert, ...alert };
    delete merged.transition;
    this.upsert(merged, { transition, flash });
  }

  remove(id) {
    const existing = this.rows.get(id);
    if (!existing) return;
    existing.tr.remove();
    this.rows.delete(id);
    this.refreshEmpty();
  }

  has(id) {
    return this.rows.has(id);
  }

  get size() {
    return this.rows.size;
  }

  lastId() {
    let min = null;
    for (const id of this.rows.keys()) if (min == null || id < min) min = id;
    return min;
  }

  refreshEmpty() {
    const none = this.rows.size === 0;
    this.table.hidden = none;
    this.empty.hidden = !none;
  }
}

// ---------------------------------------------------------------------------
// Who the viewer is, and operator sign-in.

// identity is /api/status's: who this page's requests are (a proxy's
// user or a Basic username), or null. Set by main.js on every status.
let identity = null;
export function setIdentity(id) {
  identity = id || null;
}

/** True when an SSO proxy names the viewer: actions record them, no name is asked. */
export const proxiedIdentity = () => (identity && identity.via === 'proxy' ? identity : null);

const BY_KEY = 'riskwatch.ackBy';
const AUTH_KEY = 'riskwatch.operatorAuth';

function basicAuth(user, pass) {
  // btoa only takes Latin-1; encode UTF-8 first so non-ASCII credentials work.
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

function storage(kind) {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return null;
  }
}

/**
 * The name field of an operator action: the name typed last time, hidden
 * when a proxy names the viewer (the server records them and ignores a
 * typed name). value() is what to send as `by`.
 */
export function byField(testid) {
  const input = h('input', {
    type: 'text', name: 'by', autocomplete: 'name', maxlength: 100,
    dataset: { testid }, value: storage('local')?.getItem(BY_KEY) || '',
  });
  const proxied = proxiedIdentity();
  const el = proxied
    ? h('p', { class: 'acting-as', dataset: { testid: `${testid}-identity` } }, t('op.actingAs', { name: proxied.name }))
    : h('label', null, h('span', null, t('ack.yourName')), input, h('span', { class: 'muted small by-help' }, t('op.nameHelp')));
  return {
    el,
    input: proxied ? null : input,
    value: () => (proxied ? '' : input.value.trim()),
    remember: () => {
      if (!proxied && input.value.trim()) storage('local')?.setItem(BY_KEY, input.value.trim());
    },
  };
}

/**
 * Operator sign-in: a fieldset that opens when the server answers 401/403
 * (the page's own credentials may only read). prefix names its testids
 * (`${prefix}-user`, `${prefix}-password`). run(send, showError) calls
 * send(headers) with the credentials to use and keeps them for the tab.
 */
export function operatorSignIn(prefix) {
  const userInput = h('input', { type: 'text', name: 'username', autocomplete: 'username', dataset: { testid: `${prefix}-user` } });
  const passInput = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', dataset: { testid: `${prefix}-password` } });
  const note = h('p', { class: 'creds-note' }, t('ack.credsRequired'));
  const el = h('fieldset', { class: 'creds', hidden: true },
    h('legend', null, t('ack.operator')),
    note,
    h('label', null, h('span', null, t('ack.username')), userInput),
    h('label', null, h('span', null, t('ack.password')), passInput));
  async function run(send, showError) {
    let auth = null;
    if (!el.hidden) {
      if (!userInput.value) {
        showError(t('ack.credsRequired'));
        userInput.focus();
        return null;
      }
      auth = basicAuth(userInput.value, passInput.value);
    } else {
      auth = storage('session')?.getItem(AUTH_KEY) || null;
    }
    try {
      const result = await send(auth ? { Authorization: auth } : {});
      if (auth) storage('session')?.setItem(AUTH_KEY, auth);
      return result;
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        storage('session')?.removeItem(AUTH_KEY);
        const hadCreds = !el.hidden;
        el.hidden = false;
        note.textContent = t('ack.credsRequired');
        // 401: wrong username/password; 403: valid, but not an operator.
        if (hadCreds) showError(`${t(err.status === 401 ? 'ack.credsWrong' : 'ack.credsRejected')} (${err.message})`);
        userInput.focus();
      } else if (err.status === 400 && /^by: /.test(err.message)) {
        showError(t('ack.nameRequired'));
      } else {
        showError(err.message);
      }
      return null;
    }
  }
  return { el, run };
}

/**
 * Opens the dialog for one alert; resolves with the updated alert, or null
 * when cancelled. Asks for operator credentials when the server answers
 * 401/403 and retries with an explicit Authorization header.
 */
export function openAckDialog(alert) {
  return new Promise((resolve) => {
    const by = byField('ack-by');
    const commentInput = h('textarea', { name: 'comment', rows: 3, maxlength: 1000, dataset: { testid: 'ack-comment' } });
    const signIn = operatorSignIn('ack');
    const error = h('div', { class: 'msg msg-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', dataset: { testid: 'ack-submit' } }, t('ack.submit'));
    const cancel = h('button', { type: 'button', class: 'btn' }, t('ack.cancel'));

    const stakes = [
      alert.evidence != null ? t('evidence.value', { n: fmtEvidence(alert.evidence) }) : null,
      alert.exposure != null ? t('money.exposure', { amount: fmtKRW(alert.exposure) }) : null,
      alert.canceled_amount_h != null ? t('money.canceledH', { amount: fmtKRW(alert.canceled_amount_h) }) : null,
    ].filter(Boolean);
    const form = h('form', { class: 'ack-form', novalidate: true },
      h('h2', null, t('ack.title')),
      h('p', { class: 'ack-target' },
        priorityBadge(alert.priority), ' ',
        h('strong', null, ruleLabel(alert.rule)), ' · ',
        alert.merchant_name || t('merchant.unnamed'), h('span', { class: 'muted mono' }, ` #${alert.merchant_id}`),
        h('br'), h('span', { class: 'muted' }, `${t('col.since')} ${fmtDateTime(alert.active_at)} · ${alertValuesText(alert)}`),
        stakes.length ? [h('br'), h('span', { class: 'muted' }, stakes.join(' · '))] : null),
      by.el,
      h('label', null, h('span', null, t('ack.comment')), commentInput),
      signIn.el,
      error,
      h('div', { class: 'dialog-actions' }, cancel, submit));

    const dialog = h('dialog', { class: 'ack-dialog', 'aria-label': t('ack.title') }, form);
    document.body.appendChild(dialog);

    let done = false;
    const finish = (result) => {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      resolve(result);
    };
    const showError = (text) => {
      error.textContent = text;
      error.hidden = !text;
    };

    cancel.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      finish(null);
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError('');
      submit.disabled = true;
      try {
        const updated = await signIn.run((headers) => api.ack(alert.id, { by: by.value(), comment: commentInput.value.trim() }, headers), showError);
        if (updated) {
          by.remember();
          finish(updated);
        }
      } finally {
        submit.disabled = false;
      }
    });

    dialog.showModal();
    (by.input && !by.input.value ? by.input : commentInput).focus();
  });
}
