// The taskhost portal: a page per hash route (#/schemas, #/run/NAME,
// #/runs, #/runs/ID, #/audit, #/webhooks), built from the JSON API (/v1)
// and nothing else. Text goes into the page as text (textContent), never as
// markup, so nothing the API returns can run here; the server's CSP allows
// only this file to run anyway.
'use strict';

const POLL_MS = 2000;
const STATES = ['awaiting_approval', 'queued', 'running', 'pausing', 'paused', 'cancelling',
  'cancelled', 'succeeded', 'failed', 'rejected'];
const LOG_LINES_SHOWN = 500;  // the newest; `taskhost runs logs` has them all

let session = null;  // GET /v1/session: actor, roles, allowed_actions, csrf_token
let poller = null;   // the current page's refresh, every POLL_MS
let streams = [];    // the current page's live streams (EventSource), closed on navigation
let page = 0;        // bumped per navigation, so a late answer cannot draw on a newer page

// ---- helpers ----------------------------------------------------------------

// h('a', {href: '#/runs'}, 'Runs'): an element with attributes and children
// (strings become text nodes).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces el's children, skipping absent ones (replaceChildren would write "null").
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// One API call. State changes carry the session's CSRF token; the cookie
// goes by itself (same origin). A 401 means the session ended.
async function api(method, path, body, contentType) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && session && session.csrf_token) headers['X-CSRF-Token'] = session.csrf_token;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    if (res.status === 401 && path !== '/v1/session') signedOut('Your session has ended; sign in again.');
    throw new ApiError(res.status, typeof data === 'object' ? data : null);
  }
  return data;
}

function say(text, isError) {
  const s = document.getElementById('status');
  s.textContent = text || '';
  s.classList.toggle('error', !!isError);
}

function may(action) {
  return !!session && session.allowed_actions.includes(action);
}

function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

// "2026-12-02 04:31:08.123+00" and "2026-12-02T04:31:08Z" alike as
// "2026-12-02 04:31:08 UTC".
function when(text) {
  return text ? text.replace('T', ' ').replace(/\.\d+/, '').replace(/(\+00(:00)?|Z)$/, ' UTC') : '';
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.round(seconds);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return (hh ? `${hh} h ` : '') + (hh || mm ? `${mm} min ` : '') + `${ss} s`;
}

function stateBadge(state) {
  return h('span', { class: `state state-${state}` }, state);
}

function percent(progress) {
  if (!progress || !progress.total) return null;
  return Math.min(100, Math.floor((100 * progress.done) / progress.total));
}

function table(caption, headers, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, 'none'))));
}

function field(id, labelText, control, hint) {
  return h('div', { class: 'field' },
    h('label', { for: id }, labelText), control,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null);
}

// ---- sign in / out ----------------------------------------------------------

function signedOut(message) {
  session = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  if (location.hash !== '#/signin') location.hash = '#/signin';
  else render();
  if (message) say(message, true);
}

function signedIn(s) {
  session = s;
  document.getElementById('nav').hidden = false;
  for (const a of document.querySelectorAll('#nav [data-needs]')) a.hidden = !may(a.dataset.needs);
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = `${s.actor} (${s.roles.join(', ')})`;
}

function signInPage(main) {
  const key = h('input', { id: 'api-key', name: 'key', type: 'password', autocomplete: 'off',
    required: true, 'aria-describedby': 'api-key-hint' });
  const error = h('p', { id: 'sign-in-error', class: 'field-error', role: 'alert' });
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in'),
    field('api-key', 'API key', key, 'th_… as `taskhost api-key create` printed it. It is exchanged for a session cookie and not kept by this page.'),
    error,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      signedIn(await api('POST', '/v1/session', { key: key.value.trim() }));
      key.value = '';
      say('');
      location.hash = '#/schemas';
    } catch (e) {
      error.textContent = e.message;
    }
  });
  main.append(form);
  key.focus();
}

