// StatsFeed polls GET /admin/v1/stats: the whole 10-minute ring once, then
// every interval only the samples after the last one it has (?since=), one
// request at a time; it pauses while the tab is hidden. Subscribers get
// {node, health, samples (the ring, oldest first), latest, error}.
import { api } from './api.js';

export class StatsFeed {
  constructor() {
    this.samples = [];
    this.subs = new Set();
    this.timer = null;
    this.inflight = false;
    this.stopped = false;
    this.state = null;
    this.windowMS = 600000;
    this.intervalMS = 2000;
    this.onVisibility = () => { if (!document.hidden) this.poll(); };
  }

  subscribe(fn) {
    this.subs.add(fn);
    if (this.state) fn(this.state);
    return () => this.subs.delete(fn);
  }

  start() {
    document.addEventListener('visibilitychange', this.onVisibility);
    this.poll();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.stopped = true;
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  async poll() {
    if (this.stopped || this.inflight) return;
    clearTimeout(this.timer);
    if (document.hidden) return;
    this.inflight = true;
    const since = this.samples.length ? this.samples[this.samples.length - 1].t : 0;
    try {
      const d = await api('GET', `/admin/v1/stats?since=${since}`);
      this.windowMS = d.window_ms;
      this.intervalMS = d.interval_ms;
      this.samples.push(...d.samples);
      const oldest = (this.samples.length ? this.samples[this.samples.length - 1].t : 0) - this.windowMS;
      while (this.samples.length && this.samples[0].t <= oldest) this.samples.shift();
      this.state = { node: d.node, health: d.health, samples: this.samples,
        latest: this.samples[this.samples.length - 1] || null, intervalMS: this.intervalMS, error: null };
    } catch (e) {
      if (e.status === 401) return; // signed out
      this.state = { ...(this.state || { samples: this.samples }), error: e };
    } finally {
      this.inflight = false;
    }
    for (const fn of this.subs) fn(this.state);
    if (!this.stopped) this.timer = setTimeout(() => this.poll(), Math.min(this.intervalMS, 2000));
  }
}
