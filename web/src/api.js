// HTTP API client (docs/api.md) and the shared Server-Sent Events stream.

/** An API answer that was not 2xx; `message` is the server's JSON `error`. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function buildURL(path, params) {
  const url = new URL(path, location.origin);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v != null && v !== '') url.searchParams.set(k, String(v));
    }
  }
  return url.pathname + url.search;
}

async function request(method, path, { params, body, headers, signal } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, signal, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(buildURL(path, params), init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, `network error: ${err.message}`);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : `${res.status} ${res.statusText}`.trim();
    throw new ApiError(res.status, msg);
  }
  return data;
}

export const api = {
  get: (path, params, opts = {}) => request('GET', path, { ...opts, params }),
  post: (path, body, opts = {}) => request('POST', path, { ...opts, body }),

  status: (opts) => api.get('/api/status', null, opts),
  platformMinutes: (params, opts) => api.get('/api/platform/minutes', params, opts),
  searchMerchants: (q, limit = 20, opts) => api.get('/api/merchants', { q, limit }, opts),
  riskRanking: (limit = 50, opts) => api.get('/api/rankings/risk', { limit }, opts),
  volumeDropRanking: (limit = 50, opts) => api.get('/api/rankings/volume-drop', { limit }, opts),
  merchant: (id, opts) => api.get(`/api/merchants/${encodeURIComponent(id)}`, null, opts),
  merchantSeries: (id, params, opts) => api.get(`/api/merchants/${encodeURIComponent(id)}/series`, params, opts),
  merchantVolume: (id, day, opts) => api.get(`/api/merchants/${encodeURIComponent(id)}/volume`, { day }, opts),
  alerts: (params, opts) => api.get('/api/alerts', params, opts),
  ack: (id, body, headers) => api.post(`/api/alerts/${encodeURIComponent(id)}/ack`, body, { headers }),
  alert: (id, opts) => api.get(`/api/alerts/${encodeURIComponent(id)}`, null, opts),
  alertAudit: (id, opts) => api.get(`/api/alerts/${encodeURIComponent(id)}/audit`, null, opts),
  comment: (id, body, headers) => api.post(`/api/alerts/${encodeURIComponent(id)}/comments`, body, { headers }),
  audit: (params, opts) => api.get('/api/audit', params, opts),
  silences: (params, opts) => api.get('/api/silences', params, opts),
  addSilence: (body, headers) => api.post('/api/silences', body, { headers }),
  expireSilence: (id, body, headers) => api.post(`/api/silences/${encodeURIComponent(id)}/expire`, body, { headers }),
};

// ---------------------------------------------------------------------------
// Server-Sent Events: one EventSource for the whole app; pages subscribe and
// unsubscribe as they mount and unmount.

const listeners = new Map(); // event type -> Set<fn>
let source = null;
let retryTimer = null;
let everOpened = false;

function emit(type, payload) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(payload);
    } catch (err) {
      console.error(`handler for ${type} failed`, err);
    }
  }
}

function connect() {
  clearTimeout(retryTimer);
  source = new EventSource('/api/events');
  source.addEventListener('open', () => {
    // After a reconnect, events may have been missed: let pages refetch.
    if (everOpened) emit('reconnect', null);
    everOpened = true;
    emit('connection', 'open');
  });
  source.addEventListener('error', () => {
    emit('connection', 'error');
    // EventSource retries by itself unless the server answered with an error
    // status (readyState CLOSED); then retry ourselves, gently.
    if (source.readyState === EventSource.CLOSED) {
      retryTimer = setTimeout(connect, 5000);
    }
  });
  for (const type of ['minute', 'alert', 'status']) {
    source.addEventListener(type, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      emit(type, data);
    });
  }
}

export const events = {
  start() {
    if (!source) connect();
  },
  /** Subscribes to `minute`, `alert`, `status`, `connection` or `reconnect`; returns an unsubscribe function. */
  on(type, fn) {
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
    return () => listeners.get(type).delete(fn);
  },
  /** Local (in-page) events, e.g. an acknowledgement made from this tab. */
  emit,
};