async function signOut() {
  try {
    await api('DELETE', '/v1/session');
  } finally {
    signedOut('Signed out.');
  }
}

// ---- schemas ----------------------------------------------------------------

async function schemasPage(main) {
  const data = await api('GET', '/v1/schemas?all=true');
  const byName = new Map();
  for (const s of data.schemas) {
    if (!byName.has(s.name)) byName.set(s.name, []);
    byName.get(s.name).push(s);
  }
  const rows = [...byName.entries()].map(([name, versions]) => {
    const live = versions.filter((v) => !v.removed_at);
    const newest = live[0] || versions[0];
    return h('tr', {},
      h('th', { scope: 'row' }, name),
      h('td', {}, h('ul', { class: 'versions' }, versions.map((v) => h('li', {},
        v.version, v.removed_at ? h('span', { class: 'muted' }, ' (removed)') : null,
        h('span', { class: 'muted' }, ` · ${when(v.installed_at)} by ${v.installed_by}`))))),
      h('td', {}, newest.description || ''),
      h('td', {}, newest.allowed_actions.includes('run')
        ? h('a', { class: 'button', href: `#/run/${encodeURIComponent(name)}`, 'aria-label': `Run ${name}` }, 'Run')
        : h('span', { class: 'muted' }, 'view only')));
  });
  main.append(h('h1', {}, 'Schemas'), table('Installed task schemas, newest version first',
    ['Name', 'Versions', 'Description', ''], rows));
}

// ---- run a task: a form from the schema's parameters -----------------------

function paramControl(name, spec, id) {
  const common = { id, name, 'aria-describedby': `${id}-hint ${id}-error` };
  if (spec.type === 'boolean') {
    return h('input', { ...common, type: 'checkbox', checked: spec.default === true });
  }
  if (spec.type === 'enum') {
    return h('select', common,
      spec.required || spec.default !== undefined ? null : h('option', { value: '' }, '(not set)'),
      spec.values.map((v) => h('option', { value: v, selected: spec.default === v }, v)));
  }
  if (spec.type === 'integer' || spec.type === 'number') {
    return h('input', { ...common, type: 'number', inputmode: spec.type === 'integer' ? 'numeric' : 'decimal',
      step: spec.type === 'integer' ? '1' : 'any', min: spec.min, max: spec.max,
      value: spec.default ?? '' });
  }
  const value = spec.type === 'list' && Array.isArray(spec.default) ? spec.default.join(', ') : spec.default;
  return h('input', { ...common, type: 'text', minlength: spec.min_length, maxlength: spec.max_length,
    value: value ?? '', spellcheck: 'false' });
}

function paramHint(spec) {
  const parts = [spec.type === 'list' ? `list of ${spec.items}, comma-separated` : spec.type];
  if (spec.required) parts.push('required');
  if (spec.min !== undefined && spec.max !== undefined) parts.push(`${spec.min} to ${spec.max}`);
  else if (spec.min !== undefined) parts.push(`at least ${spec.min}`);
  else if (spec.max !== undefined) parts.push(`at most ${spec.max}`);
  if (spec.min_length !== undefined || spec.max_length !== undefined)
    parts.push(`length ${spec.min_length ?? 0} to ${spec.max_length ?? '∞'}`);
  if (spec.pattern) parts.push(`matching /${spec.pattern}/`);
  if (spec.default !== undefined) parts.push(`default ${JSON.stringify(spec.default)}`);
  return (spec.description ? `${spec.description} — ` : '') + parts.join(' · ');
}

