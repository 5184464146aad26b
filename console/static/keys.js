// Keys: search (account, alias, prefix, category), status filter,
// pagination, per-key details with live budget, quota use and deliveries
// today, actions (create with the key shown once, activate/deactivate,
// revoke with a confirm step, rotate, edit limits/quotas/expiry/scopes/
// allowed IPs, delete an unused key) and the key's connection events.
import { api, qs } from './api.js';
import { h, fill, utc, ago, num, bytes, masked, short, pill } from './dom.js';

const PAGE = 25;
const LIVE_EVERY = 5000;

export function mount(el, ctx, arg) {
  const state = { q: '', status: '', cursors: [''], page: 0, next: null, all: null, selected: arg || '' };
  const search = h('input', { type: 'search', id: 'key-search', placeholder: 'Search account, alias, prefix or category', 'aria-label': 'Search keys' });
  const status = h('select', { id: 'key-status', 'aria-label': 'Status filter' },
    ['', 'active', 'inactive', 'expired', 'revoked'].map((s) => h('option', { value: s }, s || 'any status')));
  const createBtn = h('button', { type: 'button', class: 'primary', id: 'key-create' }, 'New key');
  const refreshBtn = h('button', { type: 'button', id: 'key-refresh' }, 'Refresh');
  const tableEl = h('div', { id: 'keys-table' });
  const pager = h('div', { class: 'pager' });
  const detail = h('aside', { class: 'card', id: 'key-detail' });
  const msg = h('p', { class: 'error', role: 'alert', hidden: true });
  const layout = h('div', { class: 'keys-layout nodetail' },
    h('section', { class: 'card table-scroll' }, tableEl, pager), detail);
  fill(el, h('div', { class: 'toolbar' }, search, status, refreshBtn, h('span', { class: 'spacer' }), createBtn), msg, layout);
  detail.hidden = true;

  let searchTimer = null;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = search.value.trim(); resetPages(); load(); }, 250);
  });
  status.addEventListener('change', () => { state.status = status.value; resetPages(); load(); });
  refreshBtn.addEventListener('click', () => load());
  createBtn.addEventListener('click', () => createDialog(ctx, (prefix) => { resetPages(); ctx.navigate(`#/keys/${prefix}`); load(); }));

  function resetPages() { state.cursors = ['']; state.page = 0; state.all = null; }
  function showError(e) { msg.hidden = !e; msg.textContent = e ? e.message || String(e) : ''; }

  // load fetches one page (one request); an API without pagination
  // (no next_cursor field) returns every key and is paged here.
  async function load() {
    showError(null);
    try {
      const cursor = state.cursors[state.page];
      const d = await api('GET', '/admin/v1/keys' + qs({ q: state.q, status: state.status, limit: PAGE, cursor }));
      let keys = d.keys.filter((k) => matches(k, state.q));
      if ('next_cursor' in d) {
        state.next = d.next_cursor;
      } else {
        const start = state.page * PAGE;
        state.next = keys.length > start + PAGE ? 'page' : null;
        keys = keys.slice(start, start + PAGE);
      }
      renderTable(keys);
      tableEl.dataset.q = state.q; // what the table shows (tests wait for it)
    } catch (e) {
      if (e.status !== 401) showError(e);
    }
  }

  function renderTable(keys) {
    const delivered = keys.some((k) => deliveredToday(k) !== null);
    fill(tableEl, keys.length ? h('table', { id: 'keys' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', {}, 'Alias'), h('th', {}, 'Account'), h('th', {}, 'Category'),
        h('th', {}, 'Status'), h('th', { class: 'col-scopes' }, 'Scopes'), h('th', {}, 'Created (UTC)'), h('th', {}, 'Last used'), h('th', { class: 'num' }, 'Requests'),
        delivered ? h('th', { class: 'num col-wide' }, 'Delivered today') : null)),
      h('tbody', {}, keys.map((k) => h('tr', {
        class: `clickable${k.prefix === state.selected ? ' selected' : ''}`, dataset: { prefix: k.prefix },
        onclick: () => ctx.navigate(`#/keys/${k.prefix}`),
      }, h('td', { class: 'mono' }, masked(k.prefix)), h('td', {}, k.alias || ''), h('td', { class: 'mono', title: k.account }, short(k.account)),
      h('td', {}, k.category || ''), h('td', {}, pill(k.status)), h('td', { class: 'col-scopes', title: scopeNames(k).join(', ') }, scopesShort(k)), h('td', { title: utc(k.created_at) }, `${utc(k.created_at).slice(0, 16)}Z`),
      h('td', { title: utc(k.last_used_at) }, ago(k.last_used_at)), h('td', { class: 'num' }, num(k.request_count)),
      delivered ? h('td', { class: 'num col-wide' }, num(deliveredToday(k))) : null))))
      : h('p', { class: 'empty' }, state.q || state.status ? 'No key matches.' : 'No keys yet: create one with "New key".'));
    fill(pager,
      h('span', { class: 'muted' }, `page ${state.page + 1}`),
      h('button', { type: 'button', class: 'small', disabled: state.page === 0, onclick: () => { state.page--; load(); } }, '‹ Prev'),
      h('button', { type: 'button', class: 'small', disabled: !state.next, onclick: () => {
        state.cursors[state.page + 1] = state.next === 'page' ? '' : state.next;
        state.page++;
        load();
      } }, 'Next ›'));
  }

  // The detail panel, refreshed every LIVE_EVERY while open (one request).
  // The live refresh replaces the head and the facts only, so an open form
  // or confirm step survives it.
  let parts = null;
  let liveTimer = null;
  let detailGen = 0;
  async function showDetail(prefix, withEvents = true) {
    clearTimeout(liveTimer);
    state.selected = prefix;
    for (const tr of tableEl.querySelectorAll('tbody tr')) tr.classList.toggle('selected', tr.dataset.prefix === prefix);
    if (!prefix) {
      detail.hidden = true;
      layout.classList.add('nodetail');
      return;
    }
    if (withEvents && (detail.hidden || !parts || parts.prefix !== prefix)) {
      parts = null; // another key: nothing of the last one stays clickable
      fill(detail, h('p', { class: 'muted' }, 'Loading…'));
    }
    detail.hidden = false;
    layout.classList.remove('nodetail');
    const gen = ++detailGen;
    try {
      const k = await api('GET', `/admin/v1/keys/${encodeURIComponent(prefix)}`);
      if (gen !== detailGen) return;
      let events = null;
      if (withEvents) {
        events = await api('GET', `/admin/v1/keys/${encodeURIComponent(prefix)}/events?limit=50`).catch((e) => ({ error: e }));
        if (gen !== detailGen) return;
      }
      renderDetail(k, events);
    } catch (e) {
      if (e.status === 401 || gen !== detailGen) return;
      fill(detail, h('p', { class: 'error' }, e.code === 'API_KEY_NOT_FOUND' ? `Key ${prefix} not found.` : e.message));
      return;
    }
    liveTimer = setTimeout(() => showDetail(prefix, false), LIVE_EVERY);
  }

  function renderDetail(k, events) {
    const head = h('h2', {}, 'Key ', h('span', { class: 'mono' }, masked(k.prefix)), ' ', pill(k.status));
    const facts = factsOf(k);
    if (parts && parts.prefix === k.prefix && !events) {
      parts.head.replaceWith(head);
      parts.facts.replaceWith(facts);
      Object.assign(parts, { head, facts });
      return;
    }
    const actions = h('div', { class: 'actions' });
    const confirmEl = h('div');
    const formEl = h('div');
    const actionMsg = h('p', { class: 'error', role: 'alert', hidden: true });
    const act = async (fn) => {
      actionMsg.hidden = true;
      try { await fn(); } catch (e) { if (e.status !== 401) { actionMsg.hidden = false; actionMsg.textContent = e.message; } }
    };
    const save = async (body) => { await api('PATCH', `/admin/v1/keys/${k.prefix}`, body); await showDetail(k.prefix); load(); };
    const patch = (body) => act(() => save(body));
    if (k.status !== 'revoked') {
      if (k.status === 'inactive') actions.append(h('button', { type: 'button', id: 'act-activate', onclick: () => patch({ active: true }) }, 'Activate'));
      else actions.append(h('button', { type: 'button', id: 'act-deactivate', onclick: () => patch({ active: false }) }, 'Deactivate'));
      actions.append(
        h('button', { type: 'button', id: 'act-edit', onclick: () => fill(formEl, editForm(k, save, () => fill(formEl))) }, 'Edit…'),
        h('button', { type: 'button', id: 'act-rotate', onclick: () => fill(confirmEl, confirmBox(
          `Rotate ${masked(k.prefix)}? A new key with the same settings is made; this one stays valid until you revoke it.`, 'Rotate', false,
          () => act(async () => { const c = await api('POST', `/admin/v1/keys/${k.prefix}/rotate`, {}); fill(confirmEl); showKeyOnce(c, 'Key rotated', () => { load(); ctx.navigate(`#/keys/${c.key.prefix}`); }); }),
          () => fill(confirmEl))) }, 'Rotate…'),
        h('button', { type: 'button', class: 'danger', id: 'act-revoke', onclick: () => fill(confirmEl, confirmBox(
          `Revoke ${masked(k.prefix)}${k.alias ? ` (${k.alias})` : ''}? Its connections close on every node within a second. This cannot be undone.`, 'Revoke key', true,
          () => { fill(confirmEl); patch({ status: 'revoked' }); }, () => fill(confirmEl))) }, 'Revoke…'));
    }
    if (!k.request_count) {
      actions.append(h('button', { type: 'button', id: 'act-delete', onclick: () => fill(confirmEl, confirmBox(
        `Delete ${masked(k.prefix)}? It was never used; it is removed with its events.`, 'Delete key', true,
        () => act(async () => { await api('DELETE', `/admin/v1/keys/${k.prefix}`); ctx.navigate('#/keys'); load(); }), () => fill(confirmEl))) }, 'Delete…'));
    }
    actions.append(h('button', { type: 'button', class: 'small', onclick: () => ctx.navigate('#/keys') }, 'Close'));
    const eventsEl = events ? renderEvents(events) : h('p', { class: 'empty' }, '…');
    parts = { prefix: k.prefix, head, facts };
    fill(detail, head, facts, actions, actionMsg, confirmEl, formEl, h('h3', {}, 'Connection events'), eventsEl);
  }

  function update(arg) { showDetail(arg || ''); }
  load();
  update(arg);
  return { update, unmount() { clearTimeout(liveTimer); clearTimeout(searchTimer); detailGen++; } };
}

