// agentwatch dashboard: plain ES module, no build step. Talks to the gateway's WebSockets
// (/sessions, /sessions/{id}) with a short-lived token from POST /api/ws-token, keeps the last
// known state (offline.js) so it still shows something while disconnected or reloaded without
// its gateway, and reconnects with exponential backoff.
import { renderCharts, destroyCharts } from "./charts.js";
import { forgetAllStates, forgetState, loadState, registerShell, saveState } from "./offline.js";
import { initPrivacy, showPrivacy } from "./privacy.js";

const $ = (id) => document.getElementById(id);
const CHART_WIDGETS = ["agent_timeline", "file_heatmap", "resource_usage", "network_trace"];
const SEVERITIES = ["critical", "error", "warning", "info", "debug"];
const CLOSE_ERASED = 4410; // the gateway's close code: this session's telemetry was erased

const st = {
  token: null, route: { kind: "overview" }, ws: null, retry: 0, retryTimer: null,
  sessions: {}, widgets: {}, filter: null, replay: null, lowbw: false, generation: 0,
};

// ---------------------------------------------------------------- auth and routing
function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem("aw.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname.startsWith("/sessions/") ? location.pathname : "#/");
  }
  st.token = localStorage.getItem("aw.token");
}

function parseRoute() {
  const m = location.hash.match(/^#\/session\/(.+)$/) || location.pathname.match(/^\/sessions\/(.+)$/);
  if (m) return { kind: "session", id: decodeURIComponent(m[1]) };
  return location.hash.startsWith("#/privacy") ? { kind: "privacy" } : { kind: "overview" };
}

function authHeaders() { return { Authorization: `Bearer ${st.token}` }; }

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { showLogin(); throw new Error("unauthorized"); }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || res.statusText);
  return data;
}

function showLogin() {
  $("login").hidden = false; $("overview").hidden = true; $("session").hidden = true; $("privacy").hidden = true;
  setConn(false, "signed out");
}

// ---------------------------------------------------------------- connection
function setConn(on, text) {
  const el = $("conn");
  el.textContent = text;
  el.className = "conn " + (on ? "conn-on" : "conn-off");
}

function closeSocket() {
  st.generation += 1;
  clearTimeout(st.retryTimer);
  if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; }
}

function scheduleReconnect() {
  const base = Math.min(30000, 500 * 2 ** st.retry);
  st.retry += 1;
  const delay = base * (0.5 + Math.random() / 2);
  setConn(false, "disconnected, reconnecting…");
  st.retryTimer = setTimeout(connect, delay);
}

