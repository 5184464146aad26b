// Overview: the live numbers first (tiles), dependency health with the
// /readyz reasons and details, 10-minute charts (uPlot) of deliveries,
// connections and refusals, and the top keys by traffic and by refusals.
import { api } from './api.js';
import { h, fill, num, ms, bytes, utc } from './dom.js';

const TOP_EVERY = 10000;
const CHART_H = 130;

// Colours of the chart series, by role.
const C = { blue: '#4493f8', green: '#3fb950', orange: '#f0883e', red: '#f85149', purple: '#a371f7', yellow: '#d29922', grey: '#8b98a8' };
const CODE_COLOURS = [C.red, C.orange, C.yellow, C.purple, C.blue, C.grey];

export function mount(el, ctx) {
  const tiles = h('section', { class: 'tiles', id: 'tiles', 'aria-label': 'Live numbers' });
  const deps = h('div', { class: 'deps' });
  const details = h('div');
  const health = h('section', { class: 'card health', id: 'health' }, deps, details);
  const charts = {
    deliveries: h('div', { class: 'card chart', id: 'chart-deliveries' }),
    connections: h('div', { class: 'card chart', id: 'chart-connections' }),
    refusals: h('div', { class: 'card chart', id: 'chart-refusals' }),
  };
  const topTraffic = h('div');
  const topRefusals = h('div');
  fill(el,
    tiles,
    health,
    h('div', { class: 'grid3' }, charts.deliveries, charts.connections, charts.refusals),
    h('div', { class: 'grid2 top' },
      h('section', { class: 'card', id: 'top-traffic' }, h('h2', {}, 'Top keys by traffic ', h('span', { class: 'muted' }, '(last 10 min, this node)')), topTraffic),
      h('section', { class: 'card', id: 'top-refusals' }, h('h2', {}, 'Top keys by refusals ', h('span', { class: 'muted' }, '(last 10 min, this node)')), topRefusals)),
  );

  const plots = new Plots(charts);
  const unsub = ctx.feed.subscribe((st) => {
    if (!st.latest && !st.samples.length) {
      fill(tiles, h('div', { class: 'tile' }, h('div', { class: 'label' }, 'Waiting for the first sample…')));
    } else if (st.latest) {
      renderTiles(tiles, st);
    }
    if (st.health) renderHealth(deps, details, st.health, st.latest);
    plots.update(st.samples);
  });

  let topTimer = null;
  let stopped = false;
  async function loadTop() {
    try {
      const d = await api('GET', '/admin/v1/top-keys?n=10');
      renderTop(topTraffic, topRefusals, d);
    } catch (e) {
      if (e.status !== 401) fill(topTraffic, h('p', { class: 'error' }, e.message));
    }
    if (!stopped) topTimer = setTimeout(loadTop, TOP_EVERY);
  }
  loadTop();
  const onResize = () => plots.resize();
  window.addEventListener('resize', onResize);

  return {
    unmount() {
      stopped = true;
      clearTimeout(topTimer);
      unsub();
      plots.destroy();
      window.removeEventListener('resize', onResize);
    },
  };
}

// sum10 sums a per-step field over the ring.
const sumOf = (samples, f) => samples.reduce((a, s) => a + f(s), 0);

function tile(id, label, value, sub, cls) {
  return h('div', { class: `tile ${cls || ''}`, id: `tile-${id}` },
    h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), h('div', { class: 'sub' }, sub || '\u00a0'));
}