// factsOf is the key's facts: settings, usage and live use.
function factsOf(k) {
  const live = k.live;
  const rows = [
    ['Key', h('span', { class: 'mono', id: 'detail-masked' }, masked(k.prefix))],
    ['Alias', k.alias || '—'], ['Category', k.category || '—'], ['Account', h('span', { class: 'mono' }, k.account)],
    ['Status', pill(k.status)], ['Created', utc(k.created_at)], ['Expires', k.expires_at ? utc(k.expires_at) : 'never'],
    ['Last used', k.last_used_at ? `${utc(k.last_used_at)} (${ago(k.last_used_at)})` : 'never'],
    ['Requests', num(k.request_count)],
    ['Live connections', h('span', { id: 'detail-conns' }, live ? num(live.connections) : '—')],
    ['Credits', live ? budget(live.credits.remaining, live.credits.limit, 'remaining') : limitText(k.limits.credits_per_minute, '/min')],
  ];
  // live.quotas: {"<window>": {limit, used, reset_at}} (docs/rest.md, Quotas).
  if (live && live.quotas) for (const [w, q] of Object.entries(live.quotas)) rows.push([`Quota ${w}`, budget(q.used, q.limit, 'used', q.reset_at)]);
  const cidrs = k.allowed_cidrs || [];
  rows.push(['Scopes', h('span', { id: 'detail-scopes' }, scopeNames(k).join(', '))],
    ['Allowed IPs', h('span', { id: 'detail-cidrs', class: cidrs.length ? 'mono' : null }, cidrs.join(', ') || 'any')],
    ['Delivered today', h('span', { id: 'detail-delivered' }, usageText(k.usage_today))]);
  rows.push(['Limits', h('span', { id: 'detail-limits' }, limitsText(k.limits))], ['Quotas', quotasText(k.quotas)]);
  return h('dl', { class: 'kv', id: 'detail-facts' }, rows.map(([dt, dd]) => [h('dt', {}, dt), h('dd', {}, dd)]));
}