// The value to send, or undefined to leave the parameter out (its default
// applies). Text that is not a number goes as text: the API says why.
function paramValue(spec, control) {
  if (spec.type === 'boolean') return control.checked;
  const text = control.value.trim();
  if (text === '') return undefined;
  if (spec.type === 'integer' || spec.type === 'number') {
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  if (spec.type === 'list') {
    return text.split(',').map((x) => x.trim()).filter((x) => x !== '').map((x) =>
      spec.items === 'integer' || spec.items === 'number' ? (Number.isFinite(Number(x)) ? Number(x) : x)
        : spec.items === 'boolean' ? x === 'true' : x);
  }
  return text;
}

function uploadControl(schemaRef, name, spec, target) {
  const id = `upload-${name}`;
  const file = h('input', { id, type: 'file', accept: '.csv,text/csv', 'aria-describedby': `${id}-hint` });
  const note = h('div', { class: 'hint', id: `${id}-hint`, 'aria-live': 'polite' },
    `Upload a CSV into ${spec.upload}; its key fills ${name}.`);
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    note.textContent = `Uploading ${f.name} (${f.size} bytes)…`;
    try {
      const u = await api('POST', `/v1/schemas/${encodeURIComponent(schemaRef)}/uploads/${encodeURIComponent(name)}?name=${encodeURIComponent(f.name)}`,
        f, 'text/csv');
      target.value = u.key;
      note.textContent = `Stored ${u.size} bytes in ${u.bucket} as ${u.key}`;
    } catch (e) {
      note.textContent = `Upload failed: ${e.message}`;
      note.classList.add('field-error');
    }
  });
  return h('div', { class: 'field upload' }, h('label', { for: id }, `File for ${name}`), file, note);
}

async function runFormPage(main, ref) {
  const schema = await api('GET', `/v1/schemas/${encodeURIComponent(ref)}`);
  main.append(h('h1', {}, `Run ${schema.name}`),
    h('p', { class: 'muted' }, `version ${schema.version}`, schema.description ? ` — ${schema.description}` : ''));
  if (!schema.allowed_actions.includes('run')) {
    main.append(h('p', { class: 'notice' }, `Your roles (${session.roles.join(', ')}) may view ${schema.name} but not run it.`));
    return;
  }
  const controls = {};
  const errors = {};
  const fields = Object.entries(schema.params || {}).map(([name, spec]) => {
    const id = `param-${name}`;
    const control = paramControl(name, spec, id);
    controls[name] = control;
    errors[name] = h('div', { class: 'field-error', id: `${id}-error`, role: 'alert' });
    const label = h('label', { for: id }, name, spec.required ? h('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null);
    return h('div', { class: `field${spec.type === 'boolean' ? ' check' : ''}` },
      label, control,
      h('div', { class: 'hint', id: `${id}-hint` }, paramHint(spec)),
      spec.upload ? uploadControl(`${schema.name}@${schema.version}`, name, spec, control) : null,
      errors[name]);
  });
  const general = h('div', { class: 'field-error', role: 'alert', id: 'form-error' });
  const form = h('form', { class: 'card', novalidate: true, 'aria-label': `Parameters for ${schema.name}` },
    fields.length ? fields : h('p', {}, 'This task takes no parameters.'),
    general,
    h('button', { type: 'submit' }, `Run ${schema.name}`));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    general.textContent = '';
    for (const [name, el] of Object.entries(errors)) {
      el.textContent = '';
      controls[name].removeAttribute('aria-invalid');
    }
    const params = {};
    for (const [name, spec] of Object.entries(schema.params || {})) {
      const v = paramValue(spec, controls[name]);
      if (v !== undefined) params[name] = v;
    }
    try {
      const run = await api('POST', '/v1/runs', { schema: `${schema.name}@${schema.version}`, params });
      location.hash = `#/runs/${run.id}`;
    } catch (e) {
      let placed = false;
      for (const f of e.problem.errors || []) {
        const name = (f.field || '').replace(/^params\./, '');
        if (errors[name]) {
          errors[name].textContent = f.detail;
          controls[name].setAttribute('aria-invalid', 'true');
          placed = true;
        }
      }
      general.textContent = placed ? 'Some parameters need another look.' : e.message;
      const first = form.querySelector('[aria-invalid="true"]');
      if (first) first.focus();
    }
  });
  main.append(form);
}

