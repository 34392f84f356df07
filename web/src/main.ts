// The calnet dashboard: sign-in, live topology, spawn queue, spawning and
// revoking through the API, and the trust chain validator. API data is
// only ever inserted as text, never as HTML.
import cytoscape from 'cytoscape';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { api, ApiError, authFetch, clearToken, events, hasToken, setToken, wsURL, type Body, type Cal, type Permission, type Limits, type PermissionMatrix, type Query, type Rule, type Spawn, type WhoAmI } from './api';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const PERMS = ['spawn', 'revoke', 'read', 'talk', 'share', 'admin'];
const COLORS: Record<string, string> = { running: '#2da44e', deploying: '#bf8700', failed: '#cf222e', stopped: '#8c959f', revoked: '#57606a' };

let cals: Cal[] = [];
let me: WhoAmI | null = null;
let selected = '';
let paused = false;
let stopEvents: (() => void) | null = null;
let refreshTimer = 0;
// session counts sign-ins and sign-outs: a refresh begun in an earlier
// session (its requests made with that session's credential, or with none
// after a sign-out) must not act on the current one.
let session = 0;

function text(el: HTMLElement, s: string) { el.textContent = s; }
function cell(tr: HTMLTableRowElement, s: string, cls = '') { const td = tr.insertCell(); td.textContent = s; if (cls) td.className = cls; return td; }
function short(id: string) { return id.length === 32 ? `${id.slice(0, 4)}-${id.slice(4, 8)}` : id; }
function showError(id: string, e: unknown) { text($(id), e instanceof Error ? e.message : String(e)); }

const cy = cytoscape({
  container: $('graph'),
  style: [
    { selector: 'node', style: { 'background-color': 'data(color)', label: 'data(label)', 'font-size': 10, width: 18, height: 18 } },
    { selector: 'node:selected', style: { 'border-width': 3, 'border-color': '#0969da' } },
    { selector: 'node.revoked', style: { opacity: 0.45, 'background-color': '#fff', 'border-width': 1.5, 'border-style': 'dashed', 'border-color': '#57606a' } },
    // Edges carry no label but on the selected Cal's lineage, where the
    // permissions each blessing granted are drawn along the edge on a
    // background: labels on every edge piled up on one another.
    { selector: 'edge', style: { width: 1, 'line-color': '#afb8c1', 'target-arrow-shape': 'triangle', 'target-arrow-color': '#afb8c1', 'curve-style': 'bezier' } },
    { selector: 'edge.lineage', style: {
      width: 3, 'line-color': '#0969da', 'target-arrow-color': '#0969da', label: 'data(perms)', color: '#0969da', 'font-size': 9,
      'text-background-color': '#fff', 'text-background-opacity': 0.9, 'text-background-padding': '2px', 'z-index': 10,
    } },
  ],
  wheelSensitivity: 0.3,
  maxZoom: 1.5,
  minZoom: 0.05,
});
cy.on('tap', 'node', (e) => select(e.target.id()));

function select(id: string) {
  selected = id;
  const c = cals.find((x) => x.id === id);
  const box = $('selected');
  box.replaceChildren();
  if (!c) { text(box, 'Select a Cal in the graph or the table.'); $('revoke').hidden = true; $('restart').hidden = true; return; }
  const rows = [['Cal', c.id], ['Name', c.name ?? ''], ['State', c.state + (c.healthy ? '' : ' (unhealthy)')], ['Namespace', c.namespace], ['Permissions', c.permissions.join(', ')]];
  if (c.pid) rows.push(['PID', `${c.pid} (${c.restarts ?? 0} restarts)`]);
  if (c.last_error && c.state !== 'running') rows.push(['Last error', c.last_error]);
  for (const [k, v] of rows) {
    const p = document.createElement('div');
    p.textContent = `${k}: ${v}`;
    box.append(p);
  }
  $('revoke').hidden = c.state === 'revoked' || c.parent === 'genesis' || !may('revoke');
  // Restart: the way back for a failed or stopped Cal (the Master too); a
  // running one gets a new process. Never a revoked one.
  $('restart').hidden = c.state === 'revoked' || c.state === 'deploying' || !may('spawn');
  text($('restart'), c.state === 'failed' || c.state === 'stopped' ? 'Restart (run it again)' : 'Restart');
  $('sel-profiles').hidden = !may('admin') || c.state !== 'running';
  // The lineage: the blessings from the Master Cal down to this one, with
  // the permissions granted on each edge.
  cy.edges().removeClass('lineage');
  for (let cur: Cal | undefined = c; cur && cur.parent !== 'genesis'; cur = cals.find((x) => x.id === cur!.parent)) {
    cy.getElementById(`e-${cur.id}`).addClass('lineage');
  }
  describeGraph();
  renderTable();
  showChain(c.id);
  showCharts(c.id).catch(() => {});
}

// showCharts draws the selected Cal's CPU and memory over the last 15
// minutes (uPlot).
let charts: uPlot[] = [];
async function showCharts(id: string) {
  const r = await api('get', '/v1/cals/{id}/series', { path: { id } });
  if (selected !== id) return;
  for (const ch of charts) ch.destroy();
  charts = [];
  const specs: [string, string, string, number][] = [['cpu_percent', 'chart-cpu', 'CPU (% of a core)', 1], ['memory_bytes', 'chart-mem', 'Memory (MiB)', 1 / 1048576]];
  for (const [metric, el, label, scale] of specs) {
    const pts = r.series[metric] ?? [];
    $(el).dataset.points = String(pts.length);
    const data: uPlot.AlignedData = [pts.map((p) => Date.parse(p.t) / 1000), pts.map((p) => p.v * scale)];
    charts.push(new uPlot({ width: 300, height: 120, title: label, legend: { show: false }, series: [{}, { label, stroke: '#0969da', width: 1.5 }], axes: [{}, { size: 44 }] }, data, $(el)));
  }
}

