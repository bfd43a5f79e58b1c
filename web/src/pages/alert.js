// One alert: what it reports, its acknowledgement, the silences of its
// merchant (create and expire them here), comments, and the audit of what
// operators did about it (who, what, when, from where).

import { api, events } from '../api.js';
import { h, replace, message } from '../dom.js';
import { t } from '../i18n.js';
import { fmtDateTime } from '../format.js';
import { AlertTable, byField, operatorSignIn, ruleLabel, merchantLink, priorityBadge, stateBadge } from '../alerts-ui.js';

const DURATIONS = ['1h', '4h', '24h', '7d'];

export function mount(root, ctx) {
  const id = Number(ctx.params.id);
  document.title = `${t('alert.title', { id })} · riskwatch`;
  let destroyed = false;
  let current = null; // the alert

  const title = h('h1', { class: 'merchant-title', dataset: { testid: 'alert-title' } }, t('alert.title', { id }));
  const sub = h('p', { class: 'sub' });
  const table = new AlertTable({
    columns: ['priority', 'rule', 'merchant', 'state', 'from', 'to', 'evidence', 'money', 'values', 'ack'],
    emptyText: t('loading'),
    testid: 'alert-detail',
  });
  const status = h('div');

  // -- operator actions: one sign-in and one name for the page's forms ------
  const signIn = operatorSignIn('op');
  const by = byField('op-by');
  const error = h('div', { class: 'msg msg-error', role: 'alert', hidden: true });
  const showError = (text) => {
    error.textContent = text;
    error.hidden = !text;
  };
  async function act(button, send) {
    showError('');
    button.disabled = true;
    try {
      const done = await signIn.run(send, showError);
      if (done) {
        by.remember();
        await Promise.all([loadSilences(), loadAudit()]);
      }
      return done;
    } finally {
      button.disabled = false;
    }
  }

  // -- silences -------------------------------------------------------------
  const silenceList = h('div', { dataset: { testid: 'silences' } });
  const ruleSel = h('select', { name: 'rule', dataset: { testid: 'silence-rule' } });
  const forSel = h('select', { name: 'for', dataset: { testid: 'silence-for' } },
    DURATIONS.map((d) => h('option', { value: d }, t(`silence.for.${d}`))));
  const reasonInput = h('input', { type: 'text', name: 'reason', maxlength: 1000, placeholder: t('silence.reasonPlaceholder'), dataset: { testid: 'silence-reason' } });
  const silenceSubmit = h('button', { type: 'submit', class: 'btn btn-primary', dataset: { testid: 'silence-submit' } }, t('silence.submit'));
  const silenceForm = h('form', { class: 'op-form', novalidate: true, dataset: { testid: 'silence-form' } },
    h('label', null, h('span', null, t('col.rule')), ruleSel),
    h('label', null, h('span', null, t('silence.for')), forSel),
    h('label', { class: 'grow' }, h('span', null, t('silence.reason')), reasonInput),
    silenceSubmit);
  silenceForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!current) return;
    if (!reasonInput.value.trim()) {
      showError(t('silence.reasonRequired'));
      reasonInput.focus();
      return;
    }
    const body = { merchant_id: current.merchant_id, rule: ruleSel.value, for: forSel.value, reason: reasonInput.value.trim(), by: by.value() };
    if (await act(silenceSubmit, (headers) => api.addSilence(body, headers))) reasonInput.value = '';
  });

  function silenceRow(sl) {
    const expire = h('button', { type: 'button', class: 'btn btn-small', dataset: { testid: 'silence-expire' } }, t('silence.expire'));
    expire.addEventListener('click', () => act(expire, (headers) => api.expireSilence(sl.id, { by: by.value() }, headers)));
    return h('tr', { dataset: { testid: 'silence-row', silenceId: sl.id } },
      h('td', { class: 'mono num' }, String(sl.id)),
      h('td', null, sl.rule ? ruleLabel(sl.rule) : t('silence.allRules')),
      h('td', { class: 'mono' }, fmtDateTime(sl.starts_at)),
      h('td', { class: 'mono' }, fmtDateTime(sl.ends_at)),
      h('td', null, sl.created_by),
      h('td', { class: 'wrap' }, sl.reason),
      h('td', null, expire));
  }

  async function loadSilences() {
    if (!current) return;
    try {
      const res = await api.silences({ merchant: current.merchant_id });
      if (destroyed) return;
      const list = res.silences || [];
      replace(silenceList, list.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('thead', null, h('tr', null, ['col.id', 'col.rule', 'silence.from', 'silence.until', 'silence.by', 'silence.reason', null]
            .map((k) => h('th', null, k ? t(k) : '')))),
          h('tbody', null, list.map(silenceRow))))
        : message('empty', t('silence.none')));
    } catch (err) {
      if (!destroyed) replace(silenceList, message('error', `${t('error.load')}: ${err.message}`));
    }
  }

  // -- comments -------------------------------------------------------------
  const commentInput = h('textarea', { name: 'comment', rows: 2, maxlength: 4000, dataset: { testid: 'comment-text' } });
  const commentSubmit = h('button', { type: 'submit', class: 'btn btn-primary', dataset: { testid: 'comment-submit' } }, t('comment.submit'));
  const commentForm = h('form', { class: 'op-form', novalidate: true },
    h('label', { class: 'grow' }, h('span', null, t('comment.label')), commentInput), commentSubmit);
  commentForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = commentInput.value.trim();
    if (!text) {
      commentInput.focus();
      return;
    }
    if (await act(commentSubmit, (headers) => api.comment(id, { comment: text, by: by.value() }, headers))) commentInput.value = '';
  });

  // -- audit ----------------------------------------------------------------
  const auditBody = h('div', { dataset: { testid: 'audit' } });

  function what(e) {
    if (e.action === 'silence_create' || e.action === 'silence_expire') {
      return t(`audit.${e.action}`, { id: e.silence_id, rule: e.rule ? ruleLabel(e.rule) : t('silence.allRules') });
    }
    return t(`audit.${e.action}`, null, e.action);
  }

  function auditRow(e) {
    const from = [e.peer, e.forwarded_for ? t('audit.forwardedFor', { xff: e.forwarded_for }) : null].filter(Boolean).join(' · ');
    return h('tr', { dataset: { testid: 'audit-row', action: e.action, by: e.by, silenceId: e.silence_id ?? undefined } },
      h('td', { class: 'mono' }, fmtDateTime(e.at, { seconds: true })),
      h('td', null, h('strong', null, e.by), ' ', h('span', { class: 'tag', title: t(`via.${e.via}Help`) }, t(`via.${e.via}`, null, e.via)),
        e.email ? h('span', { class: 'muted small' }, ` ${e.email}`) : null),
      h('td', null, what(e)),
      h('td', { class: 'wrap' }, e.comment || ''),
      h('td', { class: 'mono small muted' }, from || '—'));
  }

  async function loadAudit() {
    try {
      const res = await api.alertAudit(id);
      if (destroyed) return;
      const list = res.entries || [];
      replace(auditBody, list.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('thead', null, h('tr', null, ['audit.when', 'audit.who', 'audit.what', 'audit.note', 'audit.from'].map((k) => h('th', null, t(k))))),
          h('tbody', null, list.map(auditRow))))
        : message('empty', t('audit.none')));
    } catch (err) {
      if (!destroyed) replace(auditBody, message('error', `${t('error.load')}: ${err.message}`));
    }
  }

  // -- the alert ------------------------------------------------------------
  function showAlert(a) {
    current = a;
    replace(title, priorityBadge(a.priority), ' ', t('alert.title', { id: a.id }), ' ', stateBadge(a.state));
    replace(sub, h('strong', null, ruleLabel(a.rule)), ' · ', merchantLink(a.merchant_id, a.merchant_name), ' · ', a.summary || '');
    table.setAlerts([a]);
    const rules = [['', t('silence.allRules')], ['cancel_rate_spike', ruleLabel('cancel_rate_spike')], ['volume_drop', ruleLabel('volume_drop')]];
    const keep = ruleSel.value;
    replace(ruleSel, rules.map(([v, label]) => h('option', { value: v }, label)));
    ruleSel.value = keep || (a.rule === 'cancel_rate_spike' || a.rule === 'volume_drop' ? a.rule : '');
    // Merchant 0 is riskwatch itself: there is nothing to silence.
    silenceForm.hidden = a.merchant_id === 0;
  }

  async function load() {
    replace(status, message('loading', t('loading')));
    try {
      const a = await api.alert(id);
      if (destroyed) return;
      replace(status);
      showAlert(a);
      await Promise.all([loadSilences(), loadAudit()]);
    } catch (err) {
      if (!destroyed) replace(status, message('error', `${t('error.load')}: ${err.message}`));
    }
  }

  replace(root,
    h('div', { class: 'page-head' }, h('p', { class: 'crumbs' }, h('a', { href: '/alerts' }, t('nav.alerts'))), title, sub),
    status,
    h('div', { class: 'card' }, table.el),
    h('div', { class: 'card', dataset: { testid: 'operator-actions' } },
      h('h2', null, t('op.title')),
      h('div', { class: 'op-form' }, by.el),
      signIn.el,
      error,
      h('h3', null, t('silence.title')),
      silenceList,
      silenceForm,
      h('h3', null, t('comment.title')),
      commentForm),
    h('div', { class: 'card' }, h('h2', null, t('audit.title')), auditBody));

  const unsubs = [
    events.on('alert', (ev) => {
      if (ev.id !== id) return;
      const { transition, ...a } = ev;
      showAlert({ ...current, ...a });
      if (transition === 'acknowledged') loadAudit();
    }),
    events.on('reconnect', () => load()),
  ];

  load();

  return {
    unmount() {
      destroyed = true;
      unsubs.forEach((u) => u());
      table.destroy();
    },
  };
}