// ---- runs -------------------------------------------------------------------

async function runsPage(main, query) {
  const schemaFilter = h('input', { id: 'filter-schema', type: 'text', value: query.get('schema') || '' });
  const stateFilter = h('select', { id: 'filter-state' }, h('option', { value: '' }, 'any'),
    STATES.map((s) => h('option', { value: s, selected: query.get('state') === s }, s)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    field('filter-schema', 'Schema', schemaFilter),
    field('filter-state', 'State', stateFilter),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (schemaFilter.value.trim()) q.set('schema', schemaFilter.value.trim());
    if (stateFilter.value) q.set('state', stateFilter.value);
    location.hash = `#/runs?${q}`;
  });
  const holder = h('div', {});
  main.append(h('h1', {}, 'Runs'), form, holder);
  const api_query = new URLSearchParams(query);
  api_query.set('limit', '50');
  const refresh = async () => {
    const data = await api('GET', `/v1/runs?${api_query}`);
    const rows = data.runs.map((r) => {
      const p = percent(r.progress);
      return h('tr', {},
        h('td', {}, h('a', { href: `#/runs/${r.id}`, class: 'mono' }, r.id.slice(0, 8))),
        h('td', {}, `${r.schema}@${r.schema_version}`),
        h('td', {}, stateBadge(r.state)),
        h('td', {}, p === null ? '—' : h('progress', { max: 100, value: p, 'aria-label': `run ${r.id.slice(0, 8)} progress` }), p === null ? '' : ` ${p} %`),
        h('td', {}, r.actor),
        h('td', { class: 'when' }, when(r.created_at)));
    });
    const next = data.next ? h('a', { href: `#/runs?${new URLSearchParams({ ...Object.fromEntries(query), after: data.next })}` }, 'Older runs →') : null;
    fill(holder, table('Runs, newest first (refreshed every 2 s)',
      ['Run', 'Schema', 'State', 'Progress', 'Actor', 'Created'], rows), next || '');
  };
  await refresh();
  return refresh;
}