// showChain verifies the selected Cal's soul chain now and shows it link by
// link, with the permissions granted at each step.
async function showChain(id: string) {
  const tb = $<HTMLTableElement>('sel-chain').tBodies[0];
  try {
    const chain = await api('get', '/v1/cals/{id}/chain', { path: { id } });
    const r = await api('post', '/v1/verify', { body: { chain: JSON.stringify(chain) } });
    if (selected !== id) return;
    tb.replaceChildren();
    for (const l of r.links) {
      const tr = tb.insertRow();
      tr.dataset.status = l.status;
      cell(tr, String(l.link)); cell(tr, short(l.cal)); cell(tr, l.permissions.join(', ')); cell(tr, l.status, l.status);
    }
  } catch (e) { tb.replaceChildren(); const tr = tb.insertRow(); cell(tr, e instanceof Error ? e.message : String(e), 'failed'); }
}

// renderMetrics derives the performance view from the spawn records and
// the registry: latency percentiles, rate, failures, Cals by state.
function renderMetrics(spawns: Spawn[]) {
  const lat = spawns.filter((s) => s.state === 'running' && s.operational_at)
    .map((s) => Date.parse(s.operational_at!) - Date.parse(s.requested_at)).filter((x) => x >= 0);
  const sorted = [...lat].sort((a, b) => a - b);
  const pct = (p: number) => sorted.length ? `${sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))]} ms` : '–';
  text($('m-p50'), pct(0.5)); text($('m-p99'), pct(0.99));
  const minute = Date.now() - 60_000;
  text($('m-rate'), String(spawns.filter((s) => Date.parse(s.requested_at) > minute).length));
  text($('m-bad'), `${spawns.filter((s) => s.state === 'rejected').length} / ${spawns.filter((s) => s.state === 'failed').length}`);
  const by = new Map<string, number>();
  for (const c of cals) by.set(c.state, (by.get(c.state) ?? 0) + 1);
  const tb = $<HTMLTableElement>('m-states').tBodies[0];
  tb.replaceChildren();
  for (const [st, n] of [...by].sort()) {
    const tr = tb.insertRow();
    cell(tr, st); cell(tr, String(n));
    const bar = document.createElement('div'); bar.className = 'bar'; bar.style.width = `${Math.max(2, (300 * n) / cals.length)}px`;
    tr.insertCell().append(bar);
  }
  drawLatency(spawns);
}