async function connect() {
  const generation = st.generation;
  if (!st.token) { showLogin(); return; }
  let token;
  try {
    token = (await api("POST", "/api/ws-token")).token;
  } catch (err) {
    if (generation === st.generation && err.message !== "unauthorized") scheduleReconnect();
    return;
  }
  if (generation !== st.generation) return;
  const path = st.route.kind === "session" ? `/sessions/${encodeURIComponent(st.route.id)}` : "/sessions";
  const proto = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${proto}${location.host}${path}?token=${encodeURIComponent(token)}`);
  st.ws = ws;
  ws.onopen = () => {
    st.retry = 0;
    setConn(true, "live");
    if (st.route.kind === "session") {
      if (st.lowbw) send({ action: "unsubscribe", widgets: CHART_WIDGETS });
      if (st.filter) send({ action: "filter", widget: "error_log", criteria: st.filter });
    }
  };
  ws.onmessage = (ev) => handle(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (st.ws !== ws) return;
    st.ws = null;
    if (ev.code === CLOSE_ERASED) { sessionErased(); return; }
    scheduleReconnect();
  };
}

function send(msg) { if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify(msg)); }

// ---------------------------------------------------------------- messages
function saveCache() { saveState(st.route, st.route.kind === "session" ? st.widgets : st.sessions); }

function loadCache() { return loadState(st.route); }

function forgetCachedState() { forgetAllStates(); st.sessions = {}; st.widgets = {}; }

// Nothing to reconnect to: drop what this page holds of the session, and its offline copy.
function sessionErased() {
  forgetState(st.route);
  st.widgets = {};
  destroyCharts();
  renderSession();
  setConn(false, "session erased");
}

function handle(msg) {
  switch (msg.message_type) {
    case "snapshot":
      if (msg.resync) st.widgets = {};
      for (const [name, w] of Object.entries(msg.widgets)) st.widgets[name] = w;
      saveCache(); renderSession(); break;
    case "widget_update": {
      // A replay's rebuilt widgets (session_id "replay:<id>") never overwrite the live ones.
      if (msg.replay_id) { onReplayWidget(msg); break; }
      const held = st.widgets[msg.widget];
      if (held && held.seq >= msg.seq && msg.widget !== "pattern_alerts") return; // stale
      st.widgets[msg.widget] = { data: msg.data, seq: msg.seq, timestamp: msg.timestamp };
      saveCache(); renderSession(); break;
    }
    case "session_list":
      st.sessions = {};
      for (const s of msg.sessions) st.sessions[s.session_id] = s;
      saveCache(); renderOverview(); break;
    case "session_update":
      st.sessions[msg.session.session_id] = msg.session; saveCache(); renderOverview(); break;
    case "replay_status": onReplayStatus(msg); break;
    case "replay_event": onReplayEvent(msg); break;
    case "error": console.warn("gateway:", msg.error, msg.message); break;
    default: break;
  }
}

// ---------------------------------------------------------------- rendering
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const usd = (v) => `$${(v || 0).toFixed(v >= 100 ? 0 : 2)}`;
const when = (us) => (us ? new Date(us / 1000).toLocaleTimeString() : "–");
const data = (name) => (st.widgets[name] || {}).data || {};

function renderOverview() {
  const rows = Object.values(st.sessions).sort((a, b) => (b.last_event_at || 0) - (a.last_event_at || 0));
  $("overview-empty").hidden = rows.length > 0;
  const box = $("sessions");
  box.replaceChildren(...rows.map((s) => {
    const pct = s.completion_pct ?? 0;
    const card = el("a", { class: "session-card", href: `#/session/${encodeURIComponent(s.session_id)}`,
      "data-testid": "session-card", "data-session": s.session_id });
    const bar = el("div", { class: "progress" }, el("div", { class: "progress-fill" }));
    bar.firstChild.style.width = `${pct}%`;
    card.append(
      el("div", { class: "sid", text: s.session_id }),
      el("div", { class: `s-${s.status}`, text: `${s.status} · ${pct}% · ${s.current_phase || "–"}` }),
      bar,
      el("div", { class: "muted", text: `${s.active_agents}/${s.agents} agents active · ${s.errors} errors · ${usd(s.cost_usd)} · ${s.events} events` }),
    );
    return card;
  }));
}