// matches is the client-side search (the server's q= does the same).
function matches(k, q) {
  if (!q) return true;
  const s = q.toLowerCase();
  return [k.account, k.alias, k.prefix, k.category].some((v) => v && v.toLowerCase().includes(s));
}

// scopeNames is the key's effective scopes; absent or empty means both.
const SCOPES = ['market', 'account'];
function scopeNames(k) {
  return Array.isArray(k.scopes) && k.scopes.length ? k.scopes : SCOPES;
}

// scopesShort is the keys table's cell: "both", or the one scope.
function scopesShort(k) {
  const s = scopeNames(k);
  return s.length === SCOPES.length ? 'both' : s.join(', ');
}

// usageText is a usage_today/usage_total object (messages_delivered,
// bytes_delivered, credits) as "1,234 messages · 5.6 MiB"; "—" before the
// API meters deliveries.
function usageText(u) {
  if (!u || typeof u.messages_delivered !== 'number') return '—';
  return `${num(u.messages_delivered)} messages · ${bytes(u.bytes_delivered || 0)}`;
}

// deliveredToday reads the messages delivered today when the API has them.
function deliveredToday(k) {
  if (k.usage_today && typeof k.usage_today.messages_delivered === 'number') return k.usage_today.messages_delivered;
  if (typeof k.messages_delivered_today === 'number') return k.messages_delivered_today;
  return null;
}