// drawLatency charts the most recent 100 spawns that ran: when each was
// requested (x) against how long it took to be operational (y, ms).
let latencyChart: uPlot | null = null;
function drawLatency(spawns: Spawn[]) {
  const ran = spawns.filter((s) => s.state === 'running' && s.operational_at)
    .map((s) => [Date.parse(s.requested_at) / 1000, Date.parse(s.operational_at!) - Date.parse(s.requested_at)] as [number, number])
    .filter(([, ms]) => ms >= 0).sort((a, b) => a[0] - b[0]).slice(-100);
  const data: uPlot.AlignedData = [ran.map((r) => r[0]), ran.map((r) => r[1])];
  const el = $('m-latency');
  el.dataset.points = String(ran.length);
  if (latencyChart && $('view-metrics').hidden === false && latencyChart.data[0].length === ran.length) { latencyChart.setData(data); return; }
  latencyChart?.destroy();
  latencyChart = new uPlot({
    width: Math.max(320, Math.min(900, el.parentElement!.clientWidth || 900)), height: 220, legend: { show: false },
    scales: { y: { range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
    series: [{}, { label: 'requested → operational (ms)', stroke: '#0969da', width: 0, points: { show: true, size: 6, fill: '#0969da' } }],
    axes: [{ label: 'spawn requested at', labelSize: 20 }, { label: 'ms to operational', labelSize: 20, size: 56 }],
  }, data, el);
  el.dataset.axes = latencyChart.axes.map((a) => a.label).join('|');
}

// render updates the graph in place: new Cals appear, changed ones
// recolour; revoked ones leave the graph unless "show revoked Cals" is on
// (then they are drawn dashed and faded; the legend says so). At 1,000
// Cals labels go and a cheap layout is used. A layout needs the graph on
// screen: one asked for while it is hidden waits until it is shown.
let layoutPending = false;
function render() {
  const big = cals.length > 300;
  const showRevoked = $<HTMLInputElement>('show-revoked').checked;
  const shown = cals.filter((c) => showRevoked || c.state !== 'revoked');
  const ids = new Set(shown.map((c) => c.id));
  cy.batch(() => {
    cy.elements().forEach((el: cytoscape.SingularElementArgument) => {
      const keep = el.isNode() ? ids.has(el.id()) : ids.has(String(el.data('target'))) && ids.has(String(el.data('source')));
      if (!keep) el.remove();
    });
    for (const c of shown) {
      const data = { id: c.id, label: big ? '' : (c.name || short(c.id)), color: COLORS[c.state] ?? '#8c959f' };
      let n = cy.getElementById(c.id);
      if (n.empty()) { n = cy.add({ group: 'nodes', data }); layoutPending = true; } else n.data(data);
      n.toggleClass('revoked', c.state === 'revoked');
      if (c.parent !== 'genesis' && cy.getElementById(`e-${c.id}`).empty() && ids.has(c.parent)) {
        cy.add({ group: 'edges', data: { id: `e-${c.id}`, source: c.parent, target: c.id, perms: c.permissions.join(',') } });
        layoutPending = true;
      }
    }
  });
  layoutIfShown();
  describeGraph();
  fillCals('spawn-parent', (c) => c.permissions.includes('spawn'));
  fillCals('console-cal');
  fillCals('matrix-root');
  renderTable();
}

function layoutIfShown() {
  if (!layoutPending || $('app').hidden || $('view-topology').hidden) return;
  layoutPending = false;
  cy.resize();
  cy.layout(cals.length > 300 ? { name: 'grid' } : { name: 'breadthfirst', directed: true, spacingFactor: 1.1 }).run();
}

// describeGraph states what the graph shows on its element, for people
// using assistive technology and for the browser tests.
function describeGraph() {
  const g = $('graph');
  g.dataset.nodes = String(cy.nodes().length);
  g.dataset.revokedShown = String(cy.nodes('.revoked').length);
  g.dataset.labelledEdges = String(cy.edges('.lineage').length);
  g.setAttribute('aria-label', `network topology: ${cy.nodes().length} Cals shown`);
}

// fillCals lists the running Cals (that pass only) in a select, keeping
// its choice (or prefer) when that Cal is still listed.
function fillCals(id: string, only: (c: Cal) => boolean = () => true, prefer = '') {
  const sel = $<HTMLSelectElement>(id);
  const keep = sel.value || prefer;
  const list = cals.filter((c) => c.state === 'running' && only(c));
  sel.replaceChildren(...list.map((c) => {
    const o = document.createElement('option'); o.value = c.id; o.textContent = c.name || short(c.id); return o;
  }));
  if (keep && list.some((c) => c.id === keep)) sel.value = keep;
}

function renderTable() {
  const tb = $<HTMLTableElement>('cals').tBodies[0];
  tb.replaceChildren();
  for (const c of cals.slice(0, 500)) {
    const tr = tb.insertRow();
    tr.dataset.cal = c.id;
    tr.dataset.state = c.state;
    if (c.id === selected) tr.className = 'selected';
    cell(tr, c.id); cell(tr, c.name ?? ''); cell(tr, c.state); cell(tr, String(c.depth)); cell(tr, c.permissions.join(','));
    tr.onclick = () => { cy.$(':selected').unselect(); cy.getElementById(c.id).select(); select(c.id); };
  }
}

async function refresh() {
  const mine = session;
  if (!me) return;
  try {
    const list = await api('get', '/v1/cals');
    if (mine !== session) return;
    cals = list;
    render();
    // A failed Master Cal is said loudly: nothing spawns under it.
    const m = cals.find((x) => x.parent === 'genesis');
    const down = m && (m.state === 'failed' || m.state === 'stopped');
    $('master-alert').hidden = !down;
    if (down) text($('master-alert'), `The Master Cal ${short(m.id)} has ${m.state}: ${m.last_error ?? ''}. The network cannot spawn under it; select it and restart it.`);
    if (selected) select(selected);
    const spawns = await api('get', '/v1/spawns');
    if (mine !== session) return;
    const tb = $<HTMLTableElement>('spawns').tBodies[0];
    tb.replaceChildren();
    for (const s of spawns.slice(-200).reverse()) {
      const tr = tb.insertRow();
      cell(tr, s.id); cell(tr, short(s.parent)); cell(tr, s.state, s.state === 'failed' || s.state === 'rejected' ? 'failed' : '');
      cell(tr, s.cal ?? ''); cell(tr, s.reason ?? ''); cell(tr, s.actor);
    }
    renderMetrics(spawns);
    await renderApprovals();
    if (!$('view-heat').hidden) await renderHeat();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && mine === session) signOut('Your credential was refused; sign in again.');
  }
}

// renderHeat draws the heat map: a row per Cal, a cell per sample,
// coloured from pale (idle) to dark (busiest of the window).
async function renderHeat() {
  const metric = $<HTMLSelectElement>('heat-metric').value;
  const r = await api('get', '/v1/heat', { query: { metric } });
  const svg = $('heat') as unknown as SVGSVGElement;
  const rows = r.cals.slice(0, 200);
  const max = Math.max(1e-9, ...rows.flatMap((c) => c.points.map((p) => p.v)));
  const now = Date.now(), span = 10 * 60_000, left = 130, width = 860, rowH = 12;
  svg.replaceChildren();
  svg.setAttribute('height', String(rows.length * rowH + 10));
  const ns = 'http://www.w3.org/2000/svg';
  rows.forEach((c, i) => {
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', '0'); label.setAttribute('y', String(i * rowH + 10)); label.setAttribute('font-size', '10');
    label.textContent = c.name || short(c.cal);
    label.dataset.cal = c.cal;
    svg.append(label);
    for (const p of c.points) {
      const x = left + ((Date.parse(p.t) - (now - span)) / span) * width;
      if (x < left) continue;
      const cellR = document.createElementNS(ns, 'rect');
      cellR.setAttribute('x', String(x)); cellR.setAttribute('y', String(i * rowH)); cellR.setAttribute('width', '7'); cellR.setAttribute('height', String(rowH - 2));
      const a = Math.min(1, p.v / max);
      cellR.setAttribute('fill', `rgba(207,34,46,${0.08 + 0.92 * a})`);
      svg.append(cellR);
    }
  });
}

function scheduleRefresh() { clearTimeout(refreshTimer); refreshTimer = window.setTimeout(refresh, 150); }

let limits: Limits | null = null;
const LIMIT_INPUTS: [string, keyof Limits][] = [['lim-rate', 'spawn_rate'], ['lim-burst', 'spawn_burst'], ['lim-max', 'max_cals']];

async function loadLimits() {
  limits = await api('get', '/v1/limits');
  for (const [id, k] of LIMIT_INPUTS) {
    $<HTMLInputElement>(id).value = String(limits[k]);
    text($(`${id}-out`), String(limits[k]));
  }
}

// may says whether the signed-in credential may do an operation: an
// administrator may do everything, a developer token what its permissions
// allow. The dashboard offers only that (the API checks it anyway).
function may(op: 'spawn' | 'revoke' | 'admin'): boolean {
  if (!me) return false;
  if (me.admin) return true;
  return op !== 'admin' && (me.token?.permissions ?? []).includes(op);
}

function applyRole() {
  $('spawn-box').hidden = !may('spawn');
  $('admin-box').hidden = !may('admin');
  document.querySelector<HTMLElement>('nav button[data-view="console"]')!.hidden = !may('admin');
  document.querySelector<HTMLElement>('nav button[data-view="audit"]')!.hidden = !may('admin');
  for (const cb of document.querySelectorAll<HTMLInputElement>('input[name=perm]')) {
    const ok = me?.admin || (me?.token?.permissions ?? []).includes(cb.value);
    cb.disabled = !ok; cb.parentElement!.hidden = !ok;
    if (!ok) cb.checked = false;
  }
  text($('whoami'), me ? (me.admin ? `administrator ${me.name}` : `token ${me.token?.id}`) : '');
}

// renderApprovals lists the approval queue; administrators get Approve and
// Reject on pending requests they did not make.
async function renderApprovals() {
  const list = await api('get', '/v1/approvals');
  const pending = list.filter((a) => a.state === 'pending');
  text($('approvals-badge'), pending.length ? String(pending.length) : '');
  const tb = $<HTMLTableElement>('approvals').tBodies[0];
  tb.replaceChildren();
  for (const a of list.slice(0, 200)) {
    const tr = tb.insertRow();
    tr.dataset.approval = a.id; tr.dataset.state = a.state;
    cell(tr, a.id); cell(tr, a.state, a.state === 'rejected' || a.state === 'expired' ? 'failed' : '');
    cell(tr, a.operation + (a.subtree_cals ? ` (${a.subtree_cals} Cals)` : '')); cell(tr, short(a.cal)); cell(tr, a.actor);
    cell(tr, `${a.policy}: ${a.message}`);
    cell(tr, `${a.approvals.length} of ${a.required}` + (a.approvals.length ? ` (${a.approvals.map((v) => v.admin).join(', ')})` : ''));
    cell(tr, a.state === 'pending' ? new Date(a.expires_at).toLocaleString() : (a.result ?? ''));
    const td = tr.insertCell();
    const mine = a.actor === me?.actor;
    if (a.state === 'pending' && me?.admin && !mine) {
      for (const [label, verb] of [['Approve', 'approve'], ['Reject', 'reject']] as const) {
        const b = document.createElement('button');
        b.textContent = label; b.dataset.verb = verb;
        b.onclick = async () => {
          text($('approval-error'), '');
          b.disabled = true;
          try {
            const vote = { path: { id: a.id }, body: { comment: $<HTMLInputElement>('approval-comment').value } };
            await (verb === 'approve' ? api('post', '/v1/approvals/{id}/approve', vote) : api('post', '/v1/approvals/{id}/reject', vote));
          }
          catch (err) { showError('approval-error', err); }
          finally { scheduleRefresh(); }
        };
        td.append(b);
      }
    } else if (a.state === 'pending' && mine) td.textContent = 'yours: another administrator approves';
  }
}

async function signIn(token: string) {
  session++; clearTimeout(refreshTimer);
  setToken(token);
  try {
    me = await api('get', '/v1/whoami');
    applyRole();
    const st = await api('get', '/v1/status');
    text($('network'), `network ${short(st.network)}`);
    paused = st.spawning_paused;
    text($('pause'), paused ? 'Resume spawning' : 'Pause spawning');
  } catch (e) {
    clearToken();
    showError('signin-error', e);
    return;
  }
  text($('signin-error'), '');
  $('signin').hidden = true; $('app').hidden = false; $('signout').hidden = false;
  layoutPending = true; // laid out while hidden, the nodes would sit in a corner
  stopEvents = events(() => scheduleRefresh(), (s) => text($('conn'), s));
  await refresh();
  if (may('admin')) await loadLimits().catch((e) => showError('limits-error', e));
}

function signOut(msg = '') {
  session++; clearTimeout(refreshTimer);
  stopEvents?.(); stopEvents = null; clearToken(); me = null;
  text($('conn'), ''); text($('whoami'), '');
  $('app').hidden = true; $('signin').hidden = false; $('signout').hidden = true;
  text($('signin-error'), msg);
}

// Permission checkboxes; what a developer token may not grant is refused
// by the API, and the refusal is shown next to the form.
for (const p of PERMS) {
  const l = document.createElement('label');
  const cb = document.createElement('input');
  cb.type = 'checkbox'; cb.value = p; cb.checked = p === 'read'; cb.name = 'perm';
  l.append(cb, ` ${p}`);
  $('spawn-perms').append(l);
}
for (const [input, out] of [['spawn-cpu', 'spawn-cpu-out'], ['spawn-mem', 'spawn-mem-out']]) {
  $<HTMLInputElement>(input).oninput = () => text($(out), $<HTMLInputElement>(input).value);
}

$('signin-form').onsubmit = (e) => { e.preventDefault(); signIn($<HTMLInputElement>('token').value.trim()); };
$('signout').onclick = () => signOut();
$('spawn-form').onsubmit = async (e) => {
  e.preventDefault();
  text($('spawn-error'), '');
  const perms = [...document.querySelectorAll<HTMLInputElement>('input[name=perm]:checked')].map((x) => x.value as Permission);
  const btn = $<HTMLButtonElement>('spawn-submit');
  btn.disabled = true;
  try {
    const sp = await api('post', '/v1/cals', { query: { wait: 'true' }, body: {
      parent: $<HTMLSelectElement>('spawn-parent').value || undefined,
      name: $<HTMLInputElement>('spawn-name').value || undefined, permissions: perms,
      cpu_millis: Number($<HTMLInputElement>('spawn-cpu').value), memory_bytes: Number($<HTMLInputElement>('spawn-mem').value) << 20,
    } });
    if (sp.state === 'awaiting_approval') text($('spawn-error'), `held for approval (${sp.approval}): ${sp.reason ?? ''}`);
    else if (sp.state !== 'running') text($('spawn-error'), `${sp.state}: ${sp.reason ?? ''}`);
    else $<HTMLInputElement>('spawn-name').value = '';
  } catch (err) { showError('spawn-error', err); } finally { btn.disabled = false; scheduleRefresh(); }
};
for (const [id] of LIMIT_INPUTS) $<HTMLInputElement>(id).oninput = () => text($(`${id}-out`), $<HTMLInputElement>(id).value);
$('limits-form').onsubmit = async (e) => {
  e.preventDefault();
  text($('limits-error'), '');
  if (!limits) return;
  const next = { ...limits };
  for (const [id, k] of LIMIT_INPUTS) next[k] = Number($<HTMLInputElement>(id).value);
  try { limits = await api('put', '/v1/limits', { body: next }); text($('limits-error'), ''); } catch (err) { showError('limits-error', err); }
};
$('restart').onclick = async () => {
  text($('revoke-error'), '');
  if (!selected || !confirm(`Restart ${short(selected)}?`)) return;
  const id = selected;
  try {
    const c = await api('post', '/v1/cals/{id}/restart', { path: { id }, query: { wait: 'true' }, body: { reason: 'restarted from the dashboard' } });
    if (c.state !== 'running') text($('revoke-error'), `${short(id)} did not come up: ${c.state}: ${c.last_error ?? ''}`);
  } catch (err) { showError('revoke-error', err); }
  scheduleRefresh();
};
$('revoke').onclick = async () => {
  text($('revoke-error'), '');
  if (!selected || !confirm(`Revoke ${short(selected)} and its whole subtree?`)) return;
  try {
    const r = await api('post', '/v1/cals/{id}/revoke', { path: { id: selected }, body: { reason: 'revoked from the dashboard' } });
    if (r.approval) text($('revoke-error'), `held for approval (${r.approval.id}): ${r.approval.policy}: ${r.approval.message}`);
  } catch (err) { showError('revoke-error', err); }
  scheduleRefresh();
};
$('pause').onclick = async () => {
  text($('pause-error'), '');
  try {
    const r = await api('post', '/v1/spawning', { body: { paused: !paused } });
    paused = r.paused; text($('pause'), paused ? 'Resume spawning' : 'Pause spawning');
  } catch (err) { showError('pause-error', err); }
};
for (const b of document.querySelectorAll<HTMLButtonElement>('nav button')) {
  b.onclick = () => {
    for (const x of document.querySelectorAll('nav button')) x.classList.toggle('active', x === b);
    for (const v of document.querySelectorAll<HTMLElement>('.view')) v.hidden = v.id !== `view-${b.dataset.view}`;
    if (b.dataset.view === 'topology') { cy.resize(); layoutIfShown(); }
    if (b.dataset.view === 'heat') renderHeat().catch(() => {});
    if (b.dataset.view === 'rules') openRules();
    if (b.dataset.view === 'logs') loadLogs(true);
    if (b.dataset.view === 'audit') loadAudit(0);
    if (b.dataset.view === 'traffic') renderTraffic().catch(() => {});
    if (b.dataset.view === 'matrix') renderMatrix().catch((e) => showError('matrix-error', e));
  };
}
$<HTMLInputElement>('show-revoked').onchange = () => { layoutPending = true; render(); };
$<HTMLSelectElement>('heat-metric').onchange = () => { renderHeat().catch(() => {}); };
setInterval(() => { if (!$('app').hidden && !$('view-heat').hidden) renderHeat().catch(() => {}); }, 5000);
$<HTMLInputElement>('chain-file').onchange = async () => {
  const f = $<HTMLInputElement>('chain-file').files?.[0];
  if (f) $<HTMLTextAreaElement>('chain-text').value = await f.text();
};
$('chain-verify').onclick = async () => {
  const verdict = $('chain-verdict');
  const tb = $<HTMLTableElement>('chain-links').tBodies[0];
  tb.replaceChildren();
  try {
    const r = await api('post', '/v1/verify', { body: { chain: $<HTMLTextAreaElement>('chain-text').value } });
    text(verdict, r.valid ? `VALID: cal ${r.cal}` : `INVALID at link ${r.error?.link}: ${r.error?.reason}: ${r.error?.detail}`);
    verdict.className = r.valid ? 'ok' : 'failed';
    for (const l of r.links) {
      const tr = tb.insertRow();
      tr.dataset.status = l.status;
      cell(tr, String(l.link)); cell(tr, short(l.parent)); cell(tr, l.cal); cell(tr, l.permissions.join(',')); cell(tr, l.status, l.status);
    }
  } catch (err) { verdict.className = 'failed'; showError('chain-verdict', err); }
};

if (hasToken()) signIn(sessionStorage.getItem('calnet-token') ?? '');

// The rule builder (UX-2.5): a rule is checked and previewed over the
// chosen Cal's recorded metrics as it is typed, and enabled with PUT.
let ruleTimer = 0;

function ruleFromForm(): Rule {
  const v = (id: string) => $<HTMLInputElement>(id).value.trim();
  const kind = v('rule-kind') as Rule['action']['kind'];
  const r: Rule = { name: v('rule-name'), when: v('rule-when'), cooldown: v('rule-cooldown'), action: { kind, count: Number(v('rule-count')) } };
  if (v('rule-clear')) r.clear = v('rule-clear');
  if (v('rule-for')) r.for = v('rule-for');
  if (v('rule-rate')) r.max_per_hour = Number(v('rule-rate'));
  if (kind === 'spawn') r.action.template = v('rule-template');
  return r;
}

function openRules() {
  fillCals('rule-cal', undefined, selected);
  loadRules().catch((e) => showError('rule-error', e));
  previewRule();
}

async function loadRules() {
  const cal = $<HTMLSelectElement>('rule-cal').value;
  if (!cal) return;
  const v = await api('get', '/v1/cals/{id}/rules', { path: { id: cal } });
  const tb = $<HTMLTableElement>('rules-list').tBodies[0];
  tb.replaceChildren();
  for (const r of v.rules) {
    const tr = tb.insertRow();
    tr.dataset.rule = r.name;
    cell(tr, r.name); cell(tr, r.when);
    cell(tr, `${r.action.kind} ${r.action.count}${r.action.template ? ' ' + r.action.template : ''}`);
    const st = v.state[r.name];
    cell(tr, st?.error ? 'disabled: ' + st.error : st?.firing ? 'firing: again each cooldown while it holds' : st?.disarmed ? 'fired, waiting to re-arm' : 'armed', st?.error ? 'failed' : '');
    const b = document.createElement('button'); b.textContent = 'Remove'; b.type = 'button';
    b.onclick = async () => {
      try { await api('put', '/v1/cals/{id}/rules', { path: { id: cal }, body: { rules: v.rules.filter((x) => x.name !== r.name) } }); await loadRules(); }
      catch (e) { showError('rule-error', e); }
    };
    tr.insertCell().append(b);
  }
  const vars = $<HTMLTableElement>('rule-vars').tBodies[0];
  vars.replaceChildren();
  for (const x of v.vars) { const tr = vars.insertRow(); cell(tr, x.name); cell(tr, x.type); cell(tr, x.help); }
}

function previewRule() {
  clearTimeout(ruleTimer);
  ruleTimer = window.setTimeout(async () => {
    const cal = $<HTMLSelectElement>('rule-cal').value;
    if (!cal) return;
    const tb = $<HTMLTableElement>('rule-preview').tBodies[0];
    try {
      const p = await api('post', '/v1/cals/{id}/rules/preview', { path: { id: cal }, body: { rule: ruleFromForm() } });
      text($('rule-error'), '');
      text($('rule-summary'), p.samples === 0 ? 'The rule compiles. No CPU samples of this Cal to replay yet (one every 5 s).'
        : `Over ${p.samples} samples: ` + Object.entries(p.counts).map(([k, n]) => `${k} ${n}`).join(', '));
      tb.replaceChildren();
      for (const d of p.decisions) {
        const tr = tb.insertRow(); tr.dataset.outcome = d.outcome;
        cell(tr, new Date(d.at).toLocaleTimeString()); cell(tr, d.outcome, d.outcome === 'fired' ? 'ok' : d.outcome === 'disabled' ? 'failed' : ''); cell(tr, d.reason ?? '');
      }
    } catch (e) {
      showError('rule-error', e);
      text($('rule-summary'), ''); tb.replaceChildren();
    }
  }, 300);
}

for (const id of ['rule-name', 'rule-when', 'rule-clear', 'rule-for', 'rule-cooldown', 'rule-rate', 'rule-kind', 'rule-count', 'rule-template']) {
  $(id).addEventListener('input', previewRule);
}
$<HTMLSelectElement>('rule-cal').onchange = () => { loadRules().catch((e) => showError('rule-error', e)); previewRule(); };
$<HTMLFormElement>('rule-form').onsubmit = async (e) => {
  e.preventDefault();
  const cal = $<HTMLSelectElement>('rule-cal').value;
  try {
    const r = ruleFromForm();
    const v = await api('get', '/v1/cals/{id}/rules', { path: { id: cal } });
    await api('put', '/v1/cals/{id}/rules', { path: { id: cal }, body: { rules: [...v.rules.filter((x) => x.name !== r.name), r] } });
    text($('rule-error'), '');
    await loadRules();
  } catch (err) { showError('rule-error', err); }
};

// Profiles of the selected Cal (administrators): text dumps are shown,
// binary profiles are downloaded for go tool pprof.
for (const b of document.querySelectorAll<HTMLButtonElement>('#sel-profiles button')) {
  b.onclick = async () => {
    const id = selected, name = b.dataset.profile!, debug = b.dataset.debug ?? '';
    const status = $('profile-status'), pre = $('profile-text');
    text(status, `fetching ${name}${name === 'profile' ? ' (5 s)' : ''}…`);
    try {
      const res = await authFetch(`/v1/cals/${id}/pprof/${name}${debug ? `?debug=${debug}` : ''}`);
      if (debug) {
        pre.textContent = await res.text(); pre.hidden = false;
        text(status, `${name}: ${pre.textContent.length} characters`);
        return;
      }
      const blob = await res.blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `${short(id)}-${name}.pb.gz`;
      a.click();
      URL.revokeObjectURL(a.href);
      text(status, `${name}: ${blob.size} bytes downloaded as ${a.download} (go tool pprof ${a.download})`);
    } catch (err) { showError('profile-status', err); }
  };
}

// The aggregated log (UX-4.1): every Cal's log merged by time, filtered by
// text, level and Cal, and followed with the cursor the API returns.
let logCursor = '';
const MAX_LOG_ROWS = 2000;
async function loadLogs(reset: boolean) {
  const only = $<HTMLInputElement>('logs-cals').value.trim();
  const p: Query<'/v1/logs', 'get'> = {
    lines: 500, q: $<HTMLInputElement>('logs-q').value.trim(), level: ($<HTMLSelectElement>('logs-level').value || undefined) as Query<'/v1/logs', 'get'>['level'],
    cals: only.split(',').map((x) => x.trim()).filter(Boolean).join(','), cursor: reset ? undefined : logCursor,
  };
  const tb = $<HTMLTableElement>('logs').tBodies[0];
  try {
    const page = await api('get', '/v1/logs', { query: p });
    text($('logs-error'), '');
    if (reset) tb.replaceChildren();
    for (const e of page.entries) {
      const tr = tb.insertRow();
      tr.dataset.level = e.level ?? ''; tr.dataset.cal = e.cal;
      cell(tr, e.name || short(e.cal)); cell(tr, e.time ? new Date(e.time).toLocaleTimeString() : ''); cell(tr, e.level ?? ''); cell(tr, e.text);
    }
    while (tb.rows.length > MAX_LOG_ROWS) tb.deleteRow(0);
    logCursor = page.cursor;
    if (page.entries.length && $<HTMLInputElement>('logs-follow').checked) tb.rows[tb.rows.length - 1]?.scrollIntoView({ block: 'nearest' });
  } catch (err) { showError('logs-error', err); }
}
$('logs-form').onsubmit = (e) => { e.preventDefault(); logCursor = ''; loadLogs(true); };
setInterval(() => {
  if (!$('app').hidden && !$('view-logs').hidden && $<HTMLInputElement>('logs-follow').checked && logCursor) loadLogs(false);
}, 1500);

// The audit trail (administrators): newest matches first loaded, shown
// oldest first; Older pages back with before=SEQ.
let auditOldest = 0;
async function loadAudit(before: number) {
  const since = $<HTMLInputElement>('audit-since').value;
  const p: Query<'/v1/audit', 'get'> = { limit: 200, since: since ? new Date(since).toISOString() : undefined, before: before || undefined };
  for (const k of ['actor', 'type', 'cal'] as const) p[k] = $<HTMLInputElement>(`audit-${k}`).value.trim();
  const tb = $<HTMLTableElement>('audit').tBodies[0];
  try {
    const page = await api('get', '/v1/audit', { query: p });
    text($('audit-error'), '');
    const rows = page.records.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.seq = String(r.seq); tr.dataset.type = r.type;
      cell(tr, String(r.seq)); cell(tr, new Date(r.time).toLocaleString()); cell(tr, r.type); cell(tr, r.cal ? short(r.cal) : '');
      cell(tr, r.state ?? ''); cell(tr, r.actor ?? ''); cell(tr, r.reason ?? '');
      cell(tr, r.hash.slice(0, 12)).title = `hash ${r.hash}\nprev ${r.prev}`;
      return tr;
    });
    if (before) tb.prepend(...rows); else tb.replaceChildren(...rows);
    if (page.records.length) auditOldest = page.records[0].seq;
    $<HTMLButtonElement>('audit-older').disabled = !page.more;
    text($('audit-summary'), `${tb.rows.length} records shown; the trail's newest is #${page.head_seq}${page.more ? '; older records match' : ''}.`);
  } catch (err) { showError('audit-error', err); }
}
$('audit-form').onsubmit = (e) => { e.preventDefault(); loadAudit(0); };
$('audit-older').onclick = () => { if (auditOldest) loadAudit(auditOldest); };