function renderSession() {
  const summary = data("session_summary");
  $("session-title").textContent = st.route.id;
  const status = $("session-status");
  status.textContent = summary.status || "–";
  status.className = `pill s-${summary.status}`;
  const p = data("session_progress");
  $("progress-bar").style.width = `${p.completion_pct || 0}%`;
  $("progress-pct").textContent = p.completion_pct == null ? "–" : `${p.completion_pct}%`;
  $("progress-phase").textContent = p.current_phase || "–";
  $("progress-eta").textContent = p.eta_minutes == null ? "–" : `${p.eta_minutes} min`;
  $("phases").replaceChildren(...(p.phases || []).map((ph) =>
    el("li", { class: ph.status, text: `${ph.name} ${Math.round((ph.duration_ms || 0) / 1000)}s` })));
  const counts = summary.counts || {};
  const stats = { events: summary.events, "files modified": counts.files_modified, tests: `${counts.tests_passed || 0}✓ ${counts.tests_failed || 0}✗`,
    errors: counts.errors, commands: counts.commands, started: when(summary.started_at), "last event": when((summary.last_event || {}).timestamp) };
  $("summary-stats").replaceChildren(...Object.entries(stats).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v ?? "–") })]));

  const agents = data("agent_timeline").agents || [];
  $("agents-list").replaceChildren(...agents.map((a) =>
    el("li", { text: `${a.agent}: ${a.status}${a.current_task ? " — " + a.current_task : ""} (${a.tasks_completed} tasks)` })));
  const select = $("agent-filter");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "all" }),
    ...agents.map((a) => el("option", { value: a.agent, text: a.agent })));
  select.value = chosen;

  const dirs = data("file_heatmap").directories || [];
  $("files-list").replaceChildren(...dirs.slice(0, 8).map((d) =>
    el("li", { text: `${d.directory}: ${d.files_modified} files, +${d.lines_added}/-${d.lines_removed}` })));

  const log = data("error_log");
  $("error-log").replaceChildren(...(log.errors || []).map((e) =>
    el("li", { class: `sev-${e.severity} ${e.status === "resolved" ? "resolved" : ""}`, "data-severity": e.severity || "",
      text: `${when(e.t)} [${e.severity}] ${e.agent || ""} ${e.type}: ${e.message}${e.file ? " (" + e.file + ")" : ""}` })));

  const res = data("resource_usage");
  $("resources-now").textContent = res.memory_mib == null ? "no samples" :
    `memory ${Math.round(res.memory_mib)} MiB (peak ${Math.round(res.peak_memory_mib)}), CPU ${res.cpu_pct}% (peak ${res.peak_cpu_pct}%)`;

  const net = data("network_trace");
  $("network-domains").replaceChildren(...(net.by_domain || []).map((d) =>
    el("tr", {}, el("td", { text: d.domain }), el("td", { text: String(d.requests) }), el("td", { text: String(d.bytes) }))));
  $("network-recent").replaceChildren(...(net.recent || []).slice(0, 10).map((r) =>
    el("li", { text: `${when(r.t)} ${r.protocol || ""} ${r.domain}${r.endpoint || ""} → ${r.status_code ?? "?"} (${r.duration_ms ?? "?"} ms)` })));

  const cost = data("cost");
  $("cost-total").textContent = usd(cost.total_usd);
  $("cost-models").replaceChildren(...(cost.by_model || []).map((m) =>
    el("tr", {}, el("td", { text: m.model }), el("td", { text: String(m.input_tokens) }),
      el("td", { text: String(m.output_tokens) }), el("td", { text: usd(m.cost_usd) }))));

  const alerts = data("pattern_alerts").alerts || [];
  $("alerts").replaceChildren(...(alerts.length ? alerts.map((a) =>
    el("li", { class: `sev-${a.severity}`, text: `${when(a.detected_at)} ${a.pattern}: ${a.message}${a.suggested_mitigation ? " — " + a.suggested_mitigation : ""}` }))
    : [el("li", { class: "muted", text: "no alerts" })]));
  if (!st.lowbw) renderCharts(st.widgets);
}

// ---------------------------------------------------------------- filters and modes
function onFilterChange() {
  const checked = [...$("severity-filter").querySelectorAll("input[type=checkbox]")].filter((i) => i.checked).map((i) => i.value);
  const agent = $("agent-filter").value;
  const criteria = {};
  if (checked.length !== SEVERITIES.length) criteria.severity = checked;
  if (agent) criteria.agent = agent;
  st.filter = Object.keys(criteria).length ? criteria : null;
  send({ action: "filter", widget: "error_log", criteria });
}

function setLowBandwidth(on) {
  st.lowbw = on;
  localStorage.setItem("aw.lowbw", on ? "1" : "0");
  document.body.classList.toggle("lowbw", on);
  if (on) destroyCharts();
  if (st.route.kind === "session") {
    send({ action: on ? "unsubscribe" : "subscribe", widgets: CHART_WIDGETS });
    if (!on) renderSession();
  }
}

// ---------------------------------------------------------------- replay
function replayButtons() {
  const r = st.replay;
  const live = r && ["loading", "running", "paused"].includes(r.state);
  $("replay-play").disabled = !!(live && r.state !== "paused");
  $("replay-pause").disabled = !(live && r.state === "running");
  $("replay-stop").disabled = !live;
}

const TERMINAL = ["finished", "stopped", "failed"];

function onReplayStatus(r) {
  const held = st.replay;
  if (held && r.replay_id !== held.replay_id) return;
  // A REST answer can arrive after the WebSocket already told a later state: never go back.
  if (held && (TERMINAL.includes(held.state) || (held.state !== "loading" && r.state === "loading"))
      && !TERMINAL.includes(r.state)) return;
  st.replay = r;
  const total = r.total ?? "?";
  $("replay-state").textContent = `replay ${r.state} at ${r.speed}× — ${r.events}/${total} events${r.error ? " — " + r.error : ""}`;
  $("replay-bar").style.width = r.total ? `${(100 * r.events) / r.total}%` : "0";
  replayButtons();
}