// A run's page, live: the server's event stream (GET /v1/runs/{id}/events/stream)
// says when the run changed, and the page then reads it again; its log
// stream appends lines as the worker stores them. Both resume where they
// were after a dropped connection (EventSource sends Last-Event-ID) and end
// with the run.
async function runPage(main, id) {
  const mine = page;
  const head = h('div', {});
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Run actions' });
  const progress = h('section', { 'aria-labelledby': 'progress-title' });
  const details = h('div', { class: 'grid' });
  const logLines = h('tbody', {});
  const log = h('section', { class: 'wide', 'aria-labelledby': 'log-title' },
    h('h2', { id: 'log-title' }, 'Log'),
    h('table', { class: 'log' }, h('caption', {}, `What the run logged (the newest ${LOG_LINES_SHOWN} lines, live)`),
      h('thead', {}, h('tr', {}, ['At', 'Attempt', 'Level', 'From', 'Message'].map((x) => h('th', { scope: 'col' }, x)))),
      logLines));
  main.append(head, actions, progress, details, log);
  const reason = h('input', { id: 'decision-reason', type: 'text', placeholder: 'why (required to reject)' });

  const act = async (button, action, body) => {
    button.disabled = true;
    try {
      const r = await api('POST', `/v1/runs/${id}/${action}`, body);
      say(`Run ${id.slice(0, 8)}: ${r.state}`);
    } catch (e) {
      say(e.message, true);
    }
    await refresh();
  };
  const button = (action) => h('button', {
    type: 'button', class: action === 'cancel' || action === 'reject' ? 'danger' : '',
    onclick: (ev) => {
      if (action === 'reject' && !reason.value.trim()) {
        say('A rejection needs a reason, for the submitter and the record.', true);
        reason.focus();
        return;
      }
      const why = reason.value.trim() || `${action} from the portal`;
      act(ev.target, action, { reason: why });
    },
  }, action[0].toUpperCase() + action.slice(1));

  const refresh = async () => {
    const [run, output, audit] = await Promise.all([
      api('GET', `/v1/runs/${id}`),
      api('GET', `/v1/runs/${id}/output`),
      api('GET', `/v1/runs/${id}/audit`)]);
    const awaiting = run.state === 'awaiting_approval';
    const deciding = run.allowed_actions.includes('approve');
    fill(head, h('h1', {}, `Run ${run.id.slice(0, 8)} `, stateBadge(run.state)),
      h('p', { class: 'muted' }, `${run.schema}@${run.schema_version} · attempt ${run.attempt} of ${run.max_attempts} · by ${run.actor} · ${run.id}`),
      run.dry_run ? h('p', { class: 'notice' }, 'A dry run: the host refuses every write.') : null,
      awaiting ? h('p', { id: 'approval-note', class: 'notice' }, deciding
        ? `Submitted by ${run.actor}: it waits for your approval.`
        : 'It waits for an approver who did not submit it.') : null,
      run.approval && run.approval.decision ? h('p', { id: 'approval-decision', class: 'muted' },
        `${run.approval.decision} by ${run.approval.actor}${run.approval.reason ? `: ${run.approval.reason}` : ''}`) : null,
      run.error ? h('p', { class: 'notice error' }, `${run.error_code || 'error'}: ${run.error}`) : null);

    const focused = document.activeElement === reason;
    fill(actions, deciding ? field('decision-reason', 'Reason', reason) : null,
      ...run.allowed_actions.map(button));
    if (focused) reason.focus();

    const p = run.progress;
    const pct = percent(p);
    const failed = run.events.filter((e) => e.name === 'item.failed').length;
    fill(progress, h('h2', { id: 'progress-title' }, 'Progress'),
      pct === null ? h('p', { class: 'muted' }, 'No progress reported yet.') : h('div', { class: 'progress' },
        h('progress', { id: 'run-progress', max: 100, value: pct, 'aria-label': 'Run progress', 'aria-valuetext': `${pct} %` }),
        h('span', { id: 'run-percent', class: 'big' }, `${pct} %`)),
      p ? h('dl', { class: 'facts' },
        h('dt', {}, 'Done'), h('dd', { id: 'items-done' }, String(p.done)),
        h('dt', {}, 'Failed'), h('dd', { id: 'items-failed' }, String(failed)),
        h('dt', {}, 'Remaining'), h('dd', { id: 'items-remaining' }, String(Math.max(0, p.total - p.done))),
        h('dt', {}, 'Rate'), h('dd', {}, p.rate !== undefined ? `${p.rate.toFixed(1)} items/s` : '—'),
        h('dt', {}, 'ETA'), h('dd', {}, run.state === 'running' ? duration(p.eta_seconds) : '—')) : null);

    const files = output.files.map((f) => h('tr', {},
      h('td', {}, h('a', { href: `/v1/runs/${id}/files/${encodeURIComponent(f.name)}`, download: f.name }, f.name)),
      h('td', {}, f.content_type), h('td', {}, `${f.size} bytes`), h('td', { class: 'mono' }, f.sha256.slice(0, 16))));
    fill(details,
      h('section', {}, h('h2', {}, 'Parameters'), json(run.params)),
      h('section', {}, h('h2', {}, 'Output'), output.output === null ? h('p', { class: 'muted' }, 'none yet') : json(output.output)),
      h('section', { class: 'wide' }, h('h2', {}, 'Output files'), table('Files the run attached', ['File', 'Type', 'Size', 'SHA-256'], files)),
      h('section', { class: 'wide' }, h('h2', {}, 'Transitions'), table('State changes', ['At', 'Attempt', 'From', 'To', 'Actor', 'Reason'],
        run.transitions.map((t) => h('tr', {}, h('td', { class: 'when' }, when(t.at)), h('td', {}, t.attempt), h('td', {}, t.from || '—'),
          h('td', {}, stateBadge(t.to)), h('td', {}, t.actor), h('td', {}, t.reason))))),
      h('section', { class: 'wide' }, h('h2', {}, 'Events'), table(`Events the plugin emitted (first ${run.events.length})`, ['At', 'Attempt', 'Event', 'Payload'],
        run.events.map((e) => h('tr', {}, h('td', { class: 'when' }, when(e.at)), h('td', {}, e.attempt), h('td', {}, e.name),
          h('td', { class: 'mono' }, JSON.stringify(e.payload)))))),
      h('section', { class: 'wide' }, h('h2', {}, 'Audit trail'), table('Audit entries of this run', ['Seq', 'At', 'Actor', 'Action', 'Subject', 'Detail'],
        audit.entries.map((a) => h('tr', {}, h('td', {}, a.seq), h('td', { class: 'when' }, when(a.at)), h('td', {}, a.actor), h('td', {}, a.action),
          h('td', { class: 'mono' }, a.subject || ''), h('td', { class: 'mono' }, JSON.stringify(a.detail)))))));
  };
  await refresh();
  if (mine !== page) return;  // navigated away meanwhile

  // Many changes in a burst (items done, events) make one read, at most
  // every 300 ms; the last change always gets its read.
  let queued = null;
  const soon = () => {
    queued = queued || setTimeout(() => {
      queued = null;
      refresh().catch((e) => say(e.message, true));
    }, 300);
  };
  const events = new EventSource(`/v1/runs/${id}/events/stream`);
  events.addEventListener('run', soon);
  events.addEventListener('event', soon);
  events.addEventListener('end', () => {
    events.close();
    soon();
  });
  const lines = new EventSource(`/v1/runs/${id}/logs/stream`);
  lines.addEventListener('log', (m) => {
    const l = JSON.parse(m.data);
    logLines.append(h('tr', { class: `log-${l.level}` }, h('td', { class: 'when' }, when(l.at)), h('td', {}, l.attempt),
      h('td', {}, l.level), h('td', {}, l.source), h('td', { class: 'mono' }, l.message)));
    while (logLines.childElementCount > LOG_LINES_SHOWN) logLines.firstElementChild.remove();
  });
  lines.addEventListener('end', () => lines.close());
  streams.push(events, lines);
}