// The debugging console (UX-4.5): the Cal's console (tier -2) over a
// WebSocket, as calnet console gives it in a terminal.
let consoleWS: WebSocket | null = null;
const consoleOut = (s: string) => { const o = $('console-out'); o.textContent += s; o.scrollTop = o.scrollHeight; };
$('console-form').onsubmit = (e) => {
  e.preventDefault();
  consoleWS?.close();
  text($('console-error'), ''); text($('console-out'), '');
  const id = $<HTMLSelectElement>('console-cal').value;
  if (!id) return;
  const ws = new WebSocket(wsURL(`/v1/cals/${id}/console`));
  ws.binaryType = 'arraybuffer';
  const dec = new TextDecoder();
  ws.onopen = () => { $<HTMLInputElement>('console-input').disabled = false; $<HTMLButtonElement>('console-detach').disabled = false; $('console-input').focus(); };
  ws.onmessage = (m) => consoleOut(typeof m.data === 'string' ? m.data : dec.decode(m.data as ArrayBuffer, { stream: true }));
  ws.onclose = () => {
    $<HTMLInputElement>('console-input').disabled = true; $<HTMLButtonElement>('console-detach').disabled = true;
    if (consoleWS === ws) consoleOut('\n[detached]\n');
  };
  ws.onerror = () => text($('console-error'), `console of ${short(id)} not answering (is the Cal running and its tier -2 up?)`);
  consoleWS = ws;
};
$('console-detach').onclick = () => consoleWS?.close();
$('console-input-form').onsubmit = (e) => {
  e.preventDefault();
  const inp = $<HTMLInputElement>('console-input');
  if (!consoleWS || consoleWS.readyState !== WebSocket.OPEN) return;
  consoleWS.send(new TextEncoder().encode(inp.value + '\n'));
  inp.value = '';
};

