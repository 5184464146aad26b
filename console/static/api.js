// The operator API client: every call sends the admin token as a Bearer
// header (never a cookie, never in a URL) and unwraps the REST envelope
// {success, data, error, code}.

const TOKEN = 'floodgate.console.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN),
  set: (t) => sessionStorage.setItem(TOKEN, t),
  clear: () => sessionStorage.removeItem(TOKEN),
};

// ApiError carries the HTTP status and the envelope's code.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// api calls path (below the page's origin) and returns the envelope's data.
// A 401 signs the tab out (the token was refused) unless opts.probe.
export async function api(method, path, body, opts = {}) {
  const t = opts.token ?? token.get();
  const headers = { Accept: 'application/json' };
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'NETWORK', 'The node does not answer (network error)');
  }
  let env = null;
  try { env = await resp.json(); } catch { /* not JSON */ }
  if (resp.status === 401) {
    if (!opts.probe) onUnauthorized();
    throw new ApiError(401, 'UNAUTHORIZED', 'Wrong admin token');
  }
  if (!resp.ok || !env || env.success === false) {
    const code = env && env.code ? env.code : `HTTP_${resp.status}`;
    const msg = env && env.error ? env.error : `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, code, msg);
  }
  return env.data;
}

// qs builds a query string from the non-empty values of obj.
export function qs(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}
