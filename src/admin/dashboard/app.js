// The webhook-operator dashboard. It reads the admin API every 5 s and builds the page from DOM
// nodes and text only: nothing that comes from the API is ever parsed as HTML. Its one write is
// the Replay button (POST .../replay).
'use strict';

(() => {
  const REFRESH_MS = 5000;
  const LIST_LIMIT = 50;
  // The API lives beside /dashboard, also behind a path prefix (kubectl proxy, the Kubernetes API
  // server's service proxy), so every URL is relative to where the page was served from.
  const API = location.pathname.replace(/dashboard\/?$/, '');
  const HEALTH = ['Pending', 'Healthy', 'Degraded', 'Failing', 'Disabled', 'Paused', 'Invalid'];

  const $ = (id) => document.getElementById(id);
  const state = {
    endpoints: [],
    selected: null, // {namespace, name}
    busy: false,
    again: false,
  };

  // ---- DOM helpers: children are nodes or plain text (Node.append makes text nodes of strings).

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function badge(text, kind) {
    return el('span', `badge badge-${kind}`, text);
  }

  function healthBadge(health) {
    const known = HEALTH.includes(health);
    return badge(health || 'Unknown', known ? health.toLowerCase() : 'unknown');
  }

  const dash = () => el('span', 'muted', '—');

  // ---- Formatting

  function ago(iso) {
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return String(iso);
    const seconds = Math.round((Date.now() - then) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    const text = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400
      ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
    return future ? `in ${text}` : `${text} ago`;
  }

  function timeCell(iso, className = 'time') {
    if (!iso) return el('td', className, dash());
    const td = el('td', className, ago(iso));
    td.title = new Date(iso).toLocaleString();
    return td;
  }

  function duration(ms) {
    if (typeof ms !== 'number') return '—';
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  }

  const count = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '—');

  function eventCell(id, type) {
    const td = el('td', 'event', el('code', 'event-id', id), el('div', 'muted event-type', type));
    td.title = id;
    return td;
  }

  // ---- The admin API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, init = {}) {
    const response = await fetch(API + path, {
      cache: 'no-store',
      headers: { accept: 'application/json' },
      ...init,
    });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === 'string' ? body.error
        : response.status === 404 ? 'not offered by this server (an older version?)'
          : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  const endpointPath = (ep, rest) =>
    `v1/endpoints/${encodeURIComponent(ep.namespace)}/${encodeURIComponent(ep.name)}/${rest}`;
  const keyOf = (ep) => `${ep.namespace}/${ep.name}`;

  // ---- Endpoints

  function renderNamespaces() {
    const select = $('namespace');
    const namespaces = [...new Set(state.endpoints.map((e) => e.namespace))].sort();
    const shown = [...select.options].slice(1).map((o) => o.value);
    if (shown.join('\n') === namespaces.join('\n')) return;
    const current = select.value;
    select.replaceChildren(el('option', null, 'all'), ...namespaces.map((ns) => {
      const option = el('option', null, ns);
      option.value = ns;
      return option;
    }));
    select.options[0].value = '';
    select.value = namespaces.includes(current) ? current : '';
  }

  function lastFailureCell(ep) {
    const td = el('td', 'last-failure');
    if (ep.reason) {
      // An invalid endpoint: why it cannot be delivered to.
      td.append(el('strong', null, ep.reason), el('div', 'message', ep.message || ''));
      return td;
    }
    const failure = ep.lastFailure;
    if (!failure) {
      td.append(dash());
      return td;
    }
    td.append(
      el('strong', null, failure.reason),
      failure.statusCode ? ` ${failure.statusCode}` : '',
      el('span', 'muted', ` · ${ago(failure.time)}`),
      el('div', 'message', failure.message),
    );
    td.title = `event ${failure.eventId}`;
    return td;
  }

  function endpointRow(ep) {
    const key = keyOf(ep);
    const tr = el('tr', 'endpoint');
    tr.dataset.endpoint = key;
    tr.tabIndex = 0;
    if (state.selected && keyOf(state.selected) === key) tr.classList.add('selected');
    const link = el('a', null, ep.name);
    link.href = `#${encodeURIComponent(ep.namespace)}/${encodeURIComponent(ep.name)}`;
    const url = el('td', 'url', ep.url);
    url.title = ep.url;
    const health = el('td', 'health', healthBadge(ep.health));
    if (ep.consecutiveFailures > 0) {
      health.append(el('div', 'muted', `${ep.consecutiveFailures} failed in a row`));
    }
    tr.append(
      el('td', 'namespace', ep.namespace),
      el('td', 'name', link),
      url,
      health,
      el('td', 'num delivered', count(ep.delivered)),
      el('td', 'num failed', count(ep.failedAttempts)),
      el('td', `num dead${ep.deadLettered > 0 ? ' alert' : ''}`, count(ep.deadLettered)),
      lastFailureCell(ep),
    );
    return tr;
  }

  function renderEndpoints() {
    const namespace = $('namespace').value;
    const rows = state.endpoints.filter((e) => !namespace || e.namespace === namespace);
    $('endpoints').tBodies[0].replaceChildren(...rows.map(endpointRow));
    $('no-endpoints').hidden = rows.length > 0;
    $('endpoint-count').textContent = String(rows.length);
  }

  function select(ep) {
    location.hash = `#${encodeURIComponent(ep.namespace)}/${encodeURIComponent(ep.name)}`;
  }

  function selectedFromHash() {
    const match = /^#([^/]+)\/(.+)$/.exec(location.hash);
    if (!match) return null;
    try {
      return { namespace: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) };
    } catch {
      return null;
    }
  }

  // ---- One endpoint: attempts and dead letters

  function outcomeCell(outcome) {
    const td = el('td', 'outcome');
    const stateName = outcome && outcome.state;
    if (stateName === 'delivered') td.append(badge('delivered', 'success'));
    else if (stateName === 'deadLettered') td.append(badge('dead-lettered', 'failure'));
    else if (stateName === 'retrying') {
      td.append(badge('retrying', 'warning'));
      const next = outcome.nextAttemptTime;
      if (next) {
        // A record's own retry time, which may long have passed: a clock time then.
        const soon = Date.parse(next) > Date.now();
        td.append(el('div', 'muted', soon ? `next ${ago(next)}` : `next at ${new Date(next).toLocaleTimeString()}`));
      }
    } else td.append(stateName ? String(stateName) : dash());
    return td;
  }

  function attemptDetails(a) {
    const td = el('td', 'details');
    if (a.reason) td.append(el('strong', 'reason', a.reason));
    if (a.error) td.append(el('div', 'error', a.error));
    if (a.responseBody) {
      const body = el('code', 'response-body', a.responseBody);
      body.title = a.responseBody;
      td.append(el('div', null, el('span', 'muted', 'response: '), body));
    }
    if (!td.hasChildNodes()) td.append(dash());
    return td;
  }

  function attemptRow(a) {
    const tr = el('tr', 'attempt');
    tr.dataset.eventId = a.eventId;
    tr.dataset.result = a.result;
    tr.append(
      timeCell(a.time),
      eventCell(a.eventId, a.eventType),
      el('td', 'num attempt-number', a.attempt),
      el('td', 'result', badge(a.result, a.result === 'success' ? 'success' : 'failure')),
      el('td', 'num status', a.statusCode ?? '—'),
      el('td', 'num duration', duration(a.durationMs)),
      outcomeCell(a.outcome),
      attemptDetails(a),
    );
    return tr;
  }

  function deadLetterRow(d) {
    const tr = el('tr', 'dead-letter');
    tr.dataset.eventId = d.eventId;
    tr.append(
      timeCell(d.deadLetteredTime),
      eventCell(d.eventId, d.eventType),
      timeCell(d.publishedTime),
      el('td', 'reason', el('strong', null, d.reason)),
      el('td', 'num status', d.statusCode ?? '—'),
      el('td', 'num attempts', d.attempts),
      el('td', 'message', d.message),
    );
    return tr;
  }

  function renderList(settled, tableId, noteId, row, emptyText) {
    const note = $(noteId);
    if (settled.status === 'rejected') {
      $(tableId).tBodies[0].replaceChildren();
      note.textContent = `Unavailable: ${settled.reason.message}`;
      note.hidden = false;
      return [];
    }
    const list = Array.isArray(settled.value) ? settled.value : [];
    $(tableId).tBodies[0].replaceChildren(...list.map(row));
    note.textContent = emptyText;
    note.hidden = list.length > 0;
    return list;
  }

  async function refreshDetail() {
    const ep = state.selected;
    $('detail').hidden = !ep;
    if (!ep) return;
    $('detail-title').textContent = keyOf(ep);
    const listed = state.endpoints.find((e) => keyOf(e) === keyOf(ep));
    $('detail-health').replaceChildren(listed ? healthBadge(listed.health) : badge('not listed', 'unknown'));
    const filter = $('attempt-filter').value;
    const query = `?limit=${LIST_LIMIT}${filter ? `&result=${encodeURIComponent(filter)}` : ''}`;
    const [attempts, deadLetters] = await Promise.allSettled([
      api(endpointPath(ep, 'attempts') + query),
      api(`${endpointPath(ep, 'dead-letters')}?limit=${LIST_LIMIT}`),
    ]);
    if (state.selected !== ep) return; // another endpoint was chosen meanwhile
    renderList(attempts, 'attempts', 'attempts-note', attemptRow,
      filter ? 'No failed attempts recorded.' : 'No attempts recorded yet.');
    const letters = renderList(deadLetters, 'dead-letters', 'dead-letters-note', deadLetterRow,
      'No dead letters.');
    $('dead-letter-count').textContent = deadLetters.status === 'fulfilled' ? String(letters.length) : '';
    $('replay').disabled = letters.length === 0;
  }

  // ---- Refresh

  function showError(message) {
    const banner = $('error');
    banner.textContent = message || '';
    banner.hidden = !message;
  }

  async function refresh() {
    if (state.busy) {
      state.again = true;
      return;
    }
    state.busy = true;
    try {
      const endpoints = await api('v1/endpoints');
      state.endpoints = Array.isArray(endpoints) ? endpoints : [];
      renderNamespaces();
      renderEndpoints();
      await refreshDetail();
      showError(null);
      $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      showError(`Cannot read the admin API: ${error.message}`);
    } finally {
      state.busy = false;
    }
    if (state.again) {
      state.again = false;
      await refresh();
    }
  }

  async function replay() {
    const ep = state.selected;
    if (!ep) return;
    const result = $('replay-result');
    if (!window.confirm(`Replay every dead letter of ${keyOf(ep)}? Each is delivered again, `
      + 'with its original webhook-id.')) return;
    $('replay').disabled = true;
    result.classList.remove('error');
    result.textContent = 'Replaying…';
    try {
      const answer = await api(endpointPath(ep, 'replay'), { method: 'POST' });
      const n = answer && typeof answer.replayed === 'number' ? answer.replayed : 0;
      result.textContent = `Replayed ${n} dead letter${n === 1 ? '' : 's'}.`;
    } catch (error) {
      result.classList.add('error');
      result.textContent = `Replay failed: ${error.message}`;
    }
    await refresh();
  }

  function onSelectionChange() {
    state.selected = selectedFromHash();
    $('replay-result').textContent = '';
    renderEndpoints();
    refresh();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('namespace').addEventListener('change', renderEndpoints);
    $('attempt-filter').addEventListener('change', () => refresh());
    $('replay').addEventListener('click', replay);
    $('close-detail').addEventListener('click', () => {
      history.replaceState(null, '', location.pathname + location.search);
      onSelectionChange();
    });
    const rows = $('endpoints').tBodies[0];
    rows.addEventListener('click', (event) => {
      const row = event.target.closest('tr.endpoint');
      if (!row || event.target.closest('a')) return;
      const ep = state.endpoints.find((e) => keyOf(e) === row.dataset.endpoint);
      if (ep) select(ep);
    });
    rows.addEventListener('keydown', (event) => {
      const row = event.target.closest('tr.endpoint');
      if (event.key !== 'Enter' || !row) return;
      const ep = state.endpoints.find((e) => keyOf(e) === row.dataset.endpoint);
      if (ep) select(ep);
    });
    window.addEventListener('hashchange', onSelectionChange);
    state.selected = selectedFromHash();
    refresh();
    setInterval(() => {
      if ($('auto-refresh').checked && !document.hidden) refresh();
    }, REFRESH_MS);
  });
})();