function renderTiles(el, st) {
  const s = st.latest;
  const step = (st.intervalMS || 2000) / 1000;
  const conflated10 = Math.round(sumOf(st.samples, (x) => (x.dropped_per_s && x.dropped_per_s.conflated) || 0) * step);
  const slow10 = sumOf(st.samples, (x) => x.slow_consumer_closes || 0);
  const codes = Object.entries(s.refusals_by_code || {}).sort((a, b) => b[1] - a[1]);
  const dropped = Object.entries(s.dropped_per_s || {}).reduce((a, [, v]) => a + v, 0);
  const droppedBy = Object.entries(s.dropped_per_s || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${num(v, 1)}`).join(' · ');
  fill(el,
    tile('connections', 'Connections', num(s.conns_anonymous + s.conns_key), `anonymous ${num(s.conns_anonymous)} · keyed ${num(s.conns_key)}`),
    tile('deliveries', 'Deliveries/s', num(s.deliveries_per_s, 1), `frames written ${num(s.frames_written_per_s, 1)}/s`),
    tile('client-frames', 'Client frames/s', num(s.client_frames_per_s, 1), 'subscribe, unsubscribe, ping'),
    tile('refusals', 'Refusals/s', num(s.refusals_per_s, 1), codes.length ? codes.slice(0, 2).map(([c, v]) => `${c} ${num(v, 1)}`).join(' · ') : 'none', s.refusals_per_s > 0 ? 'warn' : ''),
    tile('p99', 'Fan-out latency p99', ms(s.fanout_p99_ms), 'NATS receive → socket write', s.fanout_p99_ms > 100 ? 'warn' : ''),
    tile('channels', 'Channels', num(s.channels), `NATS subs ${num(s.nats_subscriptions)} · client subs ${num(s.subscriptions)}`),
    tile('slow', 'Slow-consumer closes', num(slow10), `last 10 min · ${num(s.slow_consumer_total)} since start`, slow10 > 0 ? 'warn' : ''),
    tile('conflated', 'Conflated frames', num(conflated10), `last 10 min · ${num(s.conflated_total)} since start`),
    tile('dropped', 'Dropped frames/s', num(dropped, 1), droppedBy || 'none', dropped > 0 ? 'warn' : ''),
    tile('cpu', 'CPU', `${num(s.cpu_cores * 100)} %`, 'of one core'),
    tile('memory', 'Memory (RSS)', bytes(s.rss_bytes), `${num(s.goroutines)} goroutines`),
    tile('updated', 'Updated', utc(s.t).slice(11), `${st.samples.length} samples · ${step} s each`),
  );
}

const DEP_NAMES = { nats: 'NATS', redis: 'Redis', store: 'Key store', limiter: 'Cluster limiter', history: 'History', draining: 'Draining' };

function renderHealth(deps, details, hl, s) {
  const failing = new Set(hl.reasons);
  const chips = [];
  const chip = (name, state, text) => h('span', { class: 'dep', id: `dep-${name}` }, h('span', { class: `dot ${state}` }), `${DEP_NAMES[name] || name}: ${text}`);
  chips.push(chip('nats', failing.has('nats') ? 'bad' : 'ok', failing.has('nats') ? 'down' : 'connected'));
  const storeReason = failing.has('redis') ? 'redis' : 'store';
  chips.push(chip(storeReason, failing.has(storeReason) ? 'bad' : 'ok', failing.has(storeReason) ? 'unreachable' : 'ok'));
  chips.push(chip('limiter', failing.has('limiter') ? 'warn' : 'ok', failing.has('limiter') ? 'local shares' : (s && s.limiter_up ? 'in force' : 'ok')));
  for (const r of hl.reasons) {
    if (!['nats', 'redis', 'store', 'limiter'].includes(r)) chips.push(chip(r, 'bad', r === 'draining' ? 'shutting down' : 'failing'));
  }
  fill(deps, h('strong', {}, 'Health'), h('span', { class: `pill ${hl.status === 'ready' ? 'ok' : 'bad'}` }, hl.status), ...chips,
    h('span', { class: 'muted' }, `checked ${utc(hl.checked_at)}`));
  const lines = Object.entries(hl.details || {}).map(([k, v]) => `${k}: ${v}`);
  fill(details, lines.length ? h('p', { class: 'details' }, lines.join('\n')) : null);
}

function renderTop(trafficEl, refusalsEl, d) {
  const link = (p) => h('a', { href: `#/keys/${encodeURIComponent(p)}`, class: 'mono' }, `${p}_…`);
  fill(trafficEl, d.traffic.length ? h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', { class: 'num' }, 'Frames out'), h('th', { class: 'num' }, 'Frames in'), h('th', { class: 'num' }, 'Live conns'))),
    h('tbody', {}, d.traffic.map((k) => h('tr', {}, h('td', {}, link(k.prefix)), h('td', { class: 'num' }, num(k.msgs_out)), h('td', { class: 'num' }, num(k.msgs_in)), h('td', { class: 'num' }, num(k.connections))))))
    : h('p', { class: 'empty' }, 'No keyed traffic in the last 10 minutes.'));
  fill(refusalsEl, d.refusals.length ? h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', { class: 'num' }, 'Refusals'), h('th', {}, 'Codes'))),
    h('tbody', {}, d.refusals.map((k) => h('tr', {}, h('td', {}, link(k.prefix)), h('td', { class: 'num' }, num(k.refusals)),
      h('td', { class: 'wrap' }, Object.entries(k.codes).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${num(n)}`).join(' · '))))))
    : h('p', { class: 'empty' }, 'No refusals of keys in the last 10 minutes.'));
}

// Plots holds the three uPlot charts.
class Plots {
  constructor(els) {
    this.els = els;
    this.charts = {};
    this.codes = '';
  }

  opts(el, title, series) {
    const tz = (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');
    const axis = { stroke: '#8b98a8', grid: { stroke: '#2a3441', width: 1 }, ticks: { stroke: '#2a3441', width: 1 } };
    return {
      title, width: Math.max(el.clientWidth - 32, 200), height: CHART_H, tzDate: tz,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [{ ...axis, space: 80, values: [[60, '{HH}:{mm}', null, null, null, null, null, null, 0], [1, '{HH}:{mm}:{ss}', null, null, null, null, null, null, 0]] },
        { ...axis, size: 46, values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? num(v) : v.toFixed(1))) }],
      series: [{ value: (u, v) => (v == null ? '—' : `${new Date(v * 1000).toISOString().slice(11, 19)}Z`) }, ...series],
    };
  }

  make(name, title, series, data) {
    if (this.charts[name]) this.charts[name].destroy();
    fill(this.els[name]);
    this.charts[name] = new window.uPlot(this.opts(this.els[name], title, series), data, this.els[name]);
  }

  update(samples) {
    if (!window.uPlot) return;
    const x = samples.map((s) => s.t / 1000);
    const line = (label, stroke, fmt) => ({ label, stroke, width: 1.5, points: { show: false }, value: (u, v) => (v == null ? '—' : fmt(v)) });
    const rate = (v) => `${num(v, 1)}/s`;
    const dData = [x, samples.map((s) => s.deliveries_per_s), samples.map((s) => s.client_frames_per_s)];
    const cData = [x, samples.map((s) => s.conns_anonymous + s.conns_key), samples.map((s) => s.conns_anonymous), samples.map((s) => s.conns_key)];
    const totals = {};
    for (const s of samples) for (const [c, v] of Object.entries(s.refusals_by_code || {})) totals[c] = (totals[c] || 0) + v;
    const codes = Object.keys(totals).sort((a, b) => totals[b] - totals[a]).slice(0, 5);
    const rData = [x, samples.map((s) => s.refusals_per_s), ...codes.map((c) => samples.map((s) => (s.refusals_by_code && s.refusals_by_code[c]) || 0))];
    if (!this.charts.deliveries) {
      this.make('deliveries', 'Deliveries/s', [line('deliveries', C.blue, rate), line('client frames', C.green, rate)], dData);
      this.make('connections', 'Connections', [line('total', C.blue, num), line('anonymous', C.grey, num), line('keyed', C.green, num)], cData);
    } else {
      this.charts.deliveries.setData(dData);
      this.charts.connections.setData(cData);
    }
    const key = codes.join(',');
    if (!this.charts.refusals || key !== this.codes) {
      this.codes = key;
      this.make('refusals', 'Refusals/s by code', [line('all', C.red, rate), ...codes.map((c, i) => line(c, CODE_COLOURS[(i + 1) % CODE_COLOURS.length], rate))], rData);
    } else {
      this.charts.refusals.setData(rData);
    }
  }

  resize() {
    for (const [name, c] of Object.entries(this.charts)) c.setSize({ width: Math.max(this.els[name].clientWidth - 32, 200), height: CHART_H });
  }

  destroy() {
    for (const c of Object.values(this.charts)) c.destroy();
    this.charts = {};
  }
}