// The traffic matrix (UX-4.3): rows send, columns receive; the 30 busiest
// endpoints, each cell the exchanges between them, shaded by volume.
async function renderTraffic() {
  const r = await api('get', '/v1/traffic');
  const label = new Map<string, string>();
  const volume = new Map<string, number>();
  const cellOf = new Map<string, { n: number; kinds: string[] }>();
  for (const p of r.pairs) {
    label.set(p.from, p.from_name || (p.from.length === 32 ? short(p.from) : p.from));
    label.set(p.to, p.to_name || short(p.to));
    volume.set(p.from, (volume.get(p.from) ?? 0) + p.count);
    volume.set(p.to, (volume.get(p.to) ?? 0) + p.count);
    const k = `${p.from}|${p.to}`;
    const c = cellOf.get(k) ?? { n: 0, kinds: [] };
    c.n += p.count; c.kinds.push(`${p.kind} ${p.count}${p.bytes ? ` (${p.bytes} bytes)` : ''}`);
    cellOf.set(k, c);
  }
  const top = [...volume.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([id]) => id);
  const froms = top.filter((id) => r.pairs.some((p) => p.from === id));
  const tos = top.filter((id) => r.pairs.some((p) => p.to === id));
  const max = Math.max(1, ...[...cellOf.values()].map((c) => c.n));
  const table = $<HTMLTableElement>('traffic-matrix');
  const head = document.createElement('tr');
  head.append(document.createElement('th'));
  for (const id of tos) { const th = document.createElement('th'); th.textContent = label.get(id) ?? id; head.append(th); }
  table.tHead!.replaceChildren(head);
  const tb = table.tBodies[0];
  tb.replaceChildren();
  for (const from of froms) {
    const tr = tb.insertRow();
    tr.dataset.from = label.get(from) ?? from;
    const th = document.createElement('th'); th.textContent = label.get(from) ?? from; tr.append(th);
    for (const to of tos) {
      const c = cellOf.get(`${from}|${to}`);
      const td = cell(tr, c ? String(c.n) : '', 'cell');
      if (c) {
        td.title = c.kinds.join(', ');
        td.dataset.to = label.get(to) ?? to;
        td.style.background = `rgba(9,105,218,${0.1 + 0.6 * (c.n / max)})`;
      }
    }
  }
}
setInterval(() => { if (!$('app').hidden && !$('view-traffic').hidden) renderTraffic().catch(() => {}); }, 5000);