function budget(value, limit, what, resetAt) {
  return h('span', {}, h('meter', { min: 0, max: limit || 1, value: Math.min(value, limit || 1),
    low: what === 'used' ? (limit * 0.7) : (limit * 0.2), high: what === 'used' ? (limit * 0.9) : (limit * 0.5), optimum: what === 'used' ? 0 : limit }),
  ` ${num(value)} / ${num(limit)} ${what === 'used' ? 'used' : 'left'}`, resetAt ? h('span', { class: 'muted' }, ` · resets ${utc(resetAt)}`) : null);
}

const limitText = (v, unit) => (v ? `${num(v)}${unit}` : 'tier default');

function limitsText(l) {
  const parts = [];
  if (l.credits_per_minute) parts.push(`${num(l.credits_per_minute)} credits/min`);
  if (l.max_connections) parts.push(`${num(l.max_connections)} connections`);
  if (l.max_subscriptions) parts.push(`${num(l.max_subscriptions)} subs/conn`);
  if (l.conn_messages_per_second) parts.push(`${l.conn_messages_per_second} msgs/s/conn`);
  return parts.join(' · ') || 'tier defaults';
}

function quotasText(q) {
  const parts = Object.entries(q || {}).filter(([, v]) => typeof v === 'number' && v > 0).map(([w, v]) => `${w} ${num(v)}`);
  if (q && q.calendar) parts.push('calendar (UTC)');
  return parts.join(' · ') || 'none';
}

function confirmBox(text, label, danger, onYes, onNo) {
  return h('div', { class: 'confirm', id: 'confirm' }, h('p', {}, text),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: danger ? 'danger' : 'primary', id: 'confirm-yes', onclick: onYes }, label),
      h('button', { type: 'button', id: 'confirm-no', onclick: onNo }, 'Cancel')));
}

// numberField is an optional integer input; empty means "not set".
function field(id, label, value, attrs = {}) {
  return h('div', {}, h('label', { for: id }, label), h('input', { id, value: value ?? '', ...attrs }));
}