// ---- audit ------------------------------------------------------------------

async function auditPage(main, query) {
  const inputs = {};
  const fields = [['actor', 'Actor', 'api:ops'], ['action', 'Action', 'run, service.s3, api_key…'],
    ['run', 'Run id', ''], ['since', 'Since', '2026-12-01 00:00Z'], ['until', 'Until', '']].map(([k, label, ph]) => {
    inputs[k] = h('input', { id: `audit-${k}`, type: 'text', value: query.get(k) || '', placeholder: ph || null });
    return field(`audit-${k}`, label, inputs[k]);
  });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log' },
    fields, h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) q.set(k, el.value.trim());
    location.hash = `#/audit?${q}`;
  });
  const verdict = h('p', { id: 'verify-result', 'aria-live': 'polite' });
  const verify = h('button', { type: 'button', onclick: async () => {
    verdict.textContent = 'Verifying the hash chain…';
    const v = await api('GET', '/v1/audit/verify');
    verdict.className = v.intact ? 'notice ok' : 'notice error';
    verdict.textContent = v.intact ? `Intact: ${v.entries} entries, every hash chained to the one before.`
      : `Broken at entry ${v.broken_seq}: ${v.why}`;
  } }, 'Verify the chain');
  const q = new URLSearchParams(query);
  q.set('limit', '100');
  const data = await api('GET', `/v1/audit?${q}`);
  const rows = data.entries.map((a) => h('tr', {}, h('td', {}, a.seq), h('td', { class: 'when' }, when(a.at)), h('td', {}, a.actor),
    h('td', {}, a.action), h('td', {}, a.run_id ? h('a', { href: `#/runs/${a.run_id}`, class: 'mono' }, a.run_id.slice(0, 8)) : ''),
    h('td', { class: 'mono' }, a.subject || ''), h('td', { class: 'mono' }, JSON.stringify(a.detail))));
  const next = data.next ? h('a', { href: `#/audit?${new URLSearchParams({ ...Object.fromEntries(query), after: data.next })}` }, 'Later entries →') : null;
  main.append(h('h1', {}, 'Audit log'), form, h('div', { class: 'actions' }, verify), verdict,
    table('Audit entries in chain order', ['Seq', 'At', 'Actor', 'Action', 'Run', 'Subject', 'Detail'], rows), next || '');
}