// The permission matrix editor (UX-2.2): rows are the live Cals of a
// subtree, columns the permissions; a held permission has a checkbox for
// "may grant it to new children" and the uses seen.
let matrixRows: PermissionMatrix['rows'] = [];
async function renderMatrix() {
  const root = $<HTMLSelectElement>('matrix-root').value;
  if (!root) return;
  const m = await api('get', '/v1/cals/{id}/matrix', { path: { id: root } });
  matrixRows = m.rows;
  const table = $<HTMLTableElement>('matrix');
  const head = document.createElement('tr');
  for (const h of ['Cal', 'Depth', ...m.permissions]) { const th = document.createElement('th'); th.textContent = h; head.append(th); }
  table.tHead!.replaceChildren(head);
  const tb = table.tBodies[0];
  tb.replaceChildren();
  const admin = may('admin');
  $('matrix-apply').hidden = !admin;
  for (const r of m.rows) {
    const tr = tb.insertRow();
    tr.dataset.cal = r.name || r.cal;
    cell(tr, `${'  '.repeat(Math.max(0, r.depth - 1))}${r.name || short(r.cal)}`); cell(tr, String(r.depth));
    for (const p of m.permissions) {
      const td = cell(tr, '', 'perm');
      if (!r.held.includes(p)) { td.textContent = '–'; continue; }
      const cb = document.createElement('input');
      cb.type = 'checkbox'; cb.dataset.perm = p; cb.disabled = !admin;
      cb.checked = r.grantable === null || r.grantable.includes(p);
      cb.title = `${r.name || short(r.cal)} may grant ${p} to new children`;
      const used = document.createElement('small');
      used.textContent = `used ${r.used[p] ?? 0}`;
      td.append(cb, used);
    }
  }
}
$('matrix-root').onchange = () => { text($('matrix-error'), ''); renderMatrix().catch((e) => showError('matrix-error', e)); };
$('matrix-form').onsubmit = async (e) => {
  e.preventDefault();
  $('matrix-error').className = 'error';
  text($('matrix-error'), '');
  const rows: Body<'/v1/cals/{id}/matrix', 'put'>['rows'] = [];
  for (const r of matrixRows) {
    const tr = document.querySelector<HTMLTableRowElement>(`#matrix tbody tr[data-cal="${CSS.escape(r.name || r.cal)}"]`);
    if (!tr) continue;
    const checked = [...tr.querySelectorAll<HTMLInputElement>('input[data-perm]')].filter((x) => x.checked).map((x) => x.dataset.perm as Permission);
    const next = checked.length === r.held.length ? null : checked;
    const was = r.grantable === null ? null : [...r.grantable].sort().join(',');
    if ((next === null ? null : [...next].sort().join(',')) !== was) rows.push({ cal: r.cal, grantable: next });
  }
  if (!rows.length) { text($('matrix-error'), 'nothing changed'); return; }
  const status = $('matrix-error');
  try { await api('put', '/v1/cals/{id}/matrix', { path: { id: $<HTMLSelectElement>('matrix-root').value }, body: { rows } }); await renderMatrix(); status.className = 'ok'; text(status, `${rows.length} Cal(s) updated`); }
  catch (err) { status.className = 'error'; showError('matrix-error', err); }
};

