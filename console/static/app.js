// The console's entry point: sign-in, the router (#/overview, #/keys,
// #/keys/<prefix>, #/nodes, #/audit), the header (health, node, UTC clock)
// and the one stats poller every page shares.
import { api, token, setUnauthorizedHandler, ApiError } from './api.js';
import { fill, clock, pill } from './dom.js';
import { StatsFeed } from './stats.js';
import * as overview from './overview.js';
import * as keys from './keys.js';
import * as nodes from './nodes.js';
import * as audit from './audit.js';

const $ = (id) => document.getElementById(id);
const pages = { overview, keys, nodes, audit };

let feed = null;      // StatsFeed while signed in
let current = null;   // {name, unmount}
let clockTimer = null;

function showSignin(message) {
  $('app').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const t = $('token').value.trim();
  $('token').value = '';
  if (!t) return;
  const btn = $('signin-submit');
  btn.disabled = true;
  try {
    await api('GET', '/admin/v1/stats?since=' + Date.now(), undefined, { token: t, probe: true });
    token.set(t);
    start();
  } catch (e) {
    showSignin(e instanceof ApiError && e.status === 401
      ? 'Wrong admin token: the node refused it.'
      : `Cannot sign in: ${e.message}`);
  } finally {
    btn.disabled = false;
  }
}

function signOut(message) {
  token.clear();
  stop();
  showSignin(message);
}

function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  feed = new StatsFeed();
  feed.subscribe(header);
  feed.start();
  clockTimer = setInterval(() => { $('clock').textContent = clock(new Date()); }, 1000);
  $('clock').textContent = clock(new Date());
  route();
}

function stop() {
  if (current) current.unmount();
  current = null;
  if (feed) feed.stop();
  feed = null;
  clearInterval(clockTimer);
  fill($('page'));
}

// header shows the node's health and name from each stats answer.
function header(state) {
  if (state.error) {
    fill($('health-pill'), 'unreachable').className = 'pill bad';
    banner(`Cannot reach the node: ${state.error.message}`);
    return;
  }
  banner('');
  const hl = state.health;
  const p = $('health-pill');
  if (hl.status === 'ready') {
    p.textContent = 'ready';
    p.className = 'pill ok';
  } else {
    p.textContent = `not ready: ${hl.reasons.join(', ')}`;
    p.className = hl.reasons.every((r) => r === 'limiter') ? 'pill warn' : 'pill bad';
  }
  $('node-name').textContent = state.node;
}

export function banner(text) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text || '';
}

function route() {
  if (!token.get()) return;
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/');
  const page = pages[name] ? name : 'overview';
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('active', a.dataset.page === page);
  const arg = rest.map(decodeURIComponent).join('/');
  if (current && current.name === page && current.update) {
    current.update(arg);
    return;
  }
  if (current) current.unmount();
  const el = fill($('page'));
  const ctx = { feed, banner, navigate: (h) => { location.hash = h; } };
  const m = pages[page].mount(el, ctx, arg);
  current = { name: page, unmount: m.unmount || (() => {}), update: m.update };
}

setUnauthorizedHandler(() => signOut('The admin token was refused: sign in again.'));
$('signin-form').addEventListener('submit', signIn);
$('signout').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
// Errors of the page itself are shown, not swallowed.
window.addEventListener('unhandledrejection', (e) => banner(`Error: ${e.reason && e.reason.message ? e.reason.message : e.reason}`));

if (token.get()) start();
else showSignin('');


