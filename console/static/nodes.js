// Nodes: every node heard on floodgate.ctl.nodes in the last 15 s, with
// its health and headline numbers (one request every 5 s).
import { api } from './api.js';
import { h, fill, num, ms, utc, ago } from './dom.js';

const EVERY = 5000;

export function mount(el) {
  const body = h('div', { id: 'nodes' });
  fill(el, h('section', { class: 'card' }, h('h2', {}, 'Nodes ', h('span', { class: 'muted' }, '(heard in the last 15 s)')), body));
  let timer = null;
  let stopped = false;
  async function load() {
    try {
      const d = await api('GET', '/admin/v1/nodes');
      render(body, d.nodes);
    } catch (e) {
      if (e.status !== 401) fill(body, h('p', { class: 'error' }, e.message));
    }
    if (!stopped) timer = setTimeout(load, EVERY);
  }
  load();
  return { unmount() { stopped = true; clearTimeout(timer); } };
}

function render(el, nodes) {
  if (!nodes.length) {
    fill(el, h('p', { class: 'empty' }, 'No heartbeat yet (the first comes 5 s after start).'));
    return;
  }
  fill(el, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Health'), h('th', { class: 'num' }, 'Connections'),
      h('th', { class: 'num' }, 'Keyed'), h('th', { class: 'num' }, 'Deliveries/s'), h('th', { class: 'num' }, 'Client frames/s'),
      h('th', { class: 'num' }, 'Refusals/s'), h('th', { class: 'num' }, 'Fan-out p99'), h('th', { class: 'num' }, 'Channels'),
      h('th', {}, 'Started (UTC)'), h('th', {}, 'Last heartbeat'))),
    h('tbody', {}, nodes.map((n) => {
      const s = n.stats || {};
      const hl = n.health || { status: 'unknown', reasons: [] };
      const cls = hl.status === 'ready' ? 'ok' : (hl.reasons.every((r) => r === 'limiter') ? 'warn' : 'bad');
      return h('tr', {},
        h('td', {}, n.node, n.self ? h('span', { class: 'muted' }, ' (this node)') : null, n.sidecar ? h('span', { class: 'muted' }, ' sidecar') : null),
        h('td', { title: Object.entries(hl.details || {}).map(([k, v]) => `${k}: ${v}`).join('\n') },
          h('span', { class: `pill ${cls}` }, hl.status === 'ready' ? 'ready' : `not ready: ${hl.reasons.join(', ')}`)),
        h('td', { class: 'num' }, num((s.conns_anonymous || 0) + (s.conns_key || 0))),
        h('td', { class: 'num' }, num(s.conns_key || 0)),
        h('td', { class: 'num' }, num(s.deliveries_per_s, 1)),
        h('td', { class: 'num' }, num(s.client_frames_per_s, 1)),
        h('td', { class: 'num' }, num(s.refusals_per_s, 1)),
        h('td', { class: 'num' }, ms(s.fanout_p99_ms)),
        h('td', { class: 'num' }, num(s.channels)),
        h('td', {}, utc(n.started_at)),
        h('td', {}, ago(Date.now() - n.age_ms)));
    }))));
}