// ---- webhook dead letters ---------------------------------------------------

async function webhooksPage(main) {
  const holder = h('div', {});
  main.append(h('h1', {}, 'Webhook dead letters'),
    h('p', { class: 'muted' }, 'Deliveries that used up their attempts. Redeliver sends the same message (same webhook-id) now.'), holder);
  const refresh = async () => {
    const data = await api('GET', '/v1/webhooks/deliveries?failed=true&limit=200');
    fill(holder, table('Dead deliveries', ['Id', 'Event', 'Run', 'URL', 'Attempts', 'Last error', ''],
      data.deliveries.map((d) => h('tr', {}, h('td', {}, d.id), h('td', {}, d.event),
        h('td', {}, h('a', { href: `#/runs/${d.run_id}`, class: 'mono' }, d.run_id.slice(0, 8))),
        h('td', { class: 'mono' }, d.url), h('td', {}, d.attempts),
        h('td', {}, [d.last_status ? `HTTP ${d.last_status}` : '', d.last_error || ''].filter(Boolean).join(' · ')),
        h('td', {}, h('button', { type: 'button', 'aria-label': `Redeliver delivery ${d.id}`, onclick: async () => {
          await api('POST', `/v1/webhooks/deliveries/${d.id}/redeliver`, {});
          say(`Delivery ${d.id} queued again.`);
          await refresh();
        } }, 'Redeliver'))))));
  };
  await refresh();
  return refresh;
}

// ---- routing ----------------------------------------------------------------

async function render() {
  clearInterval(poller);
  poller = null;
  for (const s of streams) s.close();
  streams = [];
  const mine = ++page;
  const main = document.getElementById('main');
  main.replaceChildren();
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const query = new URLSearchParams(search || '');
  const parts = (path || '/schemas').split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('#nav a'))
    a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${parts[0]}`);
  if (!session) return signInPage(main);
  try {
    let refresh = null;
    if (parts[0] === 'run' && parts[1]) await runFormPage(main, parts[1]);
    else if (parts[0] === 'runs' && parts[1]) await runPage(main, parts[1]);
    else if (parts[0] === 'runs') refresh = await runsPage(main, query);
    else if (parts[0] === 'audit') await auditPage(main, query);
    else if (parts[0] === 'webhooks') refresh = await webhooksPage(main);
    else await schemasPage(main);
    if (refresh && mine === page) {
      poller = setInterval(() => refresh().catch((e) => say(e.message, true)), POLL_MS);
    }
  } catch (e) {
    if (mine === page && session) main.append(h('p', { class: 'notice error', role: 'alert' }, e.message));
  }
}

async function start() {
  document.getElementById('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => {
    say('');
    render();
  });
  try {
    signedIn(await api('GET', '/v1/session'));
  } catch (e) {
    session = null;
  }
  if (!session && location.hash !== '#/signin') location.hash = '#/signin';
  else render();
}

start();