type Workload = NonNullable<Body<'/v1/sim', 'post'>['workloads']>[number];

// Simulate (calnet sim, POST /v1/sim): the rule being written, with the
// Cal's other rules, on simulated pools for a day under the network's
// policies, scored against the oracle (the fewest Cals that meet the load).
$('rule-simulate').onclick = async () => {
  const out = $('rule-sim');
  text(out, 'simulating a day of 10 pools…');
  try {
    const cal = $<HTMLSelectElement>('rule-cal').value;
    const rule = ruleFromForm();
    const others = cal ? (await api('get', '/v1/cals/{id}/rules', { path: { id: cal } })).rules.filter((r) => r.name !== rule.name) : [];
    const wl = $<HTMLSelectElement>('rule-sim-workload').value;
    const r = await api('post', '/v1/sim', { body: { rules: [...others, rule], pools: 10, duration: '24h', ...(wl ? { workloads: [wl as Workload] } : {}) } });
    const t = r.total;
    const mine = r.rules.find((x) => x.rule === rule.name);
    text(out, `Simulated (10 pools, 24 h${wl ? `, ${wl}` : ''}): ${t.optimal_percent.toFixed(1)}% of decisions optimal, ${t.over_oracle_percent.toFixed(1)}% Cal-hours over the oracle, `
      + `${t.under_capacity_percent.toFixed(2)}% of the time under capacity, ${t.oscillations} oscillations, ${t.limit_hits} refused spawns; ${rule.name} fired ${mine?.fired ?? 0} times`
      + (mine?.error ? ` and was disabled: ${mine.error}` : '') + '. The simulated workload reports the gauges load, capacity, utilization and queue_depth.');
  } catch (err) { showError('rule-sim', err); }
};
