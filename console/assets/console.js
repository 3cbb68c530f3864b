// gatework web console. Plain JavaScript, no build step, nothing loaded
// from elsewhere. It uses only the node's HTTP API on this origin:
// getStats once a second for the overview, the other methods for lookups
// and actions. The API token, when one is needed, is kept in
// sessionStorage (this tab only), never in the URL or a cookie.
'use strict';

const $ = (id) => document.getElementById(id);
const tokenKey = 'gatework.console.token';
const samplesKept = 300; // samples kept for the charts: 5 minutes at 1 per second
const pollMs = 1000;

const state = {
  token: sessionStorage.getItem(tokenKey) || '',
  scope: null, // 'read', 'send' or 'admin' once known; 'local' without tokens
  polling: false,
  pollTimer: 0,
  prev: null, // previous getStats result, for rates
  samples: [], // {t, msgsIn, msgsOut, bytesIn, bytesOut}
  groupCursor: '',
  groupNextCursor: '',
  group: '',
  memberCursor: '',
  client: '',
};

// window.consoleState lets tests and curious users see what the page knows.
window.consoleState = state;

// ApiError is an error answer of the HTTP API.
class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || 'HTTP ' + status);
    this.status = status;
    this.code = code || '';
  }
}

// api calls POST /api/<method> with a JSON body and returns its decoded
// answer ({result, partial, missing}), or throws an ApiError.
async function api(method, params) {
  const headers = { 'Content-Type': 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let resp;
  try {
    resp = await fetch('/api/' + method, {
      method: 'POST',
      headers,
      body: JSON.stringify(params || {}),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, 'network', 'the node does not answer (' + err.message + ')');
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (err) {
    throw new ApiError(resp.status, 'bad_answer', 'not a JSON answer (HTTP ' + resp.status + ')');
  }
  if (!resp.ok) {
    const e = body && body.error ? body.error : {};
    throw new ApiError(resp.status, e.code, e.message);
  }
  return body;
}

// ---- formatting ----

function fmtInt(n) {
  return Number(n).toLocaleString('en-US');
}

function fmtRate(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
}

function fmtBytes(n) {
  if (!n) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

function fmtDuration(ms) {
  if (!(ms > 0)) return '–';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

// el builds an element with text content (never HTML from data).
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = el('tr');
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

function link(text, onClick) {
  const a = el('a', text);
  a.href = '#';
  a.addEventListener('click', (ev) => { ev.preventDefault(); onClick(); });
  return a;
}

// ---- the action log ----

function logAction(text, ok) {
  const li = el('li', `${new Date().toLocaleTimeString()} ${text}`, ok ? '' : 'bad');
  $('log').prepend(li);
  while ($('log').children.length > 200) $('log').lastChild.remove();
}

// act runs an API action from a button and logs its outcome.
async function act(what, method, params) {
  try {
    await api(method, params);
    logAction(what + ': done', true);
    return true;
  } catch (err) {
    logAction(`${what}: failed: ${err.message}`, false);
    return false;
  }
}

// message returns {message} or {message_base64} from a textarea and its
// base64 checkbox.
function message(textId, b64Id) {
  const v = $(textId).value;
  return $(b64Id).checked ? { message_base64: v.trim() } : { message: v };
}

// ---- auth ----

function show(section) {
  for (const id of ['login', 'denied', 'app']) $(id).hidden = id !== section;
  $('logout').hidden = !(section === 'app' && state.token);
}

function setState(text, cls) {
  $('state').textContent = text;
  $('state').className = 'state ' + (cls || '');
}

// probeScope finds what the token may do without doing anything: the API
// checks the scope before it reads the body, so an empty call of a send
// (or admin) method answers 403 insufficient_scope when the scope is too
// low and 400 invalid_request when it is enough.
async function probeScope() {
  if (!state.token) return 'local';
  const allowed = async (method) => {
    try {
      await api(method, {});
      return true;
    } catch (err) {
      return !(err.status === 403 || err.status === 401);
    }
  };
  if (await allowed('closeClient')) return 'admin';
  if (await allowed('sendToClient')) return 'send';
  return 'read';
}

function applyScope() {
  const rank = { read: 1, send: 2, admin: 3, local: 3 };
  const have = rank[state.scope] || 0;
  for (const b of document.querySelectorAll('[data-scope]')) {
    const need = rank[b.dataset.scope];
    b.disabled = have < need;
    b.title = have < need ? `needs a token of scope ${b.dataset.scope}` : '';
  }
  $('who').textContent = state.scope === 'local'
    ? 'no token (loopback)'
    : `token scope: ${state.scope}`;
}

// start checks that the API answers with the current token (or none)
// and shows the login form, a refusal or the console.
async function start() {
  try {
    await api('getStats', {});
  } catch (err) {
    if (err.status === 401) {
      const wrong = Boolean(state.token);
      state.token = '';
      sessionStorage.removeItem(tokenKey);
      show('login');
      setState('log in', '');
      $('login-error').textContent = wrong ? 'Wrong token: the API refused it.' : '';
      return false;
    }
    if (err.status === 403) {
      show('denied');
      setState('refused', 'bad');
      $('denied-text').textContent = err.code === 'insufficient_scope'
        ? 'This token may not read the node (it needs scope read or above).'
        : 'The HTTP API serves only loopback clients when no token is configured: ' + err.message;
      return false;
    }
    show('denied');
    setState('error', 'bad');
    $('denied-text').textContent = err.message;
    return false;
  }
  state.scope = await probeScope();
  applyScope();
  show('app');
  startPolling();
  loadGroups('');
  return true;
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  state.token = t;
  $('token').value = '';
  $('login-error').textContent = '';
  if (await start()) sessionStorage.setItem(tokenKey, t);
});

$('logout').addEventListener('click', () => {
  stopPolling();
  state.token = '';
  state.scope = null;
  sessionStorage.removeItem(tokenKey);
  $('login-error').textContent = '';
  show('login');
  setState('log in', '');
  $('who').textContent = '';
});

// ---- live overview ----

function startPolling() {
  if (state.polling) return;
  state.polling = true;
  poll();
}

function stopPolling() {
  state.polling = false;
  clearTimeout(state.pollTimer);
}

// poll fetches getStats, then schedules itself: at most one request in
// flight, one a second.
async function poll() {
  if (!state.polling) return;
  const began = Date.now();
  try {
    const body = await api('getStats', {});
    render(body.result, body.partial, body.missing);
    setState('live', 'live');
  } catch (err) {
    if (err.status === 401) { stopPolling(); start(); return; }
    setState('no answer: ' + err.message, 'bad');
  }
  if (state.polling) state.pollTimer = setTimeout(poll, Math.max(0, pollMs - (Date.now() - began)));
}

// rate is the per-second change of a counter between two answers.
function rate(cur, prev, key, secs) {
  if (!prev || !(secs > 0)) return 0;
  const d = cur[key] - prev[key];
  return d > 0 ? d / secs : 0;
}

function render(st, partial, missing) {
  const t = st.totals;
  const prev = state.prev;
  const secs = prev ? (st.time_unix_ms - prev.time_unix_ms) / 1000 : 0;
  const r = {
    msgsIn: rate(t, prev && prev.totals, 'messages_in', secs),
    msgsOut: rate(t, prev && prev.totals, 'messages_out', secs),
    bytesIn: rate(t, prev && prev.totals, 'bytes_in', secs),
    bytesOut: rate(t, prev && prev.totals, 'bytes_out', secs),
  };
  $('t-connections').textContent = fmtInt(t.connections);
  $('t-uids').textContent = fmtInt(t.uids);
  $('t-groups').textContent = fmtInt(t.groups);
  $('t-gateways').textContent = fmtInt(t.gateways);
  $('t-workers').textContent = fmtInt(t.workers);
  $('t-msgs-in').textContent = prev ? fmtRate(r.msgsIn) : '–';
  $('t-msgs-out').textContent = prev ? fmtRate(r.msgsOut) : '–';
  $('t-bytes-in').textContent = prev ? (r.bytesIn >= 1 ? fmtBytes(Math.round(r.bytesIn)) : '0 B') : '–';
  $('t-bytes-out').textContent = prev ? (r.bytesOut >= 1 ? fmtBytes(Math.round(r.bytesOut)) : '0 B') : '–';
  $('partial').hidden = !partial;
  $('partial').textContent = partial ? 'Some gateways did not answer in time: ' + (missing || []).join(', ') : '';

  const prevGw = new Map(((prev && prev.gateways) || []).map((g) => [g.gateway, g]));
  const gwRows = st.gateways.map((g) => {
    const p = prevGw.get(g.gateway);
    const s = p ? (g.now_unix_ms - p.now_unix_ms) / 1000 : 0;
    return row([g.gateway, g.pid, fmtDuration(g.now_unix_ms - g.started_unix_ms), fmtBytes(g.rss_bytes),
      fmtInt(g.connections), p ? fmtRate(rate(g, p, 'events_sent', s)) : '–',
      p ? fmtRate(rate(g, p, 'messages_in', s)) : '–', p ? fmtRate(rate(g, p, 'messages_out', s)) : '–', g.bus]);
  });
  $('gateways').replaceChildren(...gwRows);

  const prevW = new Map(((prev && prev.workers) || []).map((w) => [w.id, w]));
  const wRows = st.workers.map((w) => {
    const p = prevW.get(w.id);
    return row([w.id, w.pid || '–', w.started_unix_ms ? fmtDuration(st.time_unix_ms - w.started_unix_ms) : '–',
      fmtBytes(w.rss_bytes), w.state || '–', p ? fmtRate(rate(w, p, 'events', secs)) : '–', fmtInt(w.events), w.bus || '–']);
  });
  if (wRows.length === 0) wRows.push(row(['no worker has answered yet', '', '', '', '', '', '', '']));
  $('workers').replaceChildren(...wRows);

  // User processes (cli.App.Processes), when the nodes run some.
  const pRows = (st.processes || []).map((u) => row([u.name, u.gateway || '–', u.pid,
    fmtDuration(st.time_unix_ms - u.started_unix_ms), fmtBytes(u.rss_bytes), fmtInt(u.restarts),
    u.failing ? 'failing (backed off): ' + (u.last_exit || '') : (u.ready ? 'running' : 'starting')]));
  if (pRows.length === 0) pRows.push(row(['none', '', '', '', '', '', '']));
  $('processes').replaceChildren(...pRows);

  state.prev = st;
  if (prev) {
    state.samples.push({ t: st.time_unix_ms, ...r });
    if (state.samples.length > samplesKept) state.samples.shift();
    drawChart($('c-msgs'), 'msgsIn', 'msgsOut', fmtRate);
    drawChart($('c-bytes'), 'bytesIn', 'bytesOut', (v) => (v >= 1 ? fmtBytes(Math.round(v)) : '0 B'));
  }
}

// drawChart draws two series of state.samples over the last 5 minutes.
function drawChart(canvas, inKey, outKey, label) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  let max = 1;
  for (const s of state.samples) max = Math.max(max, s[inKey], s[outKey]);
  const left = 48, top = 6, bottom = h - 16, right = w - 4;
  const now = state.samples.length ? state.samples[state.samples.length - 1].t : Date.now();
  const x = (t) => right - ((now - t) / (samplesKept * 1000)) * (right - left);
  const y = (v) => bottom - (v / max) * (bottom - top);
  g.strokeStyle = css.getPropertyValue('--line');
  g.fillStyle = css.getPropertyValue('--muted');
  g.font = '11px system-ui, sans-serif';
  g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const yy = Math.round(y(max * f)) + 0.5;
    g.beginPath(); g.moveTo(left, yy); g.lineTo(right, yy); g.stroke();
    g.fillText(label(max * f), 2, yy + 4);
  }
  g.fillText('-5 min', left, h - 3);
  g.fillText('now', right - 22, h - 3);
  for (const [key, color] of [[inKey, '--in'], [outKey, '--out']]) {
    g.strokeStyle = css.getPropertyValue(color);
    g.lineWidth = 1.5;
    g.beginPath();
    state.samples.forEach((s, i) => {
      const px = x(s.t), py = y(s[key]);
      if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
    });
    g.stroke();
  }
}

// ---- clients ----

// A client id is 20 or more URL-safe characters (SPEC §3); anything else
// is looked up as a uid.
function looksLikeClientId(s) {
  return /^[0-9A-Za-z_-]{20,}$/.test(s);
}

$('search-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const q = $('search').value.trim();
  $('search-error').textContent = '';
  $('uid-clients').replaceChildren();
  if (!q) return;
  if (looksLikeClientId(q)) {
    try {
      await openClient(q);
      return;
    } catch (err) {
      if (err.code !== 'not_found' && err.code !== 'invalid_client') {
        $('search-error').textContent = err.message;
        return;
      }
    }
  }
  try {
    const body = await api('getClientListByUid', { uid: q, limit: 50 });
    const items = body.result.items;
    if (items.length === 0) {
      $('search-error').textContent = `No connection with client id or uid ${q}.`;
      $('client').hidden = true;
      return;
    }
    $('uid-clients').replaceChildren(...items.map((c) => {
      const li = el('li');
      li.appendChild(link(c, () => openClient(c).catch((err) => { $('search-error').textContent = err.message; })));
      return li;
    }));
    await openClient(items[0]);
  } catch (err) {
    $('search-error').textContent = err.message;
  }
});

async function openClient(id) {
  const body = await api('getClientInfo', { client: id });
  const info = body.result;
  state.client = id;
  $('client').hidden = false;
  $('c-id').textContent = id;
  const sys = info.system || {};
  const rows = [
    ['uid', info.uid || '(none)'],
    ['remote address', `${info.remote_ip}:${info.remote_port}`],
    ['listener', `${sys.listener || '–'} (${sys.protocol || '–'})`],
    ['gateway', sys.gateway || '–'],
    ['connected', fmtTime(sys.connected_at)],
    ['last activity', fmtTime(sys.last_active)],
    ['messages in / out', `${fmtInt(sys.messages_in || 0)} / ${fmtInt(sys.messages_out || 0)}`],
    ['bytes in / out', `${fmtBytes(sys.bytes_in)} / ${fmtBytes(sys.bytes_out)}`],
    ['protected', sys.protected ? 'yes' : 'no'],
  ];
  $('c-info').replaceChildren(...rows.map(row));
  $('c-session').textContent = JSON.stringify(info.session || {}, null, 2);
  $('c-groups').replaceChildren(...(info.groups || []).map((g) => {
    const li = el('li');
    li.appendChild(link(g, () => openGroup(g)));
    return li;
  }));
  if ((info.groups || []).length === 0) $('c-groups').appendChild(el('li', '(none)', 'muted'));
}

function clientAction(what, method, extra) {
  if (!state.client) return;
  const id = state.client;
  act(`${what} ${id}`, method, { client: id, ...extra }).then((ok) => {
    if (ok && method !== 'closeClient') openClient(id).catch(() => {});
  });
}

$('c-send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  clientAction('send to client', 'sendToClient', message('c-msg', 'c-b64'));
});
$('c-close').addEventListener('click', () => clientAction('close', 'closeClient', { force: false }));
$('c-force').addEventListener('click', () => clientAction('force close', 'closeClient', { force: true }));
$('c-protect').addEventListener('click', () => clientAction('protect', 'protect', { protect: true }));
$('c-unprotect').addEventListener('click', () => clientAction('unprotect', 'protect', { protect: false }));
$('c-refresh').addEventListener('click', () => {
  if (state.client) openClient(state.client).catch((err) => { $('search-error').textContent = err.message; });
});

