// Audit log: every operator action (create, change, revoke, rotate,
// delete) with who (the admin token's id), when, from which IP and what
// changed, newest first.
import { api, qs } from './api.js';
import { h, fill, utc, masked } from './dom.js';

const PAGE = 50;

export function mount(el) {
  const prefix = h('input', { type: 'search', id: 'audit-prefix', placeholder: 'Key prefix', 'aria-label': 'Filter by key prefix' });
  const body = h('div', { id: 'audit' });
  const pager = h('div', { class: 'pager' });
  fill(el, h('div', { class: 'toolbar' }, prefix, h('button', { type: 'button', id: 'audit-refresh', onclick: () => reset() }, 'Refresh')),
    h('section', { class: 'card' }, h('h2', {}, 'Audit log ', h('span', { class: 'muted' }, '(operator actions, newest first)')), body, pager));
  const state = { cursors: [''], page: 0 };
  let t = null;
  prefix.addEventListener('input', () => { clearTimeout(t); t = setTimeout(reset, 250); });
  function reset() { state.cursors = ['']; state.page = 0; load(); }
  async function load() {
    try {
      const d = await api('GET', '/admin/v1/audit' + qs({ prefix: prefix.value.trim(), limit: PAGE, cursor: state.cursors[state.page] }));
      render(body, d.entries || []);
      fill(pager,
        h('span', { class: 'muted' }, `page ${state.page + 1}`),
        h('button', { type: 'button', class: 'small', disabled: state.page === 0, onclick: () => { state.page--; load(); } }, '‹ Newer'),
        h('button', { type: 'button', class: 'small', disabled: !d.next_cursor, onclick: () => { state.cursors[state.page + 1] = d.next_cursor; state.page++; load(); } }, 'Older ›'));
    } catch (e) {
      if (e.status === 401) return;
      fill(body, h('p', { class: e.status === 404 ? 'empty' : 'error' },
        e.status === 404 ? 'This node has no audit log (GET /admin/v1/audit is not served).' : e.message));
    }
  }
  load();
  return { unmount() { clearTimeout(t); } };
}

function render(el, entries) {
  if (!entries.length) {
    fill(el, h('p', { class: 'empty' }, 'No operator action recorded yet.'));
    return;
  }
  fill(el, h('table', { id: 'audit-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Time (UTC)'), h('th', {}, 'Action'), h('th', {}, 'Key'), h('th', {}, 'By (token id)'), h('th', {}, 'From IP'), h('th', {}, 'What changed'))),
    h('tbody', {}, entries.map((e) => h('tr', {},
      h('td', {}, utc(e.time)), h('td', {}, e.action),
      h('td', {}, e.prefix ? h('a', { href: `#/keys/${encodeURIComponent(e.prefix)}`, class: 'mono' }, masked(e.prefix)) : '—'),
      h('td', { class: 'mono' }, e.token_id || '—'), h('td', { class: 'mono' }, e.ip || '—'),
      h('td', { class: 'wrap mono' }, changes(e)))))));
}

function changes(e) {
  if (!e.changes || !Object.keys(e.changes).length) return e.detail || '';
  return Object.entries(e.changes).map(([k, v]) => `${k}: ${fmt(v.from)} → ${fmt(v.to)}`).join('; ');
}

const fmt = (v) => (v === null || v === undefined || v === '' ? '∅' : typeof v === 'object' ? JSON.stringify(v) : String(v));