// editForm edits alias, category, expiry, limits, quotas, scopes and
// allowed IPs; it PATCHes only what changed. save(body) returns a promise;
// its error is shown in the form, a field error of the API (400 "Invalid
// field <name>: ...") next to that field when the form has a slot for it.
function editForm(k, save, cancel) {
  const L = k.limits || {};
  const Q = k.quotas || {};
  const n = (v) => (v ? String(v) : '');
  const scopesBefore = scopeNames(k);
  const cidrsBefore = k.allowed_cidrs || [];
  const scopes = h('fieldset', { class: 'scopes', id: 'edit-scopes', 'aria-describedby': 'edit-scopes-error' },
    h('legend', {}, 'Scopes'),
    SCOPES.map((s) => h('label', { class: 'inline' },
      h('input', { type: 'checkbox', name: 'scope', id: `edit-scope-${s}`, value: s, checked: scopesBefore.includes(s) }), ` ${s}`)),
    fieldError('scopes', 'edit-scopes-error'));
  const cidrs = h('div', {},
    h('label', { for: 'edit-cidrs' }, 'Allowed IPs (one CIDR or address per line; empty: any IP)'),
    h('textarea', { id: 'edit-cidrs', rows: 3, spellcheck: 'false', autocomplete: 'off', placeholder: 'any IP, e.g.\n10.0.0.0/8\n2001:db8::/32',
      'aria-describedby': 'edit-cidrs-error', value: cidrsBefore.join('\n') }),
    fieldError('allowed_cidrs', 'edit-cidrs-error'));
  const err = h('p', { class: 'error', role: 'alert', hidden: true });
  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'edit-save' }, 'Save');
  const form = h('form', { class: 'card', id: 'edit-form', method: 'post', action: '' },
    h('h2', {}, 'Edit key'),
    h('div', { class: 'formgrid' },
      field('edit-alias', 'Alias', k.alias), field('edit-category', 'Category', k.category),
      field('edit-credits', 'Credits per minute', n(L.credits_per_minute), { inputmode: 'numeric', placeholder: 'tier default' }),
      field('edit-maxconns', 'Max connections', n(L.max_connections), { inputmode: 'numeric', placeholder: 'tier default' }),
      field('edit-maxsubs', 'Max subscriptions / conn', n(L.max_subscriptions), { inputmode: 'numeric', placeholder: 'tier default' }),
      field('edit-msgrate', 'Messages/s per conn', n(L.conn_messages_per_second), { inputmode: 'decimal', placeholder: 'tier default' }),
      field('edit-qdaily', 'Daily quota', n(Q.daily), { inputmode: 'numeric', placeholder: 'none' }),
      field('edit-qweekly', 'Weekly quota', n(Q.weekly), { inputmode: 'numeric', placeholder: 'none' }),
      field('edit-qmonthly', 'Monthly quota', n(Q.monthly), { inputmode: 'numeric', placeholder: 'none' }),
      field('edit-qtotal', 'Total quota', n(Q.total), { inputmode: 'numeric', placeholder: 'none' }),
      field('edit-expires', 'Expires (UTC, YYYY-MM-DD HH:MM)', k.expires_at ? utc(k.expires_at).slice(0, 16) : '', { placeholder: 'never' })),
    scopes, cidrs,
    h('p', { class: 'hint' }, 'Empty or 0 restores the tier default (limits) or removes the quota.'),
    err,
    h('div', { class: 'actions' }, saveBtn, h('button', { type: 'button', onclick: cancel }, 'Cancel')));

  // showError puts e next to its field (e.field, or the API's field
  // error), else under the form.
  const showError = (e) => {
    const m = /^Invalid field ([\w.]+): (.*)$/s.exec(e.message || '');
    const name = e.field || (m && m[1]);
    const slot = name ? form.querySelector(`.field-error[data-field="${name}"]`) : null;
    if (!slot) { err.hidden = false; err.textContent = e.message || String(e); return; }
    let text = e.field ? e.message : m[2];
    if (name === 'allowed_cidrs') {
      text = text.replace(/^entry (\d+) /, (all, i) => (cidrLines[i] ? `line ${cidrLines[i].line} ("${cidrLines[i].text}") ` : all));
    }
    slot.hidden = false;
    slot.textContent = text;
    const input = form.querySelector(`#${slot.id.replace(/-error$/, '')}`);
    if (input) input.setAttribute('aria-invalid', 'true');
  };
  const clearErrors = () => {
    err.hidden = true;
    for (const slot of form.querySelectorAll('.field-error')) slot.hidden = true;
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  };
  // cidrLines maps the entries sent to their lines (blank lines are left out).
  let cidrLines = [];

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const body = {};
    try {
      const int = (id, label) => {
        const v = val(id);
        if (v === '') return 0;
        if (!/^\d+$/.test(v)) throw new Error(`${label}: a whole number, or empty`);
        return Number(v);
      };
      if (val('edit-alias') !== (k.alias || '')) body.alias = val('edit-alias');
      if (val('edit-category') !== (k.category || '')) body.category = val('edit-category');
      const limits = {};
      const setL = (key, v) => { if (v !== (L[key] || 0)) limits[key] = v; };
      setL('credits_per_minute', int('edit-credits', 'Credits per minute'));
      setL('max_connections', int('edit-maxconns', 'Max connections'));
      setL('max_subscriptions', int('edit-maxsubs', 'Max subscriptions'));
      const rate = val('edit-msgrate') === '' ? 0 : Number(val('edit-msgrate'));
      if (Number.isNaN(rate) || rate < 0) throw new Error('Messages/s per conn: a number, or empty');
      setL('conn_messages_per_second', rate);
      if (Object.keys(limits).length) body.limits = limits;
      const quotas = {};
      const setQ = (key, v) => { if (v !== (Q[key] || 0)) quotas[key] = v; };
      setQ('daily', int('edit-qdaily', 'Daily quota'));
      setQ('weekly', int('edit-qweekly', 'Weekly quota'));
      setQ('monthly', int('edit-qmonthly', 'Monthly quota'));
      setQ('total', int('edit-qtotal', 'Total quota'));
      if (Object.keys(quotas).length) body.quotas = quotas;
      const exp = val('edit-expires');
      const before = k.expires_at ? utc(k.expires_at).slice(0, 16) : '';
      if (exp !== before) {
        if (exp === '') body.expires_at = null;
        else {
          const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})$/.exec(exp);
          if (!m) throw new Error('Expires: YYYY-MM-DD HH:MM (UTC), or empty for never');
          body.expires_at = `${m[1]}T${m[2]}:00Z`;
        }
      }
      // At least one scope stays checked: the API reads [] as both, which
      // an operator unchecking both would not expect.
      const sel = [...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value);
      if (!sel.length) throw Object.assign(new Error('Check at least one scope.'), { field: 'scopes' });
      if (sel.join() !== scopesBefore.join()) body.scopes = sel;
      cidrLines = form.querySelector('#edit-cidrs').value.split('\n')
        .map((text, i) => ({ line: i + 1, text: text.trim() })).filter((l) => l.text !== '');
      const list = cidrLines.map((l) => l.text);
      if (list.join('\n') !== cidrsBefore.join('\n')) body.allowed_cidrs = list;
    } catch (e) {
      showError(e);
      return;
    }
    if (!Object.keys(body).length) { cancel(); return; }
    saveBtn.disabled = true;
    try {
      await save(body);
    } catch (e) {
      if (e.status !== 401) showError(e);
    } finally {
      saveBtn.disabled = false;
    }
  });
  return form;
}