function onReplayWidget(msg) {
  if (!st.replay || msg.replay_id !== st.replay.replay_id) return;
  // Kept apart from the live widgets, per replay (the replay panel can render them).
  if (st.replayWidgetsOf !== msg.replay_id) { st.replayWidgetsOf = msg.replay_id; st.replayWidgets = {}; }
  const widgets = st.replayWidgets;
  const held = widgets[msg.widget];
  if (held && held.seq >= msg.seq) return;
  widgets[msg.widget] = { data: msg.data, seq: msg.seq, timestamp: msg.timestamp };
}

function onReplayEvent(msg) {
  if (!st.replay || msg.replay_id !== st.replay.replay_id) return;
  st.replay.events = msg.index;
  st.replay.position_us = msg.event.timestamp;
  const list = $("replay-events");
  list.prepend(el("li", { class: `sev-${msg.event.severity}`, "data-testid": "replay-event",
    text: `${when(msg.event.timestamp)} ${msg.event.event_type} ${msg.event.agent || ""}` }));
  while (list.childElementCount > 200) list.lastChild.remove();
  onReplayStatus(st.replay);
}

async function replayPlay(fromOverride) {
  try {
    if (st.replay && st.replay.state === "paused") {
      onReplayStatus(await api("POST", `/api/replays/${st.replay.replay_id}/resume`)); return;
    }
    $("replay-events").replaceChildren();
    const body = { speed: Number($("replay-speed").value) };
    const from = fromOverride ?? $("replay-from").value.trim();
    const to = $("replay-to").value.trim();
    if (from) body.from = from;
    if (to) body.to = to;
    st.replay = null;
    onReplayStatus(await api("POST", `/api/sessions/${encodeURIComponent(st.route.id)}/replays`, body));
  } catch (err) { $("replay-state").textContent = `replay failed: ${err.message}`; }
}

async function replayPause() {
  if (st.replay) onReplayStatus(await api("POST", `/api/replays/${st.replay.replay_id}/pause`));
}

async function replayStop() {
  if (st.replay) onReplayStatus(await api("DELETE", `/api/replays/${st.replay.replay_id}`));
}

async function replaySpeed() {
  // The engine's speed is fixed per run: continue from where it is at the new speed.
  const r = st.replay;
  if (!r || !["running", "paused"].includes(r.state)) return;
  const at = r.position_us;
  await replayStop();
  st.replay = null;
  await replayPlay(at ? String(at) : undefined);
}

// ---------------------------------------------------------------- start
function route() {
  closeSocket();
  st.route = parseRoute();
  st.retry = 0;
  $("login").hidden = true;
  $("overview").hidden = st.route.kind !== "overview";
  $("session").hidden = st.route.kind !== "session";
  $("privacy").hidden = st.route.kind !== "privacy";
  destroyCharts();
  const cached = loadCache();
  if (st.route.kind === "session") {
    st.widgets = cached || {}; st.replay = null;
    $("replay-events").replaceChildren(); $("replay-state").textContent = "not replaying"; replayButtons();
    renderSession();
  } else {
    st.sessions = cached || {}; renderOverview();
    if (st.route.kind === "privacy") showPrivacy();
  }
  connect();
}

function init() {
  registerShell();
  readToken();
  initPrivacy(api, authHeaders, forgetCachedState);
  st.lowbw = localStorage.getItem("aw.lowbw") === "1";
  $("lowbw").checked = st.lowbw;
  document.body.classList.toggle("lowbw", st.lowbw);
  $("lowbw").addEventListener("change", (e) => setLowBandwidth(e.target.checked));
  $("severity-filter").addEventListener("change", onFilterChange);
  $("replay-play").addEventListener("click", () => replayPlay());
  $("replay-pause").addEventListener("click", replayPause);
  $("replay-stop").addEventListener("click", replayStop);
  $("replay-speed").addEventListener("change", replaySpeed);
  $("logout").addEventListener("click", () => {
    localStorage.removeItem("aw.token"); st.token = null; closeSocket(); forgetCachedState(); showLogin();
  });
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("aw.token", $("token-input").value.trim());
    st.token = localStorage.getItem("aw.token");
    route();
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => { if (!st.ws) { clearTimeout(st.retryTimer); connect(); } });
  if (!st.token) { showLogin(); return; }
  route();
}

init();