// ---- groups ----

async function loadGroups(cursor) {
  try {
    const body = await api('getGroupList', { cursor, limit: 20 });
    const page = body.result;
    state.groupCursor = cursor;
    state.groupNextCursor = page.next_cursor;
    const rows = page.items.map((g) => {
      const count = el('td', '…');
      const tr = el('tr');
      const name = el('td');
      name.appendChild(link(g, () => openGroup(g)));
      tr.append(name, count);
      api('getClientCountByGroup', { group: g }).then((b) => { count.textContent = fmtInt(b.result); },
        () => { count.textContent = '?'; });
      return tr;
    });
    if (rows.length === 0) rows.push(row(['no groups', '']));
    $('groups').replaceChildren(...rows);
    $('g-next').disabled = !page.next_cursor;
    $('g-page').textContent = cursor ? `after ${cursor}` : 'first page';
  } catch (err) {
    $('groups').replaceChildren(row(['error: ' + err.message, '']));
  }
}

$('g-first').addEventListener('click', () => loadGroups(''));
$('g-next').addEventListener('click', () => { if (state.groupNextCursor) loadGroups(state.groupNextCursor); });

async function openGroup(g, more) {
  try {
    if (!more) {
      state.group = g;
      state.memberCursor = '';
      $('g-members').replaceChildren();
    }
    $('group').hidden = false;
    $('g-name').textContent = g;
    const [page, count] = await Promise.all([
      api('getClientListByGroup', { group: g, cursor: state.memberCursor, limit: 50 }),
      api('getClientCountByGroup', { group: g }),
    ]);
    $('g-count').textContent = `(${fmtInt(count.result)} members)`;
    for (const c of page.result.items) {
      const li = el('li');
      li.appendChild(link(c, () => openClient(c).catch((err) => { $('search-error').textContent = err.message; })));
      $('g-members').appendChild(li);
    }
    state.memberCursor = page.result.next_cursor;
    $('g-more').disabled = !state.memberCursor;
  } catch (err) {
    logAction(`open group ${g}: failed: ${err.message}`, false);
  }
}

$('g-more').addEventListener('click', () => { if (state.group && state.memberCursor) openGroup(state.group, true); });
$('g-send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (state.group) act(`send to group ${state.group}`, 'sendToGroup', { group: state.group, ...message('g-msg', 'g-b64') });
});
$('g-ungroup').addEventListener('click', async () => {
  const g = state.group;
  if (!g) return;
  if (await act(`ungroup ${g}`, 'unGroup', { group: g })) {
    $('group').hidden = true;
    loadGroups(state.groupCursor);
  }
});

// ---- send to all ----

$('all-send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act('send to all', 'sendToAll', message('all-msg', 'all-b64'));
});

start();