// fieldError is the error slot of a form field, named by its API field.
function fieldError(name, id) {
  return h('p', { class: 'error field-error', id, dataset: { field: name }, role: 'alert', hidden: true });
}

function renderEvents(d) {
  if (d.error) return h('p', { class: 'error' }, d.error.message);
  const evs = (d.events || []).slice().reverse();
  if (!evs.length) return h('p', { class: 'empty' }, 'No connection events yet.');
  return h('table', { id: 'key-events' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Time (UTC)'), h('th', {}, 'IP'), h('th', {}, 'Node'), h('th', {}, 'What'), h('th', { class: 'num' }, 'In/out'))),
    h('tbody', {}, evs.map((e) => h('tr', {},
      h('td', {}, utc(e.time).slice(5)), h('td', { class: 'mono' }, e.ip), h('td', {}, e.node || ''),
      h('td', { class: 'wrap' }, e.refusal ? `refused ${e.refusal}${e.count > 1 ? ` ×${e.count}` : ''}` : `closed ${e.close_code || ''} ${e.close_reason || ''} after ${num(e.duration_ms / 1000, 1)} s`),
      h('td', { class: 'num' }, e.refusal ? '' : `${num(e.msgs_in)}/${num(e.msgs_out)}`)))));
}

// showKeyOnce shows a new key in a modal with a copy button; the key
// leaves the page when the dialog closes.
function showKeyOnce(created, title, onClose) {
  const code = h('code', { id: 'new-key' }, created.api_key);
  const copied = h('span', { class: 'muted', id: 'copy-state', role: 'status' });
  const copy = h('button', { type: 'button', id: 'copy-key', onclick: async () => {
    try {
      await navigator.clipboard.writeText(created.api_key);
      copied.textContent = 'Copied.';
    } catch {
      const r = document.createRange();
      r.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      copied.textContent = 'Selected: press Ctrl+C to copy.';
    }
  } }, 'Copy');
  const dlg = h('dialog', { id: 'key-dialog', 'aria-label': title },
    h('h2', {}, title),
    h('p', {}, 'This is the only time the full key is shown. Copy it now and hand it over securely.'),
    h('div', { class: 'secret' }, code, copy), copied,
    h('p', { class: 'muted' }, 'Key ', h('span', { class: 'mono' }, masked(created.key.prefix)), ` for ${short(created.key.account)}`),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'key-dialog-done', onclick: () => dlg.close() }, 'Done')));
  dlg.addEventListener('close', () => { dlg.remove(); onClose(); });
  document.body.append(dlg);
  dlg.showModal();
}

// createDialog asks for the new key's account and settings.
function createDialog(ctx, onCreated) {
  const err = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h('form', { method: 'post', action: '', id: 'create-form' },
    h('h2', {}, 'New API key'),
    field('create-account', 'Account (base58 wallet public key)', '', { required: true, spellcheck: 'false', autocomplete: 'off' }),
    h('div', { class: 'formgrid' },
      field('create-alias', 'Alias', ''), field('create-category', 'Category', ''),
      field('create-credits', 'Credits per minute', '', { inputmode: 'numeric', placeholder: 'tier default' }),
      field('create-expires', 'Expires (UTC, YYYY-MM-DD HH:MM)', '', { placeholder: 'never' })),
    err,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'create-submit' }, 'Create key'),
      h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel')));
  const dlg = h('dialog', { id: 'create-dialog', 'aria-label': 'New API key' }, form);
  dlg.addEventListener('close', () => dlg.remove());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const body = { account: val('create-account') };
    if (val('create-alias')) body.alias = val('create-alias');
    if (val('create-category')) body.category = val('create-category');
    if (val('create-credits')) {
      if (!/^\d+$/.test(val('create-credits'))) { err.hidden = false; err.textContent = 'Credits per minute: a whole number'; return; }
      body.limits = { credits_per_minute: Number(val('create-credits')) };
    }
    if (val('create-expires')) {
      const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})$/.exec(val('create-expires'));
      if (!m) { err.hidden = false; err.textContent = 'Expires: YYYY-MM-DD HH:MM (UTC)'; return; }
      body.expires_at = `${m[1]}T${m[2]}:00Z`;
    }
    try {
      const c = await api('POST', '/admin/v1/keys', body);
      dlg.close();
      showKeyOnce(c, 'Key created', () => onCreated(c.key.prefix));
    } catch (e) {
      if (e.status === 401) { dlg.close(); return; }
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  document.body.append(dlg);
  dlg.showModal();
}
